"""Launch a search: Optuna (TPE, seeded) proposes through ``search.searcher.OptunaAskTell``, Ray Tune
schedules, ASHA and the non-convergence policy stop bad trials early, ``search.wandb_log`` logs every trial
to W&B from the driver (complete runs whatever stopped a trial), and a static report is written at the end.

``run_search(SearchOptions(...))`` is what ``mitogan search`` calls. The search directory is
``<storage>/<name>/``: Ray's trial folders (config, results, checkpoints, sample grids), ``optuna.log``
(the Optuna study, a journal file: ``optuna-dashboard optuna.log``), ``wandb/`` (offline runs: one per
trial and one for the search), ``search.json`` (how it was launched, and its status: running,
interrupted, finished) and ``report/`` (the HTML page). ``--storage`` may be an object store (s3://,
gs://): ``search.storage.SearchStore`` puts every file there (docs/resilience.md).
Ray's own console output stays off unless ``verbose``; ``dashboard`` starts Ray's dashboard on 127.0.0.1.

Searches survive: SIGINT/SIGTERM stop a search with its state saved (``SearchInterrupted`` carries the
resume command); ``SearchOptions(resume=NAME)`` continues it with ``Tuner.restore``: finished trials are
kept, running ones continue from their last checkpoint, the seeded Optuna sampler proposes what it would have over the
same study. A lost worker is retried from the trial's last checkpoint (``FailureConfig``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import pyarrow.fs
import ray
from ray import tune

from mitogan.cli import SUPERVISED_ENV
from mitogan.config import Config, to_flat
from mitogan.errors import MitoganError
from mitogan.fsutil import atomic_write
from search import schedulers
from search.space import Space, load_space
from search.storage import JOURNAL, SearchStore, validate_name
from search.trainable import make_trainable

__all__ = ["SearchOptions", "run_search", "SearchInterrupted", "validate_options", "resume_command",
           "space_for_resume"]

log = logging.getLogger(__name__)


@dataclass
class SearchOptions:
    """Everything ``mitogan search`` takes."""

    space: str = "smoke"  # a shipped space name or a YAML file
    overrides: list[str] = field(default_factory=list)  # key=value changes to the space's fixed keys
    data: list[str] = field(default_factory=list)  # files/folders; empty = the built-in simulator
    trials: int = 8
    max_concurrent: int | None = None  # None: as many as the resources allow
    time_budget: float | None = None  # seconds after which no new trial starts (running ones finish)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0  # fractional shares one GPU between trials, e.g. 0.25
    address: str | None = None  # a Ray cluster ("ray://..." or "host:port"); None: a local Ray
    storage: str = "runs"  # local directory (or s3://, gs://, NFS path shared by all nodes)
    name: str | None = None  # default: <space>-<timestamp>
    seed: int = 0
    asha: bool = True  # ASHA early stopping on the primary metric (False = --scheduler none)
    scheduler: str = "asha"  # asha, pbt, pb2 or none (search/schedulers.py)
    stop_nonconvergent: bool = True  # stop diverging/collapsing trials (mitogan.stopping; thresholds: stop.*)
    sampler: str = "tpe"  # tpe (Optuna's TPE, seeded) or random (seeded; same trials whatever the results)
    grace_steps: int | None = None  # ASHA grace period (default: mitogan.stopping.grace_steps, from stop.grace)
    wandb: bool = True  # one W&B run per trial (offline unless WANDB_API_KEY / WANDB_MODE say otherwise)
    channel: int | None = None  # reader options for --data
    z: str = "max"
    sim_videos: int | None = None  # size of the built-in dataset (None: the simulator's defaults)
    sim_frames: int | None = None
    report: bool = True  # write the HTML report at the end
    progress: bool = True  # MitoGAN's one-line progress bar (off with -q)
    verbose: bool = False  # Ray's own console output (results folder, TensorBoard hint, warnings)
    dashboard: bool = False  # start the Ray dashboard on 127.0.0.1 (local Ray) and print its URL
    resume: str | None = None  # continue the search of this name in ``storage`` (its saved options are used)
    optuna_storage: str | None = None  # an RDB URL for the Optuna study (default: the journal optuna.log)
    trust_storage: bool = False  # --resume: skip the owner/permission check (needed for object stores)
    reuse_actors: bool = True  # warm trials: a trial's worker process runs the next trial (search.trainable)


class SearchInterrupted(Exception):
    """SIGINT/SIGTERM stopped the search; its state is saved and ``command`` continues it."""

    def __init__(self, name: str, command: str, signal_name: str):
        super().__init__(f"search {name} interrupted ({signal_name}); its state is saved. Resume it with: {command}")
        self.command, self.signal_name = command, signal_name
        self.exit_code = 143 if signal_name == "SIGTERM" else 130


# What Ray pickles into its experiment state must not hold this driver's objects (a resumed search runs in
# another process, maybe on another machine): the callbacks and the Optuna storage are looked up here.
_LIVE: dict = {"callbacks": [], "optuna_storage": None, "optuna_spec": None, "ray_pids": []}
# Ray saves its experiment state (every trial's record, the searcher) on a period: a driver killed right after
# a trial ended loses at most one period of bookkeeping (a trial resumed from its final checkpoint trains no
# step again). Ray's own rule ("auto") keeps saving at <= 5 % of the driver's time but never more often than
# every 10 s. A save re-encodes every trial's record, so at a fixed period its cost per trial grows with the
# trials so far; at 5 % of the time at the end, the driver's CPU per trial in the last quarter of a 1,000-trial
# search was 1.55x the first (0.05 x 0.63 s of wall per trial over 0.067 s of driver CPU per trial: ~1.5x).
# MitoGAN keeps the saves of the state this search grows to at <= 1 % of the time (~1.1x), never more rarely
# than needed and never below this floor, so a small search's state is at most 2 s old (the measured resume
# guarantees: the floor holds up to ~125 trials)
EXPERIMENT_STATE_PERIOD_S = "2"
STATE_SAVE_SHARE = 0.01
# one save's cost per trial: ~22 KB of state each, 0.16 s for 1,000 trials on the shared 2-core machine
STATE_SAVE_S_PER_TRIAL = 160e-6
# after SIGTERM, how long Ray Tune may take to save its state and stop before the driver ends itself
# (Slurm's KillWait and systemd's stop timeout are 30 s and more); a dead local Ray ends it at once
STOP_GRACE_S = 25.0
# how long the SIGTERM handler watches for the local Ray's processes dying with the driver (a
# process-group stop); Ray's Python helpers die within ~0.3 s of SIGTERM
GROUP_STOP_WAIT_S = 1.5
# Ray Tune copies these from the driver's os.environ into every trial actor's runtime_env env_vars, and
# Ray writes runtime envs in plain text to its session logs (runtime_env_agent.log)
_TUNE_FORWARDED_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN")


def _optuna_storage():
    """The Optuna storage of the search this driver runs (``OptunaAskTell`` calls this lazily)."""
    return _LIVE["optuna_storage"]


def _optuna_storage_spec():
    """The same storage as ``search.searcher.open_storage`` takes it, for the proposer actor."""
    return _LIVE["optuna_spec"]


class _LiveCallbacks(tune.Callback):
    """Forwards Ray's callback hooks to the callbacks this driver set up (fresh ones after a resume)."""

    def get_state(self):
        """JSON text (Ray pickles what this returns; nothing of MitoGAN's needs unpickling to read it)."""
        states = {type(cb).__name__: cb.get_state() for cb in _LIVE["callbacks"]}
        states = {k: v for k, v in states.items() if v}
        return {"json": json.dumps(states, default=_plain)} if states else None

    def set_state(self, state):
        states = json.loads(state["json"]) if "json" in state else state  # a search saved before JSON states
        for cb in _LIVE["callbacks"]:
            if states.get(type(cb).__name__):
                cb.set_state(states[type(cb).__name__])


