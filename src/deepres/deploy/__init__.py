"""Shipping a trained ResNet: export (ONNX, TorchScript, torch.export) verified against
PyTorch, int8 quantization for x86 CPUs, a small web service, and the evaluation of
ensembles and test-time augmentation.

    from deepres.deploy import evaluate_checkpoints, export_checkpoint, quantize_checkpoint
    from deepres.deploy.serve import serve

Library code only: the commands that call it live in ``deepres.cli``.

- ``options``: the choices and limits, without torch (the command line's ``--help``);
- ``export``, ``quantize``, ``serve``, ``evaluate``, ``inputs``: the commands' library code;
- ``runtime``: ``--runtime`` of eval/predict/serve: a model, members or Predictor prepared;
- ``runtimes``: each runtime's builder; ``target``: what one is built for; ``onnx_cache``:
  the cached ONNX file; ``auto``: the measured choice; ``choices``: the remembered one.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "options": ["DEFAULT_OPSET", "FORMATS", "MAX_UPLOAD_BYTES", "RUNTIMES"],
        "evaluate": ["evaluate_checkpoints"],
        "export": ["export_checkpoint", "export_model", "load_runner", "verify_export"],
        "quantize": ["quantize_checkpoint", "quantize_model"],
        "serve": ["create_app"],
    },
)
