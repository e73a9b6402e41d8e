"""Reading trials back: finished vs stopped (ASHA or a non-convergence reason), and best-trial choice."""

import json
import shutil

from search.report import TrialRecord, best_trial, collect_trials, stop_reason_of


def write_trial(root, name, params, results, error=None):
    d = root / name
    d.mkdir()
    (d / "params.json").write_text(json.dumps(params))
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
    if error:
        (d / "error.txt").write_text(error)


def test_status_and_stop_reasons(tmp_path):
    p = {"train.steps": 100}
    write_trial(tmp_path, "a", p, [{"step": 50, "primary": 1.5}, {"step": 100, "primary": 1.2, "finished": 1}])
    # ended by Ray right at the last step (no final report): still a finished trial
    write_trial(tmp_path, "b", p, [{"step": 100, "primary": 1.1, "finished": 0, "stop_reason": ""}])
    write_trial(tmp_path, "c", p, [{"step": 50, "primary": 1.9, "finished": 0, "stop_reason": ""}])  # ASHA
    write_trial(tmp_path, "d", p, [{"step": 20, "primary": 2.0, "stop_reason": "nonfinite"}])
    write_trial(tmp_path, "e", p, [], error="ActorDiedError")
    t = {r.dir.name: r for r in collect_trials(tmp_path)}
    assert [t[k].status for k in "abcde"] == ["finished", "finished", "stopped", "stopped", "error"]
    assert [t[k].stop_reason for k in "abcde"] == ["", "", "asha", "nonfinite", "error"]
    assert best_trial(list(t.values()), "min").dir.name == "b"
    assert best_trial(list(t.values()), "max").dir.name == "a"  # stopped trials never win


def test_a_trial_that_failed_and_was_continued_reads_by_its_last_attempt(tmp_path):
    # Ray's error.txt keeps every failure; a trial whose worker was lost and that continued from its checkpoint
    # on another node has results dated after its last failure (the lost-worker tests: PBT and ASHA)
    p = {"train.steps": 100}
    failure = "Failure # {} (occurred at {})\nThe actor is unavailable: RpcError: Socket closed\n\n"
    twice = failure.format(1, "2026-12-04_20-32-35") + failure.format(2, "2026-12-04_20-40-00")
    rows = lambda *dates: [{"step": 50 * (i + 1), "primary": 1.5, "date": d} for i, d in enumerate(dates)]  # noqa: E731
    write_trial(tmp_path, "recovered", p, rows("2026-12-04_20-32-30", "2026-12-04_20-41-02"), error=twice)
    write_trial(tmp_path, "stopped", p, rows("2026-12-04_20-32-30", "2026-12-04_20-33-02")[:1],
                error=failure.format(1, "2026-12-04_20-32-35"))  # no result after the failure: it failed
    write_trial(tmp_path, "failed_last", p, rows("2026-12-04_20-32-30", "2026-12-04_20-39-00"), error=twice)
    write_trial(tmp_path, "unknown", p, rows("2026-12-04_20-32-30", "2026-12-04_20-41-02"), error="a traceback")
    t = {r.dir.name: r for r in collect_trials(tmp_path)}
    assert t["recovered"].status == "finished" and t["recovered"].stop_reason == ""
    assert t["recovered"].failed_at == "2026-12-04_20-40-00"  # the last failure, not the first
    assert [t[k].status for k in ("stopped", "failed_last", "unknown")] == ["error"] * 3  # no header: failed


def test_ties_are_broken_by_diversity(tmp_path):
    a = TrialRecord("a", tmp_path, {}, [{"step": 1, "primary": 1.0, "finished": 1, "diversity": 0.2}])
    b = TrialRecord("b", tmp_path, {}, [{"step": 1, "primary": 1.0, "finished": 1, "diversity": 0.9}])
    assert best_trial([a, b], "min").trial_id == "b"


def test_one_stop_reason_rule_for_report_wandb_and_optuna():
    assert stop_reason_of({"step": 40, "finished": 0}, 100) == "asha"
    assert stop_reason_of({"step": 100, "finished": 0, "stop_reason": "collapse"}, 100) == "collapse"
    assert stop_reason_of({"step": 100, "finished": 0}, 100) == ""  # reached the end
    assert stop_reason_of({"step": 100, "finished": 1}, 100) == ""
    assert stop_reason_of({"step": 100, "finished": 1}, 100, error=True) == "error"


