"""``evaluate(real, fake)``: every registered metric, the primary objective, and the report files.

PRIMARY objective (mode "min", range [0, 2] plus a small tie-breaker), see docs/metrics.md:

    fidelity_diversity = (1 - exp(-kid_enc))  +  ((1 - coverage_enc) + (1 - recall_enc)) / 2  +  0.001 log10(1 + kid_enc)
                         fidelity, in [0, 1)      diversity, in [0, 1]                          tie-breaker

KID on real-standardised random-conv features is bounded by the exponential so that one grossly wrong
set cannot hide everything else; the diversity half is driven by coverage and recall, which both fall
towards 0 when a generator repeats a few images even if each image is perfect — so a collapsed generator
scores ~1 on diversity alone and cannot win.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from mitogan.errors import ConfigError, InputError
from mitogan.metrics import builtin  # noqa: F401  (registers the metrics)
from mitogan.metrics.registry import METRICS, MetricContext, RealFeatures

__all__ = ["PRIMARY_NAME", "PRIMARY_MODE", "primary_value", "evaluate", "InTrainingEvaluator",
           "check_pair", "DEFAULT_METRICS", "FAST_METRICS"]

PRIMARY_NAME = "fidelity_diversity"
PRIMARY_MODE = "min"
DEFAULT_METRICS = tuple(METRICS)
# in-training subset: image-feature metrics + morphology KID (the encoder and morphology are the cost)
FAST_METRICS = ("kid_enc", "prdc_enc", "kid_morph", "vendi")


def primary_value(values: dict) -> float:
    """The primary objective from ``kid_enc``, ``coverage_enc`` and ``recall_enc`` (lower is better)."""
    kid = max(values["kid_enc"], 0.0)
    fidelity = 1.0 - float(np.exp(-kid))
    diversity = ((1.0 - values["coverage_enc"]) + (1.0 - values["recall_enc"])) / 2
    # tie-breaker: early in a search most trials sit at the bounded maximum (KID >> 1, coverage 0); a
    # thousandth of log10(1 + KID) still ranks them for ASHA without changing the order of sane sets
    return fidelity + diversity + 1e-3 * float(np.log10(1.0 + kid))


def check_pair(real: np.ndarray, fake: np.ndarray, k: int = 5, real_name="real", fake_name="fake") -> None:
    """Shapes must be (N, 1, S, S) with the same S; each side needs more than k images."""
    for name, a in ((real_name, real), (fake_name, fake)):
        if a.ndim != 4 or a.shape[1] != 1 or a.shape[2] != a.shape[3]:
            raise InputError(name, f"images must have shape (N, 1, S, S), got {a.shape}")
        if len(a) <= k:
            raise InputError(name, f"has {len(a)} images; the k-NN metrics need more than k={k} "
                                   f"(supply more images or lower k)")
    if real.shape[-1] != fake.shape[-1]:
        raise InputError(fake_name, f"images are {fake.shape[-1]}x{fake.shape[-1]} px but the real ones are "
                                    f"{real.shape[-1]}x{real.shape[-1]}; compare tiles of one size")


def _run_metrics(ctx: MetricContext, names) -> tuple[dict, dict]:
    from threadpoolctl import threadpool_limits

    values, sizes = {}, {}
    # One BLAS thread: once torch has run (the encoder), its OpenMP workers spin on the cores and a
    # multi-threaded OpenBLAS fights them — a 480x480 eigh went from 0.02 s to 3.5 s on 2 cores.
    with threadpool_limits(1, "blas"):
        for name in names:
            if name not in METRICS:
                raise ConfigError(f"metrics: unknown metric {name!r}; choose from {sorted(METRICS)}")
            v, s = METRICS[name](ctx)
            values.update(v)
            sizes[name] = s
    return values, sizes


def evaluate(real: np.ndarray, fake: np.ndarray, *, seed: int = 0, out_dir=None, k: int = 5,
             metrics=DEFAULT_METRICS, progress: bool = False, real_features: RealFeatures | None = None) -> dict:
    """Compare generated tiles with real (training) tiles.

    Parameters
    ----------
    real, fake : (N, 1, S, S) float in [-1, 1], same S; each with more than ``k`` images
    seed : fixes KID subsets, the memorisation hold-out and the encoder: same seed, same numbers
    out_dir : if given, writes metrics.json, histograms.png and nearest_neighbours.png there
    metrics : registered metric names to run (the primary needs kid_enc and prdc_enc)
    real_features : precomputed real-side features (``RealFeatures``) to reuse

    Returns
    -------
    {"primary": {"name", "value", "mode"}, "metrics": {name: float}, "sample_sizes": {metric: {...}},
     "n_real", "n_fake", "image_size", "seed", "k"}
    """
    real, fake = np.asarray(real, np.float32), np.asarray(fake, np.float32)
    check_pair(real, fake, k)
    rf = real_features or RealFeatures(real, seed=seed)
    ctx = MetricContext(rf, fake, seed=seed, k=k, progress=progress)
    values, sizes = _run_metrics(ctx, metrics)
    result = {"primary": {"name": PRIMARY_NAME, "value": primary_value(values), "mode": PRIMARY_MODE},
              "metrics": values, "sample_sizes": sizes, "n_real": len(real), "n_fake": len(fake),
              "image_size": int(real.shape[-1]), "seed": seed, "k": k}
    if out_dir is not None:
        from mitogan.metrics.report import write_report

        write_report(Path(out_dir), result, ctx)
    return result


def _cache_path(real: np.ndarray, seed: int) -> Path:
    from mitogan.metrics.encoder import ENCODER_VERSION
    from mitogan.metrics.morphology import FEATURE_NAMES

    h = hashlib.sha256(np.ascontiguousarray(real).tobytes())
    h.update(f"{real.shape}|{seed}|{ENCODER_VERSION}|{','.join(FEATURE_NAMES)}".encode())
    root = Path(os.environ.get("MITOGAN_CACHE_DIR", Path.home() / ".cache" / "mitogan"))
    return root / "metrics" / f"real-{h.hexdigest()[:16]}.npz"


class InTrainingEvaluator:
    """Cheap evaluation during training: real-side features once (cached on disk per dataset).

    ``ev = InTrainingEvaluator(real_tiles, n_fake=256)``; ``ev(fake) -> {"primary": float, ...}`` with
    flat floats (kid_enc, coverage_enc, recall_enc, precision_enc, density_enc, kid_morph, vendi_*).
    Uses up to ``n_real`` real tiles (seeded subset) and the first ``n_fake`` generated ones.
    """

    def __init__(self, real_tiles: np.ndarray, n_fake: int = 256, seed: int = 0, n_real: int = 1000,
                 k: int = 5, metrics=FAST_METRICS, cache: bool = True):
        real = np.asarray(real_tiles, np.float32)
        if len(real) > n_real:
            real = real[np.sort(np.random.default_rng(seed).choice(len(real), n_real, replace=False))]
        check_pair(real, real, k, "real tiles", "real tiles")
        self.n_fake, self.seed, self.k, self.metrics = n_fake, seed, k, tuple(metrics)
        self.real = RealFeatures(real, seed=seed)
        path = _cache_path(real, seed) if cache else None
        if path is not None and path.is_file():
            with np.load(path) as z:
                self.real.raw = {key: z[key] for key in z.files}
        for kind in ("enc", "morph"):
            self.real.get(kind)
        if path is not None and not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **self.real.raw)
            os.replace(tmp, path)

    def __call__(self, fake: np.ndarray) -> dict:
        """(M, 1, S, S) generated tiles in [-1, 1] -> flat dict of floats, including "primary"."""
        fake = np.asarray(fake, np.float32)[: self.n_fake]
        check_pair(self.real.tiles, fake, self.k, "real tiles", "generated tiles")
        # 20 KID subsets instead of 100: the in-training number is a trend, speed matters more
        ctx = MetricContext(self.real, fake, seed=self.seed, k=self.k, kid_subsets=20)
        values, _ = _run_metrics(ctx, self.metrics)
        out = {key: float(v) for key, v in values.items()}
        out["primary"] = primary_value(values)
        return out
