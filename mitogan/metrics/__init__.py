"""Metrics: morphology features, distribution distances (KID, FD, PRDC, Vendi, memorisation) in one
registry, ``evaluate`` and the cheap ``InTrainingEvaluator``. No downloaded weights anywhere."""

from mitogan.metrics.evaluate import (FAST_METRICS, PRIMARY_MODE, PRIMARY_NAME, InTrainingEvaluator, evaluate,
                                      primary_value)
from mitogan.metrics.morphology import FEATURE_NAMES, morphology_features
from mitogan.metrics.registry import METRICS, register_metric

__all__ = ["evaluate", "InTrainingEvaluator", "PRIMARY_NAME", "PRIMARY_MODE", "primary_value", "FAST_METRICS",
           "FEATURE_NAMES", "morphology_features", "METRICS", "register_metric"]
