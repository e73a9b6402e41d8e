"""The Ray Tune trainable: one trial = preprocess (cached) → ``mitogan.train.train`` → reports.

This is the only module that calls ``ray.tune.report`` and ``ray.tune.get_checkpoint`` (Ray's report API
has changed four times; keeping it here keeps the churn in one file). Everything else is MitoGAN's:
the trial's config is built from the flat dotted keys Optuna sampled, the stop decision comes from
``search.stopping.NonConvergencePolicy``. W&B is logged from the driver (``search.wandb_log``), not here:
Ray kills a stopped trial's actor before any code after the loop could finish a run.

Every Ray result carries: ``step`` (also as ``timesteps_total``, so TensorBoard's x-axis is the generator
step), the trainer's scalar metrics, ``primary`` (the search objective from ``mitogan.metrics``; its
components ``fidelity`` and ``diversity_gap`` on the results where it was evaluated), ``objective`` and
``objective_mode``, ``stop_reason`` ("" while running or when the trial finished), ``finished`` (1 only on
the trial's last result when it ran all its steps) and, on results with a new sample grid, ``samples_png``
(its path relative to the trial folder).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from mitogan.config import Config, from_flat
from search.stopping import NonConvergencePolicy

__all__ = ["train_trial", "make_trainable", "worst_primary"]


def worst_primary(mode: str) -> float:
    """The primary value given to a trial that produced no usable images (NaN output)."""
    return 1e9 if mode == "min" else -1e9


def make_trainable(*, videos, fixed: dict, cpus: float, gpus: float, policy: dict | None = None):
    """``train_trial`` with its data put in Ray's object store (so remote nodes need no shared disk)."""
    fn = tune.with_parameters(train_trial, videos=videos, fixed=fixed, policy=policy or {})
    return tune.with_resources(fn, {"cpu": cpus, "gpu": gpus})


def train_trial(config: dict, *, videos, fixed: dict, policy: dict):
    """Run one trial. ``config`` holds the flat dotted keys Optuna sampled (plus the fixed ones)."""
    from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_MODE, PRIMARY_NAME, InTrainingEvaluator
    from mitogan.metrics.protocol import training_tiles
    from mitogan.preprocess import Pipeline
    from mitogan.train import train

    cfg = from_flat(Config, {**fixed, **config})
    ctx = tune.get_context()
    trial_dir = Path(ctx.get_trial_dir())
    trial_dir.mkdir(parents=True, exist_ok=True)
    tiles = Pipeline(cfg.preprocess).run(videos, progress=False)  # content-hash cached across trials
    # the generator trains on the training split only; it is scored against held-out videos/time blocks
    evaluator = _safe_evaluator(InTrainingEvaluator(tiles, holdout=cfg.train.holdout), PRIMARY_MODE)
    tiles = training_tiles(tiles, cfg.train.holdout)
    _write_data_info(trial_dir / "data.json", tiles, evaluator.reference.split)
    # a WGAN critic swings early on: no decision (but NaN) in the first fifth of the run
    stopper = NonConvergencePolicy(**{"grace_steps": max(cfg.train.report_every, cfg.train.steps // 5), **policy})
    state: dict[str, Any] = {"reason": None, "last": {}, "components": {}}

    def on_report(report: dict) -> None:
        reason = stopper.check(report)
        if reason and state["reason"] is None:
            state["reason"] = reason
        metrics = _scalars(report)
        metrics.setdefault("primary", state["last"].get("primary", worst_primary(PRIMARY_MODE)))
        step = int(report.get("step", 0))
        metrics.update(stop_reason=state["reason"] or "", finished=0, objective=PRIMARY_NAME,
                       objective_mode=PRIMARY_MODE, timesteps_total=step)
        if isinstance(report.get("samples"), np.ndarray):
            metrics["samples_png"] = f"samples/step_{step:06d}.png"  # the name mitogan.train writes
        state["last"] = {k: v for k, v in metrics.items() if k != "samples_png"}
        state["components"].update({c: metrics[c] for c in PRIMARY_COMPONENTS if c in metrics})
        _report(metrics, report.get("checkpoint"), trial_dir)

    result = train(cfg, tiles, out_dir=trial_dir, on_report=on_report, should_stop=lambda: state["reason"] is not None,
                   resume=_resume_path(trial_dir), evaluate=evaluator)
    # the final result repeats the last step, with the components of the last evaluation
    final = {**state["components"], **state["last"], "finished": int(state["reason"] is None and not result.stopped),
             "stop_reason": state["reason"] or "", "node": ray.get_runtime_context().get_node_id()}
    tune.report(final)


def _write_data_info(path: Path, tiles, split: dict) -> None:
    """What the trial trained on (sources, intensity mapping, tile count, the held-out split it was
    scored against): the export reads it."""
    import json

    info = {"n_tiles": len(tiles), "size": tiles.size, "sources": tiles.meta.get("sources"),
            "intensity": tiles.meta.get("intensity"), "cache_key": tiles.meta.get("cache_key"), "evaluation": split}
    path.write_text(json.dumps(info, indent=2, default=str))


def _safe_evaluator(evaluator, mode: str):
    """Images with NaN/Inf get the worst primary instead of crashing the metric code."""

    def evaluate(fake: np.ndarray) -> dict:
        if not np.isfinite(fake).all():
            return {"primary": worst_primary(mode)}
        return evaluator(fake)

    evaluate.reference = evaluator.reference
    return evaluate


def _scalars(report: dict) -> dict:
    out = {}
    for k, v in report.items():
        if isinstance(v, (bool, int, float, np.integer, np.floating)):
            v = float(v)
            out[k] = v if math.isfinite(v) else (1e30 if v > 0 else -1e30 if v < 0 else float("nan"))
    return out


def _report(metrics: dict, checkpoint_file: str | None, trial_dir: Path) -> None:
    """``tune.report``, with the trainer's checkpoint file as a Ray checkpoint when one was just written."""
    if not checkpoint_file:
        tune.report(metrics)
        return
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=trial_dir))
    try:
        try:
            os.link(checkpoint_file, tmp / "checkpoint.pt")  # no copy on the same disk
        except OSError:
            shutil.copy2(checkpoint_file, tmp / "checkpoint.pt")
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resume_path(trial_dir: Path) -> Path | None:
    """The checkpoint Ray restored this trial from (after a lost worker or a restored search), if any."""
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    dest = trial_dir / "resume.pt"
    with ckpt.as_directory() as d:
        shutil.copy2(Path(d) / "checkpoint.pt", dest)
    return dest

