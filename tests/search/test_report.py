"""Reading trials back: finished vs stopped (ASHA or a non-convergence reason), and best-trial choice."""

import json

from search.report import TrialRecord, best_trial, collect_trials
from search.run import _ended_early


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


def test_ties_are_broken_by_diversity(tmp_path):
    a = TrialRecord("a", tmp_path, {}, [{"step": 1, "primary": 1.0, "finished": 1, "diversity": 0.2}])
    b = TrialRecord("b", tmp_path, {}, [{"step": 1, "primary": 1.0, "finished": 1, "diversity": 0.9}])
    assert best_trial([a, b], "min").trial_id == "b"


def test_optuna_is_told_pruned_only_for_early_ends():
    cfg = {"train.steps": 100}
    assert _ended_early({"step": 40, "finished": 0, "config": cfg})  # ASHA
    assert _ended_early({"step": 100, "finished": 0, "stop_reason": "collapse", "config": cfg})
    assert not _ended_early({"step": 100, "finished": 0, "config": cfg})  # reached the end
    assert not _ended_early({"step": 100, "finished": 1, "config": cfg})
