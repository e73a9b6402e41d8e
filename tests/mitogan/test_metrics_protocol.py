"""The evaluation protocol: real tiles are split by whole videos or time blocks, never tile by tile."""

import numpy as np
import pytest

from mitogan.errors import InputError
from mitogan.metrics.protocol import duplicate_groups, split_real, training_tiles
from mitogan.tiles import TileSet


def _provenance(videos, frames, tiles_per_frame=4):
    source = np.repeat(np.arange(videos), frames * tiles_per_frame)
    frame = np.tile(np.repeat(np.arange(frames), tiles_per_frame), videos)
    return source, frame


def test_many_videos_are_split_by_whole_videos():
    source, frame = _provenance(videos=8, frames=10)
    sp = split_real(source, frame, holdout=0.25, seed=0)
    assert sp.how == "videos"
    # no video on both sides, and the held-out share is whole videos close to the request
    assert not set(source[sp.train]) & set(source[sp.heldout])
    assert len(sp.heldout) / len(source) == pytest.approx(0.25, abs=0.13)
    assert np.array_equal(np.sort(np.concatenate([sp.train, sp.heldout])), np.arange(len(source)))


def test_few_videos_are_split_into_contiguous_time_blocks():
    source, frame = _provenance(videos=2, frames=20)
    sp = split_real(source, frame, holdout=0.25, seed=1)
    assert sp.how == "time blocks"
    for v in range(2):  # held-out frames of a video form one contiguous run (a block), never interleaved
        held = np.unique(frame[sp.heldout][source[sp.heldout] == v])
        if len(held):
            assert np.array_equal(held, np.arange(held.min(), held.max() + 1))
            assert not set(held) & set(frame[sp.train][source[sp.train] == v])


def test_split_is_deterministic_and_seeded():
    source, frame = _provenance(videos=8, frames=5)
    a, b = split_real(source, frame, seed=3), split_real(source, frame, seed=3)
    assert np.array_equal(a.heldout, b.heldout)
    assert any(not np.array_equal(a.heldout, split_real(source, frame, seed=s).heldout) for s in range(4, 10))


def test_one_frame_without_provenance_falls_back_to_tile_blocks_and_tiny_input_is_an_error():
    sp = split_real(np.zeros(40, int), np.zeros(40, int))
    assert sp.how == "tile blocks" and len(sp.train) and len(sp.heldout)
    with pytest.raises(InputError, match="at least 2"):
        split_real(np.zeros(1, int), np.zeros(1, int))


def test_training_tiles_leave_out_exactly_the_held_out_split():
    source, frame = _provenance(videos=6, frames=4)
    n = len(source)
    ts = TileSet(np.zeros((n, 1, 8, 8), np.float32) + np.arange(n)[:, None, None, None] / n, source.astype(np.int32),
                 frame.astype(np.int32), np.zeros((n, 2), np.int32))
    sp = split_real(source, frame, 0.25, 0)
    train = training_tiles(ts, 0.25, 0)
    assert len(train) == len(sp.train) and np.array_equal(train.tiles, ts.tiles[sp.train])


def test_duplicate_tiles_are_found():
    x = np.random.default_rng(0).normal(size=(6, 1, 4, 4)).astype(np.float32)
    x = np.concatenate([x, x[:2]])  # a movie that repeats two frames
    rep, n_dup = duplicate_groups(x)
    assert n_dup == 2 and rep[6] == 0 and rep[7] == 1
