"""`mitogan fit-sim`: bad input in one line before Ray starts; a real fit (local Ray, Optuna, W&B offline)
killed mid-way and continued with --resume; fitted.yaml read by `mitogan simulate --config`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mitogan.cli import main


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """A small simulated 'lab' with known parameters: 4 videos x 6 frames of 128 px, thick blurry tubes."""
    from mitogan.simfit.space import to_params
    from mitogan.simulate import simulate_dataset

    out = tmp_path_factory.mktemp("lab")
    return simulate_dataset(out, videos=4, frames=6, size=128, seed=7, progress=False,
                            params=to_params({"width_mean": 10.0, "psf_sigma": 2.5}))


@pytest.mark.parametrize("argv, says", [
    (["/no/such/movie.tif"], "DATA /no/such/movie.tif: no such file"),
    (["LAB", "--trials", "0"], "--trials 0"),
    (["LAB", "--params", "width_mean,wdth"], "--params wdth"),
    (["LAB", "--tile", "8"], "--tile 8"),
    (["LAB", "--pixel-size", "-1"], "--pixel-size -1"),
])
def test_bad_input_is_one_line_naming_the_option_and_exit_2(argv, says, lab, tmp_path, capsys):
    argv = [str(lab) if a == "LAB" else a for a in argv]
    assert main(["fit-sim", *argv, "--out", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mitogan: error:") and says in err and "\n" not in err
    assert not (tmp_path / "fit" / "state").exists()  # refused before anything ran


def test_an_output_folder_holding_something_else_is_refused(lab, tmp_path, capsys):
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "notes.txt").write_text("mine")
    assert main(["fit-sim", str(lab), "--out", str(tmp_path / "fit")]) == 2
    assert "--out" in capsys.readouterr().err
    assert (tmp_path / "fit" / "notes.txt").read_text() == "mine"


def _fit_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "mitogan", "fit-sim", *args]


def _results(state: Path) -> dict[str, list[str]]:
    return {p.parent.name: p.read_text().splitlines() for p in state.glob("trial_*/result.json")}


def _kill_after(proc, state: Path, ended: int, timeout: float = 240) -> dict:
    """SIGKILL the fit's whole process group once ``ended`` trials have a final result and Ray has saved
    its experiment state; returns the results seen then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        seen = _results(state)
        done = sum(any('"finished": true' in line for line in lines) for lines in seen.values())
        if done >= ended and list(state.glob("experiment_state-*.json")):
            time.sleep(2.5)  # one more experiment-state save (every 2 s) after those results
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return _results(state)
        time.sleep(0.2)
    pytest.fail(f"the fit ended (rc {proc.poll()}) or stalled before {ended} trials finished")


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
@pytest.mark.slow
def test_a_killed_fit_resumes_and_writes_a_fitted_simulator(lab, tmp_path):
    out, env = tmp_path / "fit", {**os.environ, "TMPDIR": "/tmp"}
    proc = subprocess.Popen(_fit_cmd(str(lab), "--out", str(out), "--trials", "6", "--smoke", "-q"), env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    before = _kill_after(proc, out / "state", ended=2)
    assert json.loads((out / "fit.json").read_text())["status"] == "running"  # killed: no chance to say more
    done = subprocess.run(_fit_cmd("--out", str(out), "--resume", "-q"), env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    status = json.loads((out / "fit.json").read_text())
    assert status["status"] == "finished" and status["trials_ended"] == 6
    after = _results(out / "state")
    assert len(after) == 6  # the 6 trials asked for, not 6 more
    for trial, lines in before.items():  # trials that had ended before the kill were kept, not run again
        if any('"finished": true' in line for line in lines):
            assert after[trial] == lines
    assert "realism_gap default" in done.stdout and (out / "report" / "fit.png").stat().st_size > 10_000
    # a W&B offline run for every trial (a resumed trial appends to its own run id) and one for the fit
    from search.wandb_log import trial_run_id

    runs = {p.parent.name.rsplit("-", 1)[-1] for p in (out / "state" / "wandb").glob("offline-run-*/run-*.wandb")}
    assert {trial_run_id("fit-sim-fit", t.removeprefix("trial_")) for t in [*after, "trial_search"]} <= runs
    # the fitted simulator writes labelled data
    assert main(["simulate", "--config", str(out / "fitted.yaml"), "--out", str(tmp_path / "sim"), "--videos", "1",
                 "--frames", "2", "--size", "64", "-q"]) == 0
    truth = json.loads((tmp_path / "sim" / "video_000.json").read_text())
    assert truth["params"]["width_mean"] == pytest.approx(status["best"]["config"]["width_mean"])


def test_resume_of_a_finished_fit_does_nothing(tmp_path, capsys):
    from mitogan.fsutil import write_marker

    out = tmp_path / "fit"
    out.mkdir()
    write_marker(out, "fit-sim")
    (out / "fit.json").write_text(json.dumps({"status": "finished", "trials_ended": 5, "options": {}}))
    assert main(["fit-sim", "--out", str(out), "--resume"]) == 0
    assert "already finished (5 trials)" in capsys.readouterr().out


@pytest.mark.slow
def test_the_whole_frame_statistics_tell_a_lab_s_tube_width_from_half_and_double(tmp_path):
    """``imagestats`` claims its whole-frame statistics pin down tube width where the tile objective is noisy.
    With every other parameter at the lab's true value, their gap to the lab is smaller at the true width (10 px)
    than at half (5 px) and at double (20 px), for each of two simulation seeds, at the fit's middle rung (the
    factor 2 chosen before measuring). The whole objective does not pass this on this lab: its tile term prefers
    7 px at every split and simulation seed tried (the lab's own sampling: another lab drawn from the same truth
    prefers 10 px) and its temporal term is noisy with 4-frame videos, so a 16-trial fit's width moved between
    5.7 and 9.5 px across commits (docs/simulation-fit.md); `bench/bench_simfit_recovery.py` measures recovery."""
    from mitogan.simfit.imagestats import image_gap, image_stats
    from mitogan.simfit.objective import RUNGS, simulate_videos
    from mitogan.simfit.space import to_params
    from mitogan.simulate import simulate_dataset

    truth = {"width_mean": 10.0, "psf_sigma": 2.5}  # defaults: 7 and 1.5
    lab = simulate_dataset(tmp_path / "lab", videos=12, frames=4, size=192, seed=11, progress=False,
                           params=to_params(truth))
    from mitogan.simfit.data import read_movies

    real = image_stats(read_movies([lab], quiet=True)[0])
    for seed in (500, 501):
        gap = {w: image_gap(image_stats(simulate_videos(to_params({**truth, "width_mean": w}), RUNGS[1], seed)), real)[0]
               for w in (5.0, 10.0, 20.0)}
        assert gap[10.0] < gap[5.0] and gap[10.0] < gap[20.0], (seed, gap)
