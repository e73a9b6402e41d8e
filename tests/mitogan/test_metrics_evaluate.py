import json

import numpy as np
import pytest

from mitogan.cli import main
from mitogan.errors import InputError
from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_MODE, PRIMARY_NAME, InTrainingEvaluator, evaluate
from mitogan.metrics.evaluate import primary_value, real_reference
from mitogan.metrics.proof import damage, videos_to_tiles
from mitogan.tiles import save_tiles


@pytest.fixture(scope="module")
def real():
    """8 short simulated movies cut into 32 px tiles, with their provenance (source, frame)."""
    from mitogan.simulate import SimParams, simulate_video

    return videos_to_tiles([simulate_video(SimParams(size=64, frames=6), s)[0] for s in range(8)], 32)


@pytest.fixture(scope="module")
def ref(real):
    return real_reference(real)


def test_evaluate_reports_primary_with_components_protocol_and_files(real, ref, tmp_path):
    r = evaluate(real, ref.train, reference=ref, out_dir=tmp_path)
    p = r["primary"]
    assert (p["name"], p["mode"]) == (PRIMARY_NAME, PRIMARY_MODE) == ("realism_gap", "min")
    assert set(p["components"]) == set(PRIMARY_COMPONENTS) and p["value"] == primary_value(r["metrics"])
    assert r["protocol"]["split"] == "videos" and r["protocol"]["n_heldout"] == len(ref.heldout)
    for key in ("fd_fluo", "kid_fluo", "kid_fluo_std", "coverage_fluo", "vendi_fake", "memorisation_ratio"):
        assert np.isfinite(r["metrics"][key]), key
    assert r["top_features"] and abs(sum(t["share"] for t in r["top_features"])) <= 1.0001
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["primary"] == p
    for png in ("histograms.png", "nearest_neighbours.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_training_split_scores_near_zero_and_noise_near_one(real, ref):
    # 0 = a disjoint real split of the same data, 1 = that data damaged into noise (the calibration)
    good = evaluate(real, ref.train, reference=ref)["primary"]["value"]
    noise = evaluate(real, damage(ref.train, "noise", 1.0, seed=5), reference=ref)["primary"]["value"]
    assert abs(good) < 0.1 and noise == pytest.approx(1.0, abs=0.05)


def test_a_collapsed_generator_cannot_beat_a_diverse_realistic_one(real, ref):
    two = ref.train[np.arange(len(ref.train)) % 2]  # two perfect real tiles, repeated
    diverse = evaluate(real, ref.train, reference=ref)["primary"]["value"]
    collapsed = evaluate(real, two, reference=ref)
    assert collapsed["metrics"]["diversity_gap"] > 0.8 and collapsed["primary"]["value"] > diverse + 0.5


def test_evaluate_is_deterministic_and_kid_spread_is_a_real_bootstrap(real, ref):
    fake = damage(ref.train, "blur", 1.0)
    a, b = evaluate(real, fake, reference=ref, seed=3), evaluate(real, fake, reference=ref, seed=3)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"]["kid_fluo_std"] > 0  # n < 1000: subsets are the whole set, the bootstrap is not


def test_memorisation_sees_copies_of_training_tiles_and_survives_repeated_frames(real, ref):
    copies = evaluate(real, ref.train, reference=ref)["metrics"]
    assert copies["memorisation_ratio"] < 0.05 and copies["copy_fraction"] > 0.9
    # a movie that repeats frames: every held-out tile has an identical twin in the training split
    tiles = np.concatenate([ref.train[:60], ref.train[:60]])
    frames = np.concatenate([np.arange(60), np.arange(60)]) // 4
    from mitogan.tiles import TileSet

    ts = TileSet(tiles, np.repeat([0, 1], 60).astype(np.int32), frames.astype(np.int32), np.zeros((120, 2), np.int32))
    m = evaluate(ts, ref.train[60:120], holdout=0.5)["metrics"]
    assert m["heldout_copies_of_train"] > 0 and all(np.isfinite(v) for v in m.values() if v is not None)


def test_mismatched_sizes_and_tiny_inputs_are_clear_errors(real, ref):
    with pytest.raises(InputError, match="16x16 px but the real ones are 32x32"):
        evaluate(real, np.zeros((20, 1, 16, 16), np.float32))
    with pytest.raises(InputError, match="need more than k=5"):
        evaluate(real, ref.train[:5])
    with pytest.raises(InputError, match="at least 6 on each side"):
        evaluate(real.subset(np.arange(8)), ref.train[:20])


def test_in_training_evaluator_caches_the_real_side(real, tmp_path, monkeypatch):
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    ev = InTrainingEvaluator(real, n_fake=40)
    fake = damage(ev.reference.train, "blur", 1.0)[:40]
    out = ev(fake)
    assert {"primary", "fidelity", "diversity_gap", "coverage_fluo", "vendi_fake"} <= set(out)
    assert all(isinstance(v, float) for v in out.values())
    assert len(list((tmp_path / "metrics").glob("reference-*.npz"))) == 1
    assert InTrainingEvaluator(real, n_fake=40)(fake) == out  # from the cache, same numbers


def test_cli_evaluate_tiles_and_frames(real, ref, tmp_path, capsys):
    save_tiles(tmp_path / "real.npz", real)
    np.save(tmp_path / "fake.npy", ref.train[:60])
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "fake.npy"), "--out",
                 str(tmp_path / "out"), "-q"]) == 0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["n_fake"] == 60 and saved["protocol"]["split"] == "videos"
    assert "realism_gap" in capsys.readouterr().out
    # frames (a TIFF stack) are cut into tiles of the tiles file's size
    import tifffile

    frames = ((np.concatenate([t[0] for t in ref.train[:40]], 0).reshape(10, 128, 32) + 1) * 100).astype(np.uint16)
    tifffile.imwrite(tmp_path / "fake.tif", np.concatenate([frames] * 4, axis=2))  # (10, 128, 128)
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "fake.tif"), "--out",
                 str(tmp_path / "out2"), "-q"]) == 0
    assert json.loads((tmp_path / "out2" / "metrics.json").read_text())["n_fake"] == 160
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "missing.npz"), "--out",
                 str(tmp_path / "o3")]) == 2
    assert "missing.npz" in capsys.readouterr().err
