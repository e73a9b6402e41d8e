"""W&B logging from the Ray driver: one run per trial plus one run for the whole search.

Ray kills a trial's actor when a scheduler stops it, before any code after the training loop runs, so a
run opened inside the trial loses its exit record and its last rows. ``WandbSearchLogger`` is a
``ray.tune.Callback``: it lives in the driver, sees every result Ray records (``on_trial_result``) and
every ending (``on_trial_complete`` for finished and stopped trials, ``on_trial_error``), whatever
stopped the trial. Each trial's run has

- one row per Ray result, at the generator step (``result["step"]``), with the result's numbers and the
  sample grid written at that step (``samples_png``, relative to the trial folder) as a ``wandb.Image``;
- ``job_type="trial"``, tags ``space:<name>``, ``loss:<kind>``, ``arch:<arch>``, grouped by search name;
- a summary with ``stop_reason`` (``finished``, ``asha``, ``error`` or a non-convergence reason), ``status``
  and the final primary metric and its components; exit code 1 only for an error.

At the end of the experiment a ``job_type="search"`` run holds a ``wandb.Table`` of all trials
(searched parameters, primary and its components, stop reason, final sample grid).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from ray.tune import Callback

from search.trials import ran_to_end, stop_reason_of

__all__ = ["WandbSearchLogger", "trial_run_id"]

log = logging.getLogger(__name__)

# Ray's bookkeeping in every result: not metrics
_SKIP = {"step", "timestamp", "pid", "done", "time_this_iter_s", "time_total_s", "time_since_restore",
         "iterations_since_restore", "timesteps_total", "timesteps_since_restore", "training_iteration",
         "finished"}


def trial_run_id(search_name: str, trial_id: str) -> str:
    """A stable W&B run id per trial, so a restored search appends to the same run."""
    return hashlib.blake2b(f"{search_name}/{trial_id}".encode(), digest_size=8).hexdigest()


class WandbSearchLogger(Callback):
    """Driver-side W&B runs for every trial of a search and one run for the search itself."""

    def __init__(self, *, search_name: str, space_name: str, fixed: dict, wandb_dir: str | Path,
                 project: str | None = None):
        self.search_name, self.space_name, self.fixed = search_name, space_name, set(fixed)
        self.dir = Path(wandb_dir)
        self.project = project or os.environ.get("WANDB_PROJECT", "mitogan")
        self.runs: dict[str, object] = {}  # trial_id -> WandbRun
        self.last_step: dict[str, int] = {}
        self.ended: dict[str, dict] = {}  # trial_id -> table row data

    # -- trials ----------------------------------------------------------------------------------------
    def _run(self, trial):
        run = self.runs.get(trial.trial_id)
        if run is None:
            from mitogan.tracking import WandbRun

            cfg = dict(trial.config or {})
            tags = [f"space:{self.space_name}", f"loss:{cfg.get('loss.kind', '?')}",
                    f"arch:{cfg.get('model.arch', '?')}"]
            run = WandbRun(project=self.project, name=f"trial_{trial.trial_id}", group=self.search_name,
                           config=cfg, dir=self.dir, tags=tags, job_type="trial",
                           run_id=trial_run_id(self.search_name, trial.trial_id))
            self.runs[trial.trial_id] = run
        return run

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step = int(result.get("step", 0))
        if step < self.last_step.get(trial.trial_id, -1):
            return  # a trial restarted from a checkpoint repeats steps W&B already has
        self.last_step[trial.trial_id] = step
        row = {k: v for k, v in result.items() if k not in _SKIP}
        images = {}
        png = _sample_file(trial, result.get("samples_png"))
        if png is not None:
            images["samples"] = png
        self._run(trial).log_row(row, step=step, images=images)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._end(trial, error=True)

    def _end(self, trial, error: bool) -> None:
        last = dict(trial.last_result or {})
        reason = stop_reason_of(last, error=error) or "finished"
        status = "error" if error else "finished" if ran_to_end(last) else "stopped"
        from mitogan.metrics import PRIMARY_COMPONENTS, PRIMARY_NAME
        from search.report import JUDGES

        final = {k: last.get(k) for k in ("primary", *PRIMARY_COMPONENTS, *JUDGES) if last.get(k) is not None}
        run = self._run(trial)
        run.summary({"stop_reason": reason, "status": status, "objective": PRIMARY_NAME,
                     "final_step": int(last.get("step", 0)), **final})
        run.finish(exit_code=1 if error else 0)
        self.runs.pop(trial.trial_id, None)
        self.ended[trial.trial_id] = {"trial": trial, "reason": reason, "status": status, "final": final,
                                      "last": last}

    # Ray checkpoints this with the experiment: after a resume, steps W&B already has are not logged again
    # and the search's table still lists the trials that ended before
    def get_state(self) -> dict:
        # plain data only: the table needs each ended trial's last step, not its whole last result
        return {"last_step": dict(self.last_step),
                "ended": {tid: {"reason": end["reason"], "status": end["status"], "final": end["final"],
                                "last": {"step": int(end["last"].get("step", 0))}}
                          for tid, end in self.ended.items()}}

    def set_state(self, state: dict) -> None:
        self.last_step.update(state.get("last_step", {}))
        self.ended.update(state.get("ended", {}))

    # -- the search ------------------------------------------------------------------------------------
    def on_experiment_end(self, trials, **info):
        interrupted = False
        for trial in trials:  # an interrupted search: its unfinished trials continue after --resume
            run = self.runs.pop(trial.trial_id, None)
            if run is not None and getattr(trial, "status", "TERMINATED") not in ("TERMINATED", "ERROR"):
                run.summary({"status": "interrupted"})
                run.finish(exit_code=0)  # the resumed search reopens the same run id and continues it
                interrupted = True
            elif run is not None:
                self.runs[trial.trial_id] = run
                self._end(trial, error=False)
        if not interrupted and len(self.ended) >= len(trials):
            self._search_run(trials)
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
            rows.append([t.trial_id, end["status"], end["reason"], int(last.get("step", 0)),
                         end["final"].get("primary"), *(end["final"].get(c) for c in (*PRIMARY_COMPONENTS, *JUDGES)),
                         *(_cell(cfg.get(k)) for k in params), _last_sample(t)])
        run = WandbRun(project=self.project, name=f"search_{self.search_name}", group=self.search_name,
                       config={"space": self.space_name, "objective": PRIMARY_NAME, "objective_mode": PRIMARY_MODE,
                               "fixed": sorted(self.fixed)},
                       dir=self.dir, tags=[f"space:{self.space_name}", "search"], job_type="search",
                       run_id=trial_run_id(self.search_name, "search"))
        run.log_table("trials", columns, rows, image_columns=("samples",))
        run.summary({"n_trials": len(trials), "n_finished": sum(r[1] == "finished" for r in rows)})
        run.finish()


def _cell(value):
    """Table cells must have one type per column: parameters that are absent (conditional) are None."""
    return value if value is None or isinstance(value, (int, float, str, bool)) else str(value)


def _sample_file(trial, rel) -> Path | None:
    """The trial's sample grid ``rel`` on this machine: its trial folder, or the synced storage copy."""
    if not rel:
        return None
    for root in (trial.local_path, trial.path):
        if root and "://" not in str(root) and (Path(root) / rel).is_file():
            return Path(root) / rel
    return None


def _last_sample(trial) -> str | None:
    for root in (trial.local_path, trial.path):
        if root and "://" not in str(root):
            pngs = sorted(Path(root).glob("samples/*.png"))
            if pngs:
                return str(pngs[-1])
    return None
