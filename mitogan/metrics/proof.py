"""Damage ladders that prove the objective measures what it claims, and frame -> tile helpers.

Every ladder damages a held-out real set step by step; a trustworthy objective scores each step worse
than the one before, and the rules across ladders (docs/metrics.md) say how different kinds of damage
compare: the held-out real split beats every damaged set, a collapsed generator loses to mild blur, a
second real source beats shuffled pixels, noise and heavy blur, and noise is last.

    blur      Gaussian, sigma 0.5 < 1 < 2 < 4 px
    collapse  the tiles of 50 % < 10 % of the frames < 2 frames, repeated to the original count
    noise     uniform noise mixed in at 10 % < 50 % < 100 %
    gamma     intensity gamma 1.5 < 3 (on the [0, 1] scale)
    shuffle   pixels permuted within 4 px blocks < within the whole tile
    phase     Fourier phases scrambled by half < fully, each tile's histogram kept (structure destroyed, the
              power spectrum and intensities kept: ``structure.phase_surrogate``)
    templates collapse as GANs collapse: k = 20 > 5 > 1 distinct images, each repeated with a random gain
              and 5 % noise
    stamp     position collapse: the same tile blended into every tile at 30 % < 60 %
    mixture   a collapsed generator mixed with a healthy one: 25 % < 50 % of the tiles one template plus noise

Copies (``COPIES``, applied to the TRAINING part, what a generator trains on): exact, plus Gaussian noise
of 1 % / 5 % of the range, shifted by 1 / 2 px, mirrored, rotated by 90 degrees, turned by up to 30 degrees,
cropped by 10 % and resized back, shrunk by 10 %, rescaled by a factor from 1/1.4 to 1.4, a part pasted into
honest data; and mixtures of copies with honest held-out data (10 % < 50 % < 100 % copies).
Each must score worse than the held-out real data and worse than the same movies later in time.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mitogan.metrics.structure import phase_surrogate

__all__ = ["LADDERS", "COPIES", "PROOF_METRICS", "copy_set", "damage", "ladder_sets", "frames_to_tiles",
           "videos_to_tiles", "proof_parts", "proof_scores", "rule_violations", "pair_orders"]

LADDERS: dict[str, tuple] = {
    "blur": (0.5, 1.0, 2.0, 4.0),
    "collapse": (0.5, 0.1, 2),  # share of frames (float) or a number of frames (int)
    "noise": (0.1, 0.5, 1.0),
    "gamma": (1.5, 3.0),
    "shuffle": (4, 0),  # block size in px; 0 = the whole tile
    "phase": (0.5, 1.0),  # share of random phase added to the Fourier phases; the histogram is kept
    "templates": (20, 5, 1),  # distinct images
    "stamp": (0.3, 0.6),  # weight of the one shared tile
    "mixture": (0.25, 0.5),  # share of the tiles from a generator collapsed onto one template, the rest healthy
}
PROOF_METRICS = ("fidelity", "vendi", "authenticity", "structure")  # what the primary needs, nothing more
COPIES: tuple[str, ...] = ("copy", "copy_noise=0.01", "copy_noise=0.05", "copy_shift=1", "copy_shift=2",
                           "copy_flip", "copy_rot90", "copy_turn=30", "copy_crop=0.9", "copy_shrink=0.9",
                           "copy_scale=1.4",
                           "copy_part=0.75",
                           "copy_mix=0.1", "copy_mix=0.5", "copy_mix=1.0")


def damage(tiles: np.ndarray, kind: str, level, seed: int = 0, frames: np.ndarray | None = None) -> np.ndarray:
    """One damaged copy of ``tiles`` ((N, 1, S, S) float32 in [-1, 1]); same shape, same range.

    ``frames`` (N,) says which frame each tile came from (collapse keeps whole frames); default: each tile
    is its own frame.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(tiles, np.float32)
    if kind == "blur":
        out = ndimage.gaussian_filter(x, sigma=(0, 0, level, level), mode="reflect")
    elif kind == "noise":
        out = (1 - level) * x + level * rng.uniform(-1, 1, x.shape)
    elif kind == "gamma":
        out = ((x + 1) / 2) ** level * 2 - 1
    elif kind == "shuffle":
        out = _shuffle(x, level, rng)
    elif kind == "phase":
        out = phase_surrogate(x, level, rng)
    elif kind == "collapse":
        out = _collapse(x, level, rng, np.arange(len(x)) if frames is None else np.asarray(frames))
    elif kind == "templates":
        pick = x[rng.choice(len(x), min(level, len(x)), replace=False)]
        out = pick[np.arange(len(x)) % len(pick)] * rng.uniform(0.8, 1.2, (len(x), 1, 1, 1))
        out = out + 0.1 * rng.standard_normal(x.shape)  # 5 % of the [-1, 1] range
    elif kind == "stamp":
        out = (1 - level) * x + level * x[rng.integers(len(x))][None]
    elif kind == "mixture":
        k = int(round(level * len(x)))
        one = x[rng.integers(len(x))][None] * rng.uniform(0.8, 1.2, (k, 1, 1, 1)) + 0.1 * rng.standard_normal((k, *x.shape[1:]))
        out = np.concatenate([one, x[k:]])
    else:
        raise ValueError(f"unknown damage {kind!r}; choose from {sorted(LADDERS)}")
    return np.clip(out, -1, 1).astype(np.float32)


