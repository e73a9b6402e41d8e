"""mitogan.simfit, the Ray-free half of fit-sim: the searched space, temporal statistics, the objective and
the fitted file (which `mitogan simulate --config` reads)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mitogan.errors import ConfigError
from mitogan.simfit import FIT_SPACE, FitTarget, Rung, dataset_stats, physical, score, select_space, temporal_gap
from mitogan.simfit import to_params, video_stats
from mitogan.simfit.data import read_fitted, write_fitted
from mitogan.simulate import SimParams, simulate_video


def test_every_fitted_field_is_a_simparams_field_and_its_default_lies_in_range():
    default = SimParams()
    for p in FIT_SPACE:
        assert p.lo <= getattr(default, p.name) <= p.hi, p.name


@pytest.mark.parametrize("p", FIT_SPACE, ids=lambda p: p.name)
def test_unit_scale_round_trips_and_is_log_where_said(p):
    mid = p.from_unit(0.5)
    assert p.to_unit(p.from_unit(0.3)) == pytest.approx(0.3)
    # a log range's middle is the geometric mean of its ends, a linear one's the arithmetic mean
    assert mid == pytest.approx((p.lo * p.hi) ** 0.5 if p.log else (p.lo + p.hi) / 2)


def test_to_params_ties_the_spreads_to_their_means_so_any_sample_is_valid():
    rng = np.random.default_rng(0)
    for _ in range(50):  # corners included: every sample of the space must give a valid SimParams
        values = {p.name: p.from_unit(rng.choice([0.0, 1.0, rng.random()])) for p in FIT_SPACE}
        params = to_params(values)
        assert params.length_sd / params.length_mean == pytest.approx(30 / 65)
        assert params.width_mean == pytest.approx(values["width_mean"])


def test_unknown_parameters_are_refused_by_name():
    with pytest.raises(ConfigError, match="--params wdth"):
        select_space(["wdth"])
    with pytest.raises(ConfigError, match="colour"):
        to_params({"colour": 1.0})
    assert [p.name for p in select_space(["psf_sigma", "width_mean"])] == ["psf_sigma", "width_mean"]


def test_physical_units_convert_lengths_and_rates_and_keep_the_rest():
    out = physical({"width_mean": 8.0, "speed": 0.5, "density": 4.0, "bead_prob": 0.3}, 0.05, 5.0)
    assert out["width_mean"] == (pytest.approx(0.4), "µm")
    assert out["speed"] == (pytest.approx(0.005), "µm/s")  # 0.5 px/frame x 0.05 µm / 5 s
    assert out["density"] == (pytest.approx(4.0 / 25), "1/µm^2")  # 4 per (100 px = 5 µm)^2
    assert out["bead_prob"] == (0.3, "")
    assert physical({"speed": 0.5}, None, None)["speed"] == (0.5, "px/frame")


def _moving_video(shift: float, frames: int = 5, bleach: float = 0.0) -> np.ndarray:
    """A noiseless blob pattern translated by ``shift`` px per frame, dimmed by exp(-bleach t)."""
    params = dataclasses.replace(SimParams(), size=96, frames=1, shot_noise=False, read_noise=0, column_noise=0,
                                 density=6.0, gradient=0, autofluorescence=0)
    base = simulate_video(params, 3)[0][0].astype(np.float64) - params.offset
    out = []
    for t in range(frames):
        f = np.roll(base, int(round(shift * t)), axis=1) * np.exp(-bleach * t)
        out.append(f + params.offset)
    return np.asarray(out, np.float32)


def test_temporal_stats_see_motion_and_bleaching():
    still, moving = video_stats(_moving_video(0)), video_stats(_moving_video(3))
    assert still["flow"] < 0.2 and still["change"] < 0.01  # a still, noiseless movie: nothing changes
    assert 2.0 < moving["flow"] < 4.0  # 3 px per frame (Farneback on blurred frames)
    assert video_stats(_moving_video(0, bleach=0.05))["bleach"] == pytest.approx(0.05, rel=0.2)
    assert video_stats(_moving_video(0)[:1]) is None  # one frame: no dynamics


def test_temporal_gap_is_zero_for_equal_statistics_and_grows_with_the_difference():
    a = {"change": 0.2, "flow": 1.0, "bleach": 0.01, "turnover": 0.1}
    assert temporal_gap(a, a) == (0.0, {k: 0.0 for k in a})
    near, far = temporal_gap({**a, "flow": 1.2}, a)[0], temporal_gap({**a, "flow": 3.0}, a)[0]
    assert 0 < near < far
    assert temporal_gap(None, a) == (0.0, {})
    assert dataset_stats([np.zeros((1, 32, 32))]) is None


def _frame(**kw) -> np.ndarray:
    params = to_params({"density": 6.0, **kw}, size=128, frames=1)
    return simulate_video(params, 11)[0][0]


def test_image_stats_see_width_blur_density_and_noise():
    from mitogan.simfit.imagestats import frame_stats

    base = frame_stats(_frame())
    # wider tubes and more blur correlate pixels further apart; more objects cover more of the frame
    assert frame_stats(_frame(width_mean=12.0))["acf4"] > base["acf4"] + 0.05
    assert frame_stats(_frame(psf_sigma=3.5))["acf2"] > base["acf2"] + 0.02
    assert frame_stats(_frame(density=12.0))["fg"] > base["fg"] * 1.3
    assert frame_stats(_frame(read_noise=20.0, brightness=60.0))["noise"] > 2 * base["noise"]


def test_image_gap_is_zero_for_the_same_movies_and_positive_for_others():
    from mitogan.simfit.imagestats import image_gap, image_stats

    a = image_stats([_frame()[None]])
    assert image_gap(a, a)[0] == 0.0
    assert image_gap(image_stats([_frame(width_mean=12.0)[None]]), a)[0] > 0.05


@pytest.fixture(scope="module")
def target():
    """A small simulated 'lab': 6 videos of 6 frames, 128 px, thicker and blurrier than the default."""
    p = to_params({"width_mean": 10.0, "psf_sigma": 2.5, "density": 5.0}, size=128, frames=6)
    videos = [simulate_video(p, 50 + i)[0] for i in range(6)]
    return FitTarget(videos, tile=64, seed=0)


@pytest.mark.slow
def test_the_objective_prefers_the_target_s_own_parameters_to_the_defaults(target):
    rung = Rung(6, 4, 128, 64)
    own = score(to_params({"width_mean": 10.0, "psf_sigma": 2.5, "density": 5.0}), target, rung, seed=1)
    default = score(SimParams(), target, rung, seed=1)
    assert own["objective"] < default["objective"] - 0.2
    assert set(own) >= {"objective", "realism_gap", "fidelity", "diversity_gap", "temporal_gap", "image_gap",
                        "gap_flow", "gap_acf4"}


@pytest.mark.slow
def test_score_is_a_function_of_params_and_seed(target):
    rung = Rung(3, 3, 128, 64)  # the same number of tiles as above: the calibration is reused
    a, b = score(SimParams(), target, rung, seed=4), score(SimParams(), target, rung, seed=4)
    wall = "sim_seconds"  # the only entry that is not a function of the parameters and the seed
    a.pop(wall), b.pop(wall)
    assert a == b


def test_fitted_file_round_trips_and_simulate_reads_it(tmp_path):
    from mitogan.cli import main

    params = to_params({"width_mean": 9.5, "bleach_rate": 0.02})
    path = write_fitted(tmp_path / "fitted.yaml", params, header="fitted to a test\nsecond line")
    assert path.read_text().startswith("# fitted to a test\n# second line\n")
    assert read_fitted(path) == dataclasses.replace(params, size=SimParams().size, frames=SimParams().frames)
    assert main(["simulate", "--config", str(path), "--out", str(tmp_path / "sim"), "--videos", "1", "--frames", "3",
                 "--size", "64", "--set", "bead_prob=0", "-q"]) == 0
    truth = json.loads((tmp_path / "sim" / "video_000.json").read_text())
    # the labelled output keeps its ground truth: the fitted values, skeletons and per-object widths
    assert truth["params"]["width_mean"] == 9.5 and truth["params"]["bead_prob"] == 0
    assert all("skeleton_px" in o and "width_px" in o for o in truth["objects"])
