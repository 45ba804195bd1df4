"""Training: configurations and recipes, the loop, batches, evaluation, torch.distributed."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["TrainConfig", "list_recipes", "load_recipe", "resolve_config"],
        "evaluate": ["EvalResult"],
        "loop": ["read_metrics", "train"],
    },
)
