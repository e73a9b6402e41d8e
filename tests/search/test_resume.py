"""Searches that survive their driver: SIGTERM stops a search with the exact resume command and a non-zero
status; a driver SIGKILLed mid-search (with its local Ray) is finished by `mitogan search --resume`; every
requested trial ends with a result, no finished trial trains again, interrupted trials continue from their
checkpoints; a finished search says so and rewrites nothing (the driver kill on an S3-compatible object
store is in test_lost_worker.py). Real processes throughout: the CLI, Ray, Optuna's journal, W&B offline runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.search.resilience import (CHECKPOINT_EVERY, SPACE, check_completed, finished, kill_tree,
                                     new_search_args, restarts, rows, run, short_tmp, snapshot, start, wait_for)


def _kill_point(trials: dict) -> bool:
    """A trial finished and another is running with at least two checkpoints since it (re)started."""
    done = [t for t in trials.values() if finished(t)]
    running = [t for t in trials.values() if t and not finished(t)
               and t[-1]["step"] - restarts(t)[-1:][0] >= 2 * CHECKPOINT_EVERY]
    return bool(done and running)


def _status(storage: str, name: str) -> str:
    from search.storage import SearchStore

    return SearchStore(storage, name).read_json("search.json")["status"]


def _remove_older_checkpoints_rays_state_keeps(storage: str, name: str) -> list[str]:
    """Remove, in each unfinished trial, the checkpoints Ray's saved state keeps other than its latest (read
    through Ray's public ExperimentAnalysis and ResultGrid); returns them."""
    import shutil

    from ray import tune

    from search.storage import SearchStore

    removed = []
    for result in tune.ResultGrid(tune.ExperimentAnalysis(SearchStore(storage, name).ray_path)):
        if result.checkpoint is None or (result.metrics or {}).get("done"):
            continue
        for checkpoint, _ in result.best_checkpoints:
            if checkpoint.path != result.checkpoint.path and os.path.isdir(checkpoint.path):
                shutil.rmtree(checkpoint.path)
                removed.append(checkpoint.path)
    return removed


def _optuna_states(storage: str, name: str) -> list[str]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.storage import SearchStore

    store = SearchStore(storage, name)
    store.download("optuna.log")
    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(store.journal))))
    return sorted(t.state.name for t in study.trials)


