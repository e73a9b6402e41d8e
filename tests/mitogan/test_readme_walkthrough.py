"""The README's walk-through from the exported generator to each next step, run as written.

The ```bash block of "From the exported generator to your next step" runs in bash with only these
substitutions: ``BEST=`` and ``DATA=`` name a real (tiny) bundle and the movies it was trained on; ``-n 30000``
and ``-n 1000`` become 64 and 16; every ``mitogan`` line gets ``-q``, and ``evaluate`` ``--no-c2st`` (the
classifier two-sample test trains a CNN: minutes at these sizes for nothing the walk-through shows). The
```python block then runs with ``BEST`` in its environment.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## From the exported generator to your next step"


def _blocks(lang: str) -> list[str]:
    text = README.read_text()
    assert SECTION in text
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", section, re.S)


def _as_run(script: str, best: str, data: str) -> str:
    lines = []
    for line in script.splitlines():
        line = re.sub(r"^BEST=\S+", f"BEST={best}", line)
        line = re.sub(r"^DATA=\S+", f"DATA={data}", line)
        line = line.replace("-n 30000", "-n 64").replace("-n 1000", "-n 16")
        if line.startswith("mitogan "):
            code = line.split("#", 1)[0].rstrip()
            line = code + " -q" + (" --no-c2st" if line.startswith("mitogan evaluate") else "")
        lines.append(line)
    return "set -euo pipefail\n" + "\n".join(lines)


def test_the_walkthrough_names_every_next_step():
    (script,) = _blocks("bash")
    commands = [line.split()[1] for line in script.splitlines() if line.startswith("mitogan ")]
    assert {"synth", "evaluate", "explain", "preprocess"} <= set(commands)
    (python,) = _blocks("python")
    assert "torch.export.load" in python and "import mitogan" not in python  # plain PyTorch


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(outputs, tmp_path):
    from mitogan.io import physical_scale
    from mitogan.simulate import PIXEL_SIZE_UM
    from mitogan.tiles import load_tiles

    (script,) = _blocks("bash")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run(["bash", "-c", _as_run(script, outputs["bundle"], outputs["raw"])], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "synthetic" / "synth.json").read_text())["kept"] == 64
    assert physical_scale(tmp_path / "stack" / "images.tif")["pixel_size_um"] == pytest.approx(PIXEL_SIZE_UM)
    # evaluate and explain preprocessed the raw movies as the bundle's data was, and said so
    assert r.stderr.count("raw data, preprocessed as the bundle") == 2
    assert json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["primary"]["name"]
    assert (tmp_path / "explanation" / "index.html").is_file()
    np.testing.assert_array_equal(load_tiles(tmp_path / "tiles").tiles, load_tiles(outputs["tiles"]).tiles)
    assert (tmp_path / "novel" / "manifest.csv").is_file()
    (python,) = _blocks("python")
    r = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=dict(env, BEST=outputs["bundle"]),
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "(16, 1, 32, 32)", r.stderr[-2000:]
