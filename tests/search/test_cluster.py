"""A real multi-node Ray cluster on loopback: a head and a worker started with `ray start` as separate
processes; a search attached with --address spreads its trials over both nodes."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.search.spaces import tiny_space

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SPACE = tiny_space("cluster", {"train.steps": 40, "train.report_every": 20, "train.eval_every": 20,
                               "train.sample_every": 40, "train.checkpoint_every": 20}, """
  - {name: optim.lr_g, type: float, low: 1.0e-4, high: 1.0e-3, log: true}
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """Head (1 CPU) + worker (1 CPU) on 127.0.0.1 with token auth, as Ray 2.60 requires for joining nodes.

    cluster/local_cluster.py starts them as separate `ray start --block` processes and stops exactly
    those (never `ray stop`, which would end every Ray process on the machine)."""
    from cluster.local_cluster import LocalCluster

    root = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))  # short: Ray's Unix sockets live below it
    try:
        with LocalCluster(workers=1, head_cpus=1, worker_cpus=1, root=root) as local:
            yield local.address, local.env  # the env carries RAY_AUTH_MODE=token and the token
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_search_cli_on_a_two_node_cluster_uses_both_nodes(cluster, tmp_path):
    from search.report import collect_trials

    address, env = cluster
    space = tmp_path / "cluster.yaml"
    space.write_text(SPACE)
    # the driver is its own process, like a user's `mitogan search --address ...` on the head node
    out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--space", str(space), "--trials", "4",
                          "--max-concurrent", "2", "--address", address, "--storage", str(tmp_path / "runs"),
                          "--name", "cluster", "--no-asha", "--no-wandb", "--sim-videos", "2", "--sim-frames", "4"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "search finished" in out.stdout
    trials = collect_trials(tmp_path / "runs" / "cluster")
    assert len(trials) == 4 and all(t.status == "finished" for t in trials)
    nodes = {t.last["node"] for t in trials}
    assert len(nodes) == 2  # 1 CPU per node, 2 trials at once: both nodes trained


def test_unreachable_address_is_a_clear_error(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--address", f"127.0.0.1:{_free_port()}",
                          "--storage", str(tmp_path), "--sim-videos", "1", "--sim-frames", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "mitogan: error: --address 127.0.0.1:" in out.stderr and "cannot reach a Ray cluster" in out.stderr
