"""Trials that ASHA stops (Ray kills their actors mid-training) still leave complete W&B runs and Optuna
trials: a real small search on a local Ray, its offline ``.wandb`` files read back and compared row by row
with Ray's own results (``result.json``)."""

from __future__ import annotations

import math

import pytest

from tests.search.wandb_records import read_run
from tests.search.spaces import tiny_space

pytestmark = pytest.mark.slow

SPACE = tiny_space("asha", {"train.steps": 60, "train.report_every": 10, "train.eval_every": 10,
                            "train.sample_every": 20, "train.checkpoint_every": 30}, """
  - {name: optim.lr_g, type: float, low: 0.00001, high: 0.01, log: true}
  - {name: augment.p, type: float, low: 0.0, high: 1.0}
""")


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    from search.run import SearchOptions, run_search

    root = tmp_path_factory.mktemp("asha")
    (root / "asha.yaml").write_text(SPACE)
    opts = SearchOptions(space=str(root / "asha.yaml"), trials=6, max_concurrent=2, storage=str(root / "runs"),
                         name="asha", seed=1, sampler="random", asha=True, grace_steps=10, sim_videos=3,
                         sim_frames=4, progress=False, report=False)
    return run_search(opts)


def wandb_runs(search_dir):
    runs = [read_run(p) for p in search_dir.glob("wandb/offline-run-*/run-*.wandb")]
    return {r["run"]["name"].removeprefix("trial_"): r for r in runs if r["run"]["job_type"] == "trial"}, \
        [r for r in runs if r["run"]["job_type"] == "search"]


def same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-6))


def test_stopped_trials_have_every_ray_row_in_wandb_and_an_exit_record(search_dir):
    from search.report import collect_trials

    trials = collect_trials(search_dir)
    runs, search = wandb_runs(search_dir)
    assert len(trials) == 6 and set(runs) == {t.trial_id for t in trials}
    assert any(t.stop_reason == "asha" for t in trials), "ASHA should stop some of 6 trials at rf=3"
    for t in trials:
        rec = runs[t.trial_id]
        assert rec["exit"] == 0, f"{t.trial_id}: no exit record"
        assert rec["summary"]["stop_reason"] == (t.stop_reason or "finished")
        assert rec["run"]["group"] == "asha" and "space:asha" in rec["run"]["tags"]
        rows = {}
        for row in rec["history"]:
            rows.setdefault(row["_step"], {}).update(row)
        assert sorted(rows) == sorted({r["step"] for r in t.results})  # no row lost, keyed by generator step
        for r in t.results:
            for key in ("loss_d", "loss_g", "primary", "fidelity", "diversity_gap"):
                if key in r:
                    assert same(rows[r["step"]][key], r[key]), (t.trial_id, r["step"], key)
            if r.get("samples_png"):
                assert rows[r["step"]].get("samples/_type") == "image-file"
    assert len(search) == 1 and search[0]["summary"]["trials/nrows"] == 6


def test_optuna_trials_carry_ray_ids_and_step_keyed_values(search_dir):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.report import collect_trials

    study = optuna.load_study(study_name="asha",
                              storage=JournalStorage(JournalFileBackend(str(search_dir / "optuna.log"))))
    by_ray = {t.user_attrs["ray_trial_id"]: t for t in study.trials}
    for t in collect_trials(search_dir):
        ot = by_ray[t.trial_id]
        assert ot.user_attrs["stop_reason"] == (t.stop_reason or "finished")
        expect = optuna.trial.TrialState.COMPLETE if t.status == "finished" else optuna.trial.TrialState.PRUNED
        assert ot.state == expect
        assert set(ot.intermediate_values) <= {r["step"] for r in t.results}  # generator steps, not iterations
        assert max(ot.intermediate_values) >= 10
