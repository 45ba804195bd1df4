"""Training: configurations and recipes, the loop, batches, evaluation, torch.distributed."""

from deepres.train.config import TrainConfig, list_recipes, load_recipe, resolve_config
from deepres.train.evaluate import EvalResult, evaluate
from deepres.train.loop import read_metrics, train

__all__ = [
    "EvalResult",
    "TrainConfig",
    "evaluate",
    "list_recipes",
    "load_recipe",
    "read_metrics",
    "resolve_config",
    "train",
]
