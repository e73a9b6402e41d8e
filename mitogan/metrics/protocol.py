"""The evaluation protocol: which real tiles a generator is compared with.

Tiles cut from one frame, or from neighbouring frames of one movie, are near copies of each other. A
generator that is compared with tiles it trained on (or with their neighbours) is rewarded for copying,
and a metric calibrated on neighbouring tiles reads every honest generator as bad. So the real data is
split by **whole videos** when there are enough of them, otherwise by **contiguous time blocks** of each
video, never tile by tile:

    train     the tiles the GAN trains on; memorisation compares generated tiles with these
    held-out  the reference every fidelity and diversity metric compares generated tiles with

``split_real`` is deterministic (seeded) so that the search, ``mitogan train`` and ``mitogan evaluate``
make the same split of the same tiles file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mitogan.errors import InputError

__all__ = ["RealSplit", "split_real", "training_tiles", "duplicate_groups", "MIN_VIDEOS_FOR_VIDEO_SPLIT"]

MIN_VIDEOS_FOR_VIDEO_SPLIT = 4  # fewer videos: hold out a time block of every video instead


@dataclass(frozen=True)
class RealSplit:
    """Indices into the real tiles: ``train`` and ``heldout`` are disjoint and sorted; ``how`` says why."""

    train: np.ndarray
    heldout: np.ndarray
    how: str  # "videos" | "time blocks" | "tile blocks"
    groups: np.ndarray  # (N,) the group id of every tile (a video, or a time block of one)

    def describe(self) -> dict:
        return {"split": self.how, "n_train": int(len(self.train)), "n_heldout": int(len(self.heldout)),
                "n_groups": int(len(np.unique(self.groups)))}


def _time_blocks(source: np.ndarray, frame: np.ndarray, n_blocks: int) -> np.ndarray:
    """Group id per tile: (video, contiguous block of its frames). A one-frame video is one block."""
    groups = np.zeros(len(source), np.int64)
    next_id = 0
    for s in np.unique(source):
        idx = np.flatnonzero(source == s)
        frames = np.unique(frame[idx])
        k = min(n_blocks, len(frames))
        # block of each distinct frame: contiguous runs of roughly equal length
        block_of = {f: b for b, chunk in enumerate(np.array_split(frames, k)) for f in chunk}
        groups[idx] = next_id + np.array([block_of[f] for f in frame[idx]])
        next_id += k
    return groups


def split_real(source, frame, holdout: float = 0.25, seed: int = 0, n_blocks: int = 4, tiles=None) -> RealSplit:
    """Split real tiles into train / held-out by whole videos or by time blocks (never tile by tile).

    Parameters
    ----------
    source, frame : (N,) int, the video and the frame each tile came from (``TileSet.source/.frame``);
        tiles without provenance may pass ``source = 0`` and ``frame = arange(N)`` (tile order is time order)
    holdout : share of tiles to hold out (whole groups are taken until it is reached)
    seed : which groups are held out
    n_blocks : time blocks per video when there are fewer than ``MIN_VIDEOS_FOR_VIDEO_SPLIT`` videos
    tiles : (N, 1, S, S), optional: videos that show the same field (one movie saved twice, overlapping
        crops: ``copying.video_twins``) are then one video, so held-out data is never a copy of training data

    With at least 4 videos, whole videos are held out; otherwise each video is cut into ``n_blocks``
    contiguous time blocks and whole blocks are held out. Both sides are non-empty (InputError otherwise).
    """
    source, frame = np.asarray(source), np.asarray(frame)
    if tiles is not None and len(np.unique(source)) > 1:
        from mitogan.metrics.copying import merge_twins

        source, frame = merge_twins(np.asarray(tiles), source, frame)
    n = len(source)
    if n < 2:
        raise InputError("real tiles", f"has {n} tile(s); at least 2 are needed to hold some out")
    if len(np.unique(source)) >= MIN_VIDEOS_FOR_VIDEO_SPLIT:
        groups, how = np.unique(source, return_inverse=True)[1].astype(np.int64), "videos"
        # a video holding more than twice the held-out share (one field filmed in many files, merged as twins)
        # would make either side one field: it is cut into time blocks, like a dataset of few videos
        ids, counts = np.unique(groups, return_counts=True)
        big = ids[counts > 2 * holdout * n]
        if len(big) and len(big) < len(ids):
            blocks = _time_blocks(source, frame, n_blocks)
            groups = np.where(np.isin(groups, big), len(ids) + blocks, groups)
            groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)
            how = "videos (time blocks of the largest)"
    else:
        groups, how = _time_blocks(source, frame, n_blocks), "time blocks"
        if len(np.unique(groups)) < 2:  # one frame of one video: fall back to contiguous runs of tiles
            groups, how = np.arange(n) * n_blocks // n, "tile blocks"
    ids, counts = np.unique(groups, return_counts=True)
    order = np.random.default_rng(seed + 104729).permutation(len(ids))
    target = holdout * n
    held, total = [], 0
    for i in order:  # take whole groups until the share is reached, keep at least one for training
        if total >= target or len(held) == len(ids) - 1:
            break
        held.append(ids[i])
        total += counts[i]
    mask = np.isin(groups, held)
    return RealSplit(np.flatnonzero(~mask), np.flatnonzero(mask), how, groups)


def duplicate_groups(tiles: np.ndarray) -> tuple[np.ndarray, int]:
    """Exact duplicates among tiles (a movie that repeats frames, a file read twice).

    Returns (first index of each tile's identical copy, (N,) int; the number of tiles that repeat an
    earlier one). Near-duplicates are not merged here; the memorisation metric handles them by distance.
    """
    flat = np.ascontiguousarray(np.asarray(tiles, np.float32).reshape(len(tiles), -1))
    keys = [row.tobytes() for row in flat]
    first: dict[bytes, int] = {}
    rep = np.array([first.setdefault(k, i) for i, k in enumerate(keys)], np.int64)
    return rep, int((rep != np.arange(len(rep))).sum())


def training_tiles(real, holdout: float = 0.25, seed: int = 0):
    """The part of ``real`` (a ``TileSet`` or tiles in time order) a generator may train on: everything
    but the held-out split that ``evaluate`` / ``InTrainingEvaluator`` score it against."""
    n = len(getattr(real, "tiles", real))
    source = getattr(real, "source", np.zeros(n, np.int64))
    frame = getattr(real, "frame", np.arange(n))
    sp = split_real(source, frame, holdout, seed, tiles=getattr(real, "tiles", real))
    return real.subset(sp.train) if hasattr(real, "subset") else np.asarray(real)[sp.train]
