"""One registry of distribution metrics (``@register_metric``), and the context they read features from.

A metric is ``fn(ctx: MetricContext) -> (values, sizes)``: ``values`` maps result names to floats (one
metric may give several, e.g. precision/recall/density/coverage) and ``sizes`` records the sample sizes
it used (``n_real``, ``n_fake``, KID subset size, k, ...), so every number is named with its sample size.
Features are computed lazily, once per context, and standardised with the REAL set's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mitogan.errors import ConfigError

__all__ = ["register_metric", "METRICS", "MetricContext", "RealFeatures", "FEATURE_KINDS", "compute_features"]

METRICS: dict[str, Callable] = {}
FEATURE_KINDS = ("morph", "enc", "pixels")


def register_metric(fn: Callable | None = None, *, name: str | None = None):
    """Decorator: add ``fn`` to ``METRICS`` under ``name`` (default: the function name)."""
    def wrap(f):
        key = name or f.__name__
        if key in METRICS:
            raise ValueError(f"metric {key!r} registered twice")
        METRICS[key] = f
        return f
    return wrap(fn) if fn is not None else wrap


def compute_features(kind: str, tiles: np.ndarray, seed: int = 0, progress: bool = False) -> np.ndarray:
    """Raw (unstandardised) features of ``tiles`` (N, 1, S, S): (N, D) float64."""
    if kind == "morph":
        from mitogan.metrics.morphology import morphology_features

        return morphology_features(tiles, progress=progress)
    if kind == "enc":
        from mitogan.metrics.encoder import encode

        return encode(tiles, seed=seed, progress=progress)
    if kind == "pixels":
        return np.asarray(tiles, np.float64).reshape(len(tiles), -1) / np.sqrt(tiles[0].size)  # RMS units
    raise ConfigError(f"metrics: unknown feature kind {kind!r}; choose from {FEATURE_KINDS}")


@dataclass
class RealFeatures:
    """Everything about the real set that does not depend on the fakes: computed once, reusable."""

    tiles: np.ndarray  # (N, 1, S, S) float32
    seed: int = 0
    raw: dict = field(default_factory=dict)  # kind -> (N, D) raw features

    def get(self, kind: str, progress: bool = False) -> np.ndarray:
        if kind not in self.raw:
            self.raw[kind] = compute_features(kind, self.tiles, self.seed, progress)
        return self.raw[kind]


@dataclass
class MetricContext:
    """Real and generated tiles plus options; ``features(kind)`` gives standardised (real, fake)."""

    real: RealFeatures
    fake_tiles: np.ndarray  # (M, 1, S, S) float32
    seed: int = 0
    k: int = 5  # neighbours for precision/recall/density/coverage
    kid_subset: int = 1000  # KID subset size (clamped to the sample counts)
    kid_subsets: int = 100
    holdout: float = 0.2  # share of real tiles held out for the memorisation baseline
    progress: bool = False
    _fake_raw: dict = field(default_factory=dict)
    _std: dict = field(default_factory=dict)

    @property
    def n_real(self) -> int:
        return len(self.real.tiles)

    @property
    def n_fake(self) -> int:
        return len(self.fake_tiles)

    def fake_raw(self, kind: str) -> np.ndarray:
        if kind not in self._fake_raw:
            self._fake_raw[kind] = compute_features(kind, self.fake_tiles, self.seed, self.progress)
        return self._fake_raw[kind]

    def features(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(real (N, D), fake (M, D)) standardised with the real set's mean and std."""
        if kind not in self._std:
            from mitogan.metrics.distances import standardise

            self._std[kind] = standardise(self.real.get(kind, self.progress), self.fake_raw(kind))
        return self._std[kind]
