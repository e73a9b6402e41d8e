"""Two searches never share a folder: the search name is claimed before Ray starts (a local lock; a lease with
conditional writes in an S3-compatible store), so of two drivers started at once, or a `--resume` while the
search runs, one goes on and the other exits 2 in one line naming the running driver (pid, host, start)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mitogan.cli import main

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from search.storage import SearchStore
    go = Path(sys.argv[3])
    print("ready", flush=True)
    while not go.exists():  # every process waits here, then all claim at the same moment
        time.sleep(0.001)
    store = SearchStore(sys.argv[1], sys.argv[2])
    try:
        store.claim("--name", "choose another --name")
    except Exception as e:
        print("refused:", e, flush=True)
        sys.exit(2)
    print("holding", flush=True)
    time.sleep(float(sys.argv[4]))
    store.release()
""")


def _holders(storage: str, name: str, go: Path, n: int, hold_s: float, env=None) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", HOLD, storage, name, str(go), str(hold_s)], stdout=subprocess.PIPE,
                              text=True, env=env) for _ in range(n)]
    assert all(p.stdout.readline().strip() == "ready" for p in procs)
    return procs


def _race(storage: str, tmp_path: Path, env=None) -> None:
    """Four processes claim one name at the same moment, twice: exactly one wins each time."""
    go = tmp_path / "go"
    for _ in range(2):
        procs = _holders(storage, "B", go, 4, 0.5, env)
        go.touch()
        outs = [p.communicate(timeout=60)[0] for p in procs]
        go.unlink()
        assert sorted(p.returncode for p in procs) == [0] + [2] * 3, outs
        assert sum("another MitoGAN search (pid" in o for o in outs) == 3, outs


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet
        return {}


def _search(capsys, storage: str, *argv: str) -> tuple[int, str]:
    code = main(["search", *argv, "--storage", storage, "-q"])
    return code, capsys.readouterr().err


def _held(storage: str, tmp_path: Path, env=None) -> subprocess.Popen:
    go = tmp_path / "go-held"
    go.touch()
    (proc,) = _holders(storage, "B", go, 1, 600, env)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_local_claims_race_to_exactly_one_winner(tmp_path):
    _race(str(tmp_path / "runs"), tmp_path)


def test_a_running_search_refuses_a_second_driver_and_a_resume(tmp_path, capsys):
    storage = tmp_path / "runs"
    proc = _held(str(storage), tmp_path)
    try:
        code, err = _search(capsys, str(storage), "--space", "smoke", "--trials", "1", "--name", "B")
        assert code == 2 and err.count("\n") == 1 and f"another MitoGAN search (pid {proc.pid}" in err, err
        assert "choose another --name" in err and not (storage / "B").exists()  # refused before anything was made
        (storage / "B").mkdir()
        (storage / "B" / "search.json").write_text(json.dumps({"name": "B", "status": "interrupted", "options": {}}))
        code, err = _search(capsys, str(storage), "--resume", "B")
        assert code == 2 and f"(pid {proc.pid}" in err and "stop that driver first" in err, err
    finally:
        proc.kill()
        proc.wait()
    # the driver is gone (killed: no cleanup ran): its claim went with it, and the resume gets past the claim
    (storage / "B" / "search.json").write_text(json.dumps({"name": "B", "status": "finished", "options": {}}))
    code, err = _search(capsys, str(storage), "--resume", "B")
    assert code == 0 and "another MitoGAN" not in err


@pytest.mark.slow
def test_two_search_drivers_started_at_once_one_runs_one_is_refused(tmp_path):
    """Two real `mitogan search` drivers on one name: one is refused within seconds, in one line; the other
    owns the folder alone (stopped here with SIGTERM to save time: it is left resumable)."""
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mitogan", "search", "--space", "smoke", "--trials", "2", "--name", "B",
           "--storage", str(storage), "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 120
        while all(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        loser = next(p for p in procs if p.poll() is not None)
        winner = next(p for p in procs if p is not loser)
        err = loser.stderr.read()
        assert loser.returncode == 2 and err.count("\n") == 1, err
        # the pid is the driver's: behind the command line's supervisor, the winner's child
        holder = re.search(r"another MitoGAN search \(pid (\d+)", err)
        if holder is None:
            assert "already holds a search" in err, err
        else:
            from cluster.local_cluster import descendants

            assert int(holder[1]) in {winner.pid} | descendants([winner.pid]), err
        launch: dict = {}
        while launch.get("status") != "running" and winner.poll() is None:  # its SIGTERM handler is in place
            time.sleep(0.2)
            launch = _read_json(storage / "B" / "search.json")
        assert launch["options"]["trials"] == 2 and "resumed" not in launch
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=120)
    assert winner.returncode in (0, 143)


