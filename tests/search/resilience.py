"""Helpers for the tests that stop searches the hard way: a tiny space, the search CLI as its own process,
the trials' result rows read back from any storage, and kills by PID of only the processes a test started."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from tests.search.spaces import tiny_space

# 3 trials of 60 steps, a checkpoint every 10: a few seconds each on one CPU
SPACE = tiny_space("tiny", {"train.steps": 60, "train.report_every": 10, "train.eval_every": 30,
                            "train.sample_every": 30, "train.checkpoint_every": 10,
                            "train.eval_samples": 64}, """
  - {name: optim.lr_g, type: float, low: 1.0e-4, high: 1.0e-3, log: true}
""")
CHECKPOINT_EVERY = 10
STEPS = 60


def short_tmp(tmp_path: Path) -> Path:
    """A TMPDIR for the processes a test starts (W&B's empty temp folders land there) that is short enough
    for the Unix sockets Ray puts below it (107 bytes); a link in tmp_path points at it for inspection."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    (tmp_path / "tmpdir").symlink_to(d)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def search_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "mitogan", "search", *args]


def new_search_args(space: Path, storage: str, name: str, trials: int = 3, extra=()) -> list[str]:
    return ["--space", str(space), "--trials", str(trials), "--max-concurrent", "2", "--storage", storage,
            "--name", name, "--no-asha", "--sim-videos", "2", "--sim-frames", "4", "-q", *extra]


def start(args, env=None) -> subprocess.Popen:
    """The search CLI in its own session (so that killing it and its Ray processes touches nothing else)."""
    return subprocess.Popen(search_cmd(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def run(args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(search_cmd(*args), env=env, capture_output=True, text=True, timeout=timeout)


def rows(storage: str, name: str) -> dict[str, list[dict]]:
    """Each trial's result rows (Ray's result.json), read from the storage (local folder or object store)."""
    from search.storage import SearchStore
    from search.trials import expand

    store = SearchStore(storage, name)
    store.download("", skip=lambda rel: not rel.endswith(("result.json", "params.json")))
    out = {}
    for f in sorted(Path(store.local).glob("*/result.json")):
        lines = [line for line in f.read_text().splitlines() if line.strip()]
        parsed = []
        for line in lines:
            try:
                parsed.append(expand(json.loads(line)))  # the trainer's scalars travel packed for Ray
            except ValueError:  # a line being written right now
                pass
        out[f.parent.name] = parsed
    return out


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the search ended (rc {proc.returncode}) before {what}: {err[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def finished(trial_rows: list[dict]) -> bool:
    """Whether the trial ran to its end, by the product's own rule (``search.trials.ran_to_end``): its final
    result says so, or Ray ended it right at its last step before that final result was recorded."""
    from search.trials import ran_to_end

    return bool(trial_rows) and ran_to_end(trial_rows[-1])


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process below it (its local Ray), by PID: a machine that died."""
    from cluster.local_cluster import descendants

    pids = {proc.pid} | descendants([proc.pid])
    kill_pids(pids)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and _state(p) != "Z" for p in pids):
        time.sleep(0.2)


def kill_pids(pids) -> None:
    """SIGKILL each of ``pids`` (those already gone are skipped): a machine, or a node's processes, lost at once."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _state(pid: int) -> str:
    """The process's state letter from /proc (the product's own reading), "X" when it is gone."""
    from mitogan.fsutil import proc_stat

    return proc_stat(pid)[0] or "X"


def restarts(trial_rows: list[dict]) -> list[int]:
    """The step each (re)start of a trial began from: one entry per attempt (Ray resets
    iterations_since_restore to 1 on every start)."""
    return [int(r.get("start_step", 0)) for r in trial_rows if r.get("iterations_since_restore") == 1]


def snapshot(trial_rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Per trial at a kill: whether it had finished, its last step and its row count."""
    return {t: {"finished": finished(r), "step": max((x["step"] for x in r), default=0), "rows": len(r)}
            for t, r in trial_rows.items()}


def steps_lost(trial_rows: list[dict]) -> list[int]:
    """Generator steps trained again after each restart of a trial: its last reported step before the
    restart minus the step it continued from (0 when it continued from beyond its last report: the trainer
    had checkpointed a step whose report never reached the driver)."""
    out = []
    for i, r in enumerate(trial_rows):
        if i and r.get("iterations_since_restore") == 1:
            out.append(max(0, max(x["step"] for x in trial_rows[:i]) - int(r.get("start_step", 0))))
    return out


def check_completed(after: dict[str, list[dict]], at_kill: dict[str, dict], trials: int) -> dict:
    """The guarantees after kills and resumes; returns the measured numbers (also for the benchmark):
    trials rerun from scratch, finished trials that trained again, steps lost at each restart."""
    assert len(after) == trials, f"{len(after)} trials have results, {trials} were requested"
    measured = {"rerun_from_scratch": 0, "steps_lost": [], "finished_ran_again": 0}
    for tid, r in after.items():
        assert finished(r), f"{tid} did not finish: steps {[x.get('step') for x in r]}, restarts {restarts(r)}, {r[-1:]}"
        starts = restarts(r)
        # a first attempt stopped after the trainer wrote its first checkpoint but before the driver took that
        # step's report leaves no row, and the next attempt continues from that checkpoint (the trainer's own
        # file is newer than Ray's state): the rows then begin there (seen once in CI, a SIGTERM right then)
        assert starts and starts[0] in (0, CHECKPOINT_EVERY), f"{tid}: {starts}"
        measured["rerun_from_scratch"] += max(0, starts.count(0) - 1)
        measured["steps_lost"] += steps_lost(r)
        was = at_kill.get(tid)
        if was is not None and was["finished"]:  # no step trained again after the kill
            measured["finished_ran_again"] += int(any(s < STEPS for s in restarts(r[was["rows"]:])))
    return measured
