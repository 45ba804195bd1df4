"""How much compute an experiment spends: budgets kept as data.

A budget gives the training options every run of an experiment shares (on top of the
``he2016-cifar`` recipe, paper §4.2), the default depths of each experiment, the number of
seeds and how many test images the layer-response measurement (Fig. 7) uses.

- ``tiny``: seconds per run, for tests: a few iterations on a few images per class.
- ``small``: a CPU budget. The degradation experiment (plain/ResNet-20 and -56) fits in about
  an hour on two cores: 500 images per class, 20 epochs (780 iterations of batch 128), the
  paper's schedule compressed (lr 0.1, divided by 10 at 50% and 75% of training).
- ``paper``: the paper's recipe unchanged: 64k iterations of batch 128 on all 50k images.
"""

from __future__ import annotations

import copy
from typing import Any

from deepres.errors import DeepresError

RECIPE = "he2016-cifar"

BUDGETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "description": "a smoke test: 3 epochs on 16 images per class, tested on 10 per class",
        "train": {
            "epochs": 3,
            "batch_size": 32,
            "train_subset": 16,
            "test_subset": 10,
        },
        "depths": {
            "degradation": [8, 14],
            "cifar-table": [8, 14],
            "layer-responses": [8, 14],
            "shortcuts": [8],
        },
        "seeds": 1,
        "response_images": 100,
    },
    "small": {
        "description": (
            "a CPU budget: 20 epochs on 500 training images per class (780 iterations of "
            "batch 128), lr 0.1 divided by 10 at 50% and 75% of training, tested on 100 "
            "images per class after every epoch"
        ),
        "train": {
            "epochs": 20,
            "batch_size": 128,
            "train_subset": 500,
            "test_subset": 100,
            "channels_last": True,
        },
        "depths": {
            "degradation": [20, 56],
            "cifar-table": [20, 32, 44, 56],
            "layer-responses": [20, 56],
            "shortcuts": [20],
        },
        "seeds": 1,
        "response_images": 500,
    },
    "paper": {
        "description": (
            "the paper's recipe (§4.2): 64k iterations of batch 128 on all 50k training "
            "images, lr 0.1 divided by 10 at 32k and 48k, tested on all 10k test images"
        ),
        "train": {},
        "depths": {
            "degradation": [20, 32, 44, 56],
            "cifar-table": [20, 32, 44, 56, 110],
            "layer-responses": [20, 56, 110],
            "shortcuts": [32],
        },
        "seeds": 5,
        "response_images": 1000,
    },
}


def get_budget(name: str) -> dict[str, Any]:
    """A copy of the budget called ``name``."""
    if name not in BUDGETS:
        raise DeepresError(f"unknown budget {name!r}: choose one of {', '.join(BUDGETS)}")
    return copy.deepcopy(BUDGETS[name])