def _plain(value):
    """NumPy scalars as plain numbers; anything else not JSON as its text."""
    return value.item() if hasattr(value, "item") else str(value)


def _forward(hook):
    def method(self, *args, **kwargs):
        for cb in _LIVE["callbacks"]:
            getattr(cb, hook)(*args, **kwargs)

    method.__name__ = hook
    return method


for _hook in ("setup", "on_step_begin", "on_step_end", "on_trial_start", "on_trial_restore", "on_trial_save",
              "on_trial_result", "on_trial_complete", "on_trial_recover", "on_trial_error", "on_checkpoint",
              "on_experiment_end"):
    setattr(_LiveCallbacks, _hook, _forward(_hook))


class _PushJournal(tune.Callback):
    """Object-store searches: the Optuna journal (local, POSIX) is uploaded whenever a trial starts or ends."""

    def __init__(self, store: SearchStore):
        self.store = store

    def on_trial_start(self, iteration, trials, trial, **info):
        self.store.upload(JOURNAL)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.store.upload(JOURNAL)

    on_trial_error = on_trial_complete


class _TrialFiles(tune.Callback):
    """Each trial's ``params.json`` and ``result.json`` (what the report, export, ``--resume`` and Ray's
    ``ResultGrid`` read), written in place of Ray's default loggers (``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS``
    while Tune runs), which add a pickle, a CSV and TensorBoard events per trial that nothing here reads.

    ``direct`` (a local or shared-filesystem storage): straight into the trial's folder in the storage.
    Ray's loggers write into the driver's staging folder, which Ray copies whole, every file of every trial,
    to the storage at every experiment-state save: a copy that grew with the search. Otherwise (an object
    store) into that staging folder, which Ray uploads: ``store`` then gives the files already stored."""

    def __init__(self, direct: bool, store: SearchStore | None = None):
        self.direct, self.store = direct, store
        self._staged: set[str] = set()  # trials whose staging folder this driver has checked

    def _folder(self, trial) -> Path:
        if self.direct:
            return Path(trial.path)
        folder = Path(trial.local_path)
        if trial.trial_id not in self._staged:
            self._staged.add(trial.trial_id)
            self._stage_stored_results(folder)
        return folder

    def _stage_stored_results(self, folder: Path) -> None:
        """A trial this driver continues from an earlier one (``--resume``) whose staging folder is new and
        empty (the driver runs in another Ray session than the one that started the trial: a restarted local
        Ray or cluster, another machine): its stored ``result.json`` is copied in first. Ray uploads the
        staging folder over the stored one, and the file would hold only the results from the resume on."""
        from search.trials import RESULTS, whole_lines

        if self.store is None or (folder / RESULTS).exists():
            return
        text = self.store.read_text(f"{folder.name}/{RESULTS}")
        if text:
            atomic_write(folder / RESULTS, whole_lines(text))

    def on_trial_start(self, iteration, trials, trial, **info):
        from search.trials import write_params

        write_params(self._folder(trial), dict(trial.config or {}))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from search.trials import append_result

        append_result(self._folder(trial), result)


