"""The driver-side W&B logger, fed the callbacks Ray would make (no Ray run): every result becomes a row
at its generator step, each ending (finished, ASHA, non-convergence, error) closes the run with its exit
state and stop reason, and the search gets a run with a table of all trials. Runs are read back from the
offline ``.wandb`` files."""

from __future__ import annotations

import json

from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.search.wandb_records import read_run


@dataclass
class FakeTrial:  # the attributes of ray.tune.experiment.Trial the logger reads
    trial_id: str
    config: dict
    local_path: str
    path: str | None = None
    last_result: dict = field(default_factory=dict)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def results(steps, reason_at=None):
    out = []
    for i, step in enumerate(steps):
        r = {"step": step, "loss_d": 0.5 + i, "primary": 0.9 - 0.1 * i, "training_iteration": i + 1,
             "stop_reason": "", "finished": 0, "objective": "realism_gap", "pid": 123}
        if step % 20 == 0:
            r.update(fidelity=0.3, diversity_gap=0.2, samples_png=f"samples/step_{step:06d}.png")
        if reason_at is not None and step >= reason_at:
            r["stop_reason"] = "critic_explode"
        out.append(r)
    return out


def make_trial(root, tid, cfg, steps):
    d = root / f"trial_{tid}"
    (d / "samples").mkdir(parents=True)
    from mitogan.viz import save_image_grid

    for s in steps:
        if s % 20 == 0:
            save_image_grid(np.zeros((4, 1, 8, 8), np.float32), d / "samples" / f"step_{s:06d}.png")
    return FakeTrial(tid, {"train.steps": 60, "loss.kind": "wgan_gp", "model.arch": "dcgan", **cfg}, str(d))


def test_every_ending_gives_a_complete_run_and_the_search_a_table(offline):
    from search.trials import pack
    from search.wandb_log import WandbSearchLogger

    logger = WandbSearchLogger(search_name="s", space_name="e2e", fixed={"train.steps": 60}, wandb_dir=offline)
    plan = {"fin": ([10, 20, 40, 60], None, "complete"), "asha": ([10, 20], None, "complete"),
            "boom": ([10, 20, 30], 30, "complete"), "err": ([10], None, "error")}
    trials, sent = [], {}
    for tid, (steps, reason_at, how) in plan.items():
        t = make_trial(offline, tid, {"optim.lr_d": 0.001 if tid != "err" else 1.0}, steps)
        trials.append(t)
        sent[tid] = results(steps, reason_at)
        for r in sent[tid]:
            t.last_result = pack(r)  # as trials hand them to Ray: the trainer's scalars packed (search.trials)
            logger.on_trial_result(0, trials, t, t.last_result)
        if tid == "fin":
            t.last_result = pack(dict(r, finished=1))  # the trainable's final report repeats the last step
            logger.on_trial_result(0, trials, t, t.last_result)
        (logger.on_trial_error if how == "error" else logger.on_trial_complete)(0, trials, t)
    logger.on_experiment_end(trials)

    runs = {rec["run"]["name"]: rec for rec in map(read_run, offline.glob("wandb/offline-run-*/run-*.wandb"))}
    assert set(runs) == {"trial_fin", "trial_asha", "trial_boom", "trial_err", "search_s"}
    want = {"fin": ("finished", 0), "asha": ("asha", 0), "boom": ("critic_explode", 0), "err": ("error", 1)}
    for tid, (reason, code) in want.items():
        rec = runs[f"trial_{tid}"]
        assert rec["exit"] == code and rec["summary"]["stop_reason"] == reason
        assert rec["run"]["group"] == "s" and rec["run"]["job_type"] == "trial"
        assert set(rec["run"]["tags"]) == {"space:e2e", "loss:wgan_gp", "arch:dcgan"}
        rows = {row["_step"]: row for row in rec["history"]}
        assert sorted(rows) == [r["step"] for r in sent[tid]]  # one row per Ray result, keyed by step
        for r in sent[tid]:
            row = rows[r["step"]]
            assert row["loss_d"] == r["loss_d"] and row["primary"] == r["primary"]
            assert (row.get("samples/_type") == "image-file") == ("samples_png" in r)
            assert "pid" not in row
    search = runs["search_s"]
    assert search["run"]["job_type"] == "search"
    assert search["summary"]["trials/_type"] == "table-file" and search["summary"]["trials/nrows"] == 4
    table = json.loads(next(offline.glob(f"wandb/*/files/{search['summary']['trials/path']}")).read_text())
    cols = table["columns"]
    assert {"realism_gap", "fidelity", "diversity_gap", "stop_reason", "optim.lr_d", "samples"} <= set(cols)
    assert "train.steps" not in cols  # fixed keys are not parameters
    reasons = {row[cols.index("trial_id")]: row[cols.index("stop_reason")] for row in table["data"]}
    assert reasons == {tid: r for tid, (r, _) in want.items()}


