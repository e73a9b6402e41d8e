"""W&B logging from the Ray driver: one run per trial plus one run for the whole search.

Ray kills a trial's actor when a scheduler stops it, before any code after the training loop runs, so a
run opened inside the trial loses its exit record and its last rows. ``WandbSearchLogger`` is a
``ray.tune.Callback``: it lives in the driver, sees every result Ray records (``on_trial_result``) and
every ending (``on_trial_complete`` for finished and stopped trials, ``on_trial_error``), whatever
stopped the trial. Each trial's run has

- one row per Ray result, at the generator step (``result["step"]``), with the result's numbers (those
  packed for Ray unpacked: ``search.trials.expand``) and the
  sample grid written at that step (``samples_png``, relative to the trial folder) as a ``wandb.Image``;
- ``job_type="trial"``, tags ``space:<name>``, ``loss:<kind>``, ``arch:<arch>``, grouped by search name;
- a summary with ``stop_reason`` (``finished``, ``asha``, ``error`` or a non-convergence reason), ``status``
  and the final primary metric and its components; exit code 1 only for an error.

At the end of the experiment a ``job_type="search"`` run holds a ``wandb.Table`` of all trials
(searched parameters, primary and its components, stop reason, final sample grid).

Off the critical path: Ray calls its callbacks in the driver's result loop, so every W&B call (run start,
rows, images, summaries, finish) runs in one background thread, in the order Ray reported; the callback
only shapes the row. ``on_experiment_end`` waits for that thread, so the offline runs are complete when
the search returns. The driver's runs skip what W&B would collect about the driver's environment (the
package list, system metadata and metrics, git and code): a trial's run describes the trial, and the
package scan alone cost ~70 ms of driver CPU per trial. A trial's run that ended cleanly keeps only its
``.wandb`` file and its images: W&B's debug logs are removed after ``finish`` (kept on an error), and
a grid named again by a later result (a checkpoint step's grid, shipped with the next result) is logged once.

Images without a shared filesystem: a trial on another node writes its sample grid on that node. The
trial can ship the PNG in its result (``attach_sample``: key ``samples_png_bytes``); the logger takes it
out of the result in place (Ray lets callbacks do that, and runs its own loggers after the user's, so the
bytes never reach ``result.json``, ``progress.csv`` or the experiment state) and writes it into the
driver's copy of the trial folder, where W&B, the search table and the report find it.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import queue
import threading
import time
from pathlib import Path

from ray.tune import Callback

from search.trials import expand, ran_to_end, stop_reason_of

__all__ = ["WandbSearchLogger", "trial_run_id", "attach_sample", "SAMPLE_BYTES", "DRIVER_SETTINGS"]

log = logging.getLogger(__name__)

SAMPLE_BYTES = "samples_png_bytes"  # result key: the PNG of ``samples_png``, for drivers on another node
# what W&B would collect about the driver's process, for every trial's run: nothing of it is the trial's
DRIVER_SETTINGS = {"x_save_requirements": False, "x_disable_meta": True, "x_disable_stats": True,
                   "x_disable_machine_info": True, "disable_git": True, "disable_code": True}

# Ray's bookkeeping in every result: not metrics
_SKIP = {"step", "timestamp", "pid", "done", "time_this_iter_s", "time_total_s", "time_since_restore",
         "iterations_since_restore", "timesteps_total", "timesteps_since_restore", "training_iteration",
         "finished", SAMPLE_BYTES}


def trial_run_id(search_name: str, trial_id: str) -> str:
    """A stable W&B run id per trial, so a restored search appends to the same run."""
    return hashlib.blake2b(f"{search_name}/{trial_id}".encode(), digest_size=8).hexdigest()


def attach_sample(metrics: dict, trial_dir: str | Path) -> dict:
    """Add the bytes of ``metrics["samples_png"]`` (relative to ``trial_dir``) to a trial's result, so a
    driver on another node gets the image; a result without a readable sample grid is left as it was."""
    rel = metrics.get("samples_png")
    if rel:
        try:
            metrics[SAMPLE_BYTES] = (Path(trial_dir) / rel).read_bytes()
        except OSError:
            pass
    return metrics


class _Worker:
    """One daemon thread running submitted calls in order; ``drain`` waits until all have run."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None

    def submit(self, fn, *args) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._loop, name="mitogan-wandb", daemon=True)
            self.thread.start()
        self.queue.put((fn, args))

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every submitted call has run (at most ``timeout`` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                self.queue.all_tasks_done.wait(left)

    def _loop(self) -> None:
        while True:
            fn, args = self.queue.get()
            try:
                fn(*args)
            except Exception as e:  # W&B must never take the search down
                log.warning("W&B logging failed (%s: %s)", type(e).__name__, e)
            finally:
                self.queue.task_done()


class WandbSearchLogger(Callback):
    """Driver-side W&B runs for every trial of a search and one run for the search itself."""

    def __init__(self, *, search_name: str, space_name: str, fixed: dict, wandb_dir: str | Path,
                 project: str | None = None):
        self.search_name, self.space_name, self.fixed = search_name, space_name, set(fixed)
        self.dir = Path(wandb_dir)
        self.project = project or os.environ.get("WANDB_PROJECT", "mitogan")
        self.runs: dict[str, object] = {}  # trial_id -> WandbRun; used by the worker thread only
        self.last_step: dict[str, int] = {}
        self.ended: dict[str, dict] = {}  # trial_id -> table row data
        self.samples: dict[str, Path] = {}  # trial_id -> its latest sample grid on this machine
        self.open: set[str] = set()  # trials with a run opened by this driver and not ended yet
        self.worker, self.exit_hook = _Worker(), False

    # Ray pickles the callbacks of a RunConfig (Tuner saves them with the experiment): the thread, its queue
    # and open runs stay behind; a copy starts with a worker of its own
    def __getstate__(self) -> dict:
        return {**self.__dict__, "worker": None, "runs": {}, "exit_hook": False}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.worker = _Worker()

    # -- trials (the driver's thread: shape the row, hand the W&B calls to the worker) -----------------
    def on_trial_result(self, iteration, trials, trial, result, **info):
        data = result.pop(SAMPLE_BYTES, None)  # in place: Ray's own loggers run after this callback
        step = int(result.get("step", 0))
        if step < self.last_step.get(trial.trial_id, -1):
            return  # a trial restarted from a checkpoint repeats steps W&B already has
        self.last_step[trial.trial_id] = step
        row = {k: v for k, v in expand(result).items() if k not in _SKIP}  # the trainer's scalars unpacked
        png = _sample_file(trial, result.get("samples_png"), data)
        if png is not None and self.samples.get(trial.trial_id) == png:
            png = None  # the grid of a checkpoint step named again by the next result: W&B has it
        elif png is not None:
            self.samples[trial.trial_id] = png
        self.open.add(trial.trial_id)
        self.worker.submit(self._log, trial.trial_id, dict(trial.config or {}), row, step, png)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, error=True)

    def _end(self, trial, error: bool) -> None:
        last = expand(dict(trial.last_result or {}))
        reason = stop_reason_of(last, error=error) or "finished"
        status = "error" if error else "finished" if ran_to_end(last) else "stopped"
        from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_NAME
        from search.report import JUDGES

        final = {k: last.get(k) for k in ("primary", *PRIMARY_COMPONENTS, *JUDGES) if last.get(k) is not None}
        summary = {"stop_reason": reason, "status": status, "objective": PRIMARY_NAME,
                   "final_step": int(last.get("step", 0)), **final}
        self.worker.submit(self._finish, trial.trial_id, dict(trial.config or {}), summary, 1 if error else 0)
        self.open.discard(trial.trial_id)
        self.ended[trial.trial_id] = {"reason": reason, "status": status, "final": final,
                                      "last": {"step": int(last.get("step", 0))}}

    # -- the worker thread -----------------------------------------------------------------------------
    def _run(self, trial_id: str, cfg: dict):
        run = self.runs.get(trial_id)
        if run is None:
            from mitogan.tracking import WandbRun

            tags = [f"space:{self.space_name}", f"loss:{cfg.get('loss.kind', '?')}",
                    f"arch:{cfg.get('model.arch', '?')}"]
            run = WandbRun(project=self.project, name=f"trial_{trial_id}", group=self.search_name, config=cfg,
                           dir=self.dir, tags=tags, job_type="trial", run_id=trial_run_id(self.search_name, trial_id),
                           settings=DRIVER_SETTINGS)
            self.runs[trial_id] = run
            if not self.exit_hook:  # registered after wandb's own: at exit this runs first (LIFO), so a
                self.exit_hook = True  # driver leaving without on_experiment_end still hands W&B its rows
                atexit.register(self.worker.drain, 30.0)
        return run

    def _log(self, trial_id: str, cfg: dict, row: dict, step: int, png: Path | None) -> None:
        self._run(trial_id, cfg).log_row(row, step=step, images={"samples": png} if png else None)

    def _finish(self, trial_id: str, cfg: dict, summary: dict, exit_code: int) -> None:
        run = self._run(trial_id, cfg)
        run.summary(summary)
        _finish_run(run, exit_code)
        self.runs.pop(trial_id, None)

    def _interrupt(self, trial_id: str) -> None:
        run = self.runs.pop(trial_id, None)
        if run is not None:
            run.summary({"status": "interrupted"})
            run.finish(exit_code=0)  # the resumed search reopens the same run id and continues it

    # Ray checkpoints this with the experiment: after a resume, steps W&B already has are not logged again
    # and the search's table still lists the trials that ended before
    def get_state(self) -> dict:
        return {"last_step": dict(self.last_step), "ended": {tid: dict(end) for tid, end in self.ended.items()}}

    def set_state(self, state: dict) -> None:
        self.last_step.update(state.get("last_step", {}))
        self.ended.update(state.get("ended", {}))

    # -- the search ------------------------------------------------------------------------------------
    def on_experiment_end(self, trials, **info):
        interrupted = False
        for trial in trials:  # an interrupted search: its unfinished trials continue after --resume
            if trial.trial_id not in self.open:
                continue
            if getattr(trial, "status", "TERMINATED") not in ("TERMINATED", "ERROR"):
                self.open.discard(trial.trial_id)
                self.worker.submit(self._interrupt, trial.trial_id)
                interrupted = True
            else:
                self._end(trial, error=False)
        if not interrupted and len(self.ended) >= len(trials):
            self.worker.submit(self._search_run, trials)
        self.worker.drain()
        from mitogan.tracking import flush_all

        flush_all()  # the offline files are complete when the search returns

    def _search_run(self, trials) -> None:
        from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_MODE, PRIMARY_NAME
        from mitogan.tracking import WandbRun
        from search.report import JUDGES

        params = sorted({k for t in trials for k in (t.config or {}) if k not in self.fixed})
        columns = ["trial_id", "status", "stop_reason", "step", PRIMARY_NAME, *PRIMARY_COMPONENTS, *JUDGES, *params,
                   "samples"]
        rows = []
        for t in trials:
            end = self.ended.get(t.trial_id, {"reason": "", "status": "pending", "final": {}, "last": {}})
            last, cfg = end["last"], t.config or {}
            sample = self.samples.get(t.trial_id) or _last_sample(t)
            rows.append([t.trial_id, end["status"], end["reason"], int(last.get("step", 0)),
                         end["final"].get("primary"), *(end["final"].get(c) for c in (*PRIMARY_COMPONENTS, *JUDGES)),
                         *(_cell(cfg.get(k)) for k in params), str(sample) if sample else None])
        run = WandbRun(project=self.project, name=f"search_{self.search_name}", group=self.search_name,
                       config={"space": self.space_name, "objective": PRIMARY_NAME, "objective_mode": PRIMARY_MODE,
                               "fixed": sorted(self.fixed)},
                       dir=self.dir, tags=[f"space:{self.space_name}", "search"], job_type="search",
                       run_id=trial_run_id(self.search_name, "search"), settings=DRIVER_SETTINGS)
        run.log_table("trials", columns, rows, image_columns=("samples",))
        run.summary({"n_trials": len(trials), "n_finished": sum(r[1] == "finished" for r in rows)})
        _finish_run(run)