def validate_options(opts: SearchOptions) -> None:
    """Every option checked before data is read or Ray starts; one line naming the option otherwise."""
    def integer(value, option, low, allow_none=False):
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise MitoganError(f"{option} {value!r}: must be a whole number >= {low}")

    integer(opts.trials, "--trials", 1)
    integer(opts.max_concurrent, "--max-concurrent", 1, allow_none=True)
    integer(opts.seed, "--seed", 0)
    integer(opts.grace_steps, "--grace-steps", 1, allow_none=True)
    integer(opts.sim_videos, "--sim-videos", 1, allow_none=True)
    integer(opts.sim_frames, "--sim-frames", 1, allow_none=True)
    integer(opts.channel, "--channel", 0, allow_none=True)
    for d in opts.data:  # read after Ray starts: a typo must not wait for it
        if not Path(d).expanduser().exists():
            raise MitoganError(f"--data {d}: no such file or folder")
    if opts.trials > 100_000:
        raise MitoganError(f"--trials {opts.trials}: more than 100000 trials; run a smaller search and --resume it")
    for option, value in (("--cpus-per-trial", opts.cpus_per_trial), ("--gpus-per-trial", opts.gpus_per_trial)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise MitoganError(f"{option} {value!r}: must be a finite number >= 0")
    if opts.cpus_per_trial <= 0:
        raise MitoganError(f"--cpus-per-trial {opts.cpus_per_trial}: a trial needs more than 0 CPUs (e.g. 1)")
    if opts.gpus_per_trial > 1 and opts.gpus_per_trial != int(opts.gpus_per_trial):
        raise MitoganError(f"--gpus-per-trial {opts.gpus_per_trial}: above 1 GPU a trial takes whole GPUs (2, 3, ...)")
    if opts.sampler not in ("tpe", "random"):
        raise MitoganError(f"--sampler {opts.sampler!r}: use tpe or random")
    if opts.name is not None:
        validate_name(opts.name)
    if opts.resume is not None:
        validate_name(opts.resume, "--resume")
        if opts.name is not None and opts.name != opts.resume:
            raise MitoganError(f"--name {opts.name} with --resume {opts.resume}: give only --resume NAME")
    if not isinstance(opts.storage, str) or not opts.storage.strip():
        raise MitoganError("--storage: give a folder or an s3:// / gs:// URI")
    budget = opts.time_budget
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                               or not math.isfinite(budget) or budget <= 0):
        raise MitoganError(f"--time-budget {budget!r}: must be a duration above 0, e.g. 90s, 20m or 2h")
    if budget is not None and scheduler_of(opts) in ("pbt", "pb2"):
        raise MitoganError(f"--time-budget with --scheduler {opts.scheduler}: the population trains together and "
                           "ends together; size it with --trials and --set train.steps=N instead")
    if opts.optuna_storage is not None and "://" not in opts.optuna_storage:
        raise MitoganError(f"--optuna-storage {opts.optuna_storage!r}: an RDB URL such as sqlite:////abs/path.db "
                           "or postgresql://user@host/db")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit s, m, h or d (``90``, ``90s``, ``20m``, ``1.5h``);
    one line naming ``--time-budget`` otherwise."""
    value = str(text).strip().lower()
    unit = _UNITS.get(value[-1:], None)
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        raise MitoganError(f"--time-budget {text!r}: not a duration; give e.g. 90s, 20m or 2h") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise MitoganError(f"--time-budget {text!r}: must be a duration above 0, e.g. 90s, 20m or 2h")
    return seconds


def resume_command(opts: SearchOptions, name: str) -> str:
    """The exact command that continues the search ``name``."""
    import shlex

    parts = ["mitogan", "search", "--resume", name, "--storage", opts.storage]
    if opts.address:
        parts += ["--address", opts.address]
    return " ".join(shlex.quote(str(p)) for p in parts)


def run_search(opts: SearchOptions):
    """Run the whole search (or continue it: ``opts.resume``); returns the local search folder (for an
    object store: the local copy holding the report and the exported bundle)."""
    validate_options(opts)
    if opts.resume:
        return _resume(opts)
    space = load_space(opts.space, opts.overrides)  # a malformed space fails here, before Ray starts
    schedulers.check(scheduler_of(opts), space)
    name = opts.name or f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    store = _open_store(opts.storage, name)
    store.claim("--name", "wait for it to end, or choose another --name")  # two drivers at once: one refused
    try:
        if store.exists():
            raise MitoganError(f"--name {name}: {store.uri} already holds a search; continue it with "
                               f"`{resume_command(opts, name)}` or choose another --name (nothing was changed)")
        opts = replace(opts, name=name, data=[str(Path(d).expanduser().resolve()) for d in opts.data])
        _start_ray(opts)  # an unreachable cluster or an impossible resource request fails before anything is written
        try:
            launch = _launch_info(opts, space, name)
            store.write_json("search.json", launch)
            if not store.remote:
                from mitogan.fsutil import write_marker

                write_marker(store.local, "search")
        except BaseException:
            ray.shutdown()
            raise
        return _fit(store, opts, space, launch, restore=False)
    finally:
        store.release()


def _start_ray(opts: SearchOptions) -> None:
    address = opts.address or os.environ.get("RAY_ADDRESS") or "local"
    _check_reachable(address)  # ray.init retries for minutes
    _init_ray(address, dashboard=opts.dashboard, verbose=opts.verbose)
    try:
        _check_resources(opts, address)
    except BaseException:
        ray.shutdown()
        raise


def _open_store(storage: str, name: str, option: str = "--name") -> SearchStore:
    store = SearchStore(storage, name, option)
    if not store.remote:
        from mitogan.fsutil import check_writable_dir

        check_writable_dir(store.local, "--storage")
    return store


def _resume(opts: SearchOptions):
    """Continue a stopped search with the options it was started with (address and console flags may
    change); a finished one is reported as such and nothing is written."""
    store = _open_store(opts.storage, opts.resume, "--resume")
    if store.remote or store.local.is_dir():  # (no search folder: nothing to claim, and the read below says so)
        store.claim("--resume", "stop that driver first (Ctrl-C, or `kill -INT PID`) or wait for it to end")
    try:
        return _resume_claimed(store, opts)
    finally:
        store.release()


def _resume_claimed(store: SearchStore, opts: SearchOptions):
    launch = store.read_json("search.json")
    if launch is None:
        raise MitoganError(f"--resume {opts.resume}: no search of that name in {store.storage} (no search.json); "
                           "check --storage and the name")
    if launch.get("status") == "finished":
        print(f"search {opts.resume} already finished ({launch.get('trials_ended', '?')} trials); nothing to do")
        return store.local
    known = {f.name for f in fields(SearchOptions)}
    saved = SearchOptions(**{k: v for k, v in (launch.get("options") or {}).items() if k in known})
    store.check_trusted(opts.trust_storage)  # before Ray unpickles its state from the folder
    _check_searcher_state(store)
    opts = replace(saved, storage=opts.storage, address=opts.address or saved.address, progress=opts.progress,
                   verbose=opts.verbose, dashboard=opts.dashboard, report=opts.report, resume=opts.resume,
                   name=opts.resume, trust_storage=opts.trust_storage)
    validate_options(replace(opts, resume=None))
    space = space_for_resume(opts, launch)
    store.pull_journal()
    if store.remote:
        store.download("wandb")  # the offline runs continue in the same folders
    restore = tune.Tuner.can_restore(store.ray_path, storage_filesystem=store.fs)  # False: stopped before trials
    launch = {**launch, "resumed": [*launch.get("resumed", []), time.strftime("%Y-%m-%d %H:%M:%S")]}
    _start_ray(opts)
    return _fit(store, opts, space, launch, restore=restore)


def space_for_resume(opts: SearchOptions, launch: dict) -> Space:
    """The space of a search continued from its ``search.json``: its file and ``--set`` overrides as launched,
    every other key at the value it had at launch (``defaults``), so a newer MitoGAN whose defaults changed
    continues the search it started (and its trials' checkpoints still match their configs). A key this version
    no longer knows is dropped; a key it added since takes its default. A search launched before the defaults were
    recorded gets this version's."""
    space = load_space(opts.space, opts.overrides)
    saved = launch.get("defaults")
    if not isinstance(saved, dict):
        return space
    keep = set(to_flat(Config())) - {p.name for p in space.params}  # known to this version, and not sampled
    return replace(space, defaults={k: v for k, v in saved.items() if k in keep})


def _check_searcher_state(store: SearchStore) -> None:
    """The searcher state Ray will hand to ``OptunaAskTell.restore`` (the newest, as Ray picks it) is
    MitoGAN's JSON: refused in one line here, before Ray starts, rather than inside Ray's restore."""
    import fnmatch

    from search.searcher import read_state

    states = [n for n in store.top_files() if fnmatch.fnmatch(n, "searcher-state-*.pkl")]
    if states:
        read_state(store.download(max(states)))


def _fit(store: SearchStore, opts: SearchOptions, space: Space, launch: dict, restore: bool):
    """Load the data and run (or continue) Ray Tune, which ``_start_ray`` started; on SIGINT/SIGTERM leave
    the search resumable and raise SearchInterrupted."""
    from mitogan.metrics import PRIMARY_MODE
    from search.searcher import budget_spent, forget

    forget(store.name)  # nothing of an earlier search of this name in this process
    stop = _Stop(store, opts, launch)
    previous = signal.signal(signal.SIGTERM, stop.on_sigterm)
    # Tune's SIGINT handler puts back the one it found when a SIGINT stops Tune (and never calls it)
    previous_int = signal.signal(signal.SIGINT, _sigint_before_tune)
    results, remade = None, []
    try:
        try:
            store.write_json("search.json", {**launch, "status": "running"})
            _setup_live(store, opts, space)
            trainable = _trainable(opts, space, _load_videos(opts), store)
            if restore:
                tuner = tune.Tuner.restore(store.ray_path, trainable, resume_errored=True,
                                           storage_filesystem=store.fs)
                with contextlib.suppress(RuntimeError):  # Ray could not read its state: Tune says so itself
                    remade = _remake_removed_checkpoints(tuner.get_results())
            else:
                tuner = _build_tuner(opts, space, store, trainable, PRIMARY_MODE)
            with _quiet_stdout(not opts.verbose), _credentials_kept_from_runtime_env(), \
                    _state_period(experiment_state_period(opts.trials)), _env(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1"):
                results = tuner.fit()
        finally:
            stop.settled = True  # Tune has stopped: the watchdog is no longer needed
            ray.shutdown()
            _LIVE["callbacks"], _LIVE["optuna_storage"], _LIVE["optuna_spec"] = [], None, None
            store.upload(JOURNAL, "wandb")
    except KeyboardInterrupt:  # before Ray's own handler was in place, or a second Ctrl-C
        stop.got.setdefault("signal", "SIGINT")
    except Exception:
        if not stop.got:
            raise
        # the signal reached Ray's own processes too (a process-group stop) and Tune failed on the dead
        # cluster: the search was stopped, not broken, and resumes like any other stop
    finally:
        if signal.getsignal(signal.SIGINT) is _sigint_before_tune and results is not None:
            stop.got.setdefault("signal", "SIGINT")  # Tune's handler took a Ctrl-C and put ours back
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:  # None: not set from Python, nothing to put back
            signal.signal(signal.SIGINT, previous_int)
    ended = 0 if results is None else results.num_terminated + results.num_errors
    # the searcher stopped asking once the time budget was spent, and every trial it started has ended
    by_budget = not stop.got and results is not None and budget_spent(store.name)
    # no stop, and every trial Ray has ended short of the count: Ray's saved state lost trials it created (a
    # driver killed between the uploads of its trial list and its search state; OptunaAskTell's own count
    # makes up for it, a population's generator cannot)
    lost = opts.trials - ended if not stop.got and not by_budget and results is not None \
        and ended == len(results) < opts.trials else 0
    forget(store.name)
    if stop.got or (ended < opts.trials and not by_budget and not lost):
        if not stop.claim():
            threading.Event().wait()  # the watchdog is ending the process (exit 143/130) right now
        stop.mark_interrupted(ended)
        raise stop.interrupted()
    _drop_still_empty(remade)  # a trial that ended without checkpointing again left its one
    _complete_results(store, results)
    if opts.report:
        _write_report(store)
    _export_best(store)
    ended_by = {"ended_by": "time budget"} if by_budget and ended < opts.trials else \
        {"ended_by": "trials lost", "trials_lost": lost} if lost else {}
    store.write_json("search.json", {**launch, "status": "finished", "trials_ended": ended, **ended_by,
                                     "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    if by_budget and ended_by:
        print(f"time budget of {_duration(opts.time_budget)} spent: {ended} of {opts.trials} trials ran")
    elif lost:
        print(f"mitogan: search {store.name}: {ended} of {opts.trials} trials ran; Ray's saved state lost {lost} "
              "(a driver killed while Ray saved it); run a new search for more", file=sys.stderr)
    return store.local


def _remake_removed_checkpoints(results) -> list[tuple[pyarrow.fs.FileSystem, str]]:
    """Make again, empty, each checkpoint folder Ray's saved state keeps for a trial that is no longer
    there. Ray removes a trial's older checkpoints when it registers a new one and
    saves its state some time later: a driver stopped in between (a process-group stop ends it at once,
    with a state up to ``experiment_state_period`` old; a kill) leaves a state naming checkpoints already
    removed. The resumed Ray removes them again at the trial's next checkpoint, which fails on a missing
    folder (an error with a traceback, and that checkpoint's bookkeeping skipped); an empty folder is
    removed as it meant to. The trainable passes over an empty one if Ray restores it
    (``trainable._restored``). ``results``: the restored Tuner's ``get_results()``; a trial that had ended
    checkpoints no more and is left as it is. Returns ``(filesystem, path)`` of each folder made."""
    made = []
    for result in results:
        if (result.metrics or {}).get("done"):
            continue
        for checkpoint, _ in result.best_checkpoints or []:
            fs, path = checkpoint.filesystem, checkpoint.path
            if fs.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
                fs.create_dir(path)
                made.append((fs, path))
    if made:
        log.info("made again, empty, %d checkpoint folder(s) Ray's state names and its stopped driver had "
                 "removed", len(made))
    return made


def _drop_still_empty(made) -> None:
    """Remove those of the folders ``_remake_removed_checkpoints`` made that Ray did not (still empty: their
    trial ended without another checkpoint)."""
    for fs, path in made:
        still_empty = fs.get_file_info(path).type == pyarrow.fs.FileType.Directory \
            and not fs.get_file_info(pyarrow.fs.FileSelector(path))
        if still_empty:
            fs.delete_dir(path)


def _complete_results(store: SearchStore, results) -> list[str]:
    """Append to a trial's ``result.json`` the last result Ray's saved state holds for it when the file
    stops short of it; returns the trial folders mended. On an object store the driver uploads its state and
    the trials' result files together, file by file, at each state save: a driver killed during that upload
    can leave the state saying a trial ended while its ``result.json`` lacks the final result (``finished``,
    the judge's C2ST). The resumed search does not run that trial again, so its last result would be lost
    to the report and the export. Only the last result is in Ray's state: a file missing more keeps a gap."""
    from search.trials import RESULTS, complete_results

    mended = []
    for result in results:
        if not result.path or not result.metrics:
            continue
        rel = f"{Path(result.path).name}/{RESULTS}"
        if store.remote:  # mended in the local copy, then uploaded
            text = store.read_text(rel)
            if text is None:
                continue
            atomic_write(store.local / rel, text)
        if complete_results((store.local / rel).parent, result.metrics):
            store.upload(rel)
            mended.append(Path(result.path).name)
    if mended:
        log.info("completed the last result of %s from Ray's saved state", ", ".join(mended))
    return mended


def _duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


def experiment_state_period(trials: int) -> float:
    """Seconds between Ray's experiment-state saves for a search of ``trials`` trials: saving the state at its
    final size takes ``STATE_SAVE_SHARE`` of the time (Ray's "auto" rule with 1 % for its 5 %), never below
    ``EXPERIMENT_STATE_PERIOD_S``."""
    save = STATE_SAVE_S_PER_TRIAL * trials
    return max(float(EXPERIMENT_STATE_PERIOD_S), save * (1 / STATE_SAVE_SHARE - 1))


def _state_period(seconds: float):
    """``TUNE_GLOBAL_CHECKPOINT_S`` (Ray reads it when ``fit`` starts) while Tune runs, unless the user set
    it; put back afterwards, so the next search in this process gets its own. Ray's warnings about slow or
    too frequent state saves stay on."""
    if "TUNE_GLOBAL_CHECKPOINT_S" in os.environ:
        return contextlib.nullcontext()
    return _env(TUNE_GLOBAL_CHECKPOINT_S=f"{seconds:.1f}")


@contextlib.contextmanager
def _env(**values: str):
    """``values`` in ``os.environ`` while the block runs (Ray Tune reads them when ``fit`` starts); what was
    there before is put back."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sigint_before_tune(signum, frame):
    """The SIGINT handler while Tune runs, until Tune puts its own over it: Python's (a KeyboardInterrupt).
    Found in place again after ``fit``, it says a SIGINT stopped Tune (Tune puts back what it found)."""
    signal.default_int_handler(signum, frame)


class _Stop:
    """SIGTERM stops a search like Ctrl-C: Ray Tune's SIGINT handler saves the experiment state and ``fit``
    returns. ``timeout``, Slurm's ``scancel`` and systemd signal the whole process group (or cgroup), so a
    local Ray's own processes get SIGTERM too and Tune cannot finish that way (it fails, or waits a minute
    for the dying GCS). So the handler first watches the local Ray for ``GROUP_STOP_WAIT_S``: when one of
    its processes exits (Ray's Python helpers die at once), the driver marks ``search.json`` interrupted,
    prints the resume command and exits 143 there and then. Ray's state on disk is at most
    ``experiment_state_period(trials)`` old and a resume continues from it, as after a killed driver. A watchdog
    does the same if Tune has not stopped ``STOP_GRACE_S`` after the signal.
    (SIGINT needs none of this: Ray's processes block it, so only the driver stops, through Tune.)
    From the command line all this is the fallback: the driver runs behind a supervisor in a session of its
    own (``mitogan.cli.supervise_child``), no group signal reaches its Ray, and the SIGTERM the supervisor
    passes on stops Tune as Ctrl-C does. The group watch is only for a driver started otherwise (a Python
    caller of ``run_search``): there Ray's core worker can still end the process first (status 1)."""

    def __init__(self, store: SearchStore, opts: SearchOptions, launch: dict):
        self.store, self.opts, self.launch = store, opts, launch
        self.got: dict = {}
        self._lock, self._claimed, self.settled = threading.Lock(), False, False

    def on_sigterm(self, signum, frame) -> None:
        if "signal" in self.got:
            return
        self.got["signal"] = "SIGTERM"
        # a process-group stop: the local Ray is dying with this driver. Ending here, in the main thread,
        # does not depend on Ray's calls on the dead cluster letting another thread run
        # (not behind the command line's supervisor: no group signal reaches this driver's Ray there)
        deadline = time.monotonic() + (0.0 if os.environ.get(SUPERVISED_ENV) == "1" else GROUP_STOP_WAIT_S)
        while _LIVE["ray_pids"] and time.monotonic() < deadline:
            if _local_ray_died():
                self._exit()
            time.sleep(0.05)
        threading.Thread(target=self._watch, name="mitogan-stop", daemon=True).start()
        signal.raise_signal(signal.SIGINT)  # Ray Tune's handler: save the state and return from fit

    def claim(self) -> bool:
        """True for the first caller only (the driver past Ray, or the watchdog): it reports the stop."""
        with self._lock:
            claimed, self._claimed = self._claimed, True
            return not claimed

    def interrupted(self) -> SearchInterrupted:
        return SearchInterrupted(self.store.name, resume_command(self.opts, self.store.name),
                                 self.got.get("signal", "SIGINT"))

    def mark_interrupted(self, ended: int | None = None) -> None:
        extra = {} if ended is None else {"trials_ended": ended}
        self.store.write_json("search.json", {**self.launch, "status": "interrupted", **extra})

    def _watch(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and not self.settled:
            if _local_ray_died():  # the driver may still get past Ray by itself (Tune failing at once)
                deadline = min(deadline, time.monotonic() + 2.0)
            time.sleep(0.2)
        if not self.settled:
            self._exit()

    def _exit(self) -> None:
        """Mark the search interrupted, print the resume command and end the process now (143/130)."""
        if not self.claim():
            return  # the driver got past Ray and reports the stop itself
        error = self.interrupted()
        try:
            self.mark_interrupted()
            self.store.upload(JOURNAL)
        except Exception as e:  # the message and the exit status matter more now
            print(f"mitogan: could not mark {self.store.uri}/search.json interrupted ({e})", file=sys.stderr)
        print(f"mitogan: {error}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        with contextlib.suppress(Exception):
            self.store.release()  # an object store's lease is not dropped by the kernel as a local lock is
        os._exit(error.exit_code)  # a normal exit would wait on the dead cluster (Ray's atexit shutdown)


def _check_resources(opts: SearchOptions, address: str) -> None:
    """A trial needs its CPUs and GPUs on one node: fail, naming what the cluster has, rather than wait
    forever for resources that do not exist. A local Ray is checked at once; a cluster (``--address``) may
    be autoscaling (GPU workers from 0, cluster/kuberay), so it gets ``MITOGAN_RESOURCE_WAIT_S`` (default
    300) seconds for such a node to join."""
    need = {"CPU": opts.cpus_per_trial, "GPU": opts.gpus_per_trial}
    wait = 0.0 if address == "local" else float(os.environ.get("MITOGAN_RESOURCE_WAIT_S", "300"))
    deadline, told = time.monotonic() + wait, False
    while True:
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        if any(all(res.get(k, 0) >= v for k, v in need.items() if v) for res in nodes):
            return
        have = "; ".join(f"node {i + 1}: {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU"
                         for i, res in enumerate(nodes)) or "no nodes"
        if time.monotonic() >= deadline:
            raise MitoganError(f"--cpus-per-trial {opts.cpus_per_trial:g} --gpus-per-trial {opts.gpus_per_trial:g}: "
                               f"no node of the Ray cluster has that ({have}); ask for less or use a cluster with "
                               "more")
        if not told:
            print(f"waiting up to {wait:.0f} s for a node with {opts.cpus_per_trial:g} CPU and "
                  f"{opts.gpus_per_trial:g} GPU to join (an autoscaling cluster); now: {have}", flush=True)
            told = True
        time.sleep(5)


class _SyncRace(logging.Filter):
    """Ray's experiment-state save copies its staging folder to the storage in the background while the next
    save writes its files there through temporary files it renames. When the copy lists such a file just before
    the rename, the copy fails and Ray logs an error with a traceback (seen on a stop: Tune saves at once).
    Nothing is lost: Ray starts a new copy right after, of the files as they are now. That record becomes one
    line (a warning, kept visible); every other record of Ray's passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, FileNotFoundError) and "tmp-" in str(error) and "experiment state" in str(record.msg):
            record.msg = ("Ray's background copy of the experiment state missed a temporary file Ray had just "
                          "renamed (%s); the copy Ray starts next has the new state")
            record.args = (" ".join(str(error).split())[-160:],)
            record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.WARNING, "WARNING"
        return True


_SYNC_RACE = _SyncRace()


def watch_sync_race() -> None:
    """Put ``_SyncRace`` on Ray's experiment-state logger (a search's or a fit's driver; once: the same object)."""
    logging.getLogger("ray.tune.execution.experiment_state").addFilter(_SYNC_RACE)


def _setup_live(store: SearchStore, opts: SearchOptions, space: Space) -> None:
    watch_sync_race()
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from mitogan.metrics import PRIMARY_MODE
    from search.progress import SearchProgress

    optuna.logging.set_verbosity(optuna.logging.INFO if opts.verbose else optuna.logging.ERROR)
    if not opts.verbose:  # Ray's "resume with Tuner.restore(...)": MitoGAN prints its own resume command
        logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    store.local.mkdir(parents=True, exist_ok=True)
    _LIVE["optuna_storage"] = opts.optuna_storage or JournalStorage(JournalFileBackend(str(store.journal)))
    _LIVE["optuna_spec"] = opts.optuna_storage or ("journal", str(store.journal))
    callbacks = [SearchProgress(opts.trials, PRIMARY_MODE, enabled=opts.progress)]
    if opts.wandb:  # logged from the driver: complete runs whatever stops a trial (search.wandb_log)
        from search.wandb_log import WandbSearchLogger

        callbacks.append(WandbSearchLogger(search_name=store.name, space_name=space.name, fixed=space.fixed,
                                           wandb_dir=store.local))
    if store.remote:
        callbacks.append(_PushJournal(store))
    callbacks.append(_TrialFiles(direct=not store.remote, store=store))  # after the W&B logger: it takes the PNG bytes out
    _LIVE["callbacks"] = callbacks


def _trainable(opts: SearchOptions, space: Space, videos, store: SearchStore):
    # a storage every node reaches as a path (Ray's rule for a local storage_path): trials write their
    # files there, outside the staging folder Ray copies at every state save
    return make_trainable(videos=videos, fixed=space.constants(), cpus=opts.cpus_per_trial, gpus=opts.gpus_per_trial,
                          policy=None if opts.stop_nonconvergent else {"enabled": False},
                          ship_samples=opts.wandb,  # the W&B logger takes the images out of the results
                          trial_root=None if store.remote else str(store.local))


def _write_report(store: SearchStore) -> None:
    from search.report import write_report

    if store.remote:
        store.sync_down_for_report()
    try:
        write_report(store.local)
    except MitoganError as e:
        print(f"no report written: {e}")
        return
    store.upload("report")


def _export_best(store: SearchStore) -> None:
    """Export the best trial to ``<search>/best``; a search where no trial finished just says so."""
    from search.export import export_search

    try:
        bundle = export_search(store.local, overwrite=True)  # its own best/ (a resumed search re-exports)
    except MitoganError as e:
        print(f"no generator exported: {e}")
        return
    store.upload("best")
    print(f"best generator exported to {store.uri}/best" if store.remote else f"best generator exported to {bundle}")


def _build_tuner(opts, space: Space, store: SearchStore, trainable, mode: str) -> tune.Tuner:

    from mitogan.metrics import PRIMARY_COMPONENTS
    from mitogan.stopping import grace_steps
    from search.searcher import OptunaAskTell, TrialList

    limit = opts.max_concurrent or max(1, int(ray.cluster_resources().get("CPU", 1) // opts.cpus_per_trial))
    searcher = OptunaAskTell(space.define, metric="primary", mode=mode, study_name=store.name, sampler=_sampler(opts),
                             storage=_optuna_storage, components=PRIMARY_COMPONENTS, time_budget=opts.time_budget,
                             proposer=_optuna_storage_spec, start=space.start, trials=opts.trials,
                             max_concurrent=limit)
    search_alg, scheduler, param_space = schedulers.build(scheduler_of(opts), space, searcher=searcher, seed=opts.seed,
                                             trials=opts.trials, limit=limit,
                                             grace_steps=opts.grace_steps or grace_steps(space.base_config()))
    return tune.Tuner(
        trainable, param_space=param_space,
        # the Optuna searcher counts the trials itself (-1: Tune does not; see OptunaAskTell's ``trials``)
        tune_config=tune.TuneConfig(metric="primary", mode=mode, num_samples=-1 if search_alg is searcher else
                                    opts.trials, search_alg=search_alg, scheduler=scheduler,
                                    trial_dirname_creator=_trial_dirname, reuse_actors=opts.reuse_actors),
        run_config=tune.RunConfig(
            name=store.name, storage_path=store.fs_storage, storage_filesystem=store.fs, verbose=0,
            callbacks=[_LiveCallbacks(), TrialList(store.name)],
            # an object store gets the trial folders too (sample grids, data.json: the report reads them)
            sync_config=tune.SyncConfig(sync_artifacts=store.remote),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=schedulers.checkpoints_to_keep(scheduler_of(opts))),
            failure_config=tune.FailureConfig(max_failures=2)),
    )


def scheduler_of(opts: SearchOptions) -> str:
    """The scheduler a search runs: ``--scheduler``, or none when ASHA was turned off (``--no-asha``)."""
    return "none" if opts.scheduler == "asha" and not opts.asha else opts.scheduler


def _sampler(opts: SearchOptions) -> dict:
    from search.searcher import sampler_spec

    return sampler_spec(opts.sampler, opts.seed, n_startup_trials=min(5, opts.trials))


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
        handler = signal.getsignal(signal.SIGTERM)  # Python's record; ray.init put its own C handler over it
        if callable(handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)  # SIGTERM stops MitoGAN's way again (exit 143, one line)
        _LIVE["ray_pids"] = []
        if address == "local":
            _remember_local_ray()
    except ConnectionError as e:
        raise _unreachable(address, e) from None
    except OSError as e:
        if "AF_UNIX path length" in str(e):  # Ray's sockets live under the temp folder: 107 bytes at most
            raise MitoganError(f"TMPDIR {tempfile.gettempdir()}: too long a path for Ray's socket files "
                               f"({len(tempfile.gettempdir())} characters); run with a short one, e.g. "
                               "TMPDIR=/tmp") from None
        raise MitoganError(f"cannot start Ray: {' '.join(str(e).split())}") from None
    if dashboard:
        url = getattr(context, "dashboard_url", None)
        print(f"Ray dashboard: http://{url}" if url else "Ray dashboard: not available (is `ray[default]` installed?)",
              flush=True)


@contextlib.contextmanager
def _credentials_kept_from_runtime_env():
    """While Tune runs, the credentials Tune would copy into its actors' ``runtime_env`` (and so into Ray's
    logs) are out of ``os.environ`` but still in the process environment (``os.putenv``), where pyarrow's
    S3 client finds them. Trials get credentials from their node, as any Ray process does: a local Ray's
    processes inherited the driver's environment at ``ray.init``; a cluster's nodes use their own (the
    environment of ``ray start``, an instance role, ``~/.aws``)."""
    hidden = {k: os.environ.pop(k) for k in _TUNE_FORWARDED_CREDENTIALS if k in os.environ}
    for k, v in hidden.items():
        os.putenv(k, v)
    try:
        yield
    finally:
        for k, v in hidden.items():
            os.environ.setdefault(k, v)


def _remember_local_ray() -> None:
    """The PIDs of the processes ``ray.init`` just started as this driver's children (GCS, raylet, log
    monitor, ...; Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                pids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    _LIVE["ray_pids"] = pids


def _local_ray_died() -> bool:
    """Whether one of the local Ray's processes has exited (a zombie or gone): the signal reached them
    too. Ray's Python helpers die at once on SIGTERM; GCS and raylet shut down over seconds. False for a
    cluster (``--address``)."""
    for pid in _LIVE["ray_pids"]:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state in "ZX":
            return True
    return False


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


def _load_videos(opts: SearchOptions):
    from mitogan.io import read_inputs

    if opts.data:
        return read_inputs(opts.data, channel=opts.channel, z=opts.z)
    from mitogan.simulate import default_dataset

    kwargs = {k: v for k, v in (("videos", opts.sim_videos), ("frames", opts.sim_frames)) if v}
    return read_inputs([default_dataset(**kwargs)])


def _launch_info(opts: SearchOptions, space: Space, name: str) -> dict:
    """``search.json``: how the search was launched (``--resume`` reads its options back)."""
    return {"name": name, "options": asdict(opts), "space": {"name": space.name, "source": space.source,
                                                            "fixed": space.fixed},
            "defaults": to_flat(Config()),  # every default at launch: --resume keeps them (space_for_resume)
            "started": time.strftime("%Y-%m-%d %H:%M:%S")}
