"""How trials are chosen and stopped: ``mitogan search --scheduler asha|pbt|pb2|none``.

- ``asha`` (default) and ``none``: Optuna proposes every trial (:class:`search.searcher.OptunaAskTell`, TPE or
  random over the whole conditional space); ASHA stops the worst early, or nothing does.
- ``pbt`` and ``pb2``: population-based training (Jaderberg et al. 2017; PB2: Parker-Holder et al. 2020).
  The population is drawn once by Optuna from the whole space (define-by-run, so conditional parameters
  appear only where active); then, every ``train.checkpoint_every`` steps, a trial in the bottom quarter
  copies the whole training state of one in the top quarter (generator, discriminator, EMA, optimisers,
  augmentation state: the trainer's checkpoint) and goes on with perturbed hyperparameters. PBT multiplies
  them by 0.8 or 1.2 or redraws them (probability 0.25); PB2 picks them with a Gaussian-process bandit.
  Only what can change in the middle of a run is perturbed (:func:`mutable_params`): learning rates,
  augmentation strength, loss weights, never the architecture or the data.
Ray's population schedulers take no search algorithm (Ray refuses one), hence the population drawn up front.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler
from ray.tune.search import BasicVariantGenerator

from mitogan.errors import MitoganError
from search.space import Param, Space

__all__ = ["SCHEDULERS", "mutable_params", "population", "build", "check", "checkpoints_to_keep", "Explore",
           "ToTheEnd", "PBTToTheEnd"]

SCHEDULERS = ("asha", "pbt", "pb2", "none")
# floats of these sections can change between two steps of one run; model.* (architecture) and preprocess.*
# (data) cannot, except the FastGAN reconstruction weight, which is a loss weight
_MUTABLE_SECTIONS = ("optim.", "augment.", "loss.")
_MUTABLE_KEYS = ("model.recon_weight",)


def mutable_params(space: Space) -> list[Param]:
    """The space's float parameters that population-based training may perturb during a run."""
    return [p for p in space.params if p.type == "float" and p.low is not None
            and (p.name.startswith(_MUTABLE_SECTIONS) or p.name in _MUTABLE_KEYS)]


