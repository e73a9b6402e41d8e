"""`mitogan search --space smoke` end to end through the CLI on the real data in ../shared/data (the shipped
smoke space, shortened with --set so CI stays within budget)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.search.wandb_records import read_run

pytestmark = [pytest.mark.slow, pytest.mark.long]  # beyond CI's budget: `make test-long`

SHORT = ["--set", "train.steps=200", "--set", "train.eval_every=100", "--set", "train.report_every=100"]


def run_cli(args, tmp_path):
    out = subprocess.run([sys.executable, "-m", "mitogan", "search", "--space", "smoke", "--trials", "2",
                          "--storage", str(tmp_path), "--name", "s", *SHORT, *args],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp_path / "s", out


def check_search(search_dir):
    summary = json.loads((search_dir / "report" / "summary.json").read_text())
    assert summary["trials"] == 2
    assert (search_dir / "report" / "index.html").exists()
    runs = [read_run(p) for p in search_dir.glob("wandb/offline-run-*/run-*.wandb")]
    assert sorted(r["run"]["job_type"] for r in runs) == ["search", "trial", "trial"]
    if summary["best"] is not None:  # a finished trial was exported and loads
        import mitogan

        G = mitogan.load_generator(search_dir / "best")
        assert G.config["image_size"] == 32


def test_smoke_space_on_the_real_shared_data(tmp_path, shared_data):
    """The shipped space on real data, quietly. (The built-in simulator's CLI path, ``--sim-videos``, runs in the
    cluster, scheduler, resume and e2e tests; a second smoke search on it here cost CI ~85 s and checked nothing
    those do not.)"""
    search_dir, out = run_cli(["--data", str(shared_data), "-q"], tmp_path)
    check_search(search_dir)
    data = json.loads(next(search_dir.glob("trial_*/data.json")).read_text())
    assert data["n_tiles"] > 500 and any("deep-events" in s for s in data["sources"])
    # -q: no progress bar; and Ray's own console lines stay off without -v
    for noise in ("trials:", "View detailed results", "tensorboard --logdir", "Token authentication"):
        assert noise not in out.stdout + out.stderr, noise
    assert out.stdout.splitlines()[-1].startswith("report: ")
