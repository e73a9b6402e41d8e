"""The local stand-in for a cluster (cluster/local_cluster.py): the runbook's block run as written (a
search submitted as a Ray job to a head and two workers, its logs followed, its generator exported), and
the helper's own promises (resources, token auth, a dashboard on 127.0.0.1 only, an exact stop)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cluster.local_cluster import LocalCluster
from tests.cluster.schemas import CLUSTER, REPO

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture
def short_tmp():
    """A short folder under /tmp: Ray's Unix socket paths below it must stay under 107 characters."""
    path = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def readme_block() -> str:
    text = (CLUSTER / "README.md").read_text()
    after = text.split("<!-- local-stand-in", 1)[1]
    return after.split("```bash\n", 1)[1].split("```", 1)[0]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if text.encode() in Path(entry.path, "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
def test_runbook_block_runs_as_written(short_tmp):
    venv = REPO / ".venv"
    if not (venv / "bin" / "activate").is_file():
        pytest.skip("the runbook block sources .venv/bin/activate (made by `make install`)")
    # the block runs from the repository root; here a folder that has the same .venv and cluster/, so
    # that its runs/ lands in the test's folder. TMPDIR: the stand-in's default state goes there too.
    work = short_tmp / "w"
    work.mkdir()
    (work / ".venv").symlink_to(venv)
    (work / "cluster").symlink_to(CLUSTER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MITOGAN_CLUSTER_"))}
    env["TMPDIR"] = str(short_tmp)
    try:
        out = subprocess.run(["bash", "-eo", "pipefail", "-c", readme_block()], cwd=work, env=env,
                             capture_output=True, text=True, timeout=420)
    finally:  # a no-op when the block got to its own `down`
        subprocess.run([sys.executable, str(CLUSTER / "local_cluster.py"), "down"], env=env, timeout=120,
                       capture_output=True)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "Job 'local-smoke' succeeded" in log  # printed by `ray job logs --follow` and `ray job status`
    assert "best generator exported to" in log and "search finished" in log

    from mitogan import load_generator
    from search.report import collect_trials

    trials = collect_trials(work / "runs" / "local-smoke")
    assert len(trials) == 2 and all(t.status == "finished" for t in trials)
    # one trial per worker, in parallel: each asked for a whole (logical) GPU, each worker has one,
    # and the head has none (nor any CPU for trials)
    assert len({t.last["node"] for t in trials}) == 2
    generator = load_generator(work / "runs" / "local-smoke" / "best")
    import torch

    assert generator(torch.randn(2, generator.config["latent_dim"])).shape == (2, 1, 32, 32)
    # `down` left nothing behind: every Ray process of this cluster had its temp dir on its command line
    assert _processes_mentioning(str(short_tmp)) == []
    assert not (short_tmp / "mitogan-cluster" / "ready.json").exists()


def _listening_hosts(port: int) -> set[str]:
    """Local addresses that listen on TCP ``port`` (from /proc/net/tcp and tcp6)."""
    hosts = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            if name == "tcp":
                hosts.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
            else:
                words = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))
                hosts.add(socket.inet_ntop(socket.AF_INET6, words))
    return hosts


def _get(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_helper_nodes_token_loopback_dashboard_and_exact_stop(short_tmp):
    bystander = subprocess.Popen(["sleep", "300"])  # not the stand-in's: must survive its stop
    cluster = LocalCluster(workers=1, worker_cpus=1, worker_gpus=1, root=short_tmp / "c", token="t" * 32)
    started: set[int] = set()
    try:
        cluster.start()
        assert _listening_hosts(cluster.dashboard_port) == {"127.0.0.1"}
        jobs = f"{cluster.dashboard_url}/api/jobs/"
        assert (_get(jobs, None), _get(jobs, "wrong"), _get(jobs, cluster.token)) == (401, 403, 200)
        with urllib.request.urlopen(urllib.request.Request(
                f"{cluster.dashboard_url}/api/v0/nodes?detail=1",
                headers={"Authorization": f"Bearer {cluster.token}"}), timeout=10) as response:
            nodes = json.load(response)["data"]["result"]["result"]
        resources = sorted((n["is_head_node"], n["resources_total"].get("CPU", 0), n["resources_total"].get("GPU", 0))
                           for n in nodes if n["state"] == "ALIVE")
        assert resources == [(False, 1.0, 1.0), (True, 0, 0)]  # the worker: 1 CPU + 1 GPU; the head: none
        assert cluster.env["RAY_AUTH_MODE"] == "token" and cluster.env["RAY_AUTH_TOKEN"] == cluster.token
        started = cluster.pids()
        assert len(started) >= 6  # 2 x `ray start --block`, GCS, raylets, dashboard, agents, ...
    finally:
        cluster.stop()
    try:
        assert not [p for p in started if Path(f"/proc/{p}").exists()
                    and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert bystander.poll() is None  # stop() ends exactly its own processes
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", cluster.port)) != 0  # the GCS is gone
        assert not (cluster.temp_dir / "ray_current_cluster").exists()
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()


def test_cli_refuses_a_port_already_taken(short_tmp):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"--port {port}: something already listens there"):
            LocalCluster(port=port, root=short_tmp).start()