@pytest.mark.slow
def test_a_stopped_and_a_killed_search_resume_to_the_end(tmp_path):
    # (on an object store: test_lost_worker.py, where the same search also loses a worker, to keep CI short)
    env = {**os.environ, "TMPDIR": str(short_tmp(tmp_path))}
    storage = str(tmp_path / "runs")
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    resume = ["--resume", "r", "--storage", storage, "-q"]

    # 1. SIGTERM, as a batch scheduler preempting the job sends it
    proc = start(new_search_args(space, storage, "r"), env)
    wait_for(lambda: any(t and not finished(t) and t[-1]["step"] >= 2 * CHECKPOINT_EVERY
                         for t in rows(storage, "r").values()), 300, proc, "a trial's second checkpoint")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-3000:]
    assert f"Resume it with: mitogan search --resume r --storage {storage}" in err
    assert "Traceback" not in err and _status(storage, "r") == "interrupted"
    # Ray removes a trial's older checkpoint when it registers a new one, and saves its state later: a
    # driver stopped in between leaves a state naming a removed checkpoint, which the resumed Ray removes
    # again at the trial's next checkpoint (seen in CI as an error with a traceback). Made certain here:
    assert _remove_older_checkpoints_rays_state_keeps(storage, "r"), "no unfinished trial with two checkpoints"
    proc = start(resume, env)

    # 2. the driver and its Ray die at once (SIGKILL by PID), mid-search
    wait_for(lambda: _kill_point(rows(storage, "r")), 400, proc, "a finished trial and a checkpointed running one")
    kill_tree(proc)
    err = proc.stderr.read()
    assert "Traceback" not in err and "Error handling checkpoint" not in err, err[-3000:]
    at_kill = snapshot(rows(storage, "r"))

    # 3. --resume finishes it (Ray's state may name checkpoints removed just before the kill, too)
    out = run(resume, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "Error handling checkpoint" not in out.stderr, out.stderr[-3000:]
    assert [d for d in (tmp_path / "runs").rglob("checkpoint_*") if d.is_dir() and not any(d.iterdir())] == []
    after = rows(storage, "r")
    measured = check_completed(after, at_kill, trials=3)
    assert measured["rerun_from_scratch"] == 0 and measured["finished_ran_again"] == 0, measured
    assert measured["steps_lost"] and all(0 <= lost <= CHECKPOINT_EVERY for lost in measured["steps_lost"]), measured
    # one COMPLETE Optuna trial per Ray trial, all told; a trial Optuna was asked for just before the kill,
    # which no saved Ray trial continues, is closed as FAIL by the resumed searcher (searcher.restore). The
    # trials' result.json now reaches the storage at once (not at Ray's next state save), so the kill can
    # land in that window
    states = _optuna_states(storage, "r")
    assert states.count("COMPLETE") == 3 and set(states) <= {"COMPLETE", "FAIL"}, states
    assert _status(storage, "r") == "finished"

    # 4. a finished search says so and rewrites nothing
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()}
    again = run(resume, env)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*") if p.is_file()} == files
    from mitogan.fsutil import default_mode

    search = tmp_path / "runs" / "r"
    for p in [search / "search.json", search / "optuna.log", *(search / "best").rglob("*"), search / "report"]:
        assert p.stat().st_mode & 0o777 == default_mode(p.is_dir()), p  # a lab's shared storage: the umask rules
    from search.wandb_log import trial_run_id

    # offline-run-<time>-<run id>: one per driver that logged the trial; the ids are the trials' own
    # (resumed trials continued their W&B run under the same id: none duplicated under a new one)
    ids = {p.name.rsplit("-", 1)[-1] for p in (tmp_path / "runs" / "r").glob("wandb/offline-run-*")}
    assert ids == {trial_run_id("r", t[-1]["trial_id"]) for t in after.values()} | {trial_run_id("r", "search")}


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
@pytest.mark.slow
def test_an_object_store_search_resumed_by_a_new_ray_keeps_every_result_of_its_trials(tmp_path, s3_env):
    """On an object store each trial's result.json is staged by the driver in Ray's session folder and
    uploaded over the stored file. A search stopped with its local Ray and resumed (a new Ray session: a new,
    empty staging folder) keeps every result from before the stop: none of the continued trials starts
    its rows at the resume."""
    env = {**s3_env, "TMPDIR": str(short_tmp(tmp_path))}
    storage = "s3://mitogan/new-ray"
    space = tmp_path / "longer.yaml"
    space.write_text(SPACE.replace("train.steps: 60", "train.steps: 200"))
    proc = start(new_search_args(space, storage, "n", trials=2), env)

    def mid_search(trials: dict) -> bool:  # as stored: a trial with two results and not finished
        return any(len(t) >= 2 and not finished(t) for t in trials.values())

    wait_for(lambda: mid_search(rows(storage, "n")), 300, proc, "two stored results of an unfinished trial")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-3000:]
    before = rows(storage, "n")
    out = run(["--resume", "n", "--storage", storage, "-q", "--trust-storage"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    after = rows(storage, "n")
    assert len(after) == 2 and all(r[-1]["finished"] or r[-1]["stop_reason"] for r in after.values()), after
    continued = [t for t, r in before.items() if r and not finished(r)]
    assert continued
    for t in continued:  # the rows stored before the stop, then those of the continued attempt
        assert [r["step"] for r in after[t][:len(before[t])]] == [r["step"] for r in before[t]], (before[t], after[t])
        assert restarts(after[t])[0] == 0 and len(restarts(after[t])) == 2, after[t]
    _a_final_result_lost_in_the_upload_comes_back(storage, "n", ["--resume", "n", "--storage", storage, "-q",
                                                                   "--trust-storage"], env)


def _a_final_result_lost_in_the_upload_comes_back(storage: str, name: str, resume: list[str], env) -> None:
    """A driver killed while it uploads Ray's state to the object store (file by file) can leave the state
    saying a trial ended while the trial's result.json there lacks its final result; the resumed search runs
    nothing for that trial, and puts the final result back from Ray's state (search.run._complete_results)."""
    from search.storage import SearchStore

    store = SearchStore(storage, name)
    before = rows(storage, name)
    tid = sorted(before)[0]  # ended: its last row is the trainable's final result
    rel = f"{tid}/result.json"
    lines = store.read_text(rel).splitlines(keepends=True)
    with store.fs.open_output_stream(f"{store.ray_path}/{rel}") as f:
        f.write("".join(lines[:-1]).encode())
    store.write_json("search.json", {**store.read_json("search.json"), "status": "interrupted"})
    out = run(resume, env)
    assert out.returncode == 0, out.stderr[-3000:]
    after = rows(storage, name)
    keys = ("training_iteration", "step", "finished", "primary", "stop_reason")
    assert [[r.get(k) for k in keys] for r in after[tid]] == [[r.get(k) for k in keys] for r in before[tid]]
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}  # nothing trained


def test_reusing_a_name_or_a_bad_name_is_refused_before_anything_runs(tmp_path, capsys):
    from mitogan.cli import main

    def cli(args):
        code = main(["search", *args])
        return code, capsys.readouterr().err

    storage = tmp_path / "runs"
    (storage / "r").mkdir(parents=True)
    (storage / "r" / "search.json").write_text(json.dumps({"name": "r", "status": "interrupted"}))
    code, err = cli(["--name", "r", "--storage", str(storage)])
    assert code == 2 and f"mitogan search --resume r --storage {storage}" in err
    for name in ("../../x", "a/b", "..", ".hidden"):
        code, err = cli(["--name", name, "--storage", str(storage)])
        assert code == 2 and "--name" in err, name
    assert sorted(p.name for p in storage.iterdir()) == ["r"] and not (tmp_path / "x").exists()
    for args in (["--trials", "-1"], ["--trials", "0"], ["--cpus-per-trial", "nan"], ["--gpus-per-trial", "-1"],
                 ["--gpus-per-trial", "1.5"], ["--max-concurrent", "0"], ["--resume", "r", "--trials", "3"],
                 ["--resume", "nothing-here"], ["--resume", "../r"]):
        code, err = cli([*args, "--storage", str(storage)])
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("mitogan: error: "), (args, err)


def _state_file(storage: str, name: str) -> Path | None:
    """Ray's newest experiment state in a local search folder."""
    from search.storage import SearchStore

    files = sorted(Path(SearchStore(storage, name).ray_path).glob("experiment_state-*.json"))
    return files[-1] if files else None


def _trials_in(state: Path | None) -> int:
    try:
        return len(json.loads(state.read_text())["trial_data"])
    except (AttributeError, OSError, ValueError, KeyError):  # not there yet, or being replaced right now
        return -1


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
@pytest.mark.slow
@pytest.mark.parametrize("scheduler", ["none", "pbt"])
def test_a_state_saved_half_way_still_runs_every_requested_trial(tmp_path, scheduler):
    """Ray uploads its experiment state (the trials) and its search-algorithm state (how many trials it
    created) as separate files. A driver killed between the two, as on an object store mid-upload, leaves a
    newer search state beside an older trial list: the trial created last is in neither Ray's restored trials
    nor to be created again by Ray's counter. The resumed search must still end with every requested trial
    (seen in CI on S3 as a resume that ended after two of three trials, misreported as a SIGINT). MitoGAN's
    Optuna searcher counts the trials itself; a population (PBT/PB2) is still counted by Ray's generator, and
    there the search ends with the trials it has and says how many were lost, where it used to call it a SIGINT
    and leave a search no resume could finish."""
    env = {**os.environ, "TMPDIR": str(short_tmp(tmp_path))}
    storage = str(tmp_path / "runs")
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    args = new_search_args(space, storage, "h")
    proc = start(args if scheduler == "none" else [a for a in args if a != "--no-asha"] + ["--scheduler", scheduler],
                 env)
    older = wait_for(lambda: _trials_in(_state_file(storage, "h")) == 2 and _state_file(storage, "h").read_bytes(),
                     300, proc, "a saved state with two trials")
    wait_for(lambda: _trials_in(_state_file(storage, "h")) == 3, 300, proc, "a saved state with the third trial")
    kill_tree(proc)
    newest = _state_file(storage, "h")
    newest.write_bytes(older)  # the trial list of the upload before: the third trial is lost with the driver

    out = run(["--resume", "h", "--storage", storage, "-q"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    from search.storage import SearchStore

    state = SearchStore(storage, "h").read_json("search.json")
    if scheduler == "none":
        assert state["status"] == "finished" and state["trials_ended"] == 3 and "ended_by" not in state, state
        assert _trials_in(_state_file(storage, "h")) == 3
    else:
        assert state["status"] == "finished" and state["trials_ended"] == 2, state
        assert state["ended_by"] == "trials lost" and state["trials_lost"] == 1, state
        assert "2 of 3 trials ran; Ray's saved state lost 1" in out.stderr
