"""Simulator tiles mixed into training (train.sim_share, train.sim_config; mitogan.simmix): the batch mix is
the requested share, held-out evaluation sees real tiles only, bad settings are one line naming the key,
and `mitogan train` → `mitogan export` records the simulator."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mitogan.config import Config, from_flat, to_flat
from mitogan.errors import ConfigError
from mitogan.simmix import resolve_sim_config, sim_rows, sim_tiles
from mitogan.simulate import SimParams
from mitogan.simfit.data import write_fitted
from mitogan.tiles import TileSet
from mitogan.train import _build_state, _real_batch, load_checkpoint, train

TINY = {"preprocess.tile.size": 32, "preprocess.tile.scale": 0.5, "model.g_width": 8, "model.d_width": 8,
        "model.latent_dim": 16, "train.batch_size": 8, "train.steps": 3, "train.report_every": 1,
        "train.n_samples": 8, "train.eval_samples": 32, "train.threads": 1}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A fitted.yaml as `mitogan fit-sim` writes it (dense, bright tubes: many non-empty tiles)."""
    path = tmp_path_factory.mktemp("fit") / "fitted.yaml"
    return write_fitted(path, SimParams(density=8.0, brightness=800.0), header="test fit")


def _real(n: int = 48, seed: int = 1) -> TileSet:
    """Real-looking tiles of 32 px from 4 'videos' (so the held-out split can take whole videos)."""
    rng = np.random.default_rng(seed)
    x = np.full((n, 1, 32, 32), -1.0, np.float32)
    for t in x:
        y, xx = rng.integers(4, 28, 2)
        t[0, y - 2:y + 2, xx - 4:xx + 4] = rng.uniform(0.3, 1.0)
    return TileSet(x, np.arange(n, dtype=np.int32) % 4, np.arange(n, dtype=np.int32) // 4,
                   np.zeros((n, 2), np.int32), {})


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_sim_rows_take_the_requested_share(share):
    gen = torch.Generator().manual_seed(3)
    rows = torch.cat([sim_rows(64, share, gen) for _ in range(200)]).float()  # 12,800 rows
    # a binomial share: within 4 standard errors of the request
    assert abs(rows.mean().item() - share) < 4 * (share * (1 - share) / rows.numel()) ** 0.5


@pytest.mark.parametrize("share", [0.25, 0.75])
def test_the_discriminators_real_batches_hold_the_share(share):
    cfg = from_flat(Config, {**TINY, "train.sim_share": share, "train.sim_config": "unused.yaml"})
    st = _build_state(cfg, torch.device("cpu"))
    st.sim = torch.ones(10, 1, 32, 32)  # simulator tiles all +1, real ones all -1: each row tells its origin
    data = -torch.ones(20, 1, 32, 32)
    rows = torch.cat([_real_batch(st, cfg, data)[:, 0, 0, 0] for _ in range(300)])  # 2,400 rows
    assert set(rows.unique().tolist()) <= {-1.0, 1.0}
    assert abs((rows > 0).float().mean().item() - share) < 4 * (share * (1 - share) / rows.numel()) ** 0.5


def test_share_zero_leaves_the_run_unchanged(tiles):
    # a simulator named but share 0: the same numbers as a run without it (no extra random draws)
    plain = train(from_flat(Config, TINY), tiles)
    named = train(from_flat(Config, {**TINY, "train.sim_config": "/nowhere/fitted.yaml"}), tiles)
    strip = [{k: v for k, v in h.items() if k != "steps_per_s"} for h in plain.history]
    assert strip == [{k: v for k, v in h.items() if k != "steps_per_s"} for h in named.history]


def test_sim_tiles_are_preprocessed_like_the_real_ones(fitted):
    cfg = from_flat(Config, {**TINY, "train.sim_share": 0.5, "train.sim_config": str(fitted.parent)})
    tiles, info = sim_tiles(cfg)
    assert tiles.shape[1:] == (1, 32, 32) and tiles.dtype == np.float32 and len(tiles) == info["n_tiles"]
    assert tiles.min() >= -1 and tiles.max() <= 1
    assert info["config"] == str(fitted.resolve()) and info["share"] == 0.5 and info["params"]["density"] == 8.0
    # the preprocessing the real tiles record wins over the run's (here: tiles cut at full scale)
    real_meta = {"config": {**{k: v for k, v in to_flat(cfg).items() if k.startswith("preprocess.")},
                            "preprocess.tile.scale": 1.0}}
    full, _ = sim_tiles(cfg, real_meta)
    assert len(full) > len(tiles)  # 36 tiles per 192 px frame instead of 9


def test_held_out_evaluation_uses_only_real_tiles(fitted, tmp_path):
    from mitogan.metrics import InTrainingEvaluator
    from mitogan.metrics.protocol import training_tiles

    real = _real()
    cfg = from_flat(Config, {**TINY, "train.sim_share": 0.9, "train.sim_config": str(fitted)})
    evaluator = InTrainingEvaluator(real, holdout=cfg.train.holdout, cache=False, n_fake=32)
    result = train(cfg, training_tiles(real, cfg.train.holdout), evaluate=evaluator, out_dir=tmp_path / "run")
    assert np.isfinite(result.report["primary"])
    sim, _ = sim_tiles(cfg)
    real_rows = {t.tobytes() for t in real.tiles}
    ref = evaluator.reference
    for side in (ref.heldout, ref.train):  # scored against, and the copy test's training side
        rows = {t.tobytes() for t in side}
        assert rows <= real_rows and not rows & {t.tobytes() for t in sim}
    # the checkpoint keeps what was mixed in
    info = load_checkpoint(tmp_path / "run")["sim"]
    assert info["share"] == 0.9 and info["n_tiles"] == len(sim) and len(info["sha256"]) == 64


@pytest.mark.parametrize("flat, key", [
    ({"train.sim_share": 0.5}, "train.sim_config"),
    ({"train.sim_share": 0.95, "train.sim_config": "f.yaml"}, "train.sim_share"),
    ({"train.sim_share": -0.1, "train.sim_config": "f.yaml"}, "train.sim_share"),
])
def test_bad_settings_name_the_key(flat, key):
    with pytest.raises(ConfigError, match=f"^{key}: "):
        from_flat(Config, flat)


def test_a_missing_simulator_names_the_key(tmp_path):
    for path in (tmp_path / "nope.yaml", tmp_path):  # no file; a folder without fitted.yaml
        with pytest.raises(ConfigError, match="^train.sim_config: "):
            resolve_sim_config(path)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "mitogan", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_train_refuses_a_missing_simulator_in_one_line(outputs, tmp_path):
    out = _cli("train", "--data", outputs["tiles"], "--out", tmp_path / "run", "--smoke", "-q",
               "--set", "train.sim_share=0.3", "--set", f"train.sim_config={tmp_path / 'missing.yaml'}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "train.sim_config" in out.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.slow
def test_train_with_simulator_tiles_and_export_record_it(outputs, fitted, tmp_path):
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    out = _cli("train", "--data", outputs["tiles"], "--out", run, "--smoke", "-q",
               "--set", "train.sim_share=0.4", "--set", f"train.sim_config={fitted}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "primary" in out.stderr  # scored against the held-out real tiles
    assert _cli("export", run, "--out", bundle).returncode == 0
    sim = json.loads((bundle / "config.json").read_text())["simulator"]
    assert sim["share"] == 0.4 and sim["config"] == str(fitted.resolve()) and sim["params"]["density"] == 8.0
    assert "simulator tiles" in (bundle / "README.md").read_text()
