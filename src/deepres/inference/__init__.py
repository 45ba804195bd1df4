"""Inference with trained models: ``Predictor`` (image files or bytes -> top classes, as
``predict`` and ``serve`` use it), ``optimize_for_inference`` (the fast path), and
``agreement``: what "exact" means when a faster or exported model is checked."""

from deepres.inference.exactness import Agreement, agreement
from deepres.inference.fast import InferenceModel, fold_batchnorm, optimize_for_inference
from deepres.inference.predictor import MAX_IMAGE_BYTES, Prediction, Predictor, expand_inputs

__all__ = [
    "Agreement",
    "MAX_IMAGE_BYTES",
    "agreement",
    "InferenceModel",
    "Prediction",
    "Predictor",
    "expand_inputs",
    "fold_batchnorm",
    "optimize_for_inference",
]