def test_images_reach_wandb_when_the_driver_cannot_read_the_trial_folder(offline):
    """A trial on another node: its sample grids exist only in its own folder; the driver gets them in the
    results (attach_sample), logs them, keeps them in its copy of the trial folder (for the search table
    and the report), and strips the bytes from the result before Ray's own loggers see it."""
    from search.wandb_log import SAMPLE_BYTES, WandbSearchLogger, attach_sample

    worker = make_trial(offline / "worker", "far", {}, [10, 20, 40])  # the node's own folder
    driver_dir = offline / "driver" / "trial_far"
    driver_dir.mkdir(parents=True)  # the driver's copy holds only what Ray's loggers write there
    trial = FakeTrial("far", worker.config, str(driver_dir))
    logger = WandbSearchLogger(search_name="s2", space_name="e2e", fixed={}, wandb_dir=offline)
    for r in results([10, 20, 40]):
        attach_sample(r, worker.local_path)
        assert (SAMPLE_BYTES in r) == ("samples_png" in r)
        trial.last_result = r
        logger.on_trial_result(0, [trial], trial, r)
        assert SAMPLE_BYTES not in r  # never reaches result.json / progress.csv / the experiment state
    logger.on_trial_complete(0, [trial], trial)
    logger.on_experiment_end([trial])

    # the driver's copy now holds the grids, byte for byte
    for step in (20, 40):
        rel = f"samples/step_{step:06d}.png"
        assert (driver_dir / rel).read_bytes() == (offline / "worker" / "trial_far" / rel).read_bytes()
    runs = {rec["run"]["name"]: rec for rec in map(read_run, offline.glob("wandb/offline-run-*/run-*.wandb"))}
    rows = {row["_step"]: row for row in runs["trial_far"]["history"]}
    assert [s for s, row in sorted(rows.items()) if row.get("samples/_type") == "image-file"] == [20, 40]
    search = runs["search_s2"]
    table = json.loads(next(offline.glob(f"wandb/*/files/{search['summary']['trials/path']}")).read_text())
    assert table["data"][0][table["columns"].index("samples")] is not None  # the final grid in the table


def test_runs_start_off_the_drivers_thread_and_skip_the_package_scan(offline, monkeypatch):
    """Ray's result loop only hands rows over: every W&B run starts in the logger's worker thread, and the
    driver's runs carry no list of installed packages (W&B scans every package's metadata to write it)."""
    import threading

    import mitogan.tracking as tracking
    from search.wandb_log import WandbSearchLogger

    started_in = []
    real_init = tracking.WandbRun.__init__

    def spy(self, *a, **kw):
        started_in.append(threading.current_thread().name)
        real_init(self, *a, **kw)

    monkeypatch.setattr(tracking.WandbRun, "__init__", spy)
    logger = WandbSearchLogger(search_name="s3", space_name="e2e", fixed={}, wandb_dir=offline)
    trial = make_trial(offline, "t", {}, [10, 20])
    for r in results([10, 20]):
        trial.last_result = r
        logger.on_trial_result(0, [trial], trial, r)
    logger.on_trial_complete(0, [trial], trial)
    logger.on_experiment_end([trial])
    assert started_in and threading.current_thread().name not in started_in
    assert set(started_in) == {"mitogan-wandb"}
    files = {p.name for p in offline.glob("wandb/offline-run-*/files/*")}
    assert "requirements.txt" not in files and "wandb-metadata.json" not in files
    runs = {rec["run"]["name"]: rec for rec in map(read_run, offline.glob("wandb/offline-run-*/run-*.wandb"))}
    assert set(runs) == {"trial_t", "search_s3"}
    assert runs["trial_t"]["exit"] == 0 and [row["_step"] for row in runs["trial_t"]["history"]] == [10, 20]


