"""Training.

- ``config``: ``TrainConfig``, each option declared once (flag, type, choices, check, help),
  recipes; torch-free, so the command line's ``--help`` needs no torch.
- ``loop``: ``train(cfg)``, set-up, epochs and the step, read top to bottom.
- ``run``: the run's state, learner and checkpoints; ``schedule``: the learning rate and the
  run's length; ``checks``: NaN/Inf stops; ``metrics``, ``progress``: rows, files, summary.
- ``optim``: the optimizer from the options (SGD, AdamW, RAdam, LAMB, Lookahead, parameter
  groups); ``finetune``: the head, stages and stem (``--freeze-epochs``, ``--layer-lr-decay``).
- ``batches``: the data as batches; ``distributed``: torchrun; ``ema``, ``average``: weight
  averages; ``evaluate``: test-set accuracy and checkpoint evaluation.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "config": ["TrainConfig", "list_recipes", "load_recipe", "resolve_config"],
        "evaluate": ["EvalResult"],
        "loop": ["read_metrics", "train"],
    },
)
