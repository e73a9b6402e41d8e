"""`mitogan search` options reach SearchOptions (no Ray run), its help is plain text with real defaults,
and --dashboard starts Ray's dashboard on loopback only (slow: starts a local Ray)."""

from __future__ import annotations

import pytest


def parsed_options(monkeypatch, argv):
    import search.run
    from mitogan.cli import main

    seen = {}

    def fake_run_search(opts):
        seen["opts"] = opts
        return __import__("pathlib").Path("/nonexistent")

    monkeypatch.setattr(search.run, "run_search", fake_run_search)
    assert main(["search", *argv]) == 0
    return seen["opts"]


def test_quiet_verbose_and_dashboard_flags(monkeypatch):
    opts = parsed_options(monkeypatch, [])
    assert opts.progress and not opts.verbose and not opts.dashboard  # progress on, Ray quiet, no dashboard
    opts = parsed_options(monkeypatch, ["-q", "-v", "--dashboard"])
    assert not opts.progress and opts.verbose and opts.dashboard


def test_warm_trials_by_default_and_cold_ones_on_request_but_not_on_resume(monkeypatch, capsys):
    from mitogan.cli import main

    assert parsed_options(monkeypatch, []).reuse_actors
    assert not parsed_options(monkeypatch, ["--cold-trials"]).reuse_actors
    assert main(["search", "--resume", "old", "--cold-trials"]) == 2  # a resumed search keeps how it ran
    err = capsys.readouterr().err
    assert "--cold-trials with --resume" in err and err.count("\n") == 1


def test_a_time_budget_is_read_as_a_duration_and_a_bad_one_is_one_line(monkeypatch, capsys):
    from mitogan.cli import main

    assert parsed_options(monkeypatch, []).time_budget is None
    for given, expected in (("90", 90.0), ("90s", 90.0), ("20m", 1200.0), ("1.5h", 5400.0), ("2D", 172800.0)):
        assert parsed_options(monkeypatch, ["--time-budget", given]).time_budget == expected  # in s
    for bad, says in (("soon", "not a duration"), ("-5m", "above 0"), ("0", "above 0"), ("inf", "above 0"),
                      ("m", "not a duration")):
        assert main(["search", f"--time-budget={bad}"]) == 2
        err = capsys.readouterr().err
        assert f"--time-budget {bad!r}" in err and says in err and err.count("\n") == 1, err
    # population-based training: the population trains together, so a budget cannot end it early
    from mitogan.errors import MitoganError
    from search.run import SearchOptions, validate_options

    with pytest.raises(MitoganError, match="--time-budget with --scheduler pbt"):
        validate_options(SearchOptions(time_budget=1200.0, scheduler="pbt"))
    with pytest.raises(MitoganError, match="--time-budget -1"):
        validate_options(SearchOptions(time_budget=-1))
    assert main(["search", "--resume", "old", "--time-budget", "5m"]) == 2  # a resumed search keeps its budget
    assert "--time-budget with --resume" in capsys.readouterr().err


def test_help_is_plain_text_with_real_defaults(capsys):
    from mitogan.cli import main

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "``" not in text
    assert "(default: 8)" in text and "WANDB_MODE" in text and "--dashboard" in text


@pytest.mark.slow
def test_dashboard_listens_on_loopback_and_its_url_is_printed(capsys):
    import urllib.request

    import ray

    from search.run import _init_ray

    _init_ray(None, dashboard=True)
    try:
        line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Ray dashboard:")][0]
        url = line.split()[-1]
        assert url.startswith("http://127.0.0.1:")
        try:
            status = urllib.request.urlopen(url, timeout=20).status
        except urllib.error.HTTPError as e:  # token auth may answer 401: still the dashboard, listening
            status = e.code
        assert status in (200, 401)
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_gpus_the_machine_does_not_have_fail_in_seconds_and_write_nothing(tmp_path):
    import subprocess
    import sys
    import time

    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--gpus-per-trial", "1", "--storage",
                          str(tmp_path / "runs"), "--name", "g", "--sim-videos", "1", "--sim-frames", "2", "-q"],
                         capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert "--gpus-per-trial 1: no node of the Ray cluster has that" in out.stderr and "0 GPU" in out.stderr
    assert time.monotonic() - t0 < 120  # Ray's start-up, not a wait for a GPU that never comes
    assert not (tmp_path / "runs" / "g").exists()


def test_a_temp_folder_too_long_for_rays_sockets_is_one_line(tmp_path):
    """Ray puts its socket files under the temp folder (107 bytes at most): a long TMPDIR is named, not a
    traceback, and the search writes nothing."""
    import os
    import subprocess
    import sys

    long_tmp = tmp_path / ("t" * 80)
    long_tmp.mkdir()
    out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--storage", str(tmp_path / "runs"), "--name",
                          "t", "--sim-videos", "1", "--sim-frames", "2", "-q"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(long_tmp)})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and "TMPDIR" in out.stderr and "too long" in out.stderr
    assert not (tmp_path / "runs" / "t").exists()
