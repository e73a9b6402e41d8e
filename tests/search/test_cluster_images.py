"""Sample grids of trials on a node whose folders the driver cannot read reach W&B and the report.

A head with no CPUs for trials and one worker with its own Ray temp dir (its own staging folders, as on a
machine of its own), the search's storage on an S3-compatible server (moto's, on 127.0.0.1): every trial
writes on the worker; the driver, attached to the head, sees only what reaches it through Ray's results
and the bucket. Its W&B logger takes each grid out of the result (``samples_png_bytes``) and keeps it in
the driver's copy of the trial folder; that copy never holds the worker's own files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from tests.search.spaces import tiny_space

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

# a grid at step 20 (shipped with its own result) and at step 40 (a checkpoint step: shipped with the final result)
SPACE = tiny_space("cluimg", {"train.steps": 40, "train.report_every": 20, "train.eval_every": 40,
                              "train.sample_every": 20, "train.checkpoint_every": 40, "train.eval_samples": 64}, """
  - {name: optim.lr_g, type: float, low: 1.0e-4, high: 1.0e-3, log: true}
""")
TRIALS = 2


def _node_ids(cluster) -> dict[str, bool]:
    """node id -> whether it is the head (Ray's state API, through the dashboard, with the token)."""
    request = urllib.request.Request(f"{cluster.dashboard_url}/api/v0/nodes?limit=10",
                                     headers={"Authorization": f"Bearer {cluster.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        nodes = json.load(response)["data"]["result"]["result"]
    return {n["node_id"]: n["is_head_node"] for n in nodes}


def _staged(temp_dir: Path, name: str, kind: str) -> dict[str, Path]:
    """trial folder name -> Ray's staging folder of that trial under a node's temp dir (``kind``:
    ``working_dirs`` where a trial runs, ``driver_artifacts`` where its driver is)."""
    return {p.name: p for p in temp_dir.glob(f"session_*/artifacts/*/{name}/{kind}/trial_*")}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_grids_of_trials_on_a_node_without_a_shared_folder_reach_wandb_and_the_report(s3_env, s3_server, tmp_path,
                                                                                      monkeypatch):
    from cluster.local_cluster import LocalCluster
    from search.report import write_report_at
    from search.storage import SearchStore
    from search.trials import expand
    from search.wandb_log import SAMPLE_BYTES
    from tests.search.wandb_records import read_run

    root = Path(tempfile.mkdtemp(prefix="cluimg-", dir="/tmp"))  # short: Ray's Unix sockets live below it
    monkeypatch.setenv("TMPDIR", str(root))  # W&B's and Ray's scratch of the processes started here
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path / "cache"))  # the driver's local copy of the search
    monkeypatch.setenv("WANDB_MODE", "offline")
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    storage, name = f"s3://{s3_server['bucket']}/cluimg", "img"
    try:
        # the nodes inherit the S3 endpoint and keys from this environment (s3_env)
        with LocalCluster(workers=1, head_cpus=0, worker_cpus=TRIALS, worker_dirs=True, root=root) as cluster:
            out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--space", str(space), "--trials",
                                  str(TRIALS), "--max-concurrent", str(TRIALS), "--address", cluster.address,
                                  "--storage", storage, "--name", name, "--no-asha", "--no-stopper",
                                  "--sim-videos", "2", "--sim-frames", "4", "-q"],
                                 env=cluster.env, capture_output=True, text=True, timeout=600)
            assert out.returncode == 0, out.stderr[-3000:]
            nodes = _node_ids(cluster)
            worker = _staged(cluster.node_temp_dir("worker1"), name, "working_dirs")
            driver = _staged(cluster.temp_dir, name, "driver_artifacts")
            head_working = _staged(cluster.temp_dir, name, "working_dirs")

        # every trial ran on the worker, staged its files there, and nothing of it ran on the head
        store = SearchStore(storage, name)
        rows = {tid: expand(json.loads(store.read_text(f"{tid}/result.json").splitlines()[-1])) for tid in worker}
        assert len(worker) == TRIALS and not head_working, (worker, head_working)
        (worker_id,) = [n for n, head in nodes.items() if not head]
        assert {r["node"] for r in rows.values()} == {worker_id}
        assert all(r["finished"] == 1 for r in rows.values())
        assert store.exists("best"), out.stdout[-2000:]  # exported from the trainer's checkpoint the worker uploaded

        # the driver's copy of each trial holds its own two files and the grids the logger took out of the results,
        # byte for byte the worker's; none of the worker's other files (data.json, config.yaml, checkpoints)
        assert set(driver) == set(worker)
        for tid, folder in driver.items():
            mine, theirs = _files(folder), _files(worker[tid])
            grids = {rel for rel in mine if rel.startswith("samples/")}
            assert set(mine) - grids == {"params.json", "result.json"}, sorted(mine)
            assert grids == {"samples/step_000020.png", "samples/step_000040.png"}
            assert all(mine[rel] == theirs.get(rel) for rel in grids), (tid, sorted(theirs))
            assert b"PNG" not in mine["result.json"] and SAMPLE_BYTES.encode() not in mine["result.json"]
            # and what the worker wrote reached the bucket from the worker (the export reads data.json)
            assert {"data.json", "config.yaml"} <= set(theirs) and store.exists(f"{tid}/data.json"), sorted(theirs)

        # on a machine with nothing but the bucket: the report rebuilt, each trial's grid on the page
        shutil.rmtree(store.local)
        store.fs.delete_dir(f"{store.ray_path}/report")
        assert write_report_at(store.uri) == f"{store.uri}/report/index.html"
        page = store.read_text("report/index.html")
        for tid in worker:
            assert f'src="samples/{tid}.png"' in page and store.exists(f"report/samples/{tid}.png"), tid

        # each trial's W&B run (uploaded with the search) holds both grids as images, and the search table names them
        wandb = store.download("wandb")
        runs = {r["run"]["name"]: (r, p.parent) for p in wandb.glob("offline-run-*/run-*.wandb") for r in [read_run(p)]}
        assert set(runs) == {*worker, f"search_{name}"}, sorted(runs)
        for tid in worker:
            run, folder = runs[tid]
            images = {row["_step"]: row["samples/path"] for row in run["history"] if "samples/path" in row}
            assert sorted(images) == [20, 40] and all((folder / "files" / p).is_file() for p in images.values())
        search, folder = runs[f"search_{name}"]
        table = json.loads((folder / "files" / search["summary"]["trials/path"]).read_text())
        assert all(row[table["columns"].index("samples")] for row in table["data"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
