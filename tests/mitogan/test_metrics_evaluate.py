import importlib
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


@pytest.fixture(scope="module")
def honest():
    """New data of the same kind: 8 other simulated movies (what a good generator would produce)."""
    from mitogan.simulate import SimParams, simulate_video

    return videos_to_tiles([simulate_video(SimParams(size=64, frames=6), s)[0] for s in range(100, 108)], 32).tiles


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


FAST = ("fidelity", "vendi", "authenticity")


def test_training_split_is_real_but_a_copy_and_noise_scores_one(real, ref, honest):
    # fidelity: 0 = a disjoint real split of the same data (the training split is one), 1 = noise;
    # but the training split IS the training data: the copy test flags it and the primary is as bad as noise
    copy = evaluate(real, ref.train, reference=ref, metrics=FAST)
    assert abs(copy["metrics"]["fidelity"]) < 0.1 and copy["metrics"]["authenticity_gap"] > 0.9
    assert copy["metrics"]["copying"] == 1.0 and copy["primary"]["value"] > 0.9
    new = evaluate(real, honest, reference=ref, metrics=FAST)
    assert new["metrics"]["authenticity_gap"] < 0.1 and new["metrics"]["copying"] == 0.0
    assert new["primary"]["value"] < copy["primary"]["value"] - 0.3
    noise = evaluate(real, damage(honest, "noise", 1.0, seed=5), reference=ref, metrics=FAST)["primary"]["value"]
    assert noise == pytest.approx(1.0, abs=0.05)


def test_a_collapsed_generator_cannot_beat_a_diverse_realistic_one(real, ref, honest):
    two = honest[np.arange(len(honest)) % 2]  # two perfect real tiles, repeated
    diverse = evaluate(real, honest, reference=ref, metrics=FAST)["primary"]["value"]
    collapsed = evaluate(real, two, reference=ref, metrics=FAST)
    assert collapsed["metrics"]["diversity_gap"] > 0.8 and collapsed["primary"]["value"] > diverse + 0.5


def test_tiles_that_share_a_lattice_of_artefacts_are_less_diverse_than_real_ones(real, ref, honest):
    # how GANs often collapse: every tile carries the same fine pattern (transposed-convolution artefacts, here at
    # 2.5 % and 5 % of the range); the blurred layout averages a 2 px checkerboard away, the pixels' pairwise
    # correlation does not. Real sets sit at their own level (held-out or training split, whichever is the more
    # alike): no gap for them.
    board = np.indices(honest.shape[-2:]).sum(0) % 2 * 2 - 1.0
    gaps = {}
    for name, tiles in {"honest": honest, "train": ref.train, "lattice": np.clip(honest + 0.05 * board, -1, 1),
                        "stronger": np.clip(honest + 0.1 * board, -1, 1)}.items():
        m = evaluate(real, tiles.astype(np.float32), reference=ref, metrics=("vendi",))["metrics"]
        parts = [m[f"diversity_gap_{p}"] for p in ("features", "layout", "correlation")]
        assert m["diversity_gap"] == pytest.approx(1 - np.prod([1 - p for p in parts]), abs=1e-12)
        gaps[name] = (m["diversity_gap_layout"], m["diversity_gap_correlation"])
    assert gaps["honest"][1] == gaps["train"][1] == 0.0
    assert gaps["lattice"][0] < 0.05 < gaps["lattice"][1] < gaps["stronger"][1]


def test_evaluate_is_deterministic_and_kid_spread_is_a_real_bootstrap(real, ref):
    fake = damage(ref.train, "blur", 1.0)
    metrics = ("fidelity", "vendi", "authenticity", "kid_fluo", "memorisation")
    a, b = evaluate(real, fake, reference=ref, seed=3, metrics=metrics), evaluate(real, fake, reference=ref, seed=3, metrics=metrics)
    assert a["metrics"] == b["metrics"]
    assert a["metrics"]["kid_fluo_std"] > 0  # n < 1000: subsets are the whole set, the bootstrap is not


def test_memorisation_sees_copies_of_training_tiles_and_survives_repeated_frames(real, ref):
    copies = evaluate(real, ref.train, reference=ref, metrics=("memorisation",))["metrics"]
    assert copies["memorisation_ratio"] < 0.05 and copies["copy_fraction"] > 0.9
    # one movie saved twice: the two files are one video to the split (copying.video_twins), so no held-out
    # tile is a copy of a training tile, and nothing divides by zero
    tiles = np.concatenate([ref.train[:60], ref.train[:60]])
    frames = np.concatenate([np.arange(60), np.arange(60)]) // 4
    from mitogan.tiles import TileSet

    ts = TileSet(tiles, np.repeat([0, 1], 60).astype(np.int32), frames.astype(np.int32), np.zeros((120, 2), np.int32))
    r = evaluate(ts, ref.train[60:120], holdout=0.5, metrics=("memorisation",))
    m = r["metrics"]
    assert r["protocol"]["twin_videos_merged"] == 1 and r["protocol"]["split"] == "time blocks"
    assert m["heldout_copies_of_train"] == 0 and all(np.isfinite(v) for v in m.values() if v is not None)


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


