"""bench/bench_resample.py: its input check, and that its weights prefer candidates like the training tiles."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tests.bench import load_bench


@pytest.fixture(scope="module")
def br():
    mod = load_bench("bench_resample")
    yield mod
    for name in ("bench_resample", "bench_fine_detail"):
        sys.modules.pop(name, None)


def test_a_missing_run_folder_is_one_line_naming_it(br, tmp_path, capsys):
    assert br.main(["--work", str(tmp_path)]) == 2  # no tiles: the runs were never trained
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "tiles.npz" in err and "--train-only" in err
    (tmp_path / "tiles").mkdir()
    (tmp_path / "tiles" / "tiles.npz").write_bytes(b"")
    assert br.main(["--work", str(tmp_path), "--runs", "fine-s7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fine-s7" in err


@pytest.mark.parametrize("argv, field", [(["--alphas", "x"], "--alphas"), (["--alphas", "-1"], "--alphas"),
                                         (["--runs", ""], "--runs"), (["--n", "10"], "--n"), (["--k", "0"], "--k"),
                                         (["--batches", "0"], "--batches")])
def test_bad_input_is_one_line_naming_the_field(br, tmp_path, capsys, argv, field):
    assert br.main(["--work", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def _blobs(rng, n, sigma):
    return np.clip(gaussian_filter(rng.standard_normal((n, 1, 32, 32)), (0, 0, sigma, sigma)) * 6 - 0.5,
                   -1, 1).astype(np.float32)


def test_weights_prefer_the_candidates_like_the_training_tiles(br):
    """Half the candidates are drawn as the training tiles are (fine blobs), half are coarse blobs: the cross-fitted
    logits rank the first half above the second, and the resampler's alpha moves the kept share between them."""
    rng = np.random.default_rng(0)
    train = _blobs(rng, 200, 1.0)
    cand = np.concatenate([_blobs(rng, 200, 1.0), _blobs(rng, 200, 3.0)])
    like = np.arange(len(cand)) < 200
    logits = br.ratio_logits(cand, train, batches=150)
    assert logits.shape == (400,) and np.isfinite(logits).all()
    assert np.median(logits[like]) > np.median(logits[~like]) + 1
    shares = {alpha: like[br.pick(logits, 100, alpha)].mean() for alpha in (0.0, 1.0)}
    assert 0.35 < shares[0.0] < 0.65 < 0.9 < shares[1.0]  # as drawn, then corrected
    kept = br.pick(logits, 100, 1.0)
    assert len(set(kept.tolist())) == 100  # without replacement


def test_the_wide_judge_asks_the_c2st_for_twice_the_width_at_every_seed(br, monkeypatch):
    from mitogan.metrics import c2st

    asked = []

    def fake_c2st(a, b, seed, widths):  # the C2ST itself is tested in tests/mitogan/test_metrics_c2st.py
        asked.append((seed, widths))
        return {"accuracy": 0.9 + 0.02 * seed}

    monkeypatch.setattr(c2st, "c2st_accuracy", fake_c2st)
    assert br.wide_judge(np.zeros((4, 1, 8, 8)), np.zeros((4, 1, 8, 8)), seeds=(0, 1)) == [0.91, 0.01]
    assert asked == [(s, tuple(2 * w for w in c2st._WIDTHS)) for s in (0, 1)]