"""What ``deepres bench`` compares against, importable without torch (the command line lists
these in its ``--help``)."""

from __future__ import annotations

RUNTIMES = ("onnxruntime", "onnxruntime-int8", "openvino")  # see ``bench.runtimes``
# --against NAME -> (the mode it needs, what it compares)
TIMED = {
    "torchvision": ("infer", "inference"),
    **{name: ("infer", "inference") for name in RUNTIMES},
    "reference": ("train", "training"),
}
