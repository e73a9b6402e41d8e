"""`mitogan search --time-budget`: once the search has run that long no trial starts; the running ones finish,
and the search ends like any other (report, export, search.json "finished"), saying how many trials ran.
A real search: the CLI, a local Ray, Optuna's journal."""

from __future__ import annotations

import json

import pytest

from tests.search.resilience import SPACE, new_search_args, rows, run

pytestmark = pytest.mark.slow


def test_a_search_stops_starting_trials_when_its_time_budget_is_spent(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    storage = str(tmp_path / "runs")
    out = run(new_search_args(space, storage, "b", trials=200, extra=["--time-budget", "12s", "--no-wandb"]))
    assert out.returncode == 0, out.stderr[-3000:]
    launch = json.loads((tmp_path / "runs" / "b" / "search.json").read_text())
    ran = launch["trials_ended"]
    assert launch["status"] == "finished" and launch["ended_by"] == "time budget" and 1 <= ran < 200, launch
    assert f"time budget of 12s spent: {ran} of 200 trials ran" in out.stdout
    trials = rows(storage, "b")
    assert len(trials) == ran  # no trial was started and left behind
    from search.report import collect_trials

    assert all(t.status in ("finished", "stopped") for t in collect_trials(tmp_path / "runs" / "b"))
    assert any(t.status == "finished" for t in collect_trials(tmp_path / "runs" / "b"))  # the running ones finished
    assert (tmp_path / "runs" / "b" / "report" / "index.html").is_file()
    assert (tmp_path / "runs" / "b" / "best").is_dir()
    again = run(["--resume", "b", "--storage", storage, "-q"])
    assert again.returncode == 0 and "already finished" in again.stdout
