"""The fit objective: how far a simulator setting is from a lab's movies, at a chosen simulation budget.

    objective = realism_gap(simulated tiles vs held-out real tiles)
                + TEMPORAL_WEIGHT * temporal_gap + IMAGE_WEIGHT * image_gap

``realism_gap`` is the project's calibrated primary (``mitogan.metrics.evaluate``; 0 = as close as a
disjoint real split, 1 = noise), computed with the fidelity and diversity terms only (a simulator cannot
copy training tiles). Simulated frames go through the same steps as real frames in ``mitogan evaluate``:
per-frame percentile normalisation, the one non-overlapping tiler. ``temporal_gap``
(``mitogan.simfit.temporal``) compares frame-to-frame change, optical-flow speed, bleaching and
structure turnover, so that the dynamics parameters are fitted too. ``image_gap``
(``mitogan.simfit.imagestats``) compares whole-frame statistics (foreground share, autocorrelation at
1-8 px, intensity quantiles, relative noise) that average over every pixel: they pin down width, blur,
density and noise long before the tile distributions do.

Multi-fidelity: a :class:`Rung` is a simulation budget (videos x frames x size, tiles judged); a fit scores
every trial on the cheapest rung first and only promising ones on the larger rungs. Every trial sees the
same seeds at a rung (common random numbers), so differences between trials are the parameters' doing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mitogan.errors import InputError
from mitogan.simfit.imagestats import image_gap, image_stats
from mitogan.simfit.temporal import dataset_stats, temporal_gap
from mitogan.simulate import SimParams, simulate_video

__all__ = ["Rung", "RUNGS", "SMOKE_RUNGS", "TEMPORAL_WEIGHT", "IMAGE_WEIGHT", "FitTarget", "simulate_videos", "score",
           "frames_to_tileset", "OBJECTIVE_METRICS"]

TEMPORAL_WEIGHT = 0.5  # a temporal gap of 1 (every statistic 100 % off) costs as much as half of noise
IMAGE_WEIGHT = 0.5  # the same for the whole-frame image statistics
OBJECTIVE_METRICS = ("fidelity", "vendi")  # what realism_gap needs without the copy test


@dataclass(frozen=True)
class Rung:
    """One simulation budget: ``videos`` x ``frames`` frames of ``size`` px; at most ``tiles`` tiles judged."""

    videos: int
    frames: int
    size: int
    tiles: int


# many short videos rather than few long ones: consecutive frames are near copies, so tiles from more
# videos judge the morphology better; 4 frames still give 3 frame pairs for the temporal statistics
RUNGS = (Rung(8, 3, 192, 192), Rung(16, 4, 192, 384), Rung(32, 4, 192, 768))
SMOKE_RUNGS = (Rung(2, 3, 128, 48), Rung(4, 4, 128, 96))  # tests and --smoke: seconds per trial


def frames_to_tileset(videos, tile: int, names=None):
    """Videos (arrays (T, H, W) or objects with ``.frames``) -> a ``TileSet`` cut as ``mitogan evaluate`` cuts
    frames: each frame normalised on its own percentiles, then the non-overlapping ``tile`` grid in [-1, 1]."""
    from mitogan.metrics.proof import videos_to_tiles

    return videos_to_tiles(videos, tile, names)


class FitTarget:
    """The real side of a fit: the held-out reference of the real tiles and the real temporal statistics.

    Built once (the driver) and shipped to every trial; :meth:`prepare` computes the objective's calibration
    at each rung's sample size up front so that trials do not each pay for it."""

    def __init__(self, videos, tile: int = 64, seed: int = 0, max_tiles: int = 1000, holdout: float = 0.25):
        from mitogan.metrics.evaluate import real_reference

        videos = [v for v in videos if len(getattr(v, "frames", v))]
        if not videos:
            raise InputError("DATA", "no frames with signal to fit to")
        ts = frames_to_tileset(videos, tile, [str(getattr(v, "source", i)) for i, v in enumerate(videos)])
        if len(ts) < 24:
            raise InputError("DATA", f"gives only {len(ts)} tiles of {tile} px; a fit needs at least 24 (more "
                                     "frames, or a smaller --tile)")
        self.tile, self.seed = tile, seed
        self.reference = real_reference(ts, holdout=holdout, seed=seed, max_tiles=max_tiles)
        self.stats = dataset_stats(videos)
        self.image = image_stats(videos, seed=seed)
        self.n_real = len(ts)

    def prepare(self, rungs) -> "FitTarget":
        for rung in rungs:
            self.reference.calibration(self.n_fake(rung), self.seed)
        return self

    def n_fake(self, rung: Rung) -> int:
        """Tiles judged at ``rung``: its cap, or all the rung's frames give, at most the held-out tiles."""
        per_frame = (max(rung.size, self.tile) // self.tile) ** 2
        return int(min(rung.tiles, rung.videos * rung.frames * per_frame, len(self.reference.heldout)))


def simulate_videos(params: SimParams, rung: Rung, seed: int) -> list[np.ndarray]:
    """``rung.videos`` simulated (T, H, W) uint16 videos at the rung's size and length (seeded per video)."""
    import dataclasses

    p = dataclasses.replace(params, size=rung.size, frames=rung.frames)
    seeds = np.random.SeedSequence([int(seed), rung.videos, rung.frames, rung.size]).generate_state(rung.videos)
    return [simulate_video(p, int(s))[0] for s in seeds]


def score(params: SimParams, target: FitTarget, rung: Rung, seed: int = 0) -> dict:
    """Simulate ``rung`` with ``params`` and judge it against ``target``: flat floats, ``objective`` first
    (lower is better), then ``realism_gap``, its components, ``temporal_gap``, ``image_gap``, each
    statistic's gap (``gap_<stat>``) and value (``sim_<stat>``), and ``sim_seconds``."""
    from mitogan.metrics.evaluate import evaluate

    start = time.perf_counter()
    videos = simulate_videos(params, rung, seed)
    sim_s = time.perf_counter() - start
    tiles = frames_to_tileset(videos, target.tile).tiles
    n = target.n_fake(rung)
    pick = np.random.default_rng([seed, 7]).choice(len(tiles), n, replace=False) if len(tiles) > n else slice(None)
    result = evaluate(None, tiles[pick], reference=target.reference, metrics=OBJECTIVE_METRICS, seed=target.seed)
    prim = result["primary"]
    stats, image = dataset_stats(videos), image_stats(videos, seed=seed)
    tgap, gaps = temporal_gap(stats, target.stats)
    igap, igaps = image_gap(image, target.image)
    out = {"objective": float(prim["value"] + TEMPORAL_WEIGHT * tgap + IMAGE_WEIGHT * igap),
           "realism_gap": float(prim["value"]), "fidelity": float(prim["components"]["fidelity"]),
           "diversity_gap": float(prim["components"]["diversity_gap"]), "temporal_gap": tgap, "image_gap": igap}
    out.update({f"gap_{k}": float(v) for k, v in {**gaps, **igaps}.items()})
    out.update({f"sim_{k}": float(v) for k, v in {**(stats or {}), **image}.items() if k != "pairs"})
    out["sim_seconds"] = sim_s
    return out
