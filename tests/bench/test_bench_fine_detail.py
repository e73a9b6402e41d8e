"""bench/bench_fine_detail.py: its input checks, and that its columns measure what they are named for."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tests.bench import load_bench


@pytest.fixture(scope="module")
def bf():
    mod = load_bench("bench_fine_detail")
    yield mod
    sys.modules.pop("bench_fine_detail", None)


@pytest.mark.parametrize("argv, field", [(["--configs", "stylegan"], "--configs"), (["--seeds", "a"], "--seeds"),
                                         (["--seeds", ""], "--seeds"), (["--steps", "0"], "--steps"),
                                         (["--n", "5"], "--n"), (["--tile", "48"], "--tile"),
                                         (["--judge-seeds", "0"], "--judge-seeds")])
def test_bad_input_is_one_line_naming_the_field(bf, capsys, argv, field):
    assert bf.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err


def _tiles(rng, n, fine_noise):
    """Blobs (smooth random fields, clipped at a black floor) with or without per-pixel noise on top."""
    smooth = gaussian_filter(rng.standard_normal((n, 1, 32, 32)), (0, 0, 2, 2)) * 6 - 0.5
    x = smooth + (0.15 * rng.standard_normal(smooth.shape) if fine_noise else 0)
    return np.clip(x, -1, 1).astype(np.float32)


def test_the_columns_tell_coarse_from_fine_detail(bf):
    rng = np.random.default_rng(0)
    train, same, smooth = _tiles(rng, 150, True), _tiles(rng, 150, True), _tiles(rng, 150, False)
    budget = {"batches": 120, "folds": 3}
    honest = bf.score(same, train, what=("vs_train", "detail_vs_train"), **budget)
    assert honest["vs_train"][0] < 0.65 and honest["detail_vs_train"][0] < 0.65  # one process: chance
    missing = bf.score(smooth, train, **budget)  # no held-out set: no vs_held column
    assert "vs_held" not in missing
    assert missing["detail_vs_train"][0] > 0.9  # the fine noise is missing, and the detail column sees it
    assert missing["blur_vs_train"][0] < 0.7  # blurred, both are the same smooth fields
    assert 0 < missing["floor"] < 1 and bf.floor(np.full((2, 1, 4, 4), -1.0)) == 1.0
    some = np.zeros((4, 1, 10, 10))
    some[0, 0, 0, 0] = -1  # 1 % of a tile at the floor counts as a floor
    some[1, 0, :5] = -1
    assert bf.floorless(some) == 0.5 and 0 <= missing["floorless"] <= 1
    # the noise power sees the fine noise, per kind of tile (none here is without the floor: smooth fields dip to -1)
    noisy_power, smooth_power = bf.hf_power(train), bf.hf_power(smooth)
    # white noise of sd 0.15 has power 0.15² · 32² = 23 (log10 1.36) at every frequency, less where clipped; the
    # smooth fields only have their clipped edges' power there
    assert noisy_power[1] > 1.0 > smooth_power[1]
    lifted = np.clip(_tiles(rng, 20, True) * 0.5, -0.9, 1)  # no pixel at -1: all in the first group
    assert bf.hf_power(lifted)[1] is None and bf.hf_power(lifted)[0] is not None


def test_table_and_figure(bf, tmp_path):
    rows = {"real: training half vs half": {"vs_train": [0.5, 0.01], "floor": 0.3},
            "fine-s0": {"vs_train": [0.79, 0.02], "vs_held": [0.9, 0.01], "hf_power": [0.36, None], "copy_share": 0.1,
                        "primary": -0.2}}
    md = bf.table(rows).splitlines()
    assert md[0].startswith("| set | C2ST vs training") and len(md) == 4
    assert "| fine-s0 | 0.790 ± 0.020 | 0.900 ± 0.010 |  |  |  |  |  |  |  | 0.36 / – | 0.1 | -0.2 |" == md[3]
    rng = np.random.default_rng(1)
    bf.figure({"real": _tiles(rng, 12, True), "fine": _tiles(rng, 12, False)}, tmp_path / "f.png")
    import cv2

    img = cv2.imread(str(tmp_path / "f.png"), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (2 * 2 * 34 * 3, 150 + 10 * 34 * 3)  # two sets, each a row of tiles and a row of detail


def test_other_tile_sizes_keep_their_own_tiles_and_runs(bf, tmp_path):
    assert bf.parse_args(["--work", str(tmp_path)]).work == tmp_path
    assert bf.parse_args(["--work", str(tmp_path), "--tile", "64"]).work == tmp_path / "64px"


def test_held_out_columns_and_judge_seeds(bf):
    rng = np.random.default_rng(1)
    train, held, smooth = _tiles(rng, 120, True), _tiles(rng, 120, True), _tiles(rng, 120, False)
    budget = {"batches": 80, "folds": 2}
    one = bf.score(smooth, train, held, what=("blur_vs_held", "detail_vs_held"), **budget)
    assert one["detail_vs_held"][0] > 0.9 and one["blur_vs_held"][0] < 0.7  # the same views against held-out
    three = bf.score(smooth, train, held, what=("detail_vs_held",), seeds=range(3), **budget)
    each = [bf.score(smooth, train, held, what=("detail_vs_held",), seeds=(s,), **budget)["detail_vs_held"][0]
            for s in range(3)]
    assert three["detail_vs_held"] == [round(float(np.mean(each)), 3), round(float(np.std(each)), 3)]


def test_the_dark_view_sees_the_black_level_and_nothing_else(bf):
    # smooth fields clipped at an exact black floor; one fake lifts and mottles that floor by 2-4 % of the range,
    # the other adds fine noise only where the tile is bright: the dark view sees the first (far better than the
    # whole fine detail, where the faint floor is lost among the edges' detail) and not the second
    rng = np.random.default_rng(2)
    train, held = _tiles(rng, 120, False), _tiles(rng, 120, False)
    lifted = np.maximum(_tiles(rng, 120, False), -0.97 + 0.02 * rng.standard_normal((120, 1, 32, 32)))
    bright = _tiles(rng, 120, False)
    bright = np.where(bright > 0, bright + 0.15 * rng.standard_normal(bright.shape), bright).clip(-1, 1)
    what = ("detail_vs_held", "dark_vs_held")  # at the C2ST's own budget, as the bench runs it
    low, high = (bf.score(x.astype(np.float32), train, held, what=what) for x in (lifted, bright))
    assert low["dark_vs_held"][0] > 0.75 and low["dark_vs_held"][0] > low["detail_vs_held"][0] + 0.15
    assert high["detail_vs_held"][0] > 0.9 and high["dark_vs_held"][0] < 0.7
