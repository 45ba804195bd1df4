"""What a caller of deploy chooses among, importable without torch (the command line lists
these in its ``--help``): runtimes, export formats and opset, the upload limit."""

from __future__ import annotations

# What runs a model (``deploy.runtimes``); all exact in fp32. auto: the fastest, measured.
RUNTIMES = ("auto", "torch", "eager", "onnxruntime", "openvino")
# ``deepres export`` formats and their file suffixes (``deploy.export``)
FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2"}
DEFAULT_OPSET = 18  # torch.onnx's exporter writes this opset or newer
MAX_UPLOAD_BYTES = 10 * 2**20  # ``deepres serve`` refuses larger uploads (413)
