"""Hardware facts and the autocast choice they drive."""

import torch

from deepres.runtime import autocast_dtype, bf16_is_native, has_vnni


def test_autocast_follows_the_amp_option():
    assert autocast_dtype("off", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("fp16", "cuda") is torch.float16


def test_auto_uses_bf16_only_where_it_is_native():
    native = bf16_is_native("cpu")
    assert isinstance(native, bool)
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if native else None)


def test_vnni_probe_answers_a_bool():
    assert isinstance(has_vnni(), bool)
