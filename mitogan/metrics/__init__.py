"""Metrics: a deterministic fluorescence feature space (intensity, wavelet scattering, morphology), the
calibrated search objective, distribution distances (FD, KID, PRDC, Vendi, memorisation) in one registry,
``evaluate`` and the cheap ``InTrainingEvaluator``. No downloaded weights, no random encoders."""

from mitogan.metrics.evaluate import (FAST_METRICS, PRIMARY_COMPONENTS, PRIMARY_MODE, PRIMARY_NAME,
                                      InTrainingEvaluator, evaluate, primary_value, real_reference)
from mitogan.metrics.morphology import FEATURE_NAMES, morphology_features
from mitogan.metrics.registry import METRICS, register_metric

__all__ = ["evaluate", "InTrainingEvaluator", "PRIMARY_NAME", "PRIMARY_MODE", "PRIMARY_COMPONENTS",
           "primary_value", "real_reference", "FAST_METRICS", "FEATURE_NAMES", "morphology_features", "METRICS",
           "register_metric"]
