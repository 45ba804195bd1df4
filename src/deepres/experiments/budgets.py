"""How much compute an experiment spends: budgets kept as data.

A budget gives the training options every run of an experiment shares (on top of the
``he2016-cifar`` recipe, paper §4.2), the default depths (and, where it differs from
cifar10-jpeg, the default data set) of each experiment, the number of seeds and how many
test images the layer-response measurement (Fig. 7) uses.

- ``tiny``: seconds per run, for tests: a few iterations on a few images per class.
- ``small``: a CPU budget. The degradation experiment (plain/ResNet-20 and -56) took 48
  minutes on two cores (measured, 2881 s): Fashion-MNIST (28x28, cheaper than CIFAR and
  quick to fit), 500 images per class, 24 epochs of batch 32 (3,744 iterations), one-cycle
  learning rate up to 0.05. Pilots at a fifth of this budget (250 images per class, 10
  epochs) chose it: with batch 128, as in the paper, so few iterations leave ResNet-56
  behind ResNet-20 (CIFAR: 59.0% vs 55.4% final training error); with batch 32 (four times
  the iterations for the same images, at the same speed on this CPU) ResNet-56 is ahead on
  Fashion-MNIST (17.3% vs 18.4%), and plain-56 far behind (78.0% vs ResNet-56's 38.5% after
  3 epochs). A constant lr from the first iteration makes ResNet-56 diverge within ten
  iterations and stay at chance, hence the ramp (the paper warms ResNet-110 up too, §4.2).
- ``paper``: the paper's recipe unchanged: 64k iterations of batch 128 on all 50k images.
"""

from __future__ import annotations

import copy
from typing import Any

from deepres.errors import DeepresError

RECIPE = "he2016-cifar"
DEFAULT_DATA = "cifar10-jpeg"

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
            "a CPU budget: 24 epochs on 500 training images per class (3,744 iterations of "
            "batch 32), one-cycle learning rate (up to 0.05 over the first 30% of training, "
            "then down to 0), tested on 100 images per class after every epoch"
        ),
        "data": {"degradation": "fashion-mnist", "layer-responses": "fashion-mnist"},
        "train": {
            "epochs": 24,
            "batch_size": 32,
            "lr": 0.05,
            "train_subset": 500,
            "test_subset": 100,
            "schedule": "onecycle",
            "warmup": 0.3,
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


def default_data(experiment: str, budget: str) -> str:
    """The data set an experiment trains on under ``budget`` unless told otherwise."""
    return get_budget(budget).get("data", {}).get(experiment, DEFAULT_DATA)


def get_budget(name: str) -> dict[str, Any]:
    """A copy of the budget called ``name``."""
    if name not in BUDGETS:
        raise DeepresError(f"unknown budget {name!r}: choose one of {', '.join(BUDGETS)}")
    return copy.deepcopy(BUDGETS[name])
