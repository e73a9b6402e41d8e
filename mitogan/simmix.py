"""Simulator tiles mixed into GAN training: ``train.sim_share`` of each real batch comes from a simulator.

``train.sim_config`` names the simulator: a ``fitted.yaml`` written by ``mitogan fit-sim`` (or that command's
``--out`` folder, or any YAML of ``SimParams`` fields). Its movies are simulated once per node
(``simulate.default_dataset``: ``SIM_VIDEOS`` videos of ``SIM_FRAMES`` frames of ``SIM_SIZE`` px, seed
``SIM_SEED``, cached through ``fsutil.cached_dir``) and cut into tiles by the run's own preprocessing
(``preprocess.Pipeline`` with ``cfg.preprocess``: the same steps, tile size and scale as the real tiles,
cached through ``fsutil.cached_file``), so a search's trials share both caches.

What the simulator tiles touch: only the discriminator's "real" batches (``mitogan.train``). The held-out
evaluation, the copy test and the diversity reference are built from the real tiles alone, before the
simulator tiles are loaded, so a generator is never scored against simulated tiles as if they were real.
The frame size follows ``mitogan fit-sim``'s largest rung (192 px), the size at which the fit judged the
simulator against the real tiles.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from mitogan.errors import ConfigError

__all__ = ["SIM_VIDEOS", "SIM_FRAMES", "SIM_SIZE", "SIM_SEED", "resolve_sim_config", "sim_params", "sim_tiles",
           "sim_rows"]

SIM_VIDEOS = 16
SIM_FRAMES = 8
SIM_SIZE = 192  # px: mitogan.simfit.objective.RUNGS judge the simulator at this frame size
SIM_SEED = 0
FITTED_NAME = "fitted.yaml"  # what `mitogan fit-sim --out DIR` writes inside DIR


def resolve_sim_config(path) -> Path:
    """The simulator file ``train.sim_config`` stands for, as an absolute path: the file itself, or
    ``fitted.yaml`` inside a ``mitogan fit-sim`` folder. A ConfigError naming the key when there is none."""
    if not path:
        raise ConfigError("train.sim_config: not set (a fitted.yaml of `mitogan fit-sim`, or its --out folder)")
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / FITTED_NAME).is_file():
            raise ConfigError(f"train.sim_config: {path} is a folder without {FITTED_NAME} (not a finished "
                              "`mitogan fit-sim` output)")
        p = p / FITTED_NAME
    if not p.is_file():
        raise ConfigError(f"train.sim_config: {path} does not exist (give a fitted.yaml of `mitogan fit-sim`)")
    return p.resolve()


def sim_params(path):
    """The ``SimParams`` of ``train.sim_config`` at the mixing frame size and length."""
    import dataclasses

    from mitogan.config import load_config
    from mitogan.simulate import SimParams

    file = resolve_sim_config(path)
    try:
        params = load_config(file, SimParams)
    except ConfigError as e:
        raise ConfigError(f"train.sim_config: {e}") from None
    return file, dataclasses.replace(params, size=SIM_SIZE, frames=SIM_FRAMES)


def sim_tiles(cfg, real_meta: dict | None = None) -> tuple[np.ndarray, dict]:
    """Simulator tiles for ``cfg`` ((N, 1, S, S) float32 in [-1, 1]) and their provenance (share, file, its
    sha256, the parameters, how many tiles); simulation and preprocessing both cached. They are preprocessed
    as the real tiles were: by the preprocessing recorded in ``real_meta`` (a tiles file's ``meta``), else
    by ``cfg.preprocess``."""
    from mitogan.config import to_dict
    from mitogan.io import read_inputs
    from mitogan.preprocess import Pipeline
    from mitogan.simulate import default_dataset

    file, params = sim_params(cfg.train.sim_config)
    folder = default_dataset(videos=SIM_VIDEOS, frames=SIM_FRAMES, size=SIM_SIZE, seed=SIM_SEED, params=params,
                             progress=False)
    ts = Pipeline(_preprocessing(cfg, real_meta or {})).run(read_inputs([folder], progress=False), progress=False)
    provenance = {"share": float(cfg.train.sim_share), "config": str(file),
                  "sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
                  "videos": SIM_VIDEOS, "frames": SIM_FRAMES, "size": SIM_SIZE, "seed": SIM_SEED,
                  "n_tiles": len(ts), "params": to_dict(params)}
    return ts.tiles, provenance


def _preprocessing(cfg, real_meta: dict):
    """The preprocessing the real tiles went through (their meta records it as flat ``preprocess.*`` keys)."""
    from mitogan.config import PreprocessConfig, from_flat

    flat = {k[len("preprocess."):]: v for k, v in (real_meta.get("config") or {}).items()
            if k.startswith("preprocess.")}
    if not flat:
        return cfg.preprocess
    try:
        return from_flat(PreprocessConfig, flat)
    except ConfigError:  # tiles from an older MitoGAN whose keys differ: the run's own config
        return cfg.preprocess


def sim_rows(batch: int, share: float, gen: torch.Generator) -> torch.Tensor:
    """(batch,) bool: which rows of a real batch to replace by simulator tiles, each with probability
    ``share`` (drawn from ``gen``, the run's checkpointed data stream)."""
    return torch.rand(batch, generator=gen) < share
