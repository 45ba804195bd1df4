"""What this machine computes fast: native bf16, int8 VNNI, and the autocast choice."""

from __future__ import annotations

import torch


def bf16_is_native(device_type: str = "cpu") -> bool:
    """True where bf16 matrix math runs in hardware (AVX-512 BF16 / AMX, or a recent GPU);
    on other CPUs it is emulated and about ten times slower than fp32."""
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def has_vnni() -> bool:
    """True where the CPU multiplies int8 with VNNI (AVX512-VNNI, AVX-VNNI or AMX)."""
    try:
        return bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older/newer torch without the probes: assume the safe answer
        return False


def autocast_dtype(amp: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``--amp``: ``auto`` means bf16 where the hardware has it,
    else none; ``bf16``/``fp16`` force that type; ``off`` none."""
    if amp == "auto":
        return torch.bfloat16 if bf16_is_native(device_type) else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
