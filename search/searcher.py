"""Optuna inside Ray Tune through public APIs only: a ``ray.tune.search.Searcher`` over Optuna's ask/tell.

Why not Ray's ``OptunaSearch``: it records any trial with a metric as COMPLETE (a diverged WGAN stopped
early would count as a good result), keys intermediate values by Ray's iteration, and leaves the Optuna
trial with no trace of the Ray trial. Here, for every Optuna trial:

- user attributes ``ray_trial_id`` (set when it is asked), ``stop_reason``, ``status`` and the final
  metrics (``final_step``, ``primary`` and its components) when it ends;
- intermediate values = the primary metric at each evaluation, keyed by the *generator step*;
- state COMPLETE (value = final primary) only when it trained all its steps; PRUNED when ASHA or the
  non-convergence policy ended it; FAIL on an error.

So ``optuna-dashboard optuna.log`` and ``optuna.visualization`` tell the same story as the report.
"""

from __future__ import annotations

import logging
import math
import pickle
from typing import Callable

from ray.tune.search import Searcher

from search.trials import ran_to_end, stop_reason_of

__all__ = ["OptunaAskTell"]

log = logging.getLogger(__name__)


class OptunaAskTell(Searcher):
    """``space_fn(trial) -> constants`` is a define-by-run space (``search.space.Space.define``).

    ``storage``: an Optuna storage, an RDB URL, or a function returning one (called when the study is first
    needed, so a restored search can put its journal somewhere else than the first run did)."""

    def __init__(self, space_fn: Callable, *, metric: str, mode: str, study_name: str, storage=None,
                 sampler=None, components: tuple[str, ...] = ()):
        super().__init__(metric=metric, mode=mode)
        self.space_fn, self.study_name, self.storage, self.sampler = space_fn, study_name, storage, sampler
        self.components = tuple(components)
        self.study = None
        self.trials: dict = {}  # Ray trial id -> optuna.Trial
        self.reported: dict[str, int] = {}  # Ray trial id -> last step reported to Optuna
        self.evaluated: dict[str, dict] = {}  # Ray trial id -> components of its last evaluation

    def _study(self):
        if self.study is None:
            import optuna

            storage = self.storage() if callable(self.storage) else self.storage
            # kept: a restore re-opens trials through the storage's public API
            self._storage = optuna.storages.get_storage(storage)
            self.study = optuna.create_study(study_name=self.study_name, storage=self._storage, sampler=self.sampler,
                                             direction="minimize" if self.mode == "min" else "maximize",
                                             load_if_exists=True)
        return self.study

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return False  # metric, mode and space come from the constructor

    def suggest(self, trial_id: str) -> dict | None:
        ot_trial = self.trials.get(trial_id) or self._study().ask()
        self.trials[trial_id] = ot_trial
        constants = self.space_fn(ot_trial) or {}
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        return {**constants, **ot_trial.params}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        fresh = {c: result[c] for c in self.components if c in result}
        if not fresh or trial_id not in self.trials:
            return  # only results with a new evaluation become intermediate values
        self.evaluated[trial_id] = fresh
        step, value = int(result.get("step", 0)), result.get(self.metric)
        if value is None or not math.isfinite(value) or step <= self.reported.get(trial_id, -1):
            return
        try:
            self.trials[trial_id].report(float(value), step)
        except Exception as e:  # told before a driver died: a resumed search replays its last result
            log.warning("optuna: trial %s: %s", trial_id, e)
        self.reported[trial_id] = step

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        import optuna

        if result:  # Ray passes a trial's last result here, not to on_trial_result, when it stops the trial
            self.on_trial_result(trial_id, result)
        ot_trial = self.trials.pop(trial_id, None)
        if ot_trial is None:
            return
        result = result or {}
        reason = stop_reason_of(result, error=error or not result)
        value = result.get(self.metric)
        done = not error and bool(result) and ran_to_end(result) and value is not None and math.isfinite(value)
        attrs = {"stop_reason": reason or "finished", "status": "finished" if done else "error" if reason == "error"
                 else "stopped", "final_step": int(result.get("step", 0))}
        if value is not None and math.isfinite(value):
            attrs[self.metric] = float(value)
        # on_trial_result (above, for the last result too) has kept the trial's objective components
        attrs.update({c: float(v) for c, v in self.evaluated.pop(trial_id, {}).items()})
        state = optuna.trial.TrialState
        try:  # a trial told before the driver died (Ray's saved state lagged) is finished in the study
            for key, v in attrs.items():
                ot_trial.set_user_attr(key, v)
            if done:
                self._study().tell(ot_trial, float(value))
            else:
                self._study().tell(ot_trial, state=state.FAIL if reason == "error" else state.PRUNED)
        except Exception as e:  # Optuna rejects updating a finished trial
            log.warning("optuna: could not record trial %s: %s", trial_id, e)

    # -- Ray's searcher checkpoint (experiment state): what a restored search needs --------------------------
    def save(self, checkpoint_path: str) -> None:
        """The sampler (with its random state), which Optuna trial each Ray trial is, and the step
        bookkeeping. The study itself is not pickled: it lives in its storage (the journal)."""
        state = {"sampler": self.sampler, "reported": dict(self.reported), "evaluated": dict(self.evaluated),
                 "trial_numbers": {rid: t.number for rid, t in self.trials.items()}}
        with open(checkpoint_path, "wb") as f:
            pickle.dump(state, f)

    def restore(self, checkpoint_path: str) -> None:
        """Continue a search: re-attach the Ray trials to their Optuna trials in the study's storage and
        mark Optuna trials that no Ray trial will continue (asked just before the driver died) as FAIL."""
        import optuna

        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.sampler, self.study = state["sampler"], None
        self.reported, self.evaluated = state["reported"], state["evaluated"]
        study = self._study()
        study_id = self._storage.get_study_id_from_name(self.study_name)
        trial_id = self._storage.get_trial_id_from_study_id_trial_number  # trial number -> storage id
        self.trials = {rid: optuna.trial.Trial(study, trial_id(study_id, n)) for rid, n in state["trial_numbers"].items()}
        kept = {t.number for t in self.trials.values()}
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in kept:
                try:
                    study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                except Exception as e:  # already ended meanwhile
                    log.warning("optuna: could not close orphaned trial %s: %s", frozen.number, e)

