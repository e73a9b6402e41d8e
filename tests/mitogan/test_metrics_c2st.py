"""The classifier two-sample test: seeded, ~0.5 on two draws of one distribution, far above it on damaged
tiles, its baseline computed once per reference, and bad input as one line. Small budget, 32 px tiles."""

import numpy as np
import pytest
import torch

from mitogan.errors import InputError
from mitogan.metrics import METRICS
from mitogan.metrics.c2st import c2st, c2st_accuracy, calibrated_gap
from mitogan.metrics.evaluate import real_reference
from mitogan.metrics.proof import damage, videos_to_tiles
from mitogan.metrics.registry import MetricContext

FAST = {"max_epochs": 15}  # 15 passes over a fold's ~130 training tiles (~30 batches): enough at 32 px


@pytest.fixture(scope="module")
def real():
    """8 short simulated movies cut into 32 px tiles (192 tiles), with their provenance."""
    from mitogan.simulate import SimParams, simulate_video

    return videos_to_tiles([simulate_video(SimParams(size=64, frames=6), s)[0] for s in range(8)], 32)


@pytest.fixture(scope="module")
def halves(real):
    """Two disjoint random halves of the same tiles: one distribution, drawn twice."""
    order = np.random.default_rng(0).permutation(len(real.tiles))
    return real.tiles[order[::2]], real.tiles[order[1::2]]


def test_same_seed_same_numbers_and_torch_threads_restored(halves):
    a, b = halves
    threads = torch.get_num_threads()
    r1, r2 = c2st_accuracy(a, b, seed=3, batches=10), c2st_accuracy(a, b, seed=3, batches=10)
    differ = [k for k in r1 if k != "seconds" and r1[k] != r2[k]]  # everything but the wall time is equal
    assert differ == [] and r1.keys() == r2.keys()
    assert torch.get_num_threads() == threads
    assert (r1["folds"], r1["n_a"], r1["n_b"], r1["n_per_side"], r1["batch_size"]) == (3, 96, 96, 96, 64)
    assert r1["batches"] == 10
    assert c2st_accuracy(a, b, seed=3, max_epochs=2)["batches"] == 4  # the epoch cap: ceil(2 * 2 * 64 / 64)


def test_widths_set_the_judges_cnn_and_train_classifier_balances_unequal_sides(halves, monkeypatch):
    from mitogan.metrics import c2st as mod

    built = []
    net = mod._net
    monkeypatch.setattr(mod, "_net", lambda size, widths=mod._WIDTHS: built.append(widths) or net(size, widths))
    a, b = halves
    c2st_accuracy(a, b, seed=0, batches=2)
    c2st_accuracy(a, b, seed=0, batches=2, widths=(8, 8, 8))
    assert built == [mod._WIDTHS] * 3 + [(8, 8, 8)] * 3  # one CNN per fold, of the widths asked for
    # 20 tiles labelled 1 and 172 labelled 0, all of one distribution: the logits can only learn the prior, about
    # log(20 / 172) = -2.2 with random batches and 0 with balanced ones (the density ratio of the two sides)
    x, y = torch.from_numpy(np.concatenate([a, b])), torch.cat([torch.ones(20), torch.zeros(172)])
    mean = {balanced: float(mod.logits_of(mod.train_classifier(x, y, 100, 32, torch.Generator().manual_seed(0),
                                                                balanced=balanced), x).mean())
            for balanced in (False, True)}
    assert mean[False] < -1.2 and abs(mean[True]) < 0.8, mean


def test_two_draws_of_one_distribution_are_near_chance(halves):
    # Under the null every held-out prediction is a coin flip: 192 of them (all 3 folds) give a binomial sd
    # of sqrt(0.25 / 192) = 0.036; 0.5 +- 0.11 is 3 sd (neighbouring frames make them a little dependent).
    r = c2st_accuracy(*halves, seed=0, **FAST)
    assert abs(r["accuracy"] - 0.5) < 0.11, r


@pytest.mark.parametrize("kind, level, above", [("blur", 1.0, 0.8), ("noise", 0.1, 0.65)])
def test_real_vs_damaged_is_clearly_separable(halves, kind, level, above):
    # measured over seeds 0-2 at this budget: blur 0.89-0.91, 10 % noise 0.69-0.76; 0.65 is 4 binomial sd
    # (0.036, see above) over chance
    a, b = halves
    r = c2st_accuracy(a, damage(b, kind, level, seed=1), seed=0, **FAST)
    assert r["accuracy"] > above, r


