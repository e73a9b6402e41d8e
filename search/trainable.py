"""The Ray Tune trainable: one trial = preprocess (cached) → ``mitogan.train.train`` → reports.

This is the only module that calls ``ray.tune.report`` and ``ray.tune.get_checkpoint`` (Ray's report API
has changed four times; keeping it here keeps the churn in one file). Everything else is MitoGAN's:
the trial's config is built from the flat dotted keys Optuna sampled, the stop decision comes from
``search.stopping.NonConvergencePolicy``, and W&B goes through ``mitogan.tracking.WandbRun``.

Every Ray result carries: ``step``, the trainer's scalar metrics, ``primary`` (the search objective from
``mitogan.metrics``), ``stop_reason`` ("" while running or when the trial finished) and ``finished``
(1 only on the trial's last result when it ran all its steps).
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

from mitogan.config import Config, from_flat, to_flat
from search.stopping import NonConvergencePolicy

__all__ = ["train_trial", "make_trainable", "worst_primary"]


def worst_primary(mode: str) -> float:
    """The primary value given to a trial that produced no usable images (NaN output)."""
    return 1e9 if mode == "min" else -1e9


def make_trainable(*, videos, fixed: dict, search_name: str, wandb_dir: str | None, cpus: float, gpus: float,
                   policy: dict | None = None):
    """``train_trial`` with its data put in Ray's object store (so remote nodes need no shared disk)."""
    fn = tune.with_parameters(train_trial, videos=videos, fixed=fixed, search_name=search_name,
                              wandb_dir=wandb_dir, policy=policy or {})
    return tune.with_resources(fn, {"cpu": cpus, "gpu": gpus})


def train_trial(config: dict, *, videos, fixed: dict, search_name: str, wandb_dir: str | None, policy: dict):
    """Run one trial. ``config`` holds the flat dotted keys Optuna sampled (plus the fixed ones)."""
    from mitogan.metrics import PRIMARY_MODE, PRIMARY_NAME, InTrainingEvaluator
    from mitogan.metrics.protocol import training_tiles
    from mitogan.preprocess import Pipeline
    from mitogan.tracking import WandbRun
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
    run = WandbRun(project=os.environ.get("WANDB_PROJECT", "mitogan"), name=ctx.get_trial_name(),
                   group=search_name, config=to_flat(cfg), dir=wandb_dir, run_id=_wandb_id(search_name, ctx))
    state: dict[str, Any] = {"reason": None, "last": {}}

    def on_report(report: dict) -> None:
        reason = stopper.check(report)
        if reason and state["reason"] is None:
            state["reason"] = reason
        metrics = _scalars(report)
        metrics.setdefault("primary", state["last"].get("primary", worst_primary(PRIMARY_MODE)))
        metrics.update(stop_reason=state["reason"] or "", finished=0, objective=PRIMARY_NAME, objective_mode=PRIMARY_MODE)
        state["last"] = metrics
        run.log(report, step=int(report.get("step", 0)))
        _report(metrics, report.get("checkpoint"), trial_dir)

    result = train(cfg, tiles, out_dir=trial_dir, on_report=on_report, should_stop=lambda: state["reason"] is not None,
                   resume=_resume_path(trial_dir), evaluate=evaluator)
    final = dict(state["last"], finished=int(state["reason"] is None and not result.stopped),
                 stop_reason=state["reason"] or "", node=ray.get_runtime_context().get_node_id())
    run.summary({"stop_reason": final["stop_reason"] or "finished", "primary": final.get("primary")})
    for png in sorted(trial_dir.glob("samples/*.png"))[-1:]:
        run.log_image("final_samples", png)
    run.finish()
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


def _wandb_id(search_name: str, ctx) -> str:
    """A stable W&B run id per trial, so a restarted trial appends to the same run."""
    import hashlib

    return hashlib.blake2b(f"{search_name}/{ctx.get_trial_id()}".encode(), digest_size=8).hexdigest()
