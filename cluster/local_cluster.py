"""A local stand-in for a Ray cluster: one head and N workers as separate Ray processes on 127.0.0.1.

Each node is its own ``ray start --block`` process with its own resources (the head: no GPU and, by
default, no CPU for trials, like the real clusters' heads; each worker: CPUs and, optionally, logical GPUs,
like the GPU worker group of ``cluster/kuberay/raycluster.yaml``). Token authentication is on for every node and for anything that talks to them
(``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``, taken from the environment, generated if absent, never
written to a file). The dashboard and its job server listen on 127.0.0.1 only, so a search is submitted
the way KubeRay's RayJob submits it: ``ray job submit --address http://127.0.0.1:<dashboard port> -- ...``.

Stopping ends exactly the processes this stand-in started (each ``ray start --block`` process and every
process below it), never ``ray stop``, which would end every Ray process on the machine.

Command line (see cluster/README.md)::

    eval "$(python cluster/local_cluster.py up --workers 2 --worker-gpus 1)"   # exports the addresses
    python cluster/local_cluster.py down

In Python (the tests)::

    with LocalCluster(workers=2, worker_gpus=1, root=tmp) as cluster:
        subprocess.run(["ray", "job", "submit", "--address", cluster.dashboard_url, "--", ...], env=cluster.env)

Only the standard library and the ``ray`` executable beside this Python are used.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalCluster", "free_port", "descendants"]

HOST = "127.0.0.1"
DEFAULT_STATE = Path(tempfile.gettempdir()) / "mitogan-cluster"  # short: Ray puts Unix sockets below it
# the env of every node; the token is added per cluster
_NODE_ENV = {
    "RAY_AUTH_MODE": "token",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # a stand-in has nothing to drain: stop at once
    "RAY_USAGE_STATS_ENABLED": "0",
}


def free_port() -> int:
    """A TCP port nobody listens on at the moment (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((HOST, port)) == 0


def descendants(pids) -> set[int]:
    """Every live process below ``pids`` (children, grandchildren, ...), read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name field may contain spaces and ')'
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; its parent has not reaped it yet


@dataclass
class LocalCluster:
    """Head + ``workers`` worker nodes on 127.0.0.1, started by :meth:`start`, ended by :meth:`stop`."""

    workers: int = 1
    head_cpus: int = 0  # 0, like the real clusters: the job driver runs here, every trial on a worker
    worker_cpus: int = 1
    worker_gpus: int = 0  # logical GPUs: Ray schedules on them; torch still runs on the CPU here
    port: int = 0  # GCS port of the head; 0: a free port
    dashboard_port: int = 0  # dashboard + job server; 0: a free port
    object_store_mb: int = 256  # per node; Ray's default (30 % of RAM per node) is far too much here
    root: Path | None = None  # Ray's temp dir goes under it (keep the path short: Unix sockets live there)
    worker_dirs: bool = False  # each worker its own Ray temp dir (root/<name>): trials stage their files where
    # the head and a driver attached to it never look, as on machines without a shared filesystem
    token: str | None = None  # None: RAY_AUTH_TOKEN from the environment, or a new random one
    ready_timeout: float = 120.0
    env: dict = field(init=False, default_factory=dict)
    _procs: list = field(init=False, default_factory=list)

    @property
    def address(self) -> str:
        """The GCS address (``mitogan search --address``, ``ray status --address``)."""
        return f"{HOST}:{self.port}"

    @property
    def dashboard_url(self) -> str:
        """The dashboard / job server (``ray job submit --address``)."""
        return f"http://{HOST}:{self.dashboard_port}"

    @property
    def temp_dir(self) -> Path:
        return Path(self.root) / "ray"

    def node_temp_dir(self, name: str) -> Path:
        """Ray's temp dir of node ``name`` (``head``, ``worker1``, ...): the head's, unless ``worker_dirs``."""
        return Path(self.root) / name if self.worker_dirs and name != "head" else self.temp_dir

    def start(self) -> "LocalCluster":
        """Start the head, then the workers; return once every node and the job server answer."""
        self.root = Path(self.root or tempfile.mkdtemp(prefix="mgc-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = self.token or os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
        self.env = {**os.environ, **_NODE_ENV, "RAY_AUTH_TOKEN": self.token}
        self.port = self._claim(self.port, "--port")
        self.dashboard_port = self._claim(self.dashboard_port, "--dashboard-port")
        try:
            self._start_node("head", ["--head", f"--port={self.port}", f"--num-cpus={self.head_cpus}", "--num-gpus=0",
                                      "--include-dashboard=true", f"--dashboard-host={HOST}",
                                      f"--dashboard-port={self.dashboard_port}",
                                      f"--ray-client-server-port={free_port()}", f"--temp-dir={self.temp_dir}"])
            for i in range(self.workers):
                name = f"worker{i + 1}"
                own = [f"--temp-dir={self.node_temp_dir(name)}"] if self.worker_dirs else []  # Ray allows it per node
                self._start_node(name, [f"--address={self.address}", f"--num-cpus={self.worker_cpus}",
                                        f"--num-gpus={self.worker_gpus}", *own])
            self._wait_job_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _claim(self, port: int, flag: str) -> int:
        if port == 0:
            return free_port()
        if _port_in_use(port):
            raise RuntimeError(f"{flag} {port}: something already listens there (pass {flag} 0 for a free port)")
        return port

    def _start_node(self, name: str, args: list[str]) -> None:
        ray = Path(sys.executable).with_name("ray")
        log = Path(self.root) / f"{name}.log"
        cmd = [str(ray), "start", "--block", f"--node-ip-address={HOST}",
               f"--object-store-memory={self.object_store_mb << 20}", f"--dashboard-agent-listen-port={free_port()}",
               "--disable-usage-stats", *args]
        with open(log, "wb") as out:
            # its own session: a Ctrl-C meant for the caller's terminal does not reach the nodes
            proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append((name, proc, log))
        deadline = time.monotonic() + self.ready_timeout
        while b"block forever" not in log.read_bytes():  # `ray start` prints this once its node is up
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"ray node {name} did not start (exit {proc.returncode}); {log}:\n{tail}")
            time.sleep(0.3)

    def _wait_job_server(self) -> None:
        """The job server answers an authenticated request (it starts a few seconds after the dashboard)."""
        request = urllib.request.Request(f"{self.dashboard_url}/api/jobs/",
                                         headers={"Authorization": f"Bearer {self.token}"})
        deadline, error = time.monotonic() + self.ready_timeout, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                error = e
            time.sleep(0.5)
        raise RuntimeError(f"the job server at {self.dashboard_url} did not answer: {error}")

    def pids(self) -> set[int]:
        """The processes this stand-in runs now: each ``ray start --block`` and everything below it."""
        own = {proc.pid for _, proc, _ in self._procs if proc.poll() is None}
        return own | descendants(own)

    def stop(self, timeout: float = 30.0) -> None:
        """End exactly the processes this stand-in started: SIGTERM (Ray stops its node), then SIGKILL."""
        targets = self.pids()
        for _, proc, _ in reversed(self._procs):  # workers first, the head last
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in targets):
            time.sleep(0.2)
        for pid in targets:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _, proc, _ in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        names = [name for name, _, _ in self._procs]
        self._procs.clear()
        if self.root is not None:
            # a leftover ray_current_cluster makes a later plain ray.init() try to reach this dead cluster
            for name in ("head", *names):
                (self.node_temp_dir(name) / "ray_current_cluster").unlink(missing_ok=True)

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- command line: `up` starts a detached supervisor that owns the nodes; `down` tells it to stop ---------

def _exports(info: dict, new_token: str | None) -> str:
    """Shell lines for `eval`: the addresses, and the token when `up` made it (the caller's shell needs it)."""
    lines = [f"export MITOGAN_CLUSTER_ADDRESS={info['address']}",
             f"export MITOGAN_CLUSTER_DASHBOARD={info['dashboard']}"]
    if new_token:  # printed for eval, never written to a file
        lines.insert(0, f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN={shlex.quote(new_token)}")
    return "\n".join(lines)


class _Stop(Exception):
    """SIGTERM/SIGINT in the supervisor."""


def _raise_stop(*_):
    raise _Stop


def _serve(args) -> int:
    """The supervisor: start the nodes, write ready.json (addresses and pids, no token), wait for SIGTERM."""
    state = Path(args.state)
    cluster = LocalCluster(workers=args.workers, head_cpus=args.head_cpus, worker_cpus=args.worker_cpus,
                           worker_gpus=args.worker_gpus, port=args.port, dashboard_port=args.dashboard_port,
                           root=state)
    signal.signal(signal.SIGTERM, _raise_stop)  # also while starting: start() then stops what it started
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        cluster.start()
        ready = {"address": cluster.address, "dashboard": cluster.dashboard_url, "supervisor": os.getpid(),
                 "nodes": {name: proc.pid for name, proc, _ in cluster._procs}}
        (state / "ready.json").write_text(json.dumps(ready, indent=1))
        while all(proc.poll() is None for _, proc, _ in cluster._procs):
            time.sleep(0.5)
        return 1  # a node died on its own
    except _Stop:
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not interrupt the stop
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        cluster.stop()
        (state / "ready.json").unlink(missing_ok=True)


def _up(args) -> int:
    state = Path(args.state)
    if (state / "ready.json").exists():
        info = json.loads((state / "ready.json").read_text())
        if _alive(info["supervisor"]):
            print(f"local_cluster: already running ({info['address']}); `down --state {state}` first", file=sys.stderr)
            return 1
    state.mkdir(parents=True, exist_ok=True)
    had_token = bool(os.environ.get("RAY_AUTH_TOKEN"))
    env = {**os.environ, "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)}
    cmd = [sys.executable, os.path.abspath(__file__), "_serve", *args.node_args]
    with open(state / "supervisor.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)  # outlives this command and the terminal's Ctrl-C
    deadline = time.monotonic() + 180
    while not (state / "ready.json").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()  # the supervisor stops the nodes it started so far
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
            print((state / "supervisor.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            print("local_cluster: the cluster did not start", file=sys.stderr)
            return 1
        time.sleep(0.3)
    info = json.loads((state / "ready.json").read_text())
    print(f"local_cluster: head {info['address']} + {args.workers} worker(s), dashboard {info['dashboard']}; "
          f"logs in {state}; stop with: python {sys.argv[0]} down", file=sys.stderr)
    print(_exports(info, None if had_token else env["RAY_AUTH_TOKEN"]))
    return 0


def _down(args) -> int:
    ready = Path(args.state) / "ready.json"
    if not ready.exists():
        print(f"local_cluster: nothing running under {args.state}", file=sys.stderr)
        return 0
    pid = json.loads(ready.read_text())["supervisor"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        print(f"local_cluster: supervisor {pid} did not stop", file=sys.stderr)
        return 1
    ready.unlink(missing_ok=True)
    print("local_cluster: stopped", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="local_cluster.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{up,down}")
    for name, help_ in (("up", "start a head and N workers in the background; print shell exports"),
                        ("_serve", None)):  # _serve: the detached supervisor that `up` starts
        s = sub.add_parser(name, **({"help": help_} if help_ else {}))
        s.add_argument("--workers", type=int, default=2, help="worker nodes (default: 2)")
        s.add_argument("--head-cpus", type=int, default=0,
                       help="CPUs of the head for trials (default: 0; the job driver needs none)")
        s.add_argument("--worker-cpus", type=int, default=1, help="CPUs per worker")
        s.add_argument("--worker-gpus", type=int, default=0, help="logical GPUs per worker (default: 0)")
        s.add_argument("--port", type=int, default=0, help="GCS port of the head (default: a free port)")
        s.add_argument("--dashboard-port", type=int, default=0, help="dashboard/job server port (default: free)")
        s.add_argument("--state", default=str(DEFAULT_STATE),
                       help=f"logs and Ray's temp dir (default: {DEFAULT_STATE})")
    down = sub.add_parser("down", help="stop exactly the processes `up` started")
    down.add_argument("--state", default=str(DEFAULT_STATE))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.command == "up":
        args.node_args = argv[1:]  # the supervisor gets the same options
        return _up(args)
    if args.command == "_serve":
        return _serve(args)
    return _down(args)


if __name__ == "__main__":
    sys.exit(main())
