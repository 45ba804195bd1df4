"""Every saved-model kind deepres reads and writes, carrying no code:

- ``run_files``: a run folder's ``model.safetensors`` (its final weights, what the folder
  means), ``best-val.safetensors`` (``--val-split`` runs: chosen on held-out images), with
  the model's name, classes and normalisation in the header, and ``state.pt`` (everything
  to resume exactly; plain tensors and numbers, read with ``weights_only=True``);
- ``program``: ``.pt2`` programs from ``deepres export``/``deepres quantize``, checked
  before ``torch.export.load`` so nothing is unpickled;
- ``load``: ``load_model(path)`` for any of them (``ema=True``: a run's ``ema.safetensors``).

Weight files made elsewhere (torchvision, timm, DataParallel, CIFAR repos) are read by
``deepres.models.weights``, since ``create_model(pretrained=...)`` needs them below here.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "load": ["load_model"],
        "program": ["ProgramModel", "load_program", "save_program"],
        "run_files": [
            "BEST_FILE",
            "BEST_VAL_FILE",
            "EMA_FILE",
            "MODEL_FILE",
            "STATE_FILE",
            "load_state",
            "read_meta",
            "resolve_weights",
            "save_state",
            "save_weights",
            "unwrap",
        ],
    },
)