def test_registered_metric_reports_baseline_once_and_cannot_see_copies(real, monkeypatch):
    import mitogan.metrics.c2st as C

    assert METRICS["c2st"] is c2st
    monkeypatch.setitem(C.C2ST_BUDGET, "max_epochs", 30)  # 48 tiles a side: 30 batches a fold
    ref = real_reference(real)
    calls = []
    counting = lambda *a, **k: calls.append(1) or c2st_accuracy(*a, **k)  # noqa: E731
    monkeypatch.setattr(C, "c2st_accuracy", counting)
    # exact copies of the training split ARE the baseline's second set: a classifier sees real tiles, gap 0
    copies, sizes = c2st(MetricContext(ref, ref.train.copy()))
    assert copies["c2st_accuracy"] == copies["c2st_baseline"] and copies["c2st_gap"] == 0.0
    blurred, _ = c2st(MetricContext(ref, damage(ref.train, "blur", 1.0)))
    assert len(calls) == 3  # baseline once (cached on the reference), then one per generated set
    # blur sigma 1: gap 0.53 / 0.74 / 0.88 for seeds 0 / 1 / 2 at this budget
    assert blurred["c2st_baseline"] == copies["c2st_baseline"] and blurred["c2st_gap"] > 0.4
    # the information (1 - held-out cross-entropy in bits) follows: copies at the baseline's, blur above it
    assert copies["c2st_information"] == copies["c2st_information_baseline"]
    assert blurred["c2st_information"] > copies["c2st_information"] + 0.2
    assert sizes["n_per_side"] == min(len(ref.heldout), len(ref.train)) and sizes["batches"] > 0
    few, why = c2st(MetricContext(ref, ref.train[:8]))  # too few to test: no value, and why
    assert all(v is None for v in few.values()) and "fewer than" in why["skipped"]


def test_a_cached_reference_keeps_its_baseline_for_the_next_trial(real, monkeypatch, tmp_path):
    # a search's next finished trial (a new process, the reference read from the cache) reads the baseline kept
    # beside the reference's entry: one CNN per trial instead of two, the same numbers as computed afresh
    import mitogan.metrics.c2st as C

    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(C.C2ST_BUDGET, "max_epochs", 5)
    fake = damage(real.tiles, "blur", 1.0)
    want, _ = c2st(MetricContext(real_reference(real), fake))  # built afresh, no cache
    calls = []
    counting = lambda *a, **k: calls.append(k["names"][1]) or c2st_accuracy(*a, **k)  # noqa: E731
    monkeypatch.setattr(C, "c2st_accuracy", counting)
    first = real_reference(real, cache=True)
    got, sizes = c2st(MetricContext(first, fake))
    assert got == want and calls == ["training real tiles", "generated tiles"] and not sizes["baseline_cached"]
    kept = list(first.cache_file.parent.glob("c2st-baseline-" + first.cache_file.stem.removeprefix("reference-") + "-*.json"))
    assert len(kept) == 1  # beside the reference's own entry
    again, sizes = c2st(MetricContext(real_reference(real, cache=True), fake))  # a new process would do this
    assert again == want and calls[2:] == ["generated tiles"] and sizes["baseline_cached"]
    monkeypatch.setitem(C.C2ST_BUDGET, "max_epochs", 6)  # another budget: another entry, computed
    c2st(MetricContext(real_reference(real, cache=True), fake))
    assert calls[3:] == ["training real tiles", "generated tiles"]
    kept[0].write_text('{"accuracy": "damaged"}')  # a damaged entry is warned about and recomputed
    monkeypatch.setitem(C.C2ST_BUDGET, "max_epochs", 5)
    assert c2st(MetricContext(real_reference(real, cache=True), fake))[0] == want
    assert calls[5:] == ["training real tiles", "generated tiles"]


def test_calibrated_gap_is_zero_at_baseline_one_when_always_told_apart():
    assert calibrated_gap(0.6, 0.6) == 0.0 and calibrated_gap(0.55, 0.6) == 0.0
    assert calibrated_gap(1.0, 0.6) == 1.0 and calibrated_gap(0.8, 0.6) == pytest.approx(0.5)
    assert 0.0 <= calibrated_gap(1.0, 1.0) <= 1.0  # a baseline of 1 does not divide by zero


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((5, 1, 32, 32)), np.zeros((50, 1, 32, 32)), "has 5 images; .* at least 10 per side"),
    (np.zeros((50, 1, 32, 32)), np.zeros((50, 1, 16, 16)), "16 px but first set are 32 px"),
    (np.zeros((50, 32, 32)), np.zeros((50, 1, 32, 32)), r"shape \(N, 1, S, S\)"),
    (np.zeros((50, 1, 8, 8)), np.zeros((50, 1, 8, 8)), "at least 16 px"),
])
def test_bad_input_is_one_line(a, b, match):
    with pytest.raises(InputError, match=match) as err:
        c2st_accuracy(a.astype(np.float32), b.astype(np.float32))
    assert "\n" not in str(err.value)


def test_cli_evaluate_no_c2st_leaves_it_out(real, tmp_path, capsys):
    import json

    from mitogan.cli import main
    from mitogan.tiles import save_tiles

    save_tiles(tmp_path / "real.npz", real.subset(np.flatnonzero(real.source < 4)))  # 4 movies: quicker
    np.save(tmp_path / "fake.npy", damage(real.tiles[:30], "blur", 1.0))
    assert main(["evaluate", str(tmp_path / "real.npz"), str(tmp_path / "fake.npy"), "--out", str(tmp_path / "out"),
                 "-q", "--no-c2st"]) == 0
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "c2st" not in saved["sample_sizes"] and not any(k.startswith("c2st") for k in saved["metrics"])
    assert "classifier two-sample test" not in capsys.readouterr().out