def _samples_elsewhere(config):
    """A trial whose sample grids live where the driver does not look (its node's own disk, as on a
    cluster without a shared filesystem); it ships each grid in its result."""
    import tempfile
    from pathlib import Path

    from ray import tune

    from mitogan.viz import save_image_grid
    from search.wandb_log import attach_sample

    own = Path(tempfile.mkdtemp(prefix="node-"))
    for step in (10, 20):
        rel = f"samples/step_{step:06d}.png"
        save_image_grid(np.full((4, 1, 8, 8), step / 20 - 0.5, np.float32), own / rel)
        tune.report(attach_sample({"step": step, "primary": 0.5 - step / 100, "samples_png": rel}, own))


@pytest.mark.slow  # a real local Ray (~15 s)
def test_a_real_tune_run_gets_images_from_results_and_keeps_the_bytes_out_of_rays_files(tmp_path, monkeypatch):
    """Under real Ray Tune: the grids the trials shipped reach W&B and the driver's trial folders (where the
    report reads them), and Ray's own loggers (result.json, progress.csv) never see the PNG bytes."""
    import shutil
    import tempfile

    import ray
    from ray import tune

    from search.wandb_log import SAMPLE_BYTES, WandbSearchLogger

    short = tempfile.mkdtemp(prefix="wb", dir="/tmp")  # Ray's socket paths must stay short
    monkeypatch.setenv("TMPDIR", short)
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbSearchLogger(search_name="img", space_name="e2e", fixed={}, wandb_dir=tmp_path)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        tune.Tuner(_samples_elsewhere, tune_config=tune.TuneConfig(num_samples=2, metric="primary", mode="min"),
                   run_config=tune.RunConfig(name="img", storage_path=str(tmp_path / "runs"), verbose=0,
                                             callbacks=[logger])).fit()
    finally:
        ray.shutdown()
        shutil.rmtree(short, ignore_errors=True)
    trial_dirs = [p.parent for p in (tmp_path / "runs" / "img").glob("*/result.json")]
    assert len(trial_dirs) == 2
    for d in trial_dirs:
        assert sorted(p.name for p in (d / "samples").iterdir()) == ["step_000010.png", "step_000020.png"]
        for name in ("result.json", "progress.csv"):
            text = (d / name).read_text()
            assert "samples_png" in text and SAMPLE_BYTES not in text and "PNG" not in text
    runs = [read_run(p) for p in tmp_path.glob("wandb/offline-run-*/run-*.wandb")]
    trials = [r for r in runs if r["run"]["job_type"] == "trial"]
    assert len(trials) == 2 and all(r["exit"] == 0 for r in trials)
    for r in trials:
        assert [row["_step"] for row in r["history"] if row.get("samples/_type") == "image-file"] == [10, 20]


def test_a_grid_named_twice_is_logged_once_and_clean_runs_keep_no_debug_logs(offline):
    """A checkpoint step's grid is named again by the trial's next result (it ships there): one image in
    W&B. A run that ended cleanly keeps its .wandb file and images only; an errored one keeps W&B's logs."""
    from search.wandb_log import WandbSearchLogger

    logger = WandbSearchLogger(search_name="s4", space_name="e2e", fixed={}, wandb_dir=offline)
    ok, bad = make_trial(offline, "ok", {}, [20]), make_trial(offline, "bad", {}, [20])
    for trial in (ok, bad):
        for r in results([10, 20, 20]):  # the last: the final result, naming the step-20 grid again
            trial.last_result = r
            logger.on_trial_result(0, [ok, bad], trial, r)
    logger.on_trial_complete(0, [ok, bad], ok)
    logger.on_trial_error(0, [ok, bad], bad)
    logger.on_experiment_end([ok, bad])
    runs = {read_run(p)["run"]["name"]: p.parent for p in offline.glob("wandb/offline-run-*/run-*.wandb")}
    assert len(list(runs["trial_ok"].glob("files/media/images/*.png"))) == 1
    assert not list(runs["trial_ok"].glob("logs/*")) and not list(runs["search_s4"].glob("logs/*"))
    assert {p.name for p in runs["trial_bad"].glob("logs/*.log")} >= {"debug-internal.log", "debug.log"}