def _finish_run(run, exit_code: int = 0) -> None:
    """Finish ``run``; one that ended cleanly loses W&B's debug logs (per trial they say nothing)."""
    logs = _debug_logs(run) if exit_code == 0 else []
    run.finish(exit_code=exit_code)
    for path in logs:
        path.unlink(missing_ok=True)


def _debug_logs(run) -> list[Path]:
    """The run's own ``debug.log`` and ``debug-internal.log`` (W&B writes both for every run) and its link
    to the W&B service's log (``debug-core.log``: the link only)."""
    try:
        settings = run.run.settings
        user = Path(settings.log_user)
        return [user, Path(settings.log_internal), user.with_name("debug-core.log")]
    except Exception:  # no run (W&B failed at init) or a W&B without these settings: nothing removed
        return []


def _cell(value):
    """Table cells must have one type per column: parameters that are absent (conditional) are None."""
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def _local_roots(trial) -> list[Path]:
    return [Path(r) for r in (trial.local_path, trial.path) if r and "://" not in str(r)]


def _sample_file(trial, rel, data: bytes | None) -> Path | None:
    """The trial's sample grid ``rel`` on this machine: its trial folder or the synced storage copy; else
    ``data`` (the PNG shipped in the result) written into the driver's copy of the trial folder."""
    if not rel:
        return None
    roots = _local_roots(trial)
    for root in roots:
        if (root / rel).is_file():
            return root / rel
    if data and roots:
        from mitogan.fsutil import atomic_write

        try:
            return atomic_write(roots[0] / rel, data)
        except OSError as e:
            log.warning("could not keep trial %s's sample grid (%s)", trial.trial_id, e)
    return None


def _last_sample(trial) -> Path | None:
    for root in _local_roots(trial):
        pngs = sorted(root.glob("samples/*.png"))
        if pngs:
            return pngs[-1]
    return None
