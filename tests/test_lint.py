"""Static checks every commit must pass: undefined names, unused imports and variables, syntax errors
(ruff's pyflakes rules F and E9). Cheap, and they catch what a test may never execute."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_pyflakes_rules_pass():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed (it is in the dev extra: make install)")
    out = subprocess.run([ruff, "check", "--select", "F,E9", "--line-length", "120", "--no-cache",
                          "mitogan", "search", "bench", "cluster", "tests"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
