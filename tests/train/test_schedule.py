"""The §4.2 warm-up applies by the depth a model's name states."""

from deepres.train.config import TrainConfig
from deepres.train.schedule import _depth, warmup_lr


def test_depth_is_the_first_number_of_the_name():
    names = ["resnet110", "wrn28_10", "resnext29_8x64d", "preact_resnet1001", "resnet50d", "x"]
    assert [_depth(n) for n in names] == [110, 28, 29, 1001, 50, 0]


def test_warmup_only_for_deep_nets():
    deep = TrainConfig(model="preact_resnet1001", warmup_lr=0.01, warmup_min_depth=110)
    wide = TrainConfig(model="wrn28_10", warmup_lr=0.01, warmup_min_depth=110)
    assert warmup_lr(deep) == 0.01
    assert warmup_lr(wide) is None