def population(space: Space, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` trial configs (flat dotted keys): the space's start points, then draws of Optuna's random sampler
    from the conditional space.
    A parameter inactive in a trial gets the value the trial would use anyway (the base config's), so every
    config holds the same keys, among them every key population-based training perturbs."""
    import optuna

    from mitogan.config import to_flat

    base = to_flat(space.base_config())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for point in space.start[:n]:  # the space's start points first (a parameter one leaves out is drawn)
        study.enqueue_trial(point)
    configs = []
    for _ in range(n):
        trial = study.ask()
        constants = space.define(trial) or {}
        configs.append({**constants, **trial.params})
    # every config holds every key (Ray checks a preset config against one param_space): a parameter
    # inactive in a trial gets the base value, which that trial would use anyway
    keys = {p.name for p in space.params} | {k for c in configs for k in c}
    return [{k: c.get(k, base[k]) for k in sorted(keys)} for c in configs]


class Explore:
    """After PBT's perturbation: every mutable value clamped into its range, and a parameter inactive in the
    trial (``loss.gp_lambda`` of a BCE run) kept at the base value instead of drifting unused. A class, not a
    closure: Ray saves the scheduler with the search and a resume loads it back."""

    def __init__(self, space: Space):
        from mitogan.config import to_flat

        self.params = mutable_params(space)
        base = to_flat(space.base_config())  # built once, not once per parameter
        self.base = {p.name: base[p.name] for p in self.params}

    def __call__(self, config: dict) -> dict:
        for p in self.params:
            if not p.active(config):
                config[p.name] = self.base[p.name]
            elif p.name in config:
                config[p.name] = min(max(float(config[p.name]), p.low), p.high)
        return config


class _LiveFirst:
    """Ray's FIFO choice of the next trial to start (the first PENDING trial in the order they were added, else
    the first PAUSED one) taken from the trials not yet ended instead of every trial of the search. Ray asks
    at every step of its loop and scans all trials twice: at 1,000 trials that scan is the part of Ray Tune's
    controller that grows most (py-spy: README, "Scale", round 5). Ray adds a trial again (``on_trial_add``) when it
    retries it or restores a search, and moves it to the end of its list: so does this."""

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        live = self._live_trials()
        live.pop(trial, None)
        live[trial] = None

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        live = self._live_trials()
        for trial in [t for t in live if t.status in (Trial.TERMINATED, Trial.ERROR)]:
            del live[trial]  # an errored trial Ray retries is added again
        for status in (Trial.PENDING, Trial.PAUSED):
            for trial in live:
                if trial.status == status:
                    return trial
        return None

    def _live_trials(self) -> dict[Trial, None]:
        return self.__dict__.setdefault("_live", {})

    def __getstate__(self) -> dict:  # Ray saves the scheduler with the search: not its trials
        return {k: v for k, v in self.__dict__.items() if k != "_live"}


class LiveFirstASHA(_LiveFirst, ASHAScheduler):
    """ASHA (Ray's ``ASHAScheduler``) with :class:`_LiveFirst`'s choice of the next trial."""


class LiveFirstFIFO(_LiveFirst, FIFOScheduler):
    """Ray's default ``FIFOScheduler`` (``--scheduler none``) with :class:`_LiveFirst`'s choice."""


class ToTheEnd:
    """A population scheduler that leaves a trial alone at its last step (``train.steps`` of its config): Ray's
    PBT and PB2 would otherwise exploit there too, copying the parent's state into a trial that has nothing left
    to train, so the generator it has just finished is replaced by its parent's and two trials end with one."""

    def __init__(self, *args, last_step: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_step = last_step

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if result.get("step", 0) >= int(trial.config.get("train.steps", self.last_step)):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class PBTToTheEnd(ToTheEnd, PopulationBasedTraining):
    """Ray's ``PopulationBasedTraining`` that never exploits at a trial's last step (:class:`ToTheEnd`)."""


def build(kind: str, space: Space, *, searcher, seed: int, trials: int, limit: int, grace_steps: int):
    """``(search_alg, scheduler, param_space)`` for ``kind`` (one of :data:`SCHEDULERS`). ``searcher``: the
    Optuna searcher, used as it is by ``asha`` and ``none`` (built with ``trials`` and ``max_concurrent=limit``:
    it counts the trials and holds the concurrency itself, see ``OptunaAskTell``)."""
    cfg = space.base_config()
    if kind in ("asha", "none"):
        # max_t beyond the last step: ASHA stops a trial that *reaches* max_t, before its final report
        scheduler = LiveFirstASHA(time_attr="step", max_t=cfg.train.steps + 1, reduction_factor=3,
                                  grace_period=grace_steps) if kind == "asha" else LiveFirstFIFO()
        return searcher, scheduler, None
    check(kind, space)
    params = mutable_params(space)
    common = dict(time_attr="step", perturbation_interval=cfg.train.checkpoint_every, quantile_fraction=0.25,
                  custom_explore_fn=Explore(space), log_config=False)
    if kind == "pbt":
        scheduler = PBTToTheEnd(
            hyperparam_mutations={p.name: (tune.loguniform if p.log else tune.uniform)(p.low, p.high)
                                  for p in params},
            resample_probability=0.25, last_step=cfg.train.steps, **common)
    else:
        from search.pb2 import PB2ToTheEnd  # Ray's PB2 needs scikit-learn: imported only when asked for

        scheduler = PB2ToTheEnd(hyperparam_bounds={p.name: [p.low, p.high] for p in params}, last_step=cfg.train.steps, **common)
    points = population(space, trials, seed)
    param_space = dict(points[0])  # constants: every trial's preset config replaces all of them
    return (BasicVariantGenerator(points_to_evaluate=points, max_concurrent=limit, random_state=seed), scheduler,
            param_space)


def checkpoints_to_keep(kind: str) -> int | None:
    """Ray checkpoints kept per trial: two (the last and the one before, for a restore while Ray saves), or
    all of them under population-based training, where a trial may be told to continue from a checkpoint of
    another trial that has checkpointed again by the time it restarts (with two kept, that one is gone)."""
    return None if kind in ("pbt", "pb2") else 2


def check(kind: str, space: Space) -> None:
    """Refuse, before Ray starts, a scheduler this space or this installation cannot use (one line)."""
    if kind not in SCHEDULERS:
        raise MitoganError(f"--scheduler {kind!r}: one of {', '.join(SCHEDULERS)}")
    if kind in ("pbt", "pb2") and not mutable_params(space):
        raise MitoganError(_NOTHING_TO_PERTURB.format(kind=kind, space=space.name))
    if kind == "pb2":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise MitoganError("--scheduler pb2 needs scikit-learn (Ray's PB2 fits a Gaussian process with it); "
                               "pip install 'mitogan[pb2]'") from None


_NOTHING_TO_PERTURB = ("--scheduler {kind}: space {space!r} samples no learning rate, augmentation strength or loss "
                       "weight (a float optim.*, augment.* or loss.* parameter) to perturb; use --scheduler asha")
