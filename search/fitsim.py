"""``mitogan fit-sim``: fit the simulator's parameters to a lab's movies with the search machinery.

Optuna (seeded TPE, ``search.searcher.OptunaAskTell``) proposes ``SimParams`` values over
``mitogan.simfit.space.FIT_SPACE``; each Ray Tune trial simulates at growing budgets
(``mitogan.simfit.objective.RUNGS``: a few short small videos first) and reports the fit objective at each;
ASHA (time = rung) stops poor settings after the cheap rungs. Every trial is logged to W&B from the driver
(``search.wandb_log``), the study lives in an Optuna journal, and Ray's experiment state is saved every
few seconds, so a killed fit continues with ``--resume``.

The output folder ``DIR``:
``fitted.yaml``     the best setting as ``SimParams`` (``mitogan simulate --config DIR/fitted.yaml``)
``fit.json``        options, status, the best trial, default vs fitted objective, physical units
``report/``         ``fit.png`` (importance, spread of the top trials, components) and ``frames.png``
``state/``          Ray's trial folders, ``optuna.log`` and the W&B offline runs (``wandb/``)
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from mitogan.errors import MitoganError

__all__ = ["FitOptions", "run_fit", "validate_fit_options", "FitInterrupted"]

log = logging.getLogger(__name__)
STATE = "state"  # the Ray/Optuna/W&B folder inside --out (unless --storage puts it elsewhere)
STATUS = "fit.json"


@dataclass
class FitOptions:
    """Everything ``mitogan fit-sim`` takes."""

    data: list[str] = field(default_factory=list)  # files/folders; empty: the built-in simulated dataset
    out: str = ""
    trials: int = 40
    storage: str | None = None  # Ray/Optuna state: a folder or s3:// URI (default: OUT/state)
    resume: bool = False
    seed: int = 0
    tile: int = 64
    params: list[str] | None = None  # fit only these SimParams fields (default: all of FIT_SPACE)
    smoke: bool = False  # tiny rungs: seconds per trial (tests)
    asha: bool = True
    wandb: bool = True
    progress: bool = True
    verbose: bool = False
    address: str | None = None
    cpus_per_trial: float = 1.0
    pixel_size_um: float | None = None  # overrides what the TIFFs say
    frame_interval_s: float | None = None
    channel: int | None = None
    z: str = "max"


class FitInterrupted(MitoganError):
    """Ctrl-C/SIGTERM stopped the fit; its state is saved and the message says how to continue."""


def validate_fit_options(opts: FitOptions) -> None:
    """Every option checked before data is read or Ray starts; one line naming the option otherwise."""
    from mitogan.simfit.space import select_space

    for option, value, lo, hi in (("--trials", opts.trials, 1, 100_000), ("--seed", opts.seed, 0, 2**31 - 1),
                                  ("--tile", opts.tile, 16, 512)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise MitoganError(f"{option} {value!r}: give a whole number from {lo} to {hi}")
    for option, value in (("--pixel-size", opts.pixel_size_um), ("--frame-interval", opts.frame_interval_s),
                          ("--cpus-per-trial", opts.cpus_per_trial)):
        if value is not None and not (isinstance(value, (int, float)) and 0 < value < 1e6):
            raise MitoganError(f"{option} {value!r}: give a positive number")
    for d in opts.data:
        if not Path(d).expanduser().exists():
            raise MitoganError(f"DATA {d}: no such file or folder; give movies (TIFF, GIF, video) or folders of them")
    if not opts.out:
        raise MitoganError("--out: give the output folder")
    select_space(opts.params)


def run_fit(opts: FitOptions) -> Path:
    """Run (or ``opts.resume``: continue) a fit; returns the output folder."""
    from mitogan.fsutil import claim_output_dir

    validate_fit_options(opts)
    out = Path(opts.out).expanduser().resolve()
    how = claim_output_dir(out, "fit-sim", resume=opts.resume, legacy=(STATUS,))
    if how == "resume":
        saved = _read_status(out)
        if saved.get("status") == "finished":
            print(f"fit {out} already finished ({saved.get('trials_ended', '?')} trials); nothing to do")
            return out
        keep = {f.name for f in fields(FitOptions)} - {"resume", "progress", "verbose", "address", "wandb"}
        opts = replace(opts, **{k: v for k, v in saved["options"].items() if k in keep})
    else:
        opts = replace(opts, data=[str(Path(d).expanduser().resolve()) for d in opts.data])
    opts = replace(opts, out=str(out))
    return _fit(out, opts, restore=how == "resume")


def _read_status(out: Path) -> dict:
    try:
        return json.loads((out / STATUS).read_text())
    except (OSError, ValueError) as e:
        raise MitoganError(f"--resume: {out / STATUS} is missing or damaged ({type(e).__name__}); start a new "
                           "fit in another --out") from None


def _write_status(out: Path, status: dict) -> None:
    from mitogan.fsutil import atomic_write, json_safe

    atomic_write(out / STATUS, json.dumps(json_safe(status), indent=1))


def _store(opts: FitOptions):
    from search.storage import SearchStore

    if opts.storage:
        return SearchStore(opts.storage, Path(opts.out).name, "--storage")
    return SearchStore(opts.out, STATE, "--out")


def _fit(out: Path, opts: FitOptions, restore: bool) -> Path:
    """Read the data, build the target, run Tune; then write fitted.yaml, the report and fit.json."""
    from mitogan.simfit.objective import RUNGS, SMOKE_RUNGS

    rungs = SMOKE_RUNGS if opts.smoke else RUNGS
    videos, pixel_size = _movies(opts)
    target = _target(videos, opts, rungs)
    status = {"options": asdict(opts), "status": "running", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "pixel_size_um": opts.pixel_size_um or pixel_size, "frame_interval_s": opts.frame_interval_s,
              "n_real_tiles": target.n_real, "real_temporal": target.stats,
              "rungs": [asdict(r) for r in rungs]}
    if restore:
        status = {**_read_status(out), "status": "running"}
    _write_status(out, status)
    store = _store(opts)
    start = time.perf_counter()
    results = _tune(store, opts, target, rungs, restore)
    ended = results.num_terminated + results.num_errors if results is not None else 0
    if results is None or ended < opts.trials:
        _write_status(out, {**status, "status": "interrupted", "trials_ended": ended})
        raise FitInterrupted(f"fit interrupted after {ended} of {opts.trials} trials; its state is saved. Continue "
                             f"it with: mitogan fit-sim --out {out} --resume")
    from search.fitsim_report import finish

    finish(out, store, opts, target, videos, rungs, results, status, time.perf_counter() - start)
    return out


def _movies(opts: FitOptions):
    """The real videos (quality-checked) and their pixel size; the built-in dataset without DATA."""
    from mitogan.simfit.data import read_movies

    if opts.data:
        return read_movies(opts.data, channel=opts.channel, z=opts.z, progress=opts.progress, quiet=not opts.progress)
    from mitogan.simulate import default_dataset

    return read_movies([default_dataset(progress=opts.progress)], quiet=True)


def _target(videos, opts: FitOptions, rungs):
    from mitogan.simfit.objective import FitTarget

    if opts.progress:
        print(f"measuring {len(videos)} real videos (tiles of {opts.tile} px, temporal statistics)...", flush=True)
    return FitTarget(videos, tile=opts.tile, seed=opts.seed).prepare(rungs)


def _tune(store, opts: FitOptions, target, rungs, restore: bool):
    """Start Ray, run (or restore) the Tuner; None when a signal stopped it before it returned."""
    import ray
    from ray import tune

    from search import run as runmod

    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"
    runmod._check_reachable(address)
    runmod._init_ray(address, verbose=opts.verbose)
    try:
        if restore and store.remote:  # an object store: the journal and W&B runs continue from its copies
            store.pull_journal()
            store.download("wandb")
        _setup_live(store, opts)
        trainable = tune.with_resources(
            tune.with_parameters(fit_trial, target=target, rungs=rungs, seed=opts.seed),
            {"cpu": opts.cpus_per_trial})
        if restore and tune.Tuner.can_restore(store.ray_path, storage_filesystem=store.fs):
            store.check_trusted(False)
            runmod._check_searcher_state(store)
            tuner = tune.Tuner.restore(store.ray_path, trainable, resume_errored=True, storage_filesystem=store.fs)
        else:
            tuner = _build_tuner(store, opts, trainable, rungs)
        # the search's own state-save period for this size, set only while Tune runs (warnings left on)
        with runmod._quiet_stdout(not opts.verbose), runmod._state_period(runmod.experiment_state_period(opts.trials)):
            return tuner.fit()
    except KeyboardInterrupt:
        return None
    finally:
        ray.shutdown()
        runmod._LIVE["callbacks"], runmod._LIVE["optuna_storage"] = [], None
        store.upload("optuna.log", "wandb")


def _setup_live(store, opts: FitOptions) -> None:
    """The Optuna journal and the driver-side callbacks (progress bar, W&B), through the search driver's
    live hooks (``search.run._LIVE``): Ray pickles only the forwarding callback, never these objects."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search import run as runmod
    from search.progress import SearchProgress

    optuna.logging.set_verbosity(optuna.logging.INFO if opts.verbose else optuna.logging.ERROR)
    runmod.watch_sync_race()  # as a search's driver
    if not opts.verbose:
        logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    store.local.mkdir(parents=True, exist_ok=True)
    runmod._LIVE["optuna_storage"] = JournalStorage(JournalFileBackend(str(store.journal)))
    callbacks = [SearchProgress(opts.trials, "min", enabled=opts.progress)]
    if opts.wandb:
        from search.wandb_log import WandbSearchLogger

        callbacks.append(WandbSearchLogger(search_name=f"fit-sim-{Path(opts.out).name}", space_name="fit-sim",
                                           fixed={}, wandb_dir=store.local))
    runmod._LIVE["callbacks"] = callbacks