# ------------------------------------------------------------------------------- S3-compatible store


@pytest.mark.slow
def test_s3_claims_race_to_exactly_one_winner(s3_env, s3_server, tmp_path):
    _race(f"s3://{s3_server['bucket']}/claims-race", tmp_path, env=s3_env)


def test_s3_a_running_search_refuses_a_second_driver(s3_env, s3_server, tmp_path, capsys):
    storage = f"s3://{s3_server['bucket']}/claims-held"
    proc = _held(storage, tmp_path, env=s3_env)
    try:
        code, err = _search(capsys, storage, "--space", "smoke", "--trials", "1", "--name", "B")
        assert code == 2 and err.count("\n") == 1 and f"another MitoGAN search (pid {proc.pid}" in err, err
        assert "lapses" in err  # says when a dead driver's claim ends
    finally:
        proc.kill()  # SIGKILL: the lease stays in the store
        proc.wait()
    from search.storage import SearchStore

    store = SearchStore(storage, "B")
    store.claim("--name", "x")  # a driver of this host whose process is gone: taken over at once
    store.release()
    import pyarrow.fs as pafs

    info = s3_server["fs"].get_file_info(f"{s3_server['bucket']}/claims-held/.B.mitogan-claim.json")
    assert info.type == pafs.FileType.NotFound  # released: the lease is gone


def test_s3_a_lease_not_renewed_is_taken_over_and_a_renewed_one_is_not(s3_env, s3_server, monkeypatch):
    import search.lease as lease

    bucket, key = s3_server["bucket"], "claims-stale/.B.mitogan-claim.json"
    monkeypatch.setattr(lease, "RENEW_S", 0.3)
    monkeypatch.setattr(lease, "STALE_S", 2.0)
    other = {"command": "search", "host": "another-host", "pid": 1, "started": "then"}
    live = lease.S3Lease(bucket, key, other)
    live.acquire("B", "--name", "x")  # renewed every 0.3 s by its thread
    try:
        time.sleep(2.5)
        with pytest.raises(Exception, match="another-host"):
            lease.S3Lease(bucket, key, {"host": "here", "pid": os.getpid()}).acquire("B", "--name", "x")
    finally:
        live._stop.set()  # the holder dies without releasing: nobody renews its lease any more
        live._thread.join()
    time.sleep(3.5)  # the store's clock has whole seconds
    taker = lease.S3Lease(bucket, key, {"host": "here", "pid": os.getpid()})
    taker.acquire("B", "--name", "x")
    assert json.loads(taker._s3.get_object(Bucket=bucket, Key=key)["Body"].read())["host"] == "here"
    taker.release()


def test_a_claim_whose_pid_now_belongs_to_a_newer_process_is_a_dead_drivers():
    # a driver killed here, its pid reused by a process started later: the claim is taken over at once, not after
    # STALE_S (CI: a resume refused by a reused pid of a killed driver). A live holder (this process) keeps it
    import socket

    from mitogan.claim import who
    from mitogan.fsutil import proc_stat
    from search.lease import _dead_here

    me = who("search")
    assert _dead_here(me) is False  # alive, and the process with the pid is the one that claimed
    before = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 3600))
    assert _dead_here({**me, "started": before}) is True  # an hour-old claim: this pid is a newer process now
    assert _dead_here({**me, "started": "unreadable"}) is False  # cannot tell: kept
    assert _dead_here({**me, "host": socket.gethostname() + "-other", "started": before}) is False  # not this host
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert _dead_here({**me, "pid": gone.pid}) is True  # no process has the pid
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # ended, not yet reaped (not waited for)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc_stat(zombie.pid)[0] != "Z":
        time.sleep(0.05)
    assert _dead_here({**me, "pid": zombie.pid, "started": time.strftime("%Y-%m-%d %H:%M:%S")}) is True
    zombie.wait()
