"""``evaluate(real, fake)``: every registered metric, the primary objective, and the report files.

PRIMARY objective ``realism_gap`` (mode "min"; docs/metrics.md has the derivation and the proof):

    realism_gap = 1 - (1 - fidelity) (1 - diversity_gap) (1 - authenticity_gap) (1 - structure_gap)
                                                              (+ fidelity - 1 when fidelity > 1)

    fidelity       log(FD / d0) / log(d1 / d0) — Fréchet distance to HELD-OUT real tiles in
                   a deterministic fluorescence feature space, on the dataset's own scale: 0 = a disjoint
                   real split of the same data (d0), 1 = that data damaged into noise (d1). Logarithmic,
                   so it keeps ranking sets that are far away instead of saturating.
    diversity_gap  max(0, 1 - Vendi(generated) / Vendi(real)) at the same sample size: 0 = as many
                   distinct images as real data, -> 1 as the generator collapses onto a few.
    authenticity_gap  how many more generated tiles reproduce TRAINING tiles than new real frames do
                   (``copying.py``): 0 = honest, 1 = every tile a copy.
    structure_gap  how much less structure (beyond the histogram and the power spectrum: a surrogate-data
                   test per tile, ``structure.py``) generated tiles hold than new real frames: 0 = as real,
                   -> 1 for random fields with real statistics.

(1 - fidelity)(1 - diversity_gap)... is a quality that needs ALL of them: a generator that repeats two perfect
frames has quality ~0 and scores just under noise; noise (fidelity 1) scores 1 whatever its diversity;
sets worse than noise keep ranking above 1, and a set closer to the held-out data than a disjoint real
split is (fidelity < 0) scores below 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mitogan.errors import ConfigError, InputError
from mitogan.metrics import builtin  # noqa: F401  (registers the metrics)
from mitogan.metrics import c2st  # noqa: F401  (registers the classifier two-sample test)
from mitogan.metrics.builtin import feature_contributions
from mitogan.metrics.reference import Reference
from mitogan.metrics.registry import METRICS, PIECES, PIXEL_METRICS, MetricContext

__all__ = ["PRIMARY_NAME", "PRIMARY_MODE", "PRIMARY_COMPONENTS", "primary_value", "judged_value", "JUDGED_NAME",
           "JUDGED_FORMULA", "evaluate",
           "InTrainingEvaluator", "check_pair", "DEFAULT_METRICS", "FAST_METRICS", "real_reference"]

PRIMARY_NAME = "realism_gap"
PRIMARY_MODE = "min"
PRIMARY_COMPONENTS = ("fidelity", "diversity_gap", "authenticity_gap", "structure_gap")
PRIMARY_FORMULA = ("1 - (1 - min(fidelity, 1)) * (1 - diversity_gap) * (1 - authenticity_gap) * (1 - structure_gap)"
                   " + max(fidelity - 1, 0)")
# the primary with the classifier's verdict folded in the same way: what ranks finished generators, where the C2ST ran
JUDGED_NAME = "judged_gap"
JUDGED_FORMULA = "1 - (1 - min(realism_gap, 1)) * (1 - c2st_gap) + max(realism_gap - 1, 0)"
DEFAULT_METRICS = tuple(METRICS)
FAST_METRICS = ("fidelity", "prdc_fluo", "vendi", "authenticity", "structure")  # what the in-training evaluator runs


def primary_value(values: dict) -> float:
    """The primary objective (lower is better): 1 - (1 - fidelity) (1 - diversity_gap) (1 - authenticity_gap)
    (1 - structure_gap) while fidelity < 1, plus how far fidelity goes beyond 1. A set without
    ``authenticity_gap`` or ``structure_gap`` (that test not run) is scored as passing it."""
    fid, gap = float(values["fidelity"]), float(values["diversity_gap"])
    auth = float(values.get("authenticity_gap", 0.0))
    struct = float(values.get("structure_gap", 0.0))
    return 1.0 - (1.0 - min(fid, 1.0)) * (1.0 - gap) * (1.0 - auth) * (1.0 - struct) + max(fid - 1.0, 0.0)


def judged_value(primary: float, c2st_gap: float) -> float:
    """``judged_gap`` (lower is better): the primary with the C2ST's gap folded in as one more component
    (``JUDGED_FORMULA``). The primary is cheap enough for every evaluation; the classifier, which learns its own
    features, runs once per finished generator, and is stricter where the feature space is lenient (smooth
    textures with real statistics: docs/metrics.md, "The judged gap"). Neither alone is enough: a copy of the
    training data is real to a classifier, and the primary's authenticity gap is what sees it."""
    p, c = float(primary), float(c2st_gap)
    return 1.0 - (1.0 - min(p, 1.0)) * (1.0 - c) + max(p - 1.0, 0.0)


def primary_record(values: dict) -> dict:
    """{"name", "value", "mode", "formula", "components"}: what metrics.json and every trial carry."""
    return {"name": PRIMARY_NAME, "value": primary_value(values), "mode": PRIMARY_MODE, "formula": PRIMARY_FORMULA,
            "components": {c: float(values.get(c, 0.0)) for c in PRIMARY_COMPONENTS}}