def make_search(root, n_finished, n_stopped=2):
    """A search folder as Ray and Optuna leave it: trial folders with sample grids, search.json, optuna.log."""
    import numpy as np
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from mitogan.viz import save_image_grid

    root.mkdir()
    (root / "search.json").write_text(json.dumps({"space": {"fixed": {"train.steps": 40}}}))
    study = optuna.create_study(study_name=root.name, storage=JournalStorage(JournalFileBackend(str(root / "optuna.log"))))
    rng = np.random.default_rng(0)
    for i in range(n_finished + n_stopped):
        lr, kind = float(10 ** rng.uniform(-4, -2)), ["bce", "hinge"][i % 2]
        done = i < n_finished
        steps = [20, 40] if done else [20]
        results = [{"step": s, "primary": lr * 100 + s / 100, "fidelity": 0.5, "diversity_gap": 0.2,
                    "finished": int(done and s == 40), "stop_reason": "" if done else "collapse"} for s in steps]
        write_trial(root, f"trial_{i:02d}", {"train.steps": 40, "optim.lr_d": lr, "loss.kind": kind}, results)
        save_image_grid(np.zeros((4, 1, 8, 8), np.float32), root / f"trial_{i:02d}" / "samples" / "step_000020.png")
        t = study.ask({"optim.lr_d": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
                       "loss.kind": optuna.distributions.CategoricalDistribution(["bce", "hinge"])})
        study.tell(t, results[-1]["primary"] if done else None,
                   state=optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED)
    return root


def test_finished_trials_are_ranked_by_the_judged_gap_when_every_one_was_judged(tmp_path):
    from mitogan.metrics.evaluate import judged_value
    from search.report import write_report

    p = {"train.steps": 100}
    done = lambda primary, c2st_gap: {"step": 100, "primary": primary, "finished": 1, "c2st_gap": c2st_gap,  # noqa: E731
                                      "judged_gap": judged_value(primary, c2st_gap)}
    # the smooth-texture case: best primary, but a classifier tells every tile apart
    write_trial(tmp_path, "lenient", p, [done(-0.12, 0.96)])
    write_trial(tmp_path, "judged", p, [done(0.02, 0.67)])
    write_trial(tmp_path, "stopped", p, [{"step": 50, "primary": -0.5, "finished": 0, "stop_reason": ""}])
    trials = collect_trials(tmp_path)
    assert best_trial(trials, "min").dir.name == "judged"
    assert write_report(tmp_path).read_text().count("ranked by judged_gap") == 1
    # one finished trial without a judge (its C2ST failed): every finished trial is ranked by the primary
    write_trial(tmp_path, "unjudged", p, [{"step": 100, "primary": 0.5, "finished": 1}])
    trials = collect_trials(tmp_path)
    assert best_trial(trials, "min").dir.name == "lenient"
    assert "(not every finished trial has a C2ST)" in write_report(tmp_path).read_text()


def test_the_judged_gap_folds_the_c2st_in_as_one_more_component():
    from mitogan.metrics.evaluate import judged_value

    assert judged_value(0.0, 0.0) == 0.0
    import importlib

    import search.trials as T

    E = importlib.import_module("mitogan.metrics.evaluate")  # the module, not the function of the same name
    assert T.JUDGED_NAME == E.JUDGED_NAME  # the name search/ reads results by, kept without importing the metrics
    assert abs(judged_value(0.3, 0.0) - 0.3) < 1e-12 and abs(judged_value(0.0, 0.4) - 0.4) < 1e-12
    assert abs(judged_value(0.5, 0.5) - 0.75) < 1e-12
    assert judged_value(1.2, 0.1) > judged_value(1.1, 0.9) > judged_value(0.9, 0.9)  # beyond 1: the primary's excess
    assert judged_value(-0.1, 0.5) < judged_value(0.0, 0.5)  # better than the training split still counts


