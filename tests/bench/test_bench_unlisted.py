"""bench/bench_unlisted.py: the blends of training tiles are what they say (no metrics run here)."""

from __future__ import annotations

import numpy as np
import pytest

from mitogan.tiles import TileSet
from tests.bench import load_bench


@pytest.fixture(scope="module")
def bu():
    return load_bench("bench_unlisted")


def test_blends_mix_training_tiles_and_frames_of_one_field(bu):
    # 2 movies x 4 frames x 4 places; every tile a distinct constant, so a blend's value says which tiles it mixed
    src, fr, y, x = (a.ravel() for a in np.meshgrid(range(2), range(4), (0, 8), (0, 8), indexing="ij"))
    n = len(src)
    tiles = np.repeat(np.linspace(-0.9, 0.9, n, dtype=np.float32), 64).reshape(n, 1, 8, 8)
    ts = TileSet(tiles, src.astype(np.int32), fr.astype(np.int32), np.stack([y, x], 1).astype(np.int32))
    train = np.flatnonzero(src == 0)  # movie 1 is not training data: no blend may use it
    sets = bu.blend_sets(ts, train, 50)
    frames = sets["mean of two frames of one training field, 1–3 frames apart"][:, 0, 0, 0]
    for v in frames:  # the mean of tiles i < j of one place of movie 0, 1-3 frames apart
        pairs = [(i, j) for i in train for j in train if i < j and abs((tiles[i, 0, 0, 0] + tiles[j, 0, 0, 0]) / 2 - v) < 1e-6]
        assert any(src[i] == src[j] == 0 and (y[i], x[i]) == (y[j], x[j]) and 1 <= fr[j] - fr[i] <= 3 for i, j in pairs)
    lo, hi = tiles[train].min(), tiles[train].max()
    for name, blend in sets.items():
        assert blend.shape == (50, 1, 8, 8) and blend.dtype == np.float32, name
        assert lo - 1e-6 <= blend.min() and blend.max() <= hi + 1e-6, name  # training tiles only (movie 1 is brighter)