def _space_fn(names: list[str]):
    """Optuna's define-by-run space over the fitted ``SimParams`` fields (log or linear ranges)."""
    from mitogan.simfit.space import select_space

    space = select_space(names)

    def define(trial) -> dict:
        for p in space:
            trial.suggest_float(p.name, p.lo, p.hi, log=p.log)
        return {}

    return define


def _build_tuner(store, opts: FitOptions, trainable, rungs):
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from search import run as runmod
    from search.searcher import OptunaAskTell, TrialList, sampler_spec

    sampler = sampler_spec("tpe", opts.seed, n_startup_trials=min(10, max(3, opts.trials // 4)))
    limit = max(1, int(ray.cluster_resources().get("CPU", 1) // opts.cpus_per_trial))
    # the searcher counts the trials and holds the concurrency (num_samples -1): see OptunaAskTell's ``trials``
    searcher = OptunaAskTell(_space_fn(opts.params), metric="primary", mode="min", study_name="fit-sim",
                             sampler=sampler, storage=runmod._optuna_storage,
                             components=("realism_gap", "temporal_gap"), trials=opts.trials, max_concurrent=limit)
    # rung r is "step" r; max_t past the last rung, so ASHA compares at rungs 1, 2, ... and never cuts a final
    scheduler = ASHAScheduler(time_attr="step", max_t=len(rungs) + 1, grace_period=1, reduction_factor=2) \
        if opts.asha else None
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric="primary", mode="min", num_samples=-1, reuse_actors=True,
                                    search_alg=searcher,
                                    scheduler=scheduler, trial_dirname_creator=runmod._trial_dirname),
        run_config=tune.RunConfig(name=store.name, storage_path=store.fs_storage, storage_filesystem=store.fs,
                                  verbose=0, callbacks=[runmod._LiveCallbacks(), TrialList("fit-sim")],
                                  sync_config=tune.SyncConfig(sync_artifacts=store.remote),
                                  failure_config=tune.FailureConfig(max_failures=2)),
    )


def fit_trial(config: dict, *, target, rungs, seed: int) -> None:
    """One Ray trial: simulate with ``config``'s ``SimParams`` values at each rung and report the objective
    (``primary``) and its parts, ``step`` = the rung (1-based), ``finished`` at the last."""
    import cv2
    from ray import tune

    from mitogan.simfit.objective import score
    from mitogan.simfit.space import FIT_SPACE, to_params

    cv2.setNumThreads(1)  # one trial, one core: Ray runs as many trials as there are cores
    names = {p.name for p in FIT_SPACE}
    params = to_params({k: v for k, v in config.items() if k in names})
    for i, rung in enumerate(rungs, 1):
        s = score(params, target, rung, seed=seed + 1000 * i)
        tune.report({**s, "primary": s["objective"], "step": i, "steps_total": len(rungs),
                     "finished": i == len(rungs)})
