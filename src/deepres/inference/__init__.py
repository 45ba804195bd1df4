"""Inference with trained models: ``Predictor`` (image files or bytes -> top classes, as
``predict`` and ``serve`` use it), ``Ensemble`` and ``TestTimeAugmentation`` (probabilities
averaged over models or over views of each image), ``optimize_for_inference`` (the fast
path), and ``agreement``: what "exact" means when a faster or exported model is checked."""

from deepres.inference.ensemble import Ensemble
from deepres.inference.exactness import Agreement, agreement
from deepres.inference.fast import InferenceModel, fold_batchnorm, optimize_for_inference
from deepres.inference.members import Member, check_members, combine, load_members
from deepres.inference.predictor import MAX_IMAGE_BYTES, Prediction, Predictor, expand_inputs
from deepres.inference.tta import TTA_MODES, TestTimeAugmentation, tta_views

__all__ = [
    "Agreement",
    "Ensemble",
    "MAX_IMAGE_BYTES",
    "Member",
    "TTA_MODES",
    "TestTimeAugmentation",
    "agreement",
    "check_members",
    "combine",
    "InferenceModel",
    "load_members",
    "Prediction",
    "Predictor",
    "expand_inputs",
    "fold_batchnorm",
    "optimize_for_inference",
    "tta_views",
]
