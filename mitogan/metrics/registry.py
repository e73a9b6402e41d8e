"""The metric registry (``@register_metric``) and the context every metric reads.

A metric is ``fn(ctx: MetricContext) -> (values: dict[str, float], sample_sizes: dict)``. Real-side work
(split, threshold, features, calibration) lives in ``Reference`` and is shared by every metric and every
call; the generated side's features are computed once per context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mitogan.metrics.reference import Reference

__all__ = ["register_metric", "METRICS", "PIXEL_METRICS", "PIECES", "MetricContext"]

METRICS: dict[str, Callable] = {}
PIXEL_METRICS: set[str] = set()  # metrics that never read the generated tiles' features (``features=False``)
PIECES: dict[str, Callable] = {}  # metric -> its ``pieces`` function (``register_metric``)


def register_metric(fn: Callable | None = None, *, name: str | None = None, features: bool = True,
                    pieces: Callable | None = None):
    """Decorator: add ``fn`` to ``METRICS`` under ``name`` (default: the function name). ``features=False``
    declares that it reads only the tiles (not ``fake_raw``/``fake_z``): ``evaluate`` then runs it while the
    generated tiles' features are computed in another thread. ``pieces(ctx) -> [callable, ...]`` (pixel metrics
    only): its work in independent parts, each keeping its result in ``ctx._cache`` and doing nothing when it is
    there; ``evaluate`` runs them as tasks of their own (finer tasks share two threads more evenly), then the
    metric, which must call the same pieces (so that it also runs alone) and so finds them done."""
    if pieces is not None and features:
        raise ValueError("pieces: only a metric registered with features=False runs beside the features")

    def wrap(f):
        key = name or f.__name__
        if key in METRICS:
            raise ValueError(f"metric {key!r} registered twice")
        METRICS[key] = f
        if not features:
            PIXEL_METRICS.add(key)
        if pieces is not None:
            PIECES[key] = pieces
        return f
    return wrap(fn) if fn is not None else wrap


@dataclass
class MetricContext:
    """The real ``Reference``, the generated tiles and options; features are computed lazily, once."""

    ref: Reference
    fake_tiles: np.ndarray  # (M, 1, S, S) float32
    seed: int = 0
    k: int = 5  # neighbours for precision/recall/density/coverage
    bootstrap: int = 50  # KID bootstrap resamples (its spread)
    progress: bool = False
    _cache: dict = field(default_factory=dict)

    @property
    def n_real(self) -> int:
        return len(self.ref.heldout)

    @property
    def n_fake(self) -> int:
        return len(self.fake_tiles)

    @property
    def fake_raw(self) -> np.ndarray:
        """(M, F) raw features of the generated tiles, on the real data's mask threshold."""
        return self.raw_features()

    def raw_features(self, workers: int | None = None) -> np.ndarray:
        """``fake_raw``, computed (once) with ``workers`` threads (``features.describe``'s default when None; the
        numbers do not depend on it)."""
        if "raw" not in self._cache:
            from mitogan.metrics.features import describe

            self._cache["raw"] = describe(self.fake_tiles, self.ref.threshold, self.progress, workers=workers)
        return self._cache["raw"]

    @property
    def fake_z(self) -> np.ndarray:
        """(M, F) generated features in the reference's robust feature space."""
        if "z" not in self._cache:
            self._cache["z"] = self.ref.space(self.fake_raw)
        return self._cache["z"]
