"""Static checks every commit must pass: undefined names, unused imports and variables, syntax errors,
pylint's error class and flake8-bugbear's likely bugs (the rule set is ``[tool.ruff.lint]`` in
pyproject.toml, so a plain ``ruff check`` gives the same answer). Cheap, and they catch what a test may
never execute."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_rules_pass():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed (it is in the dev extra: make install)")
    out = subprocess.run([ruff, "check", "--no-cache", "mitogan", "search", "bench", "cluster", "tests"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
