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

What Ray saves of this searcher (``save``: ``searcher-state-*.pkl``, the name is Ray's) is JSON, and a
restore refuses anything else: a search folder can be shared (NFS, a bucket), so nothing MitoGAN reads back
from it is unpickled. The sampler needs no saved random state: :class:`TrialSeeded` draws each trial with a
seed derived from the search's seed and the trial's number, so its spec (JSON) is all a restore needs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Callable

import numpy as np
import optuna
import ray
from optuna.samplers import BaseSampler
from ray.tune import Callback
from ray.tune.search import Searcher

from mitogan.errors import MitoganError
from search.trials import JUDGED_NAME, expand, ran_to_end, stop_reason_of

__all__ = ["OptunaAskTell", "TrialSeeded", "Proposer", "TrialList", "TrialCount", "sampler_spec", "budget_spent",
           "forget", "open_storage"]

log = logging.getLogger(__name__)
STATE_VERSION = 1  # of the JSON that ``save`` writes
# study names whose searcher in this process stopped asking because its time budget was spent (Ray runs the
# searcher it unpickled on a resume, not the one the driver built, so the driver looks the fact up here)
_BUDGET_SPENT: set[str] = set()


def budget_spent(study_name: str) -> bool:
    """Whether the searcher of ``study_name`` in this process stopped proposing trials because its time
    budget was spent."""
    return study_name in _BUDGET_SPENT


# study name -> the Ray actor that proposes its trials (``OptunaAskTell(proposer=...)``), for this driver only;
# False once it failed (the driver proposes itself from then on)
_PROPOSERS: dict = {}
# study name -> Ray Tune's list of the experiment's trials (restored ones included), kept by TrialList
_TUNE_TRIALS: dict[str, list] = {}
GO = "go"  # TrialCount.verdict: a new trial may start


def forget(study_name: str) -> None:
    """Forget what this process knows of the search ``study_name`` (its budget, its proposer actor, Tune's
    trials): called when a driver starts and ends a search, so a second search of that name starts clean."""
    _BUDGET_SPENT.discard(study_name)
    _PROPOSERS.pop(study_name, None)
    _TUNE_TRIALS.pop(study_name, None)


class TrialList(Callback):
    """Shows an :class:`OptunaAskTell` of ``study_name`` the trials Ray Tune really has (``on_step_begin``, a
    public callback, runs before Tune asks the searcher for more). A restored search counts its trials from
    this list, not from Ray's saved counter: Ray saves the trial list and its search state as separate files,
    and a driver killed between their uploads leaves a counter that counts a trial the list lost."""

    def __init__(self, study_name: str):
        self.study_name = study_name

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        _TUNE_TRIALS[self.study_name] = trials


class TrialCount:
    """A search's count of trials, kept by its searcher in place of Tune's ``num_samples`` (then -1) and
    ``ConcurrencyLimiter``: the trials Tune really has (shown by :class:`TrialList`, restored ones included)
    and those handed out since Tune's list was last shown. ``verdict`` answers a request for a new trial."""

    def __init__(self, study_name: str, wanted: int, max_concurrent: int | None = None):
        self.study_name, self.wanted, self.max_concurrent = study_name, wanted, max_concurrent
        self.reset()

    def reset(self) -> None:
        """A new driver (a restore): nothing handed out or ended here yet."""
        self.handed: set[str] = set()  # Ray trial ids given a config
        self.ended: set[str] = set()

    def tune_ids(self) -> set[str] | None:
        """The ids of the trials Tune has; None before :class:`TrialList` has shown them."""
        trials = _TUNE_TRIALS.get(self.study_name)
        return None if trials is None else {t.trial_id for t in trials}

    def verdict(self, trial_id: str):
        """``GO``: ``trial_id`` may start; else what ``suggest`` answers:
        None (not now: ``max_concurrent`` run, or the last ones have not ended) or ``Searcher.FINISHED``."""
        trials = _TUNE_TRIALS.get(self.study_name, [])
        known = {t.trial_id for t in trials} | self.handed
        ended = {t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | self.ended
        live = known - ended
        if len(known) >= self.wanted:
            return Searcher.FINISHED if not live else None
        if self.max_concurrent and len(live) >= self.max_concurrent:
            return None
        self.handed.add(trial_id)
        return GO


def open_storage(spec):
    """An Optuna storage from a picklable description: ``("journal", path)`` for a journal file, else what
    ``optuna.storages.get_storage`` takes (an RDB URL)."""
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and spec[0] == "journal":
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(str(spec[1])))
    return optuna.storages.get_storage(spec)


def sample(trial, space_fn: Callable, ray_trial_id: str) -> dict:
    """The config of Optuna trial ``trial`` (its parameters sampled by the define-by-run ``space_fn``, plus
    the constants it returns), the trial tagged with the Ray trial it becomes."""
    constants = space_fn(trial) or {}
    trial.set_user_attr("ray_trial_id", ray_trial_id)
    return {**constants, **trial.params}


class Proposer:
    """Asks Optuna for a new trial and samples its parameters: a Ray actor on the driver's node, so that
    TPE's cost per proposal, which grows with the trials of the study, is not paid in the driver's control
    loop. It opens the same study (the journal is safe for several processes); the driver then re-attaches
    the trial by its number and reports and tells it as before."""

    def __init__(self, space_fn: Callable, study_name: str, storage, sampler: dict | None, direction: str):
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.space_fn = space_fn
        self.study = optuna.create_study(study_name=study_name, storage=open_storage(storage),
                                         sampler=None if sampler is None else TrialSeeded(sampler),
                                         direction=direction, load_if_exists=True)

    def propose(self, ray_trial_id: str) -> tuple[int, dict]:
        """``(trial number, config)`` of a new trial tagged with ``ray_trial_id``."""
        trial = self.study.ask()
        config = sample(trial, self.space_fn, ray_trial_id)
        if isinstance(self.study.sampler, TrialSeeded):
            self.study.sampler.release(trial.number)
        return trial.number, config


def sampler_spec(kind: str, seed: int, n_startup_trials: int = 5) -> dict:
    """The JSON description of a seeded sampler: ``kind`` is ``tpe`` or ``random``."""
    if kind not in ("tpe", "random"):
        raise ValueError(f"sampler kind {kind!r}: tpe or random")
    return {"kind": kind, "seed": int(seed), "n_startup_trials": int(n_startup_trials)}


class TrialSeeded(BaseSampler):
    """Optuna's TPE or random sampler, built afresh for every trial with a seed derived from ``(seed, trial
    number)``. A trial's proposal is then a function of the seed, its number and the study's history (which
    lives in the study's storage), never of random state held in this process: a restored search proposes
    exactly what the uninterrupted one would, and the sampler is saved as its spec (:func:`sampler_spec`).

    Optuna's public API cannot give a sampler a chosen seed after it is built (``reseed_rng`` draws a new
    random one), hence one sampler per trial. What a fresh TPE sampler would recompute from every trial of
    the study, the intersection search space of its multivariate TPE, is kept here in one incremental
    ``optuna.search_space.IntersectionSearchSpace`` (the same answer: a cache over the study's history), so a
    suggestion costs what Ray's ``OptunaSearch`` (one sampler for the whole search) pays."""

    def __init__(self, spec: dict):
        self.spec = sampler_spec(**spec)
        self._live: dict[int, BaseSampler] = {}  # trial number -> its sampler, while the trial is sampled
        self._space = optuna.search_space.IntersectionSearchSpace(include_pruned=True)  # as TPESampler's

    def _of(self, trial) -> BaseSampler:
        sampler = self._live.get(trial.number)
        if sampler is None:
            seed = int(np.random.SeedSequence([self.spec["seed"], trial.number]).generate_state(1)[0])
            if self.spec["kind"] == "random":
                sampler = optuna.samplers.RandomSampler(seed=seed)
            else:
                sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.spec["n_startup_trials"])
            self._live[trial.number] = sampler
        return sampler

    def infer_relative_search_space(self, study, trial):
        if self.spec["kind"] != "tpe" or len(study.directions) > 1:
            return self._of(trial).infer_relative_search_space(study, trial)
        # what TPESampler returns for one objective (multivariate TPE, Optuna's default), from the kept cache
        space = self._space.calculate(study, use_cache=True)
        return {name: dist for name, dist in space.items() if not dist.single()}

    def sample_relative(self, study, trial, search_space):
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._of(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._of(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._of(trial).after_trial(study, trial, state, values)
        self.release(trial.number)

    def release(self, number: int) -> None:
        """Drop trial ``number``'s sampler: it is sampled (a :class:`Proposer` never sees the trial end)."""
        self._live.pop(number, None)

    def reseed_rng(self) -> None:
        """Nothing to reseed: every trial's seed is derived from the spec's seed and its number."""


class OptunaAskTell(Searcher):
    """``space_fn(trial) -> constants`` is a define-by-run space (``search.space.Space.define``).

    ``storage``: an Optuna storage, an RDB URL, or a function returning one (called when the study is first
    needed, so a restored search can put its journal somewhere else than the first run did).
    ``sampler``: a :func:`sampler_spec` (JSON); None: Optuna's default sampler, unseeded.
    ``time_budget``: seconds of search after which it proposes no more trials (``Searcher.FINISHED``; the
    running ones finish, as with Optuna's ``optimize(timeout=...)``). The clock starts at the first proposal
    and counts only while a driver runs: the time used is saved with the searcher, so a resumed search gets
    what is left.
    ``proposer``: a function returning the study's storage as :func:`open_storage` takes it; given (and Ray
    running), new trials are asked and sampled by a :class:`Proposer` actor on the driver's node, not in
    the driver. Same proposals: the sampler is :class:`TrialSeeded`, a function of the seed and the study.
    ``trials``, ``max_concurrent``: given, this searcher (not Tune's ``num_samples``, which is then -1, nor a
    ``ConcurrencyLimiter``) ends the search once Tune has ``trials`` trials and all have ended, and holds new
    ones back while ``max_concurrent`` run. It counts the trials Tune really has (:class:`TrialList` must be
    among the run's callbacks), so a resume from a state saved half-way still runs every trial."""

    # class defaults: a searcher Ray pickled before time budgets and proposers existed unpickles with none
    time_budget: float | None = None
    used: float = 0.0
    _since: float | None = None
    proposer: Callable | None = None
    start: tuple[dict, ...] = ()
    _started: bool = False
    count: TrialCount | None = None  # a searcher pickled before it counted trials: Tune's num_samples counts

    def __init__(self, space_fn: Callable, *, metric: str, mode: str, study_name: str, storage=None,
                 sampler: dict | None = None, components: tuple[str, ...] = (), time_budget: float | None = None,
                 proposer: Callable | None = None, start: tuple[dict, ...] | list[dict] = (),
                 trials: int | None = None, max_concurrent: int | None = None):
        super().__init__(metric=metric, mode=mode)
        self.count = None if trials is None else TrialCount(study_name, trials, max_concurrent)
        self._reconciled = False
        self.proposer = proposer
        self.start, self._started = tuple(dict(p) for p in start), False
        self.space_fn, self.study_name, self.storage = space_fn, study_name, storage
        self.sampler = None if sampler is None else sampler_spec(**sampler)
        self.components = tuple(components)
        self.time_budget, self.used = time_budget, 0.0  # seconds: the budget, and what earlier drivers used
        self._since: float | None = None  # this driver's first proposal (time.monotonic)
        self.study = None
        self.trials: dict = {}  # Ray trial id -> optuna.Trial
        self.reported: dict[str, int] = {}  # Ray trial id -> last step reported to Optuna
        self.evaluated: dict[str, dict] = {}  # Ray trial id -> components of its last evaluation

    def _study(self):
        if self.study is None:
            storage = self.storage() if callable(self.storage) else self.storage
            # kept: a restore re-opens trials through the storage's public API
            self._storage = optuna.storages.get_storage(storage)
            sampler = None if self.sampler is None else TrialSeeded(self.sampler)
            self.study = optuna.create_study(study_name=self.study_name, storage=self._storage, sampler=sampler,
                                             direction="minimize" if self.mode == "min" else "maximize",
                                             load_if_exists=True)
        return self.study

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return False  # metric, mode and space come from the constructor

    def spent(self) -> float:
        """Seconds of the time budget used so far (earlier drivers included)."""
        return self.used + (0.0 if self._since is None else time.monotonic() - self._since)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._since is None:
            self._since = time.monotonic()
        if not self._started:
            self._enqueue_start()
        if self.time_budget is not None and trial_id not in self.trials and self.spent() >= self.time_budget:
            _BUDGET_SPENT.add(self.study_name)
            return Searcher.FINISHED
        if self.count is not None and trial_id not in self.trials:
            self._drop_lost()
            verdict = self.count.verdict(trial_id)
            if verdict != GO:
                return verdict
        if trial_id not in self.trials and self.proposer is not None and ray.is_initialized() \
                and _PROPOSERS.get(self.study_name, True):
            try:
                return self._propose_remotely(trial_id)
            except ray.exceptions.RayError as e:  # the actor died (its process was killed): ask here from now on
                log.warning("optuna: the proposer actor failed (%s); proposing in the driver from now on",
                            str(e).splitlines()[0])
                _PROPOSERS[self.study_name] = False
                self._close_orphans()  # a trial it asked and could not hand over
        ot_trial = self.trials.get(trial_id) or self._study().ask()
        self.trials[trial_id] = ot_trial
        return sample(ot_trial, self.space_fn, trial_id)

    def _drop_lost(self) -> None:
        """Once Tune's trials are known (a restore): close (FAIL) the Optuna trials of Ray trials Tune does not
        have (created after the trial list Ray saved last): no Ray trial will continue them."""
        known = self.count.tune_ids()
        if known is None or self._reconciled:
            return
        self._reconciled = True
        for rid in [rid for rid in self.trials if rid not in known]:
            log.warning("optuna: Ray's saved state lost trial %s; a new trial takes its place", rid)
            del self.trials[rid]
        self._close_orphans()  # their Optuna trials, still RUNNING, are no Ray trial's now

    def _enqueue_start(self) -> None:
        """Put the space's start points first in a new study (Optuna's ``enqueue_trial``: the next ``ask``, here
        or in a proposer actor, takes them in order). A study that has trials (a resumed search) is left as it is."""
        self._started = True
        study = self._study()
        if self.start and not study.get_trials(deepcopy=False):
            for point in self.start:
                study.enqueue_trial(point)

    def _propose_remotely(self, trial_id: str) -> dict:
        actor = _PROPOSERS.get(self.study_name)
        if actor is None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
            actor = ray.remote(Proposer).options(num_cpus=0, scheduling_strategy=here).remote(
                self.space_fn, self.study_name, self.proposer(), self.sampler,
                "minimize" if self.mode == "min" else "maximize")
            _PROPOSERS[self.study_name] = actor
        number, config = ray.get(actor.propose.remote(trial_id))
        study = self._study()
        storage_id = self._storage.get_trial_id_from_study_id_trial_number(
            self._storage.get_study_id_from_name(self.study_name), number)
        self.trials[trial_id] = optuna.trial.Trial(study, storage_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        result = expand(result)  # the components travel packed (search.trials.pack)
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
        if self.count is not None:
            self.count.ended.add(trial_id)
        if result:  # Ray passes a trial's last result here, not to on_trial_result, when it stops the trial
            self.on_trial_result(trial_id, result)
        ot_trial = self.trials.pop(trial_id, None)
        if ot_trial is None:
            return
        result = expand(result or {})
        reason = stop_reason_of(result, error=error or not result)
        # a finished trial whose classifier judge ran is told its judged_gap (what ranks finished trials)
        value = result.get(JUDGED_NAME, result.get(self.metric))
        done = not error and bool(result) and ran_to_end(result) and value is not None and math.isfinite(value)
        attrs = {"stop_reason": reason or "finished", "status": "finished" if done else "error" if reason == "error"
                 else "stopped", "final_step": int(result.get("step", 0))}
        for key in (self.metric, JUDGED_NAME, "c2st_accuracy"):
            if result.get(key) is not None and math.isfinite(result[key]):
                attrs[key] = float(result[key])
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
        """JSON: the sampler's spec, which Optuna trial each Ray trial is, and the step bookkeeping. The
        study itself is not saved here: it lives in its storage (the journal)."""
        state = {"version": STATE_VERSION, "sampler": self.sampler, "reported": dict(self.reported),
                 "evaluated": dict(self.evaluated), "budget_used_s": self.spent(),
                 "trial_numbers": {rid: t.number for rid, t in self.trials.items()}}
        with open(checkpoint_path, "w") as f:
            json.dump(state, f, default=_plain)

    def restore(self, checkpoint_path: str) -> None:
        """Continue a search: re-attach the Ray trials to their Optuna trials in the study's storage and
        mark Optuna trials that no Ray trial will continue (asked just before the driver died) as FAIL."""
        state = read_state(checkpoint_path)
        self.sampler, self.study = state["sampler"], None
        self.reported, self.evaluated = state["reported"], state["evaluated"]
        self.used, self._since = float(state.get("budget_used_s", 0.0)), None  # states saved before budgets: 0
        if self.count is not None:
            self.count.reset()
        self._reconciled = False
        study = self._study()
        study_id = self._storage.get_study_id_from_name(self.study_name)
        trial_id = self._storage.get_trial_id_from_study_id_trial_number  # trial number -> storage id
        self.trials = {rid: optuna.trial.Trial(study, trial_id(study_id, n)) for rid, n in state["trial_numbers"].items()}
        self._close_orphans()

    def _close_orphans(self) -> None:
        """Mark FAIL the RUNNING Optuna trials that no Ray trial of this searcher continues (asked just before a
        driver died, or by a proposer actor that died before it replied)."""
        study = self._study()
        kept = {t.number for t in self.trials.values()}
        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen.number not in kept:
                try:
                    study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
                except Exception as e:  # already ended meanwhile
                    log.warning("optuna: could not close orphaned trial %s: %s", frozen.number, e)



def _plain(value):
    """NumPy scalars in results (np.float32 is no float) as plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def read_state(path) -> dict:
    """The JSON a searcher saved at ``path``, checked; anything else (a pickle, a damaged file) is refused
    in one line and never executed."""
    try:
        with open(path, "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
        ok = isinstance(state, dict) and state.get("version") == STATE_VERSION
        ok = ok and all(isinstance(state.get(k), dict) for k in ("reported", "evaluated", "trial_numbers"))
        used = state.get("budget_used_s", 0.0) if ok else 0.0
        ok = ok and isinstance(used, (int, float)) and not isinstance(used, bool) and math.isfinite(used)
        if ok and state["sampler"] is not None:
            state["sampler"] = sampler_spec(**state["sampler"])
    except (ValueError, TypeError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise MitoganError(f"{path}: not MitoGAN's searcher state (JSON) ({type(e).__name__}); it was replaced "
                           "or damaged, and MitoGAN never unpickles it: restore the search folder from a copy "
                           "you trust or start a new search") from None
    if not ok:
        raise MitoganError(f"{path}: not MitoGAN's searcher state (version {STATE_VERSION} JSON); restore the "
                           "search folder from a copy you trust or start a new search")
    return state
