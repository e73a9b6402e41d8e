"""The Ray Tune trainable: one trial = preprocess (cached) → ``mitogan.train.train`` → reports.

This is the only module that calls ``ray.tune.report`` and ``ray.tune.get_checkpoint`` (Ray's report API
has changed four times; keeping it here keeps the churn in one file). Everything else is MitoGAN's:
the trial's config is built from the flat dotted keys Optuna sampled, the stop decision comes from
``mitogan.stopping.NonConvergencePolicy`` (thresholds: the config's ``stop`` section). W&B is logged from the driver (``search.wandb_log``), not here:
Ray kills a stopped trial's actor before any code after the loop could finish a run.

Every Ray result carries: ``step``, the trainer's scalar metrics, ``primary`` (the search objective from
``mitogan.metrics``; its components ``fidelity`` and ``diversity_gap`` on the results where it was
evaluated), ``objective`` and ``objective_mode``, ``stop_reason`` ("" while running or when the trial
finished), ``finished`` (1 only on the trial's last result when it ran all its steps), ``timesteps_total``
(= ``step``) and, on results with a new sample grid, ``samples_png`` (its path relative to the trial
folder). Only ``step`` and ``primary`` are top-level numbers for Ray; the other scalars travel packed
(``search.trials.pack``: Ray keeps running statistics of every top-level number in its experiment state),
and ``search.trials.expand`` restores them for every reader.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import tune

from mitogan.config import Config, from_flat
from mitogan.report import TrainReport, scalars
from mitogan.fsutil import atomic_write
from mitogan.stopping import NonConvergencePolicy
from search.trials import LINEAGE, lineage_of, pack
from search.wandb_log import attach_sample

__all__ = ["train_trial", "make_trainable", "worst_primary"]

log = logging.getLogger(__name__)


def worst_primary(mode: str) -> float:
    """The primary value given to a trial that produced no usable images (NaN output)."""
    return 1e9 if mode == "min" else -1e9


def make_trainable(*, videos, fixed: dict, cpus: float, gpus: float, policy: dict | None = None,
                   ship_samples: bool = False, trial_root: str | None = None):
    """``train_trial`` with its data put in Ray's object store (so remote nodes need no shared disk).
    ``ship_samples``: sample grids travel in the results too (the driver's W&B logger takes them out), so
    they reach W&B and the report from nodes whose folders the driver cannot read. ``trial_root``: the
    search's folder in a storage every node reaches as a path; each trial writes into its folder there."""
    fn = tune.with_parameters(train_trial, videos=videos, fixed=fixed, policy=policy or {}, ship_samples=ship_samples,
                              trial_root=trial_root)
    return tune.with_resources(fn, {"cpu": cpus, "gpu": gpus})


def train_trial(config: dict, *, videos, fixed: dict, policy: dict, ship_samples: bool = False,
                trial_root: str | None = None):
    """Run one trial. ``config`` holds the flat dotted keys Optuna sampled (plus the fixed ones).

    ``trial_root`` given: the trial's files go straight into its folder there (Ray's storage folder of the
    trial, named as Ray names it), not into the staging folder Ray copies to the storage at every
    experiment-state save; the trainer's ``checkpoint.pt`` is removed once Ray has stored the checkpoint in
    the same folder (``checkpoint_N/``), so each checkpoint is kept once."""
    from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_MODE, PRIMARY_NAME, InTrainingEvaluator
    from mitogan.metrics.evaluate import JUDGED_NAME, judged_value
    from mitogan.metrics.protocol import training_tiles
    from mitogan.preprocess import Pipeline
    from mitogan.train import CHECKPOINT_NAME, train

    _as_fresh_process()
    cfg = from_flat(Config, {**fixed, **config})
    trial_dir = _trial_folder(trial_root)
    trial_dir.mkdir(parents=True, exist_ok=True)
    tiles = Pipeline(cfg.preprocess).run(videos, progress=False)  # content-hash cached across trials
    # the generator trains on the training split only; it is scored against held-out videos/time blocks
    evaluator = _safe_evaluator(_evaluator(InTrainingEvaluator, tiles, cfg.train.holdout), PRIMARY_MODE)
    tiles = training_tiles(tiles, cfg.train.holdout)
    _write_data_info(trial_dir / "data.json", tiles, evaluator.reference.split)
    stopper = NonConvergencePolicy(cfg, **policy)  # thresholds and grace period: cfg.stop
    resume, start_step, lineage = _resume_path(trial_dir, tune.get_checkpoint(), tune.get_context().get_trial_id())
    # population-based training: whose state this trial continues (goes with every checkpoint it hands Ray)
    parent = {"parent": lineage[-1]["parent"], "parent_step": lineage[-1]["step"]} if lineage else {}
    # it had ended when its driver died, or PBT gave it another trial's state at the last step: nothing to train
    if resume is not None and start_step >= cfg.train.steps:
        _report({**_ended_result(resume, start_step), **parent}, None, lineage)
        return
    state: dict[str, Any] = {"reason": None, "last": {}, "components": {}, "unshipped": None}

    def on_report(report: TrainReport) -> None:
        reason = stopper.check(report)
        if reason and state["reason"] is None:
            state["reason"] = reason
        metrics = scalars(report, finite=True)
        metrics.pop("checkpoint", None)  # handed to Ray as a Checkpoint, not a metric
        metrics.setdefault("primary", state["last"].get("primary", worst_primary(PRIMARY_MODE)))
        step = int(report.get("step", 0))
        metrics.update(stop_reason=state["reason"] or "", finished=0, objective=PRIMARY_NAME,
                       objective_mode=PRIMARY_MODE, timesteps_total=step, start_step=start_step, **parent)
        if isinstance(report.get("samples"), np.ndarray):
            metrics["samples_png"] = f"samples/step_{step:06d}.png"  # the name mitogan.train writes
        state["last"] = {k: v for k, v in metrics.items() if k != "samples_png"}
        state["components"].update({c: metrics[c] for c in PRIMARY_COMPONENTS if c in metrics})
        ship = ship_samples and _defer_sample(metrics, state, bool(report.get("checkpoint")))
        _report(metrics, report.get("checkpoint"), lineage, trial_dir if ship else None)
        if trial_root and report.get("checkpoint"):  # Ray has its copy in this folder now
            for name in (CHECKPOINT_NAME, "resume.pt"):
                (trial_dir / name).unlink(missing_ok=True)

    # logs=False: no metrics.jsonl or loss plots (Ray's result.json holds every report; the search report draws
    # the curves). config.yaml stays: `mitogan preprocess --config SEARCH/trial_<id>/config.yaml` redoes a trial's
    # preprocessing
    result = train(cfg, tiles, out_dir=trial_dir, on_report=on_report, should_stop=lambda: state["reason"] is not None,
                   resume=resume, evaluate=evaluator, logs=False)
    # the final result repeats the last step, with the components of the last evaluation
    final = {**state["components"], **state["last"], "finished": int(state["reason"] is None and not result.stopped),
             "stop_reason": state["reason"] or "", "node": ray.get_runtime_context().get_node_id()}
    if final["finished"] and cfg.train.judge_samples:  # an independent judge: the classifier two-sample test
        final.update(_judge(evaluator, result.generator, cfg, cfg.train.judge_samples))
        # the primary of what is judged and exported: at the truncation factor kept, when one was chosen
        primary = final.get("truncation_primary", final.get("primary"))
        if final.get("c2st_gap") is not None and primary is not None:
            final[JUDGED_NAME] = judged_value(primary, final["c2st_gap"])  # what ranks finished trials
    ship = ship_samples and _defer_sample(final, state, False)  # a grid that went with the last checkpoint
    _report(final, None, lineage, trial_dir if ship else None)


# warm trials (``reuse_actors``): what the worker process had before its first trial, put back before each
_FIRST: dict[str, Any] = {}
_EVALUATORS: dict[tuple, Any] = {}
# how long Ray's actor reset waits for a stopped trial's training thread (Ray's default: 2 s). Ray stops a trial's
# function only at its next report (``train.report_every`` steps away); a reset that gives up fails the NEXT trial
_RESET_WAIT_S = "600"


def _as_fresh_process() -> None:
    """Make a trial in a reused worker start as it would in a fresh one. ``mitogan.train`` seeds Python's,
    NumPy's and torch's global RNGs itself; torch's thread count is put back to the worker's own (Ray sets it from
    the trial's CPUs) for a config that leaves ``train.threads`` unset, since an earlier trial may have set it.
    Caches keyed by content (preprocessed tiles, the metrics reference) are kept: that is what a warm trial saves."""
    import torch

    torch.set_num_threads(_FIRST.setdefault("threads", torch.get_num_threads()))
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", _RESET_WAIT_S)


def _evaluator(make, tiles, holdout: float):
    """The in-training evaluator of these tiles: built once per worker process and data (keyed by the tiles'
    content hash), so a warm trial reuses its reference, calibrations and copy-test indexes. It keeps no state
    between calls but those memos, each a function of the data alone."""
    key = (tiles.meta.get("cache_key"), holdout)
    if key[0] is None:
        return make(tiles, holdout=holdout)
    if key not in _EVALUATORS:
        _EVALUATORS.clear()  # one dataset per search: keep the newest only
        _EVALUATORS[key] = make(tiles, holdout=holdout)
    return _EVALUATORS[key]


def _trial_folder(trial_root: str | None) -> Path:
    """Where the trial writes its files: its folder in a path storage (``trial_root``), else the working folder
    that Ray uploads to an object store (``SyncConfig(sync_artifacts=True)``). Not ``get_trial_dir()`` there: in a
    fresh worker process Ray 2.60 gives the *driver's* staging path, which on another node nothing uploads (the
    trial's data.json, config.yaml, sample grids and checkpoint.pt never reached the storage, so nothing was
    exported; tests/search/test_cluster_images.py)."""
    named = Path(tune.get_context().get_trial_dir())
    if trial_root:
        return Path(trial_root) / named.name
    # Ray Tune runs each trial in that working folder (its documented default; RAY_CHDIR_TO_TRIAL_DIR=0 turns
    # it off), named as the trial's folder
    cwd = Path.cwd()
    return cwd if os.environ.get("RAY_CHDIR_TO_TRIAL_DIR", "1") != "0" and cwd.name == named.name else named


def _defer_sample(metrics: dict, state: dict, checkpoint: bool) -> bool:
    """Whether this result ships its sample grid's bytes. Ray keeps the result that goes with a checkpoint
    in its experiment state, bytes and all (~70 KB per trial, re-encoded at every save: 155 KB of state per
    trial in a 200-trial search), and the driver's W&B logger cannot take them out of that copy. So a grid
    written at a checkpoint step travels with the trial's next result without a checkpoint (the final result
    at the latest), named there by ``samples_png``."""
    if checkpoint:
        state["unshipped"] = metrics.get("samples_png") or state["unshipped"]
        return False
    if state["unshipped"] and not metrics.get("samples_png"):
        metrics["samples_png"] = state["unshipped"]
    state["unshipped"] = None
    return bool(metrics.get("samples_png"))


def _judge(evaluator, generator, cfg, n: int = 1000) -> dict:
    """The finished (EMA) generator's judge on ``n`` seeded latents (``mitogan.truncation.judge_generator``): the
    truncation factor it is drawn at, chosen down to ``train.truncation_floor``, and the classifier two-sample test
    of its samples at that factor. A failure is logged and leaves the trial's result as it was."""
    from mitogan.truncation import judge_generator

    try:
        return judge_generator(evaluator, generator, n, cfg.model.latent_dim, cfg.train.seed,
                               cfg.train.truncation_floor)
    except Exception as e:  # the judge must never cost a finished trial its result
        log.warning("trial judge (C2ST) failed: %s", e)
        return {}


def _ended_result(checkpoint: Path, step: int) -> dict:
    """The final result of a trial that had trained all its steps before its driver died, when Ray's saved
    state did not know yet that it ended: rebuilt from the checkpoint's report history, no step trained."""
    from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_MODE, PRIMARY_NAME
    from mitogan.train import load_checkpoint

    history = [scalars(h, finite=True) for h in load_checkpoint(checkpoint).get("history") or []]
    final = dict(history[-1]) if history else {}
    for key in ("primary", *PRIMARY_COMPONENTS):  # from the last evaluation
        final.setdefault(key, next((h[key] for h in reversed(history) if key in h), None))
    final = {k: v for k, v in final.items() if v is not None and k != "checkpoint"}
    final.setdefault("primary", worst_primary(PRIMARY_MODE))
    final.update(step=step, timesteps_total=step, start_step=step, stop_reason="", finished=1,
                 objective=PRIMARY_NAME, objective_mode=PRIMARY_MODE,
                 node=ray.get_runtime_context().get_node_id() if ray.is_initialized() else "")
    return final


def _write_data_info(path: Path, tiles, split: dict) -> None:
    """What the trial trained on (sources, intensity mapping, tile count, the held-out split it was
    scored against): the export reads it."""
    info = {"n_tiles": len(tiles), "size": tiles.size, "sources": tiles.meta.get("sources"),
            "intensity": tiles.meta.get("intensity"), "cache_key": tiles.meta.get("cache_key"), "evaluation": split}
    path.write_text(json.dumps(info, indent=2, default=str))


def _safe_evaluator(evaluator, mode: str):
    """Images with NaN/Inf get the worst primary instead of crashing the metric code."""

    def evaluate(fake: np.ndarray) -> dict:
        if not np.isfinite(fake).all():
            return {"primary": worst_primary(mode)}
        return evaluator(fake)

    evaluate.reference, evaluate.judge, evaluate.n_fake = evaluator.reference, evaluator.judge, evaluator.n_fake
    return evaluate


def _report(metrics: dict, checkpoint_file: str | None, lineage: list[dict], ship_from: Path | None = None) -> None:
    """``tune.report`` of ``metrics`` packed for Ray (``search.trials.pack``), with the sample grid's bytes
    when ``ship_from`` (the trial folder) is given, and with the trainer's checkpoint file as a Ray checkpoint
    when one was just written (``step.json`` beside it: its step, the trial that wrote it and that trial's
    lineage)."""
    step = int(metrics.get("step", 0))
    metrics = pack(metrics)
    if ship_from is not None:
        attach_sample(metrics, ship_from)
    if not checkpoint_file:
        tune.report(metrics)
        return
    # outside the trial folder: Ray syncs that folder as artifacts and must not see a half-removed copy
    tmp = Path(tempfile.mkdtemp(prefix="mitogan-ckpt-"))
    try:
        try:
            os.link(checkpoint_file, tmp / "checkpoint.pt")  # no copy on the same disk
        except OSError:
            shutil.copy2(checkpoint_file, tmp / "checkpoint.pt")
        (tmp / "step.json").write_text(json.dumps({"step": step, "lineage": lineage,
                                                   "trial_id": tune.get_context().get_trial_id()}))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(tmp)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _resume_path(trial_dir: Path, ckpt: "tune.Checkpoint | None", trial_id: str) -> tuple[Path | None, int, list[dict]]:
    """Where this trial continues from, its generator step and its lineage; ``(None, 0, [])`` for a fresh
    start.

    Two candidates: the checkpoint Ray restored (after a lost worker or a restored search; Ray's experiment
    state may lag a few reports behind) and the trainer's own ``checkpoint.pt`` in the trial folder,
    when the trial restarts where its folder still is (same node, same Ray session). The
    newer wins, except that a checkpoint another trial wrote always wins: population-based training copied
    that trial's state into this one. ``start_step`` goes into every result: a resumed trial shows where it
    continued from, and one restarted from scratch shows 0 twice. The lineage (``[{"parent", "step"}]``)
    is the restored state's: Ray's checkpoint carries it, the trial folder's ``lineage.json`` goes with
    ``checkpoint.pt``; the chosen one is written to ``lineage.json``. ``ckpt`` is the checkpoint Ray
    restored (None for a fresh start): a driver killed between Ray removing an old checkpoint and its next
    state save leaves a state naming a checkpoint that is gone (or that the resume made again, empty, for
    Ray to remove: ``run._remake_removed_checkpoints``); that one is passed over for the others."""
    from mitogan.train import CHECKPOINT_NAME, load_checkpoint

    best: tuple[Path | None, int, list[dict]] = (None, 0, [])
    restored = _restored(ckpt, trial_dir / "resume.pt")
    if restored is not None:
        dest, info = restored
        step, writer = int(info.get("step", -1)), info.get("trial_id")
        lineage = [e for e in info.get("lineage") or [] if isinstance(e, dict)]
        if writer and writer != trial_id:  # copied from another trial: that it is
            return _chosen(trial_dir, (dest, step, [*lineage, {"parent": writer, "step": step}]))
        best = (dest, step, lineage)
    own = trial_dir / CHECKPOINT_NAME
    if own.is_file():
        try:
            step = int(load_checkpoint(own)["step"])
        except Exception:  # torn or foreign: Ray's copy (or a fresh start) it is
            step = -1
        if step > best[1]:
            best = (own, step, lineage_of(trial_dir))
    stored = _newest_stored(trial_dir, trial_id)  # Ray's state may lag this folder
    if stored is not None and stored[1] > best[1]:
        best = stored
    return _chosen(trial_dir, best)


def _restored(ckpt: "tune.Checkpoint | None", dest: Path) -> tuple[Path, dict] | None:
    """Ray's restored checkpoint copied to ``dest``, with its ``step.json`` (``{}`` when it has none);
    None when there is none or its ``checkpoint.pt`` is gone."""
    if ckpt is None:
        return None
    try:
        with ckpt.as_directory() as d:
            shutil.copy2(Path(d) / "checkpoint.pt", dest)
            meta = Path(d) / "step.json"
            return dest, (json.loads(meta.read_text()) if meta.is_file() else {})
    except FileNotFoundError:
        log.warning("Ray's checkpoint %s is gone (its driver was stopped while removing it): "
                    "continuing from the trial's newest other checkpoint", ckpt.path)
        return None


def _newest_stored(trial_dir: Path, trial_id: str) -> tuple[Path, int, list[dict]] | None:
    """The newest of Ray's checkpoints in the trial folder (``checkpoint_N/`` whose ``step.json`` names
    ``trial_id``), as ``(checkpoint file, step, lineage)``; None when there is none. With the trial folder
    in the storage, these are where a driver killed before its next state save left the trial."""
    for folder in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:
            info = json.loads((folder / "step.json").read_text())
            step = int(info["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or removed: an older one
        if (folder / "checkpoint.pt").is_file() and info.get("trial_id") in (None, trial_id):
            return folder / "checkpoint.pt", step, [e for e in info.get("lineage") or [] if isinstance(e, dict)]
    return None


def _chosen(trial_dir: Path, choice: tuple[Path | None, int, list[dict]]) -> tuple[Path | None, int, list[dict]]:
    """``choice``, with its lineage written to the trial folder's ``lineage.json`` (the report reads it)."""
    if choice[2] or (trial_dir / LINEAGE).exists():
        atomic_write(trial_dir / LINEAGE, json.dumps(choice[2]))
    return choice
