import json

import cv2
import numpy as np
import pytest

from mitogan.cli import main
from mitogan.errors import InputError
from mitogan.metrics import PRIMARY_MODE, PRIMARY_NAME, InTrainingEvaluator, evaluate
from mitogan.tiles import TileSet, save_tiles


def _tiles(n, seed, s=32):
    """Random blurred tubule-ish tiles in [-1, 1]: (n, 1, s, s)."""
    rng = np.random.default_rng(seed)
    out = np.full((n, s, s), -1.0, np.float32)
    for img in out:
        for _ in range(3):
            p = rng.integers(0, s, 4)
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), 0.8, 2)
        img[:] = cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 0.05, (s, s))
    return np.clip(out, -1, 1)[:, None]


@pytest.fixture(scope="module")
def pair():
    return _tiles(60, 0), _tiles(60, 1)


def test_evaluate_reports_every_metric_with_sizes_and_primary(pair, tmp_path):
    real, fake = pair
    r = evaluate(real, fake, out_dir=tmp_path)
    assert r["primary"]["name"] == PRIMARY_NAME and r["primary"]["mode"] == PRIMARY_MODE == "min"
    assert 0 <= r["primary"]["value"] <= 2.02  # bounded, plus 0.001 log10(1 + KID) as a tie-breaker
    for key in ("kid_enc", "fd_enc", "kid_morph", "fd_morph", "coverage_enc", "recall_enc", "vendi_fake",
                "memorisation_ratio", "copy_fraction", "coverage_morph"):
        assert np.isfinite(r["metrics"][key]), key
    assert r["sample_sizes"]["kid_enc"] == {"n_real": 60, "n_fake": 60, "subset_size": 60, "n_subsets": 100}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["primary"] == r["primary"]
    for png in ("histograms.png", "nearest_neighbours.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_evaluate_is_deterministic(pair):
    real, fake = pair
    assert evaluate(real, fake, seed=3)["metrics"] == evaluate(real, fake, seed=3)["metrics"]


def test_identical_sets_beat_noise(pair):
    real, fake = pair
    good = evaluate(real, fake)["primary"]["value"]
    noise = np.random.default_rng(0).uniform(-1, 1, fake.shape).astype(np.float32)
    assert evaluate(real, noise)["primary"]["value"] > good + 0.5


def test_mismatched_sizes_and_tiny_inputs_are_clear_errors(pair):
    real, fake = pair
    with pytest.raises(InputError, match="32x32 px but the real ones are 64x64"):
        evaluate(_tiles(10, 2, s=64), fake)
    with pytest.raises(InputError, match="need more than k=5"):
        evaluate(real, fake[:5])


def test_in_training_evaluator_caches_real_side(pair, tmp_path, monkeypatch):
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    real, fake = pair
    ev = InTrainingEvaluator(real, n_fake=40, seed=0)
    out = ev(fake)
    assert {"primary", "coverage_enc", "kid_enc", "recall_enc", "vendi_fake"} <= set(out)
    assert all(isinstance(v, float) for v in out.values())
    assert len(list((tmp_path / "metrics").glob("real-*.npz"))) == 1
    assert InTrainingEvaluator(real, n_fake=40, seed=0)(fake) == out  # from the cache, same numbers


def test_cli_evaluate_tiles_and_frames(pair, tmp_path, capsys):
    real, fake = pair
    save_tiles(tmp_path / "real.npz", TileSet.from_array(real))
    np.save(tmp_path / "fake.npy", fake)
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "fake.npy"), "--out",
                 str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["n_fake"] == 60
    # frames (a TIFF stack) are cut into tiles of the tiles file's size
    import tifffile

    frames = ((np.concatenate([t[0] for t in fake[:40]], 0).reshape(10, 128, 32) + 1) * 100).astype(np.uint16)
    tifffile.imwrite(tmp_path / "fake.tif", np.concatenate([frames] * 4, axis=2))  # (10, 128, 128)
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "fake.tif"), "--out",
                 str(tmp_path / "out2")]) == 0
    assert json.loads((tmp_path / "out2" / "metrics.json").read_text())["n_fake"] == 160
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "missing.npz"), "--out",
                 str(tmp_path / "o3")]) == 2
    assert "missing.npz" in capsys.readouterr().err
