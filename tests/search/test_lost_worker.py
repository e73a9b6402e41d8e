"""A worker node lost mid-trial (its `ray start` process and everything below it SIGKILLed by PID, as when a
spot machine disappears): the search still completes, the interrupted trial continues from its checkpoint
on the surviving node (nothing rerun from scratch), its W&B run continues (one run per trial, no step
logged twice), and every requested trial has a result.

With the storage on an S3-compatible object store (moto's server on 127.0.0.1) the same search then also
loses its driver (SIGKILL) and `--resume --address` finishes it on the cluster: both kinds of loss on the
object store in one run, to keep CI short (test_resume.py has the driver kill on local storage)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.search.resilience import (CHECKPOINT_EVERY, SPACE, check_completed, finished, kill_pids, kill_tree,
                                     new_search_args, restarts, rows, run, short_tmp, snapshot, start, wait_for)

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


def _node_running_a_checkpointed_trial(cluster, storage: str, name: str):
    """(worker name, its pids) of a node whose trial has passed two checkpoints and is not finished."""
    nodes = {n: {p.pid} | _below(p.pid) for n, p, _ in cluster._procs if n.startswith("worker")}
    for trial in rows(storage, name).values():
        if not trial or finished(trial) or trial[-1]["step"] < 2 * CHECKPOINT_EVERY:
            continue
        for node, pids in nodes.items():
            if trial[-1].get("pid") in pids:
                return node, pids
    return None


def _continued_elsewhere(trials: dict) -> bool:
    """A trial restarted (on the surviving node) and trained a checkpoint interval there, and one finished."""
    return any(finished(t) for t in trials.values()) and any(
        len(restarts(t)) > 1 and not finished(t) and t[-1]["step"] >= restarts(t)[-1] + CHECKPOINT_EVERY
        for t in trials.values())


def _below(pid: int) -> set[int]:
    from cluster.local_cluster import descendants

    return descendants([pid])


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.long)])
def test_a_lost_worker_node_costs_at_most_one_checkpoint_interval(where, tmp_path, request, monkeypatch):
    from cluster.local_cluster import LocalCluster

    monkeypatch.setenv("TMPDIR", str(short_tmp(tmp_path)))
    if where == "s3":
        request.getfixturevalue("s3_env")  # in os.environ before the nodes start: they inherit it
        storage = "s3://mitogan/lost-worker"
    else:
        storage = str(tmp_path / "runs")
    space = tmp_path / "tiny.yaml"
    space.write_text(SPACE)
    root = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))  # short: Ray's Unix sockets live below it
    try:
        with LocalCluster(workers=2, head_cpus=0, worker_cpus=1, root=root) as cluster:
            proc = start(new_search_args(space, storage, "w", extra=["--address", cluster.address]), cluster.env)
            node, pids = wait_for(lambda: _node_running_a_checkpointed_trial(cluster, storage, "w"), 400, proc,
                                  "a trial with two checkpoints on a worker")
            at_kill = snapshot(rows(storage, "w"))
            kill_pids(pids)  # the whole node at once, by PID
            if where == "s3":  # then the driver too, once the lost trial continued elsewhere
                wait_for(lambda: _continued_elsewhere(rows(storage, "w")), 400, proc, "the lost trial continuing")
                kill_tree(proc)
                at_kill = snapshot(rows(storage, "w"))
                out = run(["--resume", "w", "--storage", storage, "--address", cluster.address, "-q", "--trust-storage"],
                          cluster.env)  # an object store: MitoGAN cannot check who may write there
                assert out.returncode == 0, out.stderr[-3000:]
            else:
                out, err = proc.communicate(timeout=600)
                assert proc.returncode == 0, err[-3000:]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    after = rows(storage, "w")
    measured = check_completed(after, at_kill, trials=3)
    assert measured["rerun_from_scratch"] == 0 and measured["finished_ran_again"] == 0, measured
    lost = measured["steps_lost"]
    assert len(lost) >= 1 and all(0 <= s <= CHECKPOINT_EVERY for s in lost), measured
    assert sum(len(restarts(t)) > 1 for t in after.values()) >= 1  # the lost trial continued elsewhere
    if where == "s3":  # everything landed in the bucket, nothing in a local "s3:" folder
        from search.storage import SearchStore

        store = SearchStore(storage, "w")
        assert store.read_json("search.json")["status"] == "finished"
        for rel in ("optuna.log", "report/index.html", "best", "wandb"):
            assert store.exists(rel), rel
        assert not os.path.exists("s3:") and not (tmp_path / "s3:").exists()
        # the report of a remote search, rewritten on a machine without the local copy
        shutil.rmtree(store.local)
        store.fs.delete_dir(f"{store.ray_path}/report")
        out = run(["--report", store.uri])
        assert out.returncode == 0 and out.stdout.strip() == f"{store.uri}/report/index.html", out.stderr[-2000:]
        assert store.exists("report/index.html") and store.exists("report/summary.json")
    if where == "local":
        from tests.search.wandb_records import read_run

        runs = [read_run(p) for p in (tmp_path / "runs" / "w").glob("wandb/offline-run-*/run-*.wandb")]
        trials = [r for r in runs if r["run"]["name"].startswith("trial_")]
        assert len(trials) == 3 == len({r["run"]["id"] for r in trials})  # one run per trial: continued
        for r in trials:
            steps = [h["_step"] for h in r["history"]]
            assert steps == sorted(set(steps)), steps  # no step logged twice


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
def test_a_lost_worker_under_pbt_costs_at_most_one_perturbation_interval_and_keeps_the_lineage(tmp_path, monkeypatch):
    """Population-based training on the stand-in cluster: once both trials have passed the first exploit point,
    the node running one of them is SIGKILLed by PID. The search finishes on the surviving node; no trial reruns
    from scratch, none loses more than one checkpoint interval (PBT's perturbation interval), and the lineage
    recorded before the loss is kept."""
    from cluster.local_cluster import LocalCluster
    from search.report import collect_trials
    from tests.search.test_schedulers import PBT_SPACE

    monkeypatch.setenv("TMPDIR", str(short_tmp(tmp_path)))
    storage, space = str(tmp_path / "runs"), tmp_path / "pbt.yaml"
    space.write_text(PBT_SPACE)
    interval = 20  # PBT_SPACE's train.checkpoint_every: PBT perturbs at every checkpoint

    def a_node_running_a_trial_past_the_first_exploit(cluster):
        nodes = {n: {p.pid} | _below(p.pid) for n, p, _ in cluster._procs if n.startswith("worker")}
        trials = rows(storage, "p")
        if len(trials) < 2 or not all(t and interval + 10 <= t[-1]["step"] < 3 * interval for t in trials.values()):
            return None
        return next(((n, pids) for t in trials.values() for n, pids in nodes.items() if t[-1].get("pid") in pids), None)

    root = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    try:
        with LocalCluster(workers=2, head_cpus=0, worker_cpus=1, root=root) as cluster:
            proc = start(["--space", str(space), "--trials", "2", "--max-concurrent", "2", "--storage", storage,
                          "--name", "p", "--scheduler", "pbt", "--sim-videos", "2", "--sim-frames", "4", "--no-wandb",
                          "-q", "--address", cluster.address], cluster.env)
            node, pids = wait_for(lambda: a_node_running_a_trial_past_the_first_exploit(cluster), 400, proc,
                                  "both trials past the first exploit point, one on a worker we can kill")
            at_kill = snapshot(rows(storage, "p"))
            lineage = {t.trial_id: list(t.lineage) for t in collect_trials(tmp_path / "runs" / "p")}
            kill_pids(pids)
            out, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-3000:]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    measured = check_completed(rows(storage, "p"), at_kill, trials=2)
    assert measured["rerun_from_scratch"] == 0 and measured["finished_ran_again"] == 0, measured
    assert all(0 <= s <= interval for s in measured["steps_lost"]), measured
    for t in collect_trials(tmp_path / "runs" / "p"):
        assert t.status in ("finished", "stopped"), (t.trial_id, t.status)
        assert t.lineage[:len(lineage[t.trial_id])] == lineage[t.trial_id], (t.trial_id, t.lineage)
