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

The ensemble experiment has its own part of each budget (``ENSEMBLE``): a recipe, training
options and a number of members (seeds), see below.
"""

from __future__ import annotations

import copy
from typing import Any

from deepres.errors import DeepresError

RECIPE = "he2016-cifar"
DEFAULT_DATA = "cifar10-jpeg"

# The extreme-depth experiment's small budget. Measured on this 2-core CPU while shared with
# other work: with 2 threads one iteration of ResNet-1202 (batch 8, 28x28) took 95-133 s, as
# its thousands of small operations each wait for both threads; with one thread (--threads 1)
# an iteration of batch 5 took 7.2 s, about 1.45 s per image forward and backward. All four
# nets cost about 22 s per iteration of batch 8 that way (ResNet-1202 about half of it).
# Fashion-MNIST (28x28, one channel) is 23% cheaper per image than CIFAR and its classes are
# learnt in few iterations. 60 iterations of batch 8 (6 epochs on 8 images per class), tested
# on 2 images per class after every epoch, plus the memory measurement, fit in about 30 minutes
# on the shared machine; gradient checkpointing is off: at batch 8 every net fits in a few GB
# of RAM (see the memory table) and recomputation costs about a third more time.
SMALL_EXTREME_DEPTH: dict[str, Any] = {
    "description": (
        "a CPU budget for 1000-layer nets: 6 epochs of 10 iterations of batch 8 on 8 training "
        "images per class (60 iterations), lr 0.01 (he2016's warm-up) until the training error "
        "is below 80%, then a one-cycle lr (peak 0.02, down to 0 at the end), tested on 2 images "
        "per class after every epoch; memory measured on 2 iterations of batch 8"
    ),
    "train": {
        "epochs": 6,
        "batch_size": 8,
        "train_subset": 8,
        "test_subset": 2,
        "lr": 0.02,
        "schedule": "onecycle",
        "warmup": 0.3,
    },
    "checkpointing": [],
    "memory": {"batch": 8, "iters": 2},
}

# The ensemble experiment's part of each budget: members trained from different seeds with
# ``recipe`` and ``train`` (they replace the budget's training options). Small: the fast-cpu
# recipe (`deepres recipes fast-cpu`) for 3 epochs on all 50k cifar10-jpeg training images.
# One epoch of ResNet-20 took 70-100 s on one thread of the 2-core CPUs here and a test pass
# over the 10k test images about a tenth of that, so 4 members take at most 4 x 3 x 110 s =
# 22 minutes, and the ensemble's own test (every member once more, plus once for the
# probabilities) about 2 minutes: well within an hour on two cores.
ENSEMBLE: dict[str, dict[str, Any]] = {
    "tiny": {
        "description": (
            "a smoke test: 3 members, each 2 epochs of batch 32 (fast-cpu recipe) on 16 images "
            "per class, tested on 10 per class"
        ),
        "recipe": "fast-cpu",
        "train": {"epochs": 2, "batch_size": 32, "train_subset": 16, "test_subset": 10},
        "members": 3,
    },
    "small": {
        "description": (
            "a CPU budget: 4 members, each trained with the fast-cpu recipe for 3 epochs on "
            "all 50k training images and tested on all 10k test images"
        ),
        "recipe": "fast-cpu",
        "train": {"epochs": 3},
        "members": 4,
    },
    "paper": {
        "description": (
            "5 members, each trained with the paper's recipe (§4.2): 64k iterations of batch "
            "128 on all 50k training images, lr 0.1 divided by 10 at 32k and 48k, tested on "
            "all 10k test images"
        ),
        "recipe": RECIPE,
        "train": {},
        "members": 5,
    },
}

# The Imagenette experiment's part of each budget: the ``imagenette`` recipe for ``train``'s
# epochs, one run per seed. Tiny: a smoke test on small images (the test writes its folder).
IMAGENETTE: dict[str, dict[str, Any]] = {
    "tiny": {
        "recipe": "imagenette",
        "train": {
            "epochs": 2,
            "batch_size": 8,
            "train_subset": 4,
            "test_subset": 2,
            "image_size": 32,
            "model": "resnet18",
        },
        "seeds": 1,
    },
    "small": {"recipe": "imagenette", "train": {"epochs": 5}, "seeds": 2},
    "paper": {"recipe": "imagenette", "train": {"epochs": 20}, "seeds": 2},
}

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
            "extreme-depth": [],
            "ensemble": [8],
            "imagenette": [],
        },
        "extreme-depth": {
            "description": (
                "a smoke test of the real 1202- and 1001-layer nets: 2 epochs of 2 iterations of "
                "batch 5 on 1 image per class, tested on 1 image per class; memory measured on 1 "
                "iteration of batch 2 (the test feeds 8x8 images, at 32x32 the two "
                "1000-layer nets take minutes on a CPU)"
            ),
            "train": {"epochs": 2, "batch_size": 5, "train_subset": 1, "test_subset": 1},
            "checkpointing": ["resnet1202", "preact_resnet1001"],
            "memory": {"batch": 2, "iters": 1},
        },
        "seeds": 1,
        "response_images": 100,
        "ensemble": ENSEMBLE["tiny"],
    },
    "small": {
        "description": (
            "a CPU budget: 24 epochs on 500 training images per class (3,744 iterations of "
            "batch 32), one-cycle learning rate (up to 0.05 over the first 30% of training, "
            "then down to 0), tested on 100 images per class after every epoch"
        ),
        "data": {
            "degradation": "fashion-mnist",
            "layer-responses": "fashion-mnist",
            "extreme-depth": "fashion-mnist",
        },
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
            "extreme-depth": [],
            "ensemble": [20],
            "imagenette": [],
        },
        "extreme-depth": SMALL_EXTREME_DEPTH,
        "ensemble": ENSEMBLE["small"],
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
            "extreme-depth": [],
            "ensemble": [20],
            "imagenette": [],
        },
        "extreme-depth": {
            "description": (
                "the papers' recipe: 64k iterations of batch 128 on all 50k training images, lr "
                "0.1 divided by 10 at 32k and 48k, warm-up at lr 0.01 until the training error "
                "is below 80% (about 400 iterations; He et al. 2016 §4.2 for ResNet-110/1202, "
                "and the same schedule in the Identity Mappings paper for the pre-activation "
                "nets), tested on all 10k test images; gradient checkpointing for the two "
                "1000-layer nets (batch 128 of pre-act ResNet-1001 needs tens of GiB without it)"
            ),
            "train": {},
            "checkpointing": ["resnet1202", "preact_resnet1001"],
            "memory": {"batch": 128, "iters": 3},
        },
        "seeds": 5,
        "response_images": 1000,
        "ensemble": ENSEMBLE["paper"],
    },
}


def default_data(experiment: str, budget: str) -> str:
    """The data set an experiment trains on under ``budget`` unless told otherwise."""
    if experiment == "imagenette":
        return "imagenette-224"
    return get_budget(budget).get("data", {}).get(experiment, DEFAULT_DATA)


def get_budget(name: str) -> dict[str, Any]:
    """A copy of the budget called ``name``."""
    if name not in BUDGETS:
        raise DeepresError(f"unknown budget {name!r}: choose one of {', '.join(BUDGETS)}")
    return copy.deepcopy(BUDGETS[name])
