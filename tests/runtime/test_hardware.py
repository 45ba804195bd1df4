"""Hardware facts and the autocast choice they drive."""

import platform
from pathlib import Path

import pytest
import torch

from deepres.runtime import autocast_dtype, bf16_is_native, has_vnni


def test_autocast_follows_the_amp_option():
    assert autocast_dtype("off", "cpu") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("fp16", "cuda") is torch.float16


def cpu_flags() -> set[str]:
    """The kernel's CPU feature flags (/proc/cpuinfo), the outside reference for the probes."""
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.is_file():
        pytest.skip("the reference is the x86 flags of /proc/cpuinfo (Linux)")
    line = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
    return set(line.split(":", 1)[1].split())


def test_auto_uses_bf16_only_where_it_is_native():
    native = bf16_is_native("cpu")
    assert native is bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if native else None)


def test_vnni_probe_agrees_with_the_cpu_flags():
    assert has_vnni() is bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags())
