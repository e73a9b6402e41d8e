"""The command line's supervisor (``mitogan.cli.supervise_child``), which commands that drive a local Ray run
behind: the child has a session of its own, so a process-group signal reaches only the supervisor, which
passes it on once; the child's status comes back; the child dies with a killed supervisor. Real processes
and real signals (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and prctl: Linux")

# the child: says who it is, then counts the SIGTERMs it gets for half a second after the first
CHILD = textwrap.dedent("""
    import os, signal, sys, time
    got = []
    signal.signal(signal.SIGTERM, lambda *a: got.append(time.monotonic()))
    print(os.getpid(), os.getsid(0), os.environ.get("MITOGAN_SUPERVISED"), flush=True)
    while not got:
        time.sleep(0.01)
    time.sleep(0.5)
    print("sigterms", len(got), flush=True)
    sys.exit(143)
""")


def _supervisor(child_code: str) -> subprocess.Popen:
    parent = f"import sys; from mitogan.cli import supervise_child; sys.exit(supervise_child([sys.executable, '-c', {child_code!r}]))"
    # its own session, as a batch job's shell is: a group signal reaches the supervisor's group only
    return subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        return True


def test_a_group_sigterm_reaches_the_child_once_and_its_status_comes_back():
    proc = _supervisor(CHILD)
    pid, sid, flag = proc.stdout.readline().split()
    assert int(sid) == int(pid) != proc.pid  # a session (and process group) of its own
    assert flag == "1"  # the child knows it is supervised
    os.killpg(proc.pid, signal.SIGTERM)  # `timeout`, scancel, systemd: the supervisor's whole group
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert out.split() == ["sigterms", "1"]  # passed on once; the child was outside the group


# the child: starts a process (as the driver starts Ray's), says both pids, runs until SIGTERM
BUSY = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    # a process group of its own, as Ray's trial workers have
    ray = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(0.01)"], process_group=0)
    signal.signal(signal.SIGTERM, lambda *a: (ray.kill(), sys.exit(143)))
    print(os.getpid(), ray.pid, flush=True)
    while True:
        time.sleep(0.01)
""")


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _until(pids, want: bool) -> None:
    deadline = time.monotonic() + 30
    while any((_state(p) == "T") != want for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all((_state(p) == "T") == want for p in pids), [(p, _state(p)) for p in pids]


def test_ctrl_z_stops_the_child_and_what_it_started_and_fg_resumes_them():
    # Ctrl-Z in a terminal sends SIGTSTP to the supervisor's group only; the child (in its own session) and the
    # processes it started (Ray's) stop with it, and `fg` (SIGCONT) resumes all of them, as without a supervisor
    proc = _supervisor(BUSY)
    child, ray = map(int, proc.stdout.readline().split())
    try:
        os.kill(proc.pid, signal.SIGTSTP)
        _until([proc.pid, child, ray], True)
        os.kill(proc.pid, signal.SIGCONT)
        _until([proc.pid, child, ray], False)
        os.killpg(proc.pid, signal.SIGTERM)  # still a working supervisor: the stop is passed on, the status comes back
        proc.communicate(timeout=30)
        assert proc.returncode == 143
    finally:
        for pid in (ray, child, proc.pid):
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_child_ended_by_a_signal_returns_128_plus_its_number():
    proc = _supervisor("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGKILL


def test_the_child_dies_with_a_killed_supervisor():
    proc = _supervisor(CHILD)
    pid = int(proc.stdout.readline().split()[0])
    proc.kill()  # SIGKILL: the supervisor can pass nothing on
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _gone(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its SIGKILLed supervisor")


def test_a_supervised_commands_errors_and_status_come_back_as_one_line(tmp_path):
    missing = tmp_path / "missing.yaml"
    out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--space", str(missing), "--storage",
                          str(tmp_path / "runs"), "-q"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and str(missing) in out.stderr and "Traceback" not in out.stderr


def test_in_process_main_runs_the_command_itself(monkeypatch):
    """``main(argv)`` (a library caller, the tests) never spawns a child: only the console script does."""
    import mitogan.cli as cli

    monkeypatch.setattr(cli, "supervise_child", lambda cmd: pytest.fail(f"supervised: {cmd}"))
    monkeypatch.delenv(cli.SUPERVISED_ENV, raising=False)
    assert cli.main(["search", "--space", "/nonexistent/space.yaml", "-q"]) == 2