def test_report_views_and_no_importances_from_too_few_trials(tmp_path, capfd):
    from search.report import write_report

    search = make_search(tmp_path / "few", n_finished=4)
    capfd.readouterr()  # Optuna's messages while the fixture was built
    page = write_report(search).read_text()
    summary = json.loads((tmp_path / "few" / "report" / "summary.json").read_text())
    assert summary["importances"] == {} and "at least 10" in summary["importances_note"]
    assert "parallel_coordinates.png" in page and "primary_vs_step.png" in page
    assert page.count('src="samples/trial_') == 6  # one grid per trial, stopped ones included
    assert "mode collapse" in page  # stop reasons explained
    assert (tmp_path / "few" / "report" / "parallel_coordinates.png").stat().st_size > 5000
    assert capfd.readouterr().err == ""


def test_a_big_search_shows_and_copies_the_grids_of_its_best_trials_only(tmp_path, monkeypatch):
    """A 1,000-trial search does not copy 1,000 grids beside its page: the best ``GALLERY`` trials' grids."""
    from search import report
    from search.report import collect_trials, write_report

    search = make_search(tmp_path / "big", n_finished=5)
    monkeypatch.setattr(report, "GALLERY", 3)
    page = write_report(search).read_text()
    best3 = sorted((t for t in collect_trials(search) if t.status == "finished"), key=lambda t: t.primary)[:3]
    assert sorted(p.name for p in (search / "report" / "samples").iterdir()) == \
        sorted(f"trial_{t.trial_id}.png" for t in best3)
    assert page.count('src="samples/trial_') == 3 and "the 3 best trials of 7" in page


def test_importances_once_enough_trials_finished_without_optuna_noise(tmp_path, capfd):
    from search.report import write_report

    search = make_search(tmp_path / "many", n_finished=12)
    capfd.readouterr()
    write_report(search)
    summary = json.loads((tmp_path / "many" / "report" / "summary.json").read_text())
    assert set(summary["importances"]) == {"optim.lr_d", "loss.kind"}
    assert capfd.readouterr().err == ""


def test_real_vs_generated_panel_from_the_trials_cached_tiles(tmp_path, monkeypatch):
    import numpy as np

    from mitogan.tiles import TileSet, save_tiles
    from search.report import write_report

    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path / "cache"))
    search = make_search(tmp_path / "s", n_finished=2)
    page = write_report(search).read_text()
    assert "real_vs_generated.png" not in page  # no cached tiles: the samples alone, no error
    n = 80  # the tiles the best trial used, in the preprocessing cache under its key
    ts = TileSet(np.random.default_rng(0).uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32),
                 np.repeat(np.arange(5), 16).astype(np.int32), np.tile(np.arange(16), 5).astype(np.int32),
                 np.zeros((n, 2), np.int32))
    save_tiles(tmp_path / "cache" / "tiles" / "k123.npz", ts)
    for trial in search.glob("trial_*"):
        (trial / "data.json").write_text(json.dumps({"cache_key": "k123"}))
    page = write_report(search).read_text()
    assert "real_vs_generated.png" in page
    assert (search / "report" / "real_vs_generated.png").stat().st_size > 1000


def test_damaged_trial_files_give_one_line_and_a_torn_last_line_is_dropped(tmp_path, capsys):
    from mitogan.cli import main

    p = {"train.steps": 100}
    write_trial(tmp_path, "a", p, [{"step": 50, "primary": 1.5}, {"step": 100, "primary": 1.2, "finished": 1}])
    with open(tmp_path / "a" / "result.json", "a") as f:
        f.write('{"step": 100, "prim')  # the driver was killed mid-write
    assert [t.step for t in collect_trials(tmp_path)] == [100]
    for name, damage in (("result.json", '{"step": 1}\n\x00garbage\n{"step": 2}\n'), ("params.json", "{not json"),
                         ("result.json", b"\xff\xfe\x00")):
        bad = tmp_path / "b"
        shutil.rmtree(bad, ignore_errors=True)
        write_trial(tmp_path, "b", p, [{"step": 1}])
        (bad / name).write_bytes(damage if isinstance(damage, bytes) else damage.encode())
        for argv in (["search", "--report", str(tmp_path)], ["export", str(tmp_path), "--out", str(tmp_path / "x")]):
            (tmp_path / "search.json").write_text("{}")  # `mitogan export` recognises a search folder by it
            assert main(argv) == 2, (name, argv)
            err = capsys.readouterr().err
            assert err.startswith("mitogan: error: ") and len(err.strip().splitlines()) == 1, err
            assert str(bad / name) in err, err
