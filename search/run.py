"""Launch a search: Optuna (TPE, seeded) proposes through ``search.searcher.OptunaAskTell``, Ray Tune
schedules, ASHA and the non-convergence policy stop bad trials early, ``search.wandb_log`` logs every trial
to W&B from the driver (complete runs whatever stopped a trial), and a static report is written at the end.

``run_search(SearchOptions(...))`` is what ``mitogan search`` calls. The search directory is
``<storage>/<name>/``: Ray's trial folders (config, results, checkpoints, sample grids), ``optuna.log``
(the Optuna study, a journal file: ``optuna-dashboard optuna.log``), ``wandb/`` (offline runs: one per
trial and one for the search), ``search.json`` (how it was launched) and ``report/`` (the HTML page).
Ray's own console output stays off unless ``verbose``; ``dashboard`` starts Ray's dashboard on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter

from mitogan.errors import MitoganError
from search.space import Space, load_space
from search.trainable import make_trainable

__all__ = ["SearchOptions", "run_search"]

log = logging.getLogger(__name__)


@dataclass
class SearchOptions:
    """Everything ``mitogan search`` takes."""

    space: str = "smoke"  # a shipped space name or a YAML file
    overrides: list[str] = field(default_factory=list)  # key=value changes to the space's fixed keys
    data: list[str] = field(default_factory=list)  # files/folders; empty = the built-in simulator
    trials: int = 8
    max_concurrent: int | None = None  # None: as many as the resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractional shares one GPU between trials, e.g. 0.25
    address: str | None = None  # a Ray cluster ("ray://..." or "host:port"); None: a local Ray
    storage: str = "runs"  # local directory (or s3://, gs://, NFS path shared by all nodes)
    name: str | None = None  # default: <space>-<timestamp>
    seed: int = 0
    asha: bool = True  # ASHA early stopping on the primary metric
    stop_nonconvergent: bool = True  # stop diverging/collapsing trials (search.stopping)
    sampler: str = "tpe"  # tpe (Optuna's TPE, seeded) or random (seeded; same trials whatever the results)
    grace_steps: int | None = None  # ASHA grace period (default: a quarter of train.steps)
    wandb: bool = True  # one W&B run per trial (offline unless WANDB_API_KEY / WANDB_MODE say otherwise)
    channel: int | None = None  # reader options for --data
    z: str = "max"
    sim_videos: int | None = None  # size of the built-in dataset (None: the simulator's defaults)
    sim_frames: int | None = None
    report: bool = True  # write the HTML report at the end
    progress: bool = True  # MitoGAN's one-line progress bar (off with -q)
    verbose: bool = False  # Ray's own console output (results folder, TensorBoard hint, warnings)
    dashboard: bool = False  # start the Ray dashboard on 127.0.0.1 (local Ray) and print its URL


def run_search(opts: SearchOptions):
    """Run the whole search; returns the search directory (``<storage>/<name>``)."""
    from mitogan.metrics import PRIMARY_MODE

    space = load_space(opts.space, opts.overrides)  # a malformed space fails here, before Ray starts
    name = opts.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    storage = _storage_path(opts.storage)
    search_dir = Path(storage) / name
    search_dir.mkdir(parents=True, exist_ok=True)
    _check_reachable(opts.address or os.environ.get("RAY_ADDRESS") or "local")  # before minutes of data loading
    videos = _load_videos(opts)
    _write_launch(search_dir, opts, space, name)
    # Ray warns about checkpoint syncing after every few reports of short trials; it is harmless here
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    _init_ray(opts.address, dashboard=opts.dashboard, verbose=opts.verbose)
    try:
        tuner = _build_tuner(opts, space, name, storage, search_dir, videos, PRIMARY_MODE)
        with _quiet_stdout(not opts.verbose):
            tuner.fit()
    finally:
        ray.shutdown()
    if opts.report:
        from search.report import write_report

        write_report(search_dir)
    _export_best(search_dir)
    return search_dir


def _export_best(search_dir: Path) -> None:
    """Export the best trial to ``<search_dir>/best``; a search where no trial finished just says so."""
    from search.report import export_search

    try:
        print(f"best generator exported to {export_search(search_dir)}")
    except MitoganError as e:
        print(f"no generator exported: {e}")


def _build_tuner(opts, space: Space, name, storage, search_dir: Path, videos, mode: str) -> tune.Tuner:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from mitogan.metrics import PRIMARY_COMPONENTS
    from search.searcher import OptunaAskTell

    optuna.logging.set_verbosity(optuna.logging.INFO if opts.verbose else optuna.logging.ERROR)
    steps = space.base_config().train.steps
    searcher = OptunaAskTell(space.define, metric="primary", mode=mode, study_name=name, sampler=_sampler(opts),
                             storage=JournalStorage(JournalFileBackend(str(search_dir / "optuna.log"))),
                             components=PRIMARY_COMPONENTS)
    limit = opts.max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1) // opts.cpus_per_trial))
    scheduler = None
    if opts.asha:
        # max_t beyond the last step: ASHA stops a trial that *reaches* max_t, before its final report
        scheduler = ASHAScheduler(time_attr="step", max_t=steps + 1, reduction_factor=3,
                                  grace_period=opts.grace_steps or max(1, steps // 4))
    trainable = make_trainable(videos=videos, fixed=space.fixed, cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial,
                               policy=None if opts.stop_nonconvergent else {"enabled": False})
    from search.progress import SearchProgress

    callbacks = [SearchProgress(opts.trials, mode, enabled=opts.progress)]
    if opts.wandb:  # logged from the driver: complete runs whatever stops a trial (search.wandb_log)
        from search.wandb_log import WandbSearchLogger

        callbacks.append(WandbSearchLogger(search_name=name, space_name=space.name, fixed=space.fixed,
                                           wandb_dir=search_dir))

    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(metric="primary", mode=mode, num_samples=opts.trials,
                                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=limit),
                                    scheduler=scheduler, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, verbose=0,
            callbacks=callbacks,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            failure_config=tune.FailureConfig(max_failures=2)),
    )


def _sampler(opts: SearchOptions):
    import optuna

    if opts.sampler == "random":
        return optuna.samplers.RandomSampler(seed=opts.seed)
    if opts.sampler != "tpe":
        raise MitoganError(f"sampler {opts.sampler!r}: use tpe or random")
    return optuna.samplers.TPESampler(seed=opts.seed, n_startup_trials=min(5, opts.trials))


def _trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default packs every parameter into the name)."""
    return f"trial_{trial.trial_id}"