def test_evaluate_keeps_the_real_side_and_a_second_call_gives_the_same_numbers(real, honest, tmp_path, monkeypatch):
    """evaluate caches the real side (split, threshold, features) by content: another generator evaluated
    against the same real data skips it, and nothing about the numbers changes."""
    import mitogan.metrics.reference as reference

    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    first = evaluate(real, honest[:60], metrics=("fidelity", "vendi"))  # builds the real side and keeps it
    assert len(list((tmp_path / "metrics").glob("reference-*.npz"))) == 1
    monkeypatch.setattr(reference.Reference, "build", lambda *a, **k: pytest.fail("the real side was recomputed"))
    second = evaluate(real, honest[:60], metrics=("fidelity", "vendi"))
    assert first["metrics"] == second["metrics"] and first["primary"] == second["primary"]


def test_metrics_that_read_only_the_tiles_run_beside_the_features_with_the_same_numbers(real, ref, honest, monkeypatch):
    # the copy tests and the C2ST run while the generated tiles' features are computed in another thread
    import mitogan.metrics.registry as registry

    assert {"authenticity", "memorisation", "c2st"} <= registry.PIXEL_METRICS
    assert not {"fidelity", "vendi", "kid_fluo", "prdc_fluo"} & registry.PIXEL_METRICS
    import torch

    names = ("fidelity", "authenticity", "vendi", "memorisation", "c2st")
    threads = torch.get_num_threads()
    together = evaluate(real, honest, reference=ref, metrics=names)
    assert torch.get_num_threads() == threads  # the C2ST's and the scattering's one-thread blocks overlapped
    # the module, not the function ``mitogan.metrics.evaluate`` that the package exports under the same name
    monkeypatch.setattr(importlib.import_module("mitogan.metrics.evaluate"), "PIXEL_METRICS", set())
    one_by_one = evaluate(real, honest, reference=ref, metrics=names)
    assert together["metrics"] == one_by_one["metrics"] and list(together["metrics"]) == list(one_by_one["metrics"])
    assert together["primary"] == one_by_one["primary"]
    judged = together["judged"]  # the C2ST ran: the primary with its gap folded in, as a search ranks trials
    from mitogan.metrics.evaluate import judged_value

    assert judged["name"] == "judged_gap" and judged["value"] == judged_value(together["primary"]["value"],
                                                                                together["metrics"]["c2st_gap"])
    assert judged["value"] >= together["primary"]["value"] and "judged" not in evaluate(real, honest, reference=ref,
                                                                                          metrics=names[:4])


def test_a_process_allowed_one_thread_computes_the_features_in_its_own_thread(real, ref, honest, monkeypatch):
    # a search trial given one CPU keeps evaluate on one core; with two, the features go to a second thread
    import threading

    import torch

    import mitogan.metrics.features as features

    where = {1: [], 2: []}
    describe = features.describe
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            monkeypatch.setattr(features, "describe",
                                lambda *a, n=n, **k: where[n].append(threading.current_thread()) or describe(*a, **k))
            evaluate(real, honest, reference=ref, metrics=("fidelity", "authenticity"))
    finally:
        torch.set_num_threads(threads)
    main = threading.main_thread()
    assert where[1] and all(t is main for t in where[1])  # the generated tiles' (and any calibration's) features
    assert where[2][-1] is not main  # the generated tiles' features, beside the copy test


def test_the_copy_tests_in_pieces_on_two_threads_give_the_numbers_of_one_piece_on_one(real, ref, honest, monkeypatch):
    # the copy tests run as blocks of queries, tasks of their own beside the features; each query's numbers are
    # its own, so the blocks, the threads and their order change nothing
    import threading

    import torch

    import mitogan.metrics.builtin as builtin
    from mitogan.metrics.evaluate import _run_metrics
    from mitogan.metrics.registry import METRICS, MetricContext

    calls = []
    ref.copy_null  # noqa: B018 (built before: the index's own calls are not the copy tests')
    distances = ref.copies.distances
    monkeypatch.setattr(ref.copies, "distances",
                        lambda q, *a, **k: calls.append((len(q), threading.current_thread())) or distances(q, *a, **k))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = _run_metrics(MetricContext(ref, honest), ("fidelity", "authenticity"))[0]
    finally:
        torch.set_num_threads(threads)
    blocks = builtin.COPY_BLOCKS["whole"]
    assert len(calls) == blocks and sum(n for n, _ in calls) == len(honest)
    assert all(t is not threading.main_thread() for _, t in calls)
    monkeypatch.setattr(builtin, "COPY_BLOCKS", {"whole": 1, "part": 1})
    one = METRICS["authenticity"](MetricContext(ref, honest))[0]
    assert len(calls) == blocks + 1 and calls[-1][1] is threading.main_thread()
    assert one == {k: v for k, v in two.items() if k in one} and one["copy_share"] == two["copy_share"]
