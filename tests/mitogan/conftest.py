"""Fixtures of the core tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    """24 tiles of 32 px: bright blobs on a dark background, like mitochondria in [-1, 1]."""
    rng = np.random.default_rng(0)
    x = np.full((24, 1, 32, 32), -1.0, np.float32)
    for t in x:
        for _ in range(3):
            y, xx = rng.integers(4, 28, 2)
            t[0, y - 2:y + 2, xx - 4:xx + 4] = rng.uniform(0.3, 1.0)
    return x


@pytest.fixture(scope="session")
def outputs(tmp_path_factory):
    """One of every kind of MitoGAN input and output, made by the commands themselves at tiny sizes: raw
    simulated movies, their tiles, a training run, its bundle, a synth output, an incomplete synth output, and a
    search folder with a trial and a best/ bundle. Read-only: tests copy what they change."""
    import json
    import shutil

    from mitogan.cli import main
    from mitogan.simulate import simulate_dataset

    SMOKE = ["--smoke", "--no-eval", "-q"]
    root = tmp_path_factory.mktemp("inputs")
    simulate_dataset(root / "raw", videos=3, frames=6, size=96, seed=2, progress=False)
    assert main(["preprocess", str(root / "raw"), "--out", str(root / "tiles"), "--set", "tile.size=32", "-q"]) == 0
    assert main(["train", "--data", str(root / "tiles"), "--out", str(root / "run"), *SMOKE]) == 0
    assert main(["export", str(root / "run"), "--out", str(root / "bundle")]) == 0
    assert main(["synth", str(root / "bundle"), "-n", "8", "--format", "npy", "--out", str(root / "synth"),
                 "-q"]) == 0
    shutil.copytree(root / "synth", root / "partial")
    (root / "partial" / "synth.json").unlink()  # as a full disk or a kill leaves it
    search = root / "search"
    search.mkdir()
    (search / "search.json").write_text(json.dumps({"name": "search"}))
    shutil.copytree(root / "bundle", search / "best")
    trial = search / "trial_0001"
    trial.mkdir()
    (trial / "params.json").write_text("{}")
    shutil.copy2(root / "run" / "checkpoint.pt", trial / "checkpoint.pt")
    # a search trial records only its sources (no pixel size): the scale is found from them
    sources = json.loads((root / "run" / "data.json").read_text())["sources"]
    (trial / "data.json").write_text(json.dumps({"sources": sources}))
    paths = {"raw": root / "raw", "movie": root / "raw" / "video_000.tif", "tiles": root / "tiles",
             "tilesfile": root / "tiles" / "tiles.npz", "run": root / "run", "bundle": root / "bundle",
             "synth": root / "synth", "partial": root / "partial", "search": search, "trial": trial}
    return {"root": root, **{k: str(v) for k, v in paths.items()}}