def _init_ray(address: str | None, dashboard: bool = False, verbose: bool = False) -> None:
    """Start a local Ray (``address="local"``: never attach to a stale cluster) or join ``address``.

    ``dashboard``: a local Ray starts its dashboard bound to 127.0.0.1 (a cluster has its own) and the URL
    is printed. Without ``verbose`` Ray's token-auth notice stays off the terminal (token auth itself is
    left as Ray sets it).
    """
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = dict(address=address, log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.WARNING,
                  configure_logging=True)
    if address == "local":
        kwargs.update(include_dashboard=dashboard, **({"dashboard_host": "127.0.0.1"} if dashboard else {}))
    if not verbose:
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        context = ray.init(**kwargs)
    except ConnectionError as e:
        raise _unreachable(address, e) from None
    if dashboard:
        url = getattr(context, "dashboard_url", None)
        print(f"Ray dashboard: http://{url}" if url else "Ray dashboard: not available (is `ray[default]` installed?)",
              flush=True)


@contextlib.contextmanager
def _quiet_stdout(quiet: bool):
    """Ray Tune prints "View detailed results here" and a TensorBoard hint to stdout whatever its verbosity;
    MitoGAN's progress bar is on stderr, so a quiet stdout keeps only MitoGAN's own lines."""
    if not quiet:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _unreachable(address: str, error: Exception) -> MitoganError:
    return MitoganError(f"--address {address}: cannot reach a Ray cluster there ({error}); start one with "
                        "`ray start --head` or leave --address out for a local Ray")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a host:port nobody listens on (ray.init would retry for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "local", "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise _unreachable(address, e) from None


def _storage_path(storage: str) -> str:
    if "://" in storage:
        return storage
    return str(Path(storage).expanduser().resolve())


def _load_videos(opts: SearchOptions):
    from mitogan.io import read_inputs

    if opts.data:
        return read_inputs(opts.data, channel=opts.channel, z=opts.z)
    from mitogan.simulate import default_dataset

    kwargs = {k: v for k, v in (("videos", opts.sim_videos), ("frames", opts.sim_frames)) if v}
    return read_inputs([default_dataset(**kwargs)])


def _write_launch(search_dir: Path, opts: SearchOptions, space: Space, name: str) -> None:
    info = {"name": name, "options": asdict(opts), "space": {"name": space.name, "source": space.source,
                                                           "fixed": space.fixed},
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    (search_dir / "search.json").write_text(json.dumps(info, indent=2, default=str))