def _shuffle(x: np.ndarray, block: int, rng) -> np.ndarray:
    """Permute pixels inside each ``block`` x ``block`` square of every tile (0: the whole tile)."""
    n, _, s, _ = x.shape
    b = s if block == 0 else block
    # (n, s/b, b, s/b, b) -> (n, cells, b*b): shuffle each cell's pixels independently
    cells = x.reshape(n, s // b, b, s // b, b).transpose(0, 1, 3, 2, 4).reshape(n, -1, b * b)
    order = np.argsort(rng.random(cells.shape), axis=-1)
    cells = np.take_along_axis(cells, order, axis=-1)
    return cells.reshape(n, s // b, s // b, b, b).transpose(0, 1, 3, 2, 4).reshape(x.shape)


def _collapse(x: np.ndarray, level, rng, frames: np.ndarray) -> np.ndarray:
    """Keep the tiles of a few frames only, repeated (in order) to the original count."""
    ids = np.unique(frames)
    k = level if isinstance(level, (int, np.integer)) else max(1, round(level * len(ids)))
    keep = rng.choice(ids, min(k, len(ids)), replace=False)
    pool = np.flatnonzero(np.isin(frames, keep))
    return x[pool[np.arange(len(x)) % len(pool)]]


def copy_set(train: np.ndarray, name: str, honest: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` tiles made from TRAINING tiles by the copy ``name`` (``COPIES``); ``honest`` fills mixtures."""
    import cv2

    from mitogan.metrics.copying import turn_tiles

    rng = np.random.default_rng(seed)
    x = np.asarray(train, np.float32)[rng.choice(len(train), n, replace=len(train) < n)]
    kind, _, level = name.partition("=")
    lv = float(level) if level else None
    s = x.shape[-1]
    if kind == "copy_noise":
        x = x + 2 * lv * rng.standard_normal(x.shape)  # sd = lv of the [-1, 1] range
    elif kind == "copy_shift":
        x = np.roll(x, (int(lv), int(lv)), axis=(2, 3))
    elif kind == "copy_flip":
        x = x[..., ::-1]
    elif kind == "copy_rot90":
        x = np.rot90(x, 1, axes=(2, 3))
    elif kind == "copy_turn":  # each turned by its own angle of up to lv degrees either way, mirrored at the border
        x = turn_tiles(x, rng.uniform(-lv, lv, len(x)), centre=(s / 2, s / 2))  # not the matcher's own centre
    elif kind == "copy_scale":  # each magnified by its own factor from 1 / lv to lv (log-uniform), mirrored at the border
        x = turn_tiles(x, 0.0, centre=(s / 2, s / 2), scale=np.exp(rng.uniform(-np.log(lv), np.log(lv), len(x))))
    elif kind in ("copy_crop", "copy_shrink"):
        c = int(round(s * lv))
        o = (s - c) // 2
        if kind == "copy_crop":  # the central 90 %, resized back to S
            x = np.stack([cv2.resize(t[0, o:o + c, o:o + c], (s, s), interpolation=cv2.INTER_LINEAR)[None] for t in x])
        else:  # the whole tile shrunk to 90 % and set into its own centre
            x = x.copy()
            for t in x:
                t[0, o:o + c, o:o + c] = cv2.resize(t[0], (c, c), interpolation=cv2.INTER_AREA)
    elif kind == "copy_part":  # a square of side lv S cut from a training tile, pasted anywhere into an honest one
        x = _paste(x, np.asarray(honest, np.float32), int(round(s * lv)), rng)
    elif kind == "copy_mix":
        k = int(round(lv * n))
        h = np.asarray(honest, np.float32)[rng.choice(len(honest), n - k, replace=len(honest) < n - k)]
        x = np.concatenate([x[:k], h])
    elif kind != "copy":
        raise ValueError(f"unknown copy {name!r}; choose from {COPIES}")
    return np.clip(np.ascontiguousarray(x), -1, 1).astype(np.float32)


def _paste(parts: np.ndarray, honest: np.ndarray, side: int, rng) -> np.ndarray:
    """Each tile of ``parts`` gives a ``side`` square from a random place, pasted at another random place into
    a random ``honest`` tile: the part of a training field that a generator memorised, around new content."""
    s = parts.shape[-1]
    out = honest[rng.choice(len(honest), len(parts), replace=len(honest) < len(parts))].copy()
    for o, p in zip(out, parts):
        (y, x), (v, u) = rng.integers(0, s - side + 1, (2, 2))
        o[0, v:v + side, u:u + side] = p[0, y:y + side, x:x + side]
    return out


def ladder_sets(tiles: np.ndarray, frames: np.ndarray | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Every step of every ladder applied to ``tiles``: {"blur=0.5": tiles, ..., "shuffle=0": tiles}."""
    return {f"{kind}={level}": damage(tiles, kind, level, seed=seed + i, frames=frames)
            for kind, levels in LADDERS.items() for i, level in enumerate(levels)}


# The percentiles the metrics map raw frames with. Not the preprocessing default (1 / 99.8): the metrics'
# noise-aware mask rule was validated on 0.5 / 99.8 (at 1 / 99.8 it finds 2 specks in one tile of pure
# blurred noise, tests/mitogan/test_metrics_morphology.py::test_noise_tile_gets_empty_mask).
EVAL_PERCENTILES = (0.5, 99.8)


def _normalise(f: np.ndarray) -> np.ndarray:
    """One frame onto [0, 1] by its own ``EVAL_PERCENTILES`` (``preprocess.normalize_percentile``)."""
    from mitogan.preprocess import normalize_percentile

    return normalize_percentile(f, *EVAL_PERCENTILES)


def _grid(f: np.ndarray, size: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """A [0, 1] frame -> its non-overlapping ``size`` grid in [-1, 1] (``preprocess.tile_frames``, the one
    tiler) and the tiles' corners; a frame smaller than ``size`` is first resized up to ``size`` (linear)."""
    from mitogan.preprocess import tile_frames

    tiles, _, yx = tile_frames(f, size, scale=max(1.0, size / min(f.shape)))
    return list(tiles[:, 0]), [(int(y), int(x)) for y, x in yx]


def frames_to_tiles(frames: np.ndarray, size: int, max_tiles: int | None = None, seed: int = 0) -> np.ndarray:
    """Cut frames into tiles comparable with training tiles.

    Each frame (T, H, W) (any dtype) is normalised on its own ``EVAL_PERCENTILES`` (0.5 / 99.8) to [-1, 1], then cut into the non-overlapping ``size`` x ``size`` grid at native resolution by
    ``preprocess.tile_frames`` (frames smaller than ``size`` are resized up with linear interpolation). ``max_tiles`` keeps a seeded random subset.
    Returns (N, 1, size, size) float32.
    """
    out = [t for f in np.asarray(frames) for t in _grid(_normalise(f), size)[0]]
    tiles = np.asarray(out, np.float32)[:, None]
    if max_tiles is not None and len(tiles) > max_tiles:
        tiles = tiles[np.sort(np.random.default_rng(seed).choice(len(tiles), max_tiles, replace=False))]
    return np.clip(tiles, -1, 1)


def videos_to_tiles(videos, size: int, names=None):
    """Frames of several videos -> a ``TileSet`` whose source/frame record where every tile came from.

    ``videos`` is a list of (T, H, W) arrays or of objects with ``.frames`` (``mitogan.io.read_inputs``).
    """
    from mitogan.tiles import TileSet

    tiles, source, frame, yx = [], [], [], []
    for s, v in enumerate(videos):
        for t, f in enumerate(np.asarray(getattr(v, "frames", v))):
            cut, pos = _grid(_normalise(f), size)
            tiles += cut
            source += [s] * len(cut)
            frame += [t] * len(cut)
            yx += pos
    arr = np.clip(np.asarray(tiles, np.float32)[:, None], -1, 1)
    return TileSet(arr, np.asarray(source, np.int32), np.asarray(frame, np.int32), np.asarray(yx, np.int32).reshape(-1, 2),
                   {"sources": list(names) if names is not None else [f"video{s}" for s in range(len(videos))]})


def proof_parts(ts, seed: int = 0, share: float = 0.2) -> dict[str, np.ndarray]:
    """Four disjoint index sets of a ``TileSet`` for the proof (whole videos or time blocks, never tiles):

    heldout  the reference (``protocol.split_real``, ``share`` of the tiles; twin videos count as one)
    other    other videos (or time blocks) again: "another video", the stand-in for a good generator
    later    the last time block of every remaining video: "the same movies, later in time"
    train    the rest: the calibration split (what a generator would train on)
    """
    from mitogan.metrics.protocol import _time_blocks, split_real

    from mitogan.metrics.copying import merge_twins

    # the same field saved in two files is one video on one clock: "other" must not hold copies of "train"
    src, fr = merge_twins(ts.tiles, np.asarray(ts.source, np.int64), np.asarray(ts.frame, np.int64))
    first = split_real(src, fr, share, seed)
    rest = first.train
    second = split_real(src[rest], fr[rest], share / (1 - share), seed + 1)
    other, rest = rest[second.heldout], rest[second.train]
    blocks = _time_blocks(src[rest], fr[rest], 4)
    last = np.zeros(len(rest), bool)
    for s in np.unique(src[rest]):
        mine = src[rest] == s
        if len(np.unique(blocks[mine])) > 1:  # one-frame videos have no later block
            last |= mine & (blocks == blocks[mine].max())
    return {"heldout": first.heldout, "other": other, "later": rest[last], "train": rest[~last]}


def proof_scores(ts, seconds: dict | None = None, seeds=(0,), split_seed: int = 0, copies: bool = True) -> dict:
    """The primary objective of every proof set against the held-out part of ``ts`` (a ``TileSet``).

    Sets: "other" (other videos), "later" (same movies, later), every ladder step applied to "other"
    (collapse keeps whole frames), and each of ``seconds`` ({name: tiles}: other real sources). The parts
    and the damage are fixed by ``split_seed``; ``seeds`` are the metric's own randomness (subsamples).
    Returns {"scores": {seed: {set: primary}}, "components": {seed: {set: {the primary's components and the
    diversity gap's correlation part}}}, "parts": {part: n}}.
    """
    from mitogan.metrics.evaluate import PRIMARY_COMPONENTS, _run_metrics, primary_value
    from mitogan.metrics.protocol import RealSplit
    from mitogan.metrics.reference import Reference
    from mitogan.metrics.registry import MetricContext

    parts = proof_parts(ts, split_seed)
    sp = RealSplit(parts["train"], parts["heldout"], "proof", np.zeros(len(ts), np.int64))
    ref = Reference.build(ts.tiles, ts.source, ts.frame, split=sp, seed=split_seed)
    other = ts.tiles[parts["other"]]
    frames = np.asarray(ts.source, np.int64)[parts["other"]] * 1_000_003 + ts.frame[parts["other"]]
    sets = {"other": other, "later": ts.tiles[parts["later"]], **ladder_sets(other, frames, seed=split_seed),
            **(seconds or {})}
    if copies:  # as many copies as there are honest "other" tiles
        train = ts.tiles[parts["train"]]
        sets.update({c: copy_set(train, c, other, len(other), seed=split_seed + 7) for c in COPIES})
    out = {"scores": {s: {} for s in seeds}, "components": {s: {} for s in seeds},
           "parts": {k: int(len(v)) for k, v in parts.items()}}
    for name, tiles in sets.items():
        shared: dict = {}  # the set's features, computed once for all seeds
        for s in seeds:
            values, _ = _run_metrics(MetricContext(ref, tiles, seed=s, _cache=shared), PROOF_METRICS)
            out["scores"][s][name] = primary_value(values)
            out["components"][s][name] = {c: values[c] for c in (*PRIMARY_COMPONENTS, "diversity_gap_correlation")}
    return out


def pair_orders(seconds=(), copies: bool = True) -> list[tuple[str, str]]:
    """Every (better, worse) pair the proof requires, as set names of ``proof_scores``."""
    steps = lambda kind: [f"{kind}={lv}" for lv in LADDERS[kind]]  # noqa: E731
    pairs = [(a, b) for kind in LADDERS for a, b in zip(steps(kind), steps(kind)[1:])]  # ladders
    damaged = [s for kind in LADDERS for s in steps(kind)]
    pairs += [("other", s) for s in damaged]  # held-out real beats every damaged set
    pairs += [("later", "collapse=2"), ("blur=1.0", "collapse=2")]
    # structure destroyed (every pixel of a tile shuffled) is worse than every mild damage
    pairs += [(mild, bad) for mild in ("blur=0.5", "blur=1.0", "gamma=1.5", "noise=0.1", "collapse=0.5")
              for bad in ("shuffle=0", "phase=1.0")]
    for good in ("other", *seconds):
        pairs += [(good, bad) for bad in ("shuffle=0", "phase=1.0", "noise=1.0", "blur=4.0")]
    pairs += [(s, "noise=1.0") for s in [*damaged, "other", "later", *seconds] if s != "noise=1.0"]  # noise last
    if copies:  # every copy is worse than honest new data, and more copying is worse
        # a 10 % copier is caught (its authenticity_gap is > 0) but may still beat honest data of worse fidelity
        pairs += [(good, c) for c in COPIES if c != "copy_mix=0.1" for good in ("other", "later")]
        pairs += [("copy_mix=0.1", "copy_mix=0.5"), ("copy_mix=0.5", "copy_mix=1.0")]
    return list(dict.fromkeys(pairs))


def rule_violations(scores: dict, seconds=()) -> list[str]:
    """The required orders (``pair_orders``) that ``scores`` breaks: [] when the proof holds."""
    copies = all(c in scores for c in COPIES)
    return [f"{a} ({scores[a]:.4f}) should beat {b} ({scores[b]:.4f})" for a, b in pair_orders(seconds, copies)
            if not scores[a] < scores[b]]
