"""Inference with trained models: ``Predictor`` (image files or bytes -> top classes, as
``predict`` and ``serve`` use it), ``Ensemble`` and ``TestTimeAugmentation`` (probabilities
averaged over models or over views of each image), ``optimize_for_inference`` (the fast
path), and ``agreement``: what "exact" means when a faster or exported model is checked."""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "ensemble": ["Ensemble"],
        "exactness": ["Agreement", "agreement"],
        "fast": ["InferenceModel", "fold_batchnorm", "optimize_for_inference"],
        "members": ["Member", "check_members", "combine", "load_members", "pretrained_member"],
        "predictor": ["MAX_IMAGE_BYTES", "Prediction", "Predictor", "expand_inputs"],
        "options": ["TTA_MODES", "check_tta_mode"],
        "tta": ["TestTimeAugmentation", "tta_views"],
    },
)