def check_pair(real: np.ndarray, fake: np.ndarray, k: int = 5, real_name="real", fake_name="fake") -> None:
    """Shapes must be (N, 1, S, S) with the same S; each side needs more than k images."""
    for name, a in ((real_name, real), (fake_name, fake)):
        if a.ndim != 4 or a.shape[1] != 1 or a.shape[2] != a.shape[3]:
            raise InputError(name, f"images must have shape (N, 1, S, S), got {a.shape}")
        if len(a) <= k:
            raise InputError(name, f"has {len(a)} images; the k-NN metrics need more than k={k} "
                                   f"(supply more images or lower k)")
        if a.shape[-1] < 16:
            raise InputError(name, f"images are {a.shape[-1]} px; the metrics need tiles of at least 16 px")
    if real.shape[-1] != fake.shape[-1]:
        raise InputError(fake_name, f"images are {fake.shape[-1]}x{fake.shape[-1]} px but the real ones are "
                                    f"{real.shape[-1]}x{real.shape[-1]}; compare tiles of one size")


def _run_metrics(ctx: MetricContext, names) -> tuple[dict, dict]:
    """Run the metrics ``names`` on ``ctx``: {value name: value}, {metric: sample sizes}, in the order asked.

    The generated tiles' features and the metrics that do not read them (``PIXEL_METRICS``: the copy tests, the
    structure test, the C2ST) share two threads, unless the process may use one thread only (a search trial
    given one CPU); the numbers are the same either way."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    from mitogan.metrics.torch_threads import allowed

    for name in names:
        if name not in METRICS:
            raise ConfigError(f"metrics: unknown metric {name!r}; choose from {sorted(METRICS)}")
    pixels = [n for n in names if n in PIXEL_METRICS]
    done: dict = {}
    # One BLAS thread: once torch has run, its OpenMP workers spin on the cores and a multi-threaded
    # OpenBLAS fights them — a 480x480 eigh went from 0.02 s to 3.5 s on 2 cores.
    beside = pixels and len(pixels) < len(names) and allowed() > 1
    with threadpool_limits(1, "blas"), ThreadPoolExecutor(2 if beside else 1) as pool:
        # two workers: the features first, then the pixel metrics' tasks as workers come free (each task is
        # deterministic and writes its own cache key, so the numbers are the same in any order); a metric split
        # into pieces (``PIECES``: the copy tests, by blocks of queries) runs them as tasks and itself after them
        # the features' own workers leave one thread to the pixel metrics: on 2 cores, one worker, not two beside
        # the pixel thread (3 threads on 2 cores; measured: 1.40 -> 1.32 s per in-training call, the same numbers)
        features = pool.submit(ctx.raw_features, allowed() - 1) if beside else None
        futures, pieces = {}, []
        if beside:
            futures = {name: pool.submit(METRICS[name], ctx) for name in pixels if name not in PIECES}
            pieces = [pool.submit(piece) for name in pixels if name in PIECES for piece in PIECES[name](ctx)]
        for piece in pieces:
            piece.result()
        for name in pixels:
            done[name] = futures[name].result() if name in futures else METRICS[name](ctx)
        if features is not None:
            features.result()
        for name in names:
            if name not in done:
                done[name] = METRICS[name](ctx)
    values, sizes = {}, {}
    for name in names:
        values.update(done[name][0])
        sizes[name] = done[name][1]
    return values, sizes


def real_reference(real, *, holdout: float = 0.25, seed: int = 0, cache: bool = False,
                   progress: bool = False, max_tiles: int | None = None) -> Reference:
    """The real side for ``real``: a ``TileSet`` (its source/frame drive the split) or bare tiles."""
    tiles = np.asarray(getattr(real, "tiles", real), np.float32)
    source, frame = getattr(real, "source", None), getattr(real, "frame", None)
    if cache:
        return Reference.cached(tiles, source, frame, holdout=holdout, seed=seed, max_tiles=max_tiles)
    return Reference.build(tiles, source, frame, holdout=holdout, seed=seed, progress=progress, max_tiles=max_tiles)


def evaluate(real, fake: np.ndarray, *, seed: int = 0, out_dir=None, k: int = 5, metrics=DEFAULT_METRICS,
             progress: bool = False, reference: Reference | None = None, holdout: float = 0.25,
             cache: bool = True, inputs: dict | None = None) -> dict:
    """Compare generated tiles with real ones, by the protocol of ``mitogan.metrics.protocol``.

    Parameters
    ----------
    real : a ``TileSet`` (whole videos / time blocks are held out using its source and frame) or tiles
        (N, 1, S, S) float in [-1, 1] in time order; split into training and held-out tiles
    fake : (M, 1, S, S) float in [-1, 1], same S, more than ``k`` images
    seed : the split, subsamples and bootstrap: same seed, same numbers
    out_dir : if given, writes metrics.json (+ a line in metrics.jsonl), histograms.png,
        nearest_neighbours.png and features.png there
    metrics : registered metric names to run (the primary needs ``fidelity`` and ``vendi``)
    reference : a prebuilt ``Reference`` of the real side, to reuse across calls
    cache : keep the real side (split, threshold, features) in MitoGAN's cache, keyed by the real tiles'
        content and the split's settings, so evaluating another generator against the same real data
        skips it (the same arrays: the numbers do not change)
    inputs : what the two sets are (paths, the options that drew the generated set), kept as "inputs" in the
        result and metrics.json; no number depends on it

    Returns
    -------
    {"primary": {"name", "value", "mode", "formula", "components"}, "judged": {"name", "value", "mode", "formula"}
     (with the C2ST), "metrics": {name: float},
     "sample_sizes": {metric: {...}}, "top_features": [...], "protocol": {...}, "n_real", "n_fake",
     "image_size", "seed", "k"}
    """
    fake = np.asarray(fake, np.float32)
    real_tiles = np.asarray(getattr(real, "tiles", real), np.float32) if reference is None else reference.train
    check_pair(real_tiles, fake, k)
    ref = reference or real_reference(real, holdout=holdout, seed=seed, progress=progress, cache=cache)
    check_pair(ref.heldout, fake, k, "held-out real tiles")
    ctx = MetricContext(ref, fake, seed=seed, k=k, progress=progress)
    values, sizes = _run_metrics(ctx, metrics)
    result = {"metrics": values, "sample_sizes": sizes, "top_features": feature_contributions(ctx),
              "protocol": dict(ref.split), "n_real": len(ref.heldout) + len(ref.train), "n_fake": len(fake),
              "image_size": int(fake.shape[-1]), "seed": seed, "k": k}
    if inputs is not None:
        result["inputs"] = dict(inputs)
    if all(c in values for c in PRIMARY_COMPONENTS[:2]):
        result["primary"] = primary_record(values)
        if values.get("c2st_gap") is not None:
            result["judged"] = {"name": JUDGED_NAME, "value": judged_value(result["primary"]["value"], values["c2st_gap"]),
                                "mode": PRIMARY_MODE, "formula": JUDGED_FORMULA}
    if out_dir is not None:
        from mitogan.metrics.report import write_report

        write_report(Path(out_dir), result, ctx)
    return result


class InTrainingEvaluator:
    """Cheap evaluation during training: the real side once per dataset (cached on disk).

    ``ev = InTrainingEvaluator(tileset)``; ``ev(fake) -> {"primary": float, "fidelity", "diversity_gap",
    "fd_fluo", "coverage_fluo", "recall_fluo", "vendi_fake", ...}`` (flat floats). The generator must
    train on ``ev.reference.train`` only (``protocol.split_real`` with the same holdout and seed gives
    the same split), so that the held-out tiles it is scored against are new to it.
    """

    def __init__(self, real, n_fake: int = 256, seed: int = 0, holdout: float = 0.25, k: int = 5,
                 metrics=FAST_METRICS, cache: bool = True, max_real: int = 1000):
        self.n_fake, self.seed, self.k, self.metrics = n_fake, seed, k, tuple(metrics)
        # at most max_real tiles per side (seeded): set-up stays a few seconds on big datasets
        self.reference = real_reference(real, holdout=holdout, seed=seed, cache=cache, max_tiles=max_real)
        self.reference.calibration(n_fake, seed)  # the scale for this sample size, once
        if "structure" in self.metrics:
            self.reference.structure  # noqa: B018 (the held-out tiles' surrogate test, once)
        if "authenticity" in self.metrics:
            self.reference.copy_null  # noqa: B018 (the copy tests' indexes and nulls, once)
            self.reference.part_copies  # noqa: B018

    def __call__(self, fake: np.ndarray) -> dict:
        """(M, 1, S, S) generated tiles in [-1, 1] -> flat dict of floats, including "primary"."""
        fake = np.asarray(fake, np.float32)[: self.n_fake]
        check_pair(self.reference.heldout, fake, self.k, "held-out real tiles", "generated tiles")
        ctx = MetricContext(self.reference, fake, seed=self.seed, k=self.k)
        values, _ = _run_metrics(ctx, self.metrics)
        out = {key: float(v) for key, v in values.items() if v is not None}
        out["primary"] = primary_value(values)
        return out

    def judge(self, fake: np.ndarray, metrics=("c2st",)) -> dict:
        """Once per finished run: the judges too slow for every evaluation (the classifier two-sample test of
        ``fake`` against the held-out tiles, with its baseline), as flat floats."""
        fake = np.asarray(fake, np.float32)
        check_pair(self.reference.heldout, fake, self.k, "held-out real tiles", "generated tiles")
        values, _ = _run_metrics(MetricContext(self.reference, fake, seed=self.seed, k=self.k), metrics)
        return {key: float(v) for key, v in values.items() if isinstance(v, (int, float, np.number))}
