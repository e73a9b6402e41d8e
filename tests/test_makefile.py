"""The Makefile installs what each job needs: `make search` the runtime only, `make test` the test extras on top
(one stamp per level, so `make test` after `make search` adds only the extras). Dry runs (`make -n`), no pip."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry(target: str, venv: Path) -> list[str]:
    # run as a user would, also when the tests themselves run under make (CI's `make test`): no inherited
    # MAKEFLAGS/MAKELEVEL, which add "make[1]: Entering directory" lines
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "--no-print-directory", "-n", target, f"VENV={venv}", "PYTHON=python3"], cwd=REPO,
                         capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_search_installs_the_runtime_only(tmp_path):
    lines = _dry("search", tmp_path / "venv")
    pips = [line for line in lines if "pip install" in line and "--upgrade pip" not in line]
    # torch first (the pin), then MitoGAN itself without extras, then the search
    assert pips[0].endswith("pip install torch==2.13.0")
    assert pips[1].endswith("pip install -e .")
    assert not any("[dev]" in line for line in lines)
    assert lines[-1].rstrip().endswith("mitogan search --space smoke")


def test_test_after_search_adds_only_the_extras(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".mitogan-runtime").touch()  # what `make search` left (newer than the Makefile and pyproject.toml)
    lines = _dry("test", venv)
    assert lines[0].endswith('pip install -e ".[dev]"') and "torch" not in "\n".join(lines)
    assert "bin/pytest -q" in lines[-1]  # the tests themselves, which .ci/run runs through `make test`


def test_fresh_test_installs_runtime_then_extras(tmp_path):
    lines = _dry("test", tmp_path / "venv")
    order = [i for i, line in enumerate(lines) if "pip install -e" in line]
    assert [lines[i].split("pip install ", 1)[1] for i in order] == ["-e .", '-e ".[dev]"']
