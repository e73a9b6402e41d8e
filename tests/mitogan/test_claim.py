"""One writer per output folder (mitogan/claim.py): the claim is atomic across processes started at the same
moment, dies with its process however it ends, and every command that writes a folder refuses, in one line
naming the running command (pid, host, start), to write where another one is writing, changing nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mitogan import claim
from mitogan.cli import main
from tests.mitogan.test_cli_badinput import tree_state
from tests.mitogan.test_export import TINY

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mitogan import claim
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():  # every process waits here, then all claim at the same moment
        time.sleep(0.001)
    try:
        claim.hold(sys.argv[1], "train")
    except Exception as e:
        print("refused:", e, flush=True)
        sys.exit(2)
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
""")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Inputs for every command: a movie, tiles, a tiny training run and its bundle."""
    import numpy as np
    import tifffile

    from mitogan.explain.validate import simulated_tiles
    from mitogan.tiles import TileSet, save_tiles

    d = tmp_path_factory.mktemp("claim")
    tiles = simulated_tiles({}, videos=1, frames=2, frame_size=64, tile=32, seed=0)
    save_tiles(d / "data" / "tiles.npz", TileSet.from_array(tiles))
    movie = np.random.default_rng(0).poisson(50, (3, 64, 64)).astype(np.uint16)
    movie[:, 20:24, 8:56] += 400  # a tube, so preprocessing keeps tiles
    tifffile.imwrite(d / "stack.tif", movie, photometric="minisblack")
    assert main(["train", "--data", str(d / "data"), "--out", str(d / "run"), "--no-eval", "-q",
                 *[a for kv in TINY for a in ("--set", kv)]]) == 0
    assert main(["export", str(d / "run"), "--out", str(d / "bundle"), "-q"]) == 0
    return d


def _holders(target: Path, go: Path, n: int, hold_s: float) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", HOLD, str(target), str(go), str(hold_s)], stdout=subprocess.PIPE,
                             text=True) for _ in range(n)]


def _wait_holding(proc: subprocess.Popen) -> None:
    assert [proc.stdout.readline().strip() for _ in range(2)] == ["ready", "holding"]


def test_of_processes_claiming_at_the_same_moment_exactly_one_wins(tmp_path):
    target, go = tmp_path / "out", tmp_path / "go"
    for round in range(3):  # three races, each of six processes released at once
        procs = _holders(target, go, 6, 0.5)
        assert all(p.stdout.readline().strip() == "ready" for p in procs)  # all started and polling
        go.touch()
        outs = [p.communicate(timeout=60)[0] for p in procs]
        go.unlink()
        assert sorted(p.returncode for p in procs) == [0] + [2] * 5, outs
        assert sum("another MitoGAN train (pid" in o for o in outs) == 5, outs


def test_a_claim_dies_with_its_process_and_names_it_while_alive(tmp_path):
    target, go = tmp_path / "out", tmp_path / "go"
    go.touch()
    (proc,) = _holders(target, go, 1, 600)
    try:
        _wait_holding(proc)
        info = claim.holder(target)
        assert info["pid"] == proc.pid and info["command"] == "train"
        with pytest.raises(Exception) as e:
            claim.hold(target, "synth")
        assert f"pid {proc.pid}" in str(e.value) and "started" in str(e.value) and "\n" not in str(e.value)
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the lock
        proc.wait()
    assert claim.holder(target) is None
    claim.hold(target, "synth")  # the file a killed holder left is reused
    assert claim.holder(target)["pid"] == os.getpid()
    claim.release(target)
    assert not claim.lock_path(target).exists()  # released: nothing left beside the folder


def _argv(command: str, chain: Path, out: Path) -> list[str]:
    """A command line of ``command`` that succeeds, writing into ``out`` (tiny sizes)."""
    data, run = str(chain / "data"), str(chain / "run")
    tiny = [a for kv in TINY for a in ("--set", kv)]
    return {"simulate": ["simulate", "--videos", "1", "--frames", "2", "--size", "32"],
            "preprocess": ["preprocess", str(chain / "stack.tif"), "--no-cache", "--set", "tile.size=32"],
            "train": ["train", "--data", data, "--no-eval", *tiny],
            "evaluate": ["evaluate", data, data, "--k", "3"],
            "export": ["export", run],
            "synth": ["synth", str(chain / "bundle"), "-n", "4"],
            "explain": ["explain", run, "--data", data, "--max-tiles", "8"]}[command] + ["--out", str(out), "-q"]


COMMANDS = ["simulate", "preprocess", "train", "evaluate", "export", "synth", "explain"]


@pytest.mark.slow
@pytest.mark.parametrize("command,state", [(c, "new") for c in COMMANDS] + [("train", "existing"),
                                                                           ("synth", "existing")])
def test_every_command_refuses_a_folder_another_command_is_writing(chain, tmp_path, capsys, command,  # noqa: F811
                                                                   state):
    """Another process holds the claim (as a running command would): exit 2, one line naming it, nothing
    written; once it ends, the same command line runs."""
    out, go = tmp_path / "out", tmp_path / "go"
    argv = _argv(command, chain, out)
    if state == "existing":  # an earlier output of this command, being resumed/overwritten by the other process
        assert main(argv) == 0
        argv += ["--resume"] if command == "synth" else ["--overwrite"]
    capsys.readouterr()
    go.touch()
    (proc,) = _holders(out, go, 1, 600)
    try:
        _wait_holding(proc)
        before = tree_state(tmp_path)
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"another MitoGAN train (pid {proc.pid}" in err, err
        assert tree_state(tmp_path) == before
    finally:
        proc.kill()
        proc.wait()
    assert main(argv) == 0


def test_two_commands_started_together_leave_one_output_and_one_refusal(tmp_path):
    """Two real `mitogan simulate` into one --out at once: one finishes, one is refused (by the claim, or, if
    it came late, by the finished output), and the output is the complete one."""
    out = tmp_path / "sim"
    cmd = [sys.executable, "-m", "mitogan", "simulate", "--out", str(out), "--videos", "2", "--frames", "10",
           "--size", "128", "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 2], results
    refusal = next(err for rc, err in results if rc == 2)
    assert refusal.count("\n") == 1 and "Traceback" not in refusal
    assert json.loads((out / ".mitogan.json").read_text())["kind"] == "simulation"
    assert (out / "simulation.json").exists()
    assert not list(tmp_path.glob(".sim.*"))  # no temporary folder or lock left beside it
