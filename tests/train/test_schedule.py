"""The §4.2 warm-up applies by the depth a model's name states; the flat-cos schedule."""

import math

import pytest

from deepres import DeepresError
from deepres.train import resolve_config
from deepres.train.config import TrainConfig
from deepres.train.schedule import _depth, learning_rate, warmup_lr


def test_depth_is_the_first_number_of_the_name():
    names = ["resnet110", "wrn28_10", "resnext29_8x64d", "preact_resnet1001", "resnet50d", "x"]
    assert [_depth(n) for n in names] == [110, 28, 29, 1001, 50, 0]


def test_warmup_only_for_deep_nets():
    deep = TrainConfig(model="preact_resnet1001", warmup_lr=0.01, warmup_min_depth=110)
    wide = TrainConfig(model="wrn28_10", warmup_lr=0.01, warmup_min_depth=110)
    assert warmup_lr(deep) == 0.01
    assert warmup_lr(wide) is None


def test_flat_cos_is_flat_for_its_share_of_training_then_a_cosine_to_zero():
    cfg = resolve_config(schedule="flat-cos", lr=0.2)  # --flat 0.72, as fastai's fit_flat_cos
    total = 1000

    def hand(step: int) -> float:  # fastai: lr until 72% of training, then SchedCos(lr, 0)
        t = (step / total - 0.72) / 0.28
        return 0.2 if t <= 0 else 0.2 * (1 + math.cos(math.pi * t)) / 2

    for step in (0, 500, 719, 720, 790, 860, 930, 999):
        assert learning_rate(cfg, step, total, 100) == pytest.approx(hand(step), abs=1e-12)
    assert learning_rate(cfg, 860, total, 100) == pytest.approx(0.1)  # half-way down
    half = resolve_config(schedule="flat-cos", flat=0.5, lr=1.0)
    assert learning_rate(half, 49, 100, 10) == 1.0
    assert learning_rate(half, 75, 100, 10) == pytest.approx(0.5)
    with pytest.raises(DeepresError, match="--flat is a share of training"):
        resolve_config(schedule="flat-cos", flat=1.0)
