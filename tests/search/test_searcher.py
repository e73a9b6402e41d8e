"""Optuna through Ray's Searcher interface, fed the calls Ray would make (no Ray run): each Optuna trial
carries its Ray trial id, stop reason and final metrics; intermediate values are keyed by generator step;
only trials that ran all their steps are COMPLETE."""

import optuna
import pytest

from search.searcher import OptunaAskTell, sampler_spec
from search.space import Param, Space

COMPONENTS = ("fidelity", "diversity_gap")


def space():
    return Space(name="t", fixed={"train.steps": 60},
                 params=[Param("optim.lr_d", "float", low=1e-4, high=1e-2, log=True)])


def result(step, primary, reason="", finished=0, evaluated=True):
    r = {"step": step, "primary": primary, "stop_reason": reason, "finished": finished, "training_iteration": step // 10,
         "config": {"train.steps": 60}}
    if evaluated:
        r.update(fidelity=primary / 2, diversity_gap=0.1)
    return r


def test_trials_carry_ray_ids_stop_reasons_and_step_keyed_values():
    searcher = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t", components=COMPONENTS,
                             sampler=sampler_spec("random", 0))
    configs = {tid: searcher.suggest(tid) for tid in ("a", "b", "c", "d")}
    assert all(c["train.steps"] == 60 and "optim.lr_d" in c for c in configs.values())
    for step, value in ((20, 0.8), (30, 0.7), (40, 0.6), (60, 0.5)):
        searcher.on_trial_result("a", result(step, value, evaluated=step % 20 == 0))
    searcher.on_trial_complete("a", result(60, 0.5, finished=1))  # the final report repeats step 60
    searcher.on_trial_complete("b", result(20, 0.9))  # ASHA: Ray sends its last result only here
    searcher.on_trial_result("c", result(20, 2.0, reason="critic_explode"))
    searcher.on_trial_complete("c", result(20, 2.0, reason="critic_explode"))
    searcher.on_trial_complete("d", None, error=True)

    trials = {t.user_attrs["ray_trial_id"]: t for t in searcher.study.trials}
    S = optuna.trial.TrialState
    assert {k: t.state for k, t in trials.items()} == {"a": S.COMPLETE, "b": S.PRUNED, "c": S.PRUNED, "d": S.FAIL}
    assert trials["a"].value == 0.5
    assert trials["a"].intermediate_values == {20: 0.8, 40: 0.6, 60: 0.5}  # evaluations only, by step
    assert {k: t.user_attrs["stop_reason"] for k, t in trials.items()} == \
        {"a": "finished", "b": "asha", "c": "critic_explode", "d": "error"}
    assert trials["b"].intermediate_values == {20: 0.9}
    assert trials["b"].user_attrs["final_step"] == 20 and trials["b"].user_attrs["primary"] == 0.9
    assert trials["a"].user_attrs["fidelity"] == 0.25 and trials["a"].user_attrs["diversity_gap"] == 0.1


def _journal(path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _finish(searcher, tid, config):
    value = (config["optim.lr_d"] - 3e-3) ** 2  # a smooth objective TPE can learn
    searcher.on_trial_complete(tid, result(60, value, finished=1))


def test_a_restored_searcher_proposes_what_the_uninterrupted_one_does(tmp_path):
    import shutil

    def make(journal, seed):
        return OptunaAskTell(space().define, metric="primary", mode="min", study_name="t", components=COMPONENTS,
                             storage=lambda: _journal(journal),
                             sampler=sampler_spec("tpe", seed, n_startup_trials=2))

    a = make(tmp_path / "a.log", seed=0)
    for i in range(4):  # past TPE's 2 random start-up trials: later proposals depend on these results
        _finish(a, f"t{i}", a.suggest(f"t{i}"))
    running = a.suggest("t4")  # running while the driver stops
    a.save(str(tmp_path / "searcher-state.pkl"))
    shutil.copy(tmp_path / "a.log", tmp_path / "b.log")  # the journal as the stopped search left it
    _finish(a, "t4", running)
    uninterrupted = [a.suggest(f"t{i}") for i in range(5, 8)]

    b = make(tmp_path / "b.log", seed=123)  # a new driver process; restore brings the sampler's state back
    b.restore(str(tmp_path / "searcher-state.pkl"))
    _finish(b, "t4", running)  # the running trial continues under its own Optuna trial
    resumed = [b.suggest(f"t{i}") for i in range(5, 8)]
    assert resumed == uninterrupted
    fresh = make(tmp_path / "c.log", seed=0)  # what the same seed proposes without the first results
    assert [fresh.suggest(f"t{i}")["optim.lr_d"] for i in range(8)][5:] != [c["optim.lr_d"] for c in resumed]
    numbers = [t.number for t in b.study.trials if t.user_attrs.get("ray_trial_id") == "t4"]
    assert numbers == [4] and b.study.trials[4].state == optuna.trial.TrialState.COMPLETE


def test_trials_asked_after_the_last_checkpoint_are_closed_on_restore(tmp_path):
    a = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t",
                      storage=lambda: _journal(tmp_path / "a.log"), sampler=sampler_spec("random", 0))
    _finish(a, "t0", a.suggest("t0"))
    a.suggest("t1")
    a.save(str(tmp_path / "searcher-state.pkl"))
    a.suggest("t2")  # asked, then the driver died before Ray saved its state: no Ray trial will continue it
    b = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t",
                      storage=lambda: _journal(tmp_path / "a.log"))
    b.restore(str(tmp_path / "searcher-state.pkl"))
    S = optuna.trial.TrialState
    assert [t.state for t in b.study.trials] == [S.COMPLETE, S.RUNNING, S.FAIL]


class _Planted:
    """A pickle that creates ``path`` when it is loaded: what an attacker with write access to a shared
    search folder would put there."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_the_saved_state_is_json_and_a_planted_pickle_is_refused_never_run(tmp_path):
    import json
    import pickle

    import pytest

    from mitogan.errors import MitoganError

    a = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t",
                      storage=lambda: _journal(tmp_path / "a.log"), sampler=sampler_spec("tpe", 7))
    a.suggest("t0")
    state_file = tmp_path / "searcher-state.pkl"  # the file name is Ray's; the content is JSON
    a.save(str(state_file))
    assert json.loads(state_file.read_text())["sampler"] == {"kind": "tpe", "seed": 7, "n_startup_trials": 5}
    marker = tmp_path / "ran"
    for planted in (pickle.dumps(_Planted(marker)), b'{"version": 1}', b"[]", b"\x80\x04junk"):
        state_file.write_bytes(planted)
        b = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t",
                          storage=lambda: _journal(tmp_path / "a.log"))
        with pytest.raises(MitoganError) as e:
            b.restore(str(state_file))
        assert len(str(e.value).splitlines()) == 1 and str(state_file) in str(e.value)
    assert not marker.exists()  # refused, never unpickled


class _FreshTPEPerTrial(optuna.samplers.BaseSampler):
    """The reference: a brand-new TPESampler for every trial, seeded as TrialSeeded seeds it (what TrialSeeded
    did before it kept the intersection search space across trials)."""

    def __init__(self, seed, n_startup_trials):
        self.seed, self.n_startup_trials, self.live = seed, n_startup_trials, {}

    def _of(self, trial):
        import numpy as np

        if trial.number not in self.live:
            seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
            self.live[trial.number] = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        return self.live[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._of(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._of(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, name, distribution):
        return self._of(trial).sample_independent(study, trial, name, distribution)


def test_trial_seeded_tpe_proposes_what_a_fresh_tpe_sampler_per_trial_does():
    """The kept intersection search space is a cache: on a conditional space with pruned trials among the
    finished ones, every proposal equals that of a new TPESampler built for the trial with the same seed."""
    from search.searcher import TrialSeeded

    def objective(trial):
        kind = trial.suggest_categorical("loss.kind", ["bce", "wgan_gp"])
        gp = trial.suggest_float("loss.gp_lambda", 1.0, 20.0, log=True) if kind == "wgan_gp" else 0.0
        lr = trial.suggest_float("optim.lr_d", 1e-4, 1e-2, log=True)
        if kind == "bce":
            raise optuna.TrialPruned()  # pruned trials count in TPE's search space (include_pruned)
        return (lr - 3e-3) ** 2 + gp * 1e-6

    studies = []
    for sampler in (TrialSeeded(sampler_spec("tpe", 3, n_startup_trials=4)), _FreshTPEPerTrial(3, 4)):
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective, n_trials=30)
        studies.append([t.params for t in study.trials])
    assert studies[0] == studies[1]
    assert len({round(p["optim.lr_d"], 12) for p in studies[0]}) == 30  # not one proposal repeated


def test_packed_results_tell_optuna_what_plain_ones_do():
    """Trials hand Ray their scalars packed (search.trials.pack): the searcher reads the components, the
    finished flag and the steps from inside the payload as from plain results."""
    from search.trials import PAYLOAD, pack

    states = []
    for wrap in (dict, pack):
        searcher = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t", components=COMPONENTS,
                                 sampler=sampler_spec("random", 0))
        for tid in "ab":
            searcher.suggest(tid)
        assert PAYLOAD in pack(result(20, 0.8)) and "fidelity" not in pack(result(20, 0.8))
        searcher.on_trial_result("a", wrap(result(20, 0.8)))
        searcher.on_trial_complete("a", wrap(result(60, 0.5, finished=1)))
        searcher.on_trial_complete("b", wrap(result(20, 0.9)))
        states.append([(t.state, t.value, t.intermediate_values, t.user_attrs) for t in searcher.study.trials])
    assert states[0] == states[1]
    assert states[1][0][0] == optuna.trial.TrialState.COMPLETE and states[1][0][3]["fidelity"] == 0.25


def test_a_time_budget_stops_proposing_and_a_restored_searcher_gets_what_is_left(tmp_path, monkeypatch):
    """``--time-budget``: once the search has run that long the searcher returns Ray's FINISHED (the running
    trials finish); the time used is saved with its state, so a resumed search gets only what is left, counted
    from its own first proposal (the time the search was stopped does not count)."""
    import search.searcher as searcher_module
    from ray.tune.search import Searcher

    now = {"t": 0.0}
    monkeypatch.setattr(searcher_module.time, "monotonic", lambda: now["t"])

    def make(name, budget=100.0):
        return OptunaAskTell(space().define, metric="primary", mode="min", study_name=name, time_budget=budget,
                             storage=lambda: _journal(tmp_path / f"{name}.log"), sampler=sampler_spec("random", 0))

    a = make("budget")
    now["t"] = 5.0
    assert "optim.lr_d" in a.suggest("t0")  # the clock starts at the first proposal
    now["t"] = 65.0
    assert "optim.lr_d" in a.suggest("t1") and not searcher_module.budget_spent("budget")
    a.save(str(tmp_path / "searcher-state.pkl"))  # 60 s used when the driver stops
    now["t"] = 105.0
    assert a.suggest("t2") == Searcher.FINISHED and searcher_module.budget_spent("budget")

    searcher_module._BUDGET_SPENT.clear()  # a new driver process
    b = make("budget")
    b.restore(str(tmp_path / "searcher-state.pkl"))
    now["t"] = 5000.0  # hours later: the stop does not count
    assert "optim.lr_d" in b.suggest("t2")
    now["t"] = 5039.0
    assert "optim.lr_d" in b.suggest("t3")  # 99 s used
    now["t"] = 5040.0
    assert b.suggest("t4") == Searcher.FINISHED and searcher_module.budget_spent("budget")
    assert [t.user_attrs["ray_trial_id"] for t in b.study.trials] == ["t0", "t1", "t2", "t3"]

    unlimited = make("unlimited", budget=None)
    now["t"] = 1e9
    assert all("optim.lr_d" in unlimited.suggest(f"u{i}") for i in range(3))
    assert not searcher_module.budget_spent("unlimited")


def test_a_saved_state_with_a_bad_time_used_is_refused(tmp_path):
    import json

    import pytest

    from mitogan.errors import MitoganError
    from search.searcher import STATE_VERSION, read_state

    good = {"version": STATE_VERSION, "sampler": None, "reported": {}, "evaluated": {}, "trial_numbers": {}}
    (tmp_path / "ok.pkl").write_text(json.dumps(good))
    assert read_state(tmp_path / "ok.pkl")["sampler"] is None  # saved before time budgets: accepted
    for bad in ("60", None, float("inf"), True):
        (tmp_path / "bad.pkl").write_text(json.dumps({**good, "budget_used_s": bad}))
        with pytest.raises(MitoganError, match="not MitoGAN's searcher state"):
            read_state(tmp_path / "bad.pkl")


def test_a_proposer_actor_proposes_what_the_driver_would_and_the_driver_tells_the_same_trials(tmp_path):
    """``proposer=``: new trials are asked and sampled by a Ray actor (TPE's growing cost off the driver's
    control loop); the proposals equal those made in the driver, and the driver reports and tells the very
    trials the actor asked (one Optuna trial per Ray trial, COMPLETE with its value)."""
    import ray

    import search.searcher as searcher_module

    def make(name, proposer):
        return OptunaAskTell(space().define, metric="primary", mode="min", study_name=name, components=COMPONENTS,
                             storage=lambda: _journal(tmp_path / f"{name}.log"),
                             sampler=sampler_spec("tpe", 7, n_startup_trials=2), proposer=proposer)

    local, here = make("local", None), []
    for i in range(6):
        here.append(local.suggest(f"t{i}"))
        _finish(local, f"t{i}", here[-1])
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = make("remote", lambda: ("journal", str(tmp_path / "remote.log")))
        there = []
        for i in range(6):
            config = remote.suggest(f"t{i}")
            assert remote.suggest(f"t{i}") == config  # asked again (Ray may): the same trial, nothing new
            there.append(config)
            _finish(remote, f"t{i}", config)
        assert searcher_module._PROPOSERS.get("remote")
        actor = searcher_module._PROPOSERS["remote"]
        ray.kill(actor)  # its process lost: the driver proposes from now on
        for _ in range(600):  # the kill is asynchronous: wait until the actor is gone
            try:
                ray.get(actor.__ray_ready__.remote())
            except ray.exceptions.RayActorError:
                break
            __import__("time").sleep(0.1)
        else:
            pytest.fail("the killed proposer actor still answers after 60 s")
        assert remote.suggest("t6") == local.suggest("t6")
        assert searcher_module._PROPOSERS["remote"] is False
    finally:
        ray.shutdown()
        searcher_module.forget("remote")
    assert there == here  # past TPE's start-up trials too: the proposals depend on the told results
    trials = remote._study().trials
    assert [t.user_attrs["ray_trial_id"] for t in trials] == [f"t{i}" for i in range(7)]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials[:6])


def test_start_points_run_first_then_the_sampler_and_a_restore_does_not_run_them_again(tmp_path):
    from search.space import load_space

    f = tmp_path / "s.yaml"
    f.write_text("name: s\nfixed: {train.steps: 60}\nparams:\n"
                 "  - {name: loss.kind, type: categorical, choices: [bce, hinge, wgan_clip]}\n"
                 "  - {name: loss.clip, type: float, low: 0.005, high: 0.05, when: {loss.kind: wgan_clip}}\n"
                 "  - {name: optim.lr_d, type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                 "start:\n  - {loss.kind: wgan_clip, loss.clip: 0.02, optim.lr_d: 5.0e-4}\n  - {loss.kind: hinge}\n")
    sp = load_space(f)

    def make():
        return OptunaAskTell(sp.define, metric="primary", mode="min", study_name="s", start=sp.start,
                             storage=lambda: _journal(tmp_path / "s.log"), sampler=sampler_spec("tpe", 0))

    a = make()
    first, second = a.suggest("t0"), a.suggest("t1")
    assert first == {"train.steps": 60, "loss.kind": "wgan_clip", "loss.clip": 0.02, "optim.lr_d": 5e-4}
    assert second["loss.kind"] == "hinge" and 1e-4 <= second["optim.lr_d"] <= 1e-2  # the rest was sampled
    for tid, config in (("t0", first), ("t1", second)):
        searcher_value = (config["optim.lr_d"] - 3e-3) ** 2
        a.on_trial_complete(tid, result(60, searcher_value, finished=1))
    a.save(str(tmp_path / "searcher-state.pkl"))
    b = make()  # a resumed search: the study has trials, the start points are not enqueued again
    b.restore(str(tmp_path / "searcher-state.pkl"))
    later = [b.suggest(f"t{i}") for i in range(2, 6)]
    assert not any(c.get("loss.clip") == 0.02 and c["optim.lr_d"] == 5e-4 for c in later)
    assert len(b.study.trials) == 6 and not [t for t in b.study.trials if t.state == optuna.trial.TrialState.WAITING]


def test_a_judged_finished_trial_is_told_its_judged_gap_and_a_stopped_one_its_primary():
    searcher = OptunaAskTell(space().define, metric="primary", mode="min", study_name="j", components=COMPONENTS,
                             sampler=sampler_spec("random", 0))
    for tid in ("a", "b"):
        searcher.suggest(tid)
    searcher.on_trial_complete("a", {**result(60, 0.1, finished=1), "c2st_accuracy": 0.97, "judged_gap": 0.8})
    searcher.on_trial_complete("b", {**result(20, 0.05), "judged_gap": 0.3})  # ASHA-stopped: never judged
    trials = {t.user_attrs["ray_trial_id"]: t for t in searcher.study.trials}
    assert trials["a"].value == 0.8 and trials["a"].user_attrs["primary"] == 0.1
    assert trials["a"].user_attrs["judged_gap"] == 0.8 and trials["a"].user_attrs["c2st_accuracy"] == 0.97
    assert trials["b"].state == optuna.trial.TrialState.PRUNED and trials["b"].intermediate_values == {20: 0.05}


class _TuneTrial:
    """What TrialList shows the searcher of a Ray Tune trial: its id and status (Ray's own Trial has both)."""

    def __init__(self, trial_id, status):
        self.trial_id, self.status = trial_id, status


def test_the_searcher_counts_the_trials_tune_has_and_ends_only_when_all_have_ended():
    from ray.tune.search import Searcher

    from search.searcher import TrialList, forget

    s = OptunaAskTell(space().define, metric="primary", mode="min", study_name="count", trials=3, max_concurrent=2,
                      sampler=sampler_spec("random", 0))
    listed = TrialList("count")
    try:
        tune = [_TuneTrial("a", "RUNNING")]
        listed.on_step_begin(iteration=0, trials=tune)
        assert isinstance(s.suggest("a"), dict)  # Tune asked for "a" and listed it since
        assert isinstance(s.suggest("b"), dict)
        assert s.suggest("c") is None  # two running: held back, not finished
        s.on_trial_complete("a", result(60, 0.5, finished=1))
        assert isinstance(s.suggest("c"), dict)
        assert s.suggest("d") is None  # three trials, two still running: wait for them, do not end the search
        s.on_trial_complete("b", result(60, 0.4, finished=1))
        s.on_trial_complete("c", result(60, 0.3, finished=1))
        assert s.suggest("d") == Searcher.FINISHED
    finally:
        forget("count")


def test_a_restore_counts_tunes_restored_trials_not_what_the_saved_state_handed_out(tmp_path):
    """Ray saved its search state after handing out "t2" but its trial list before: the restored Tune has t0
    (ended) and t1. The search needs one more trial, and t2's Optuna trial is closed (no Ray trial continues it)."""
    from ray.tune.search import Searcher

    from search.searcher import TrialList, forget

    a = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t", trials=3, max_concurrent=2,
                      storage=lambda: _journal(tmp_path / "a.log"), sampler=sampler_spec("random", 0))
    _finish(a, "t0", a.suggest("t0"))
    a.suggest("t1")
    a.suggest("t2")
    a.save(str(tmp_path / "searcher-state.pkl"))
    b = OptunaAskTell(space().define, metric="primary", mode="min", study_name="t", trials=3, max_concurrent=2,
                      storage=lambda: _journal(tmp_path / "a.log"))
    b.restore(str(tmp_path / "searcher-state.pkl"))
    try:
        TrialList("t").on_step_begin(iteration=0, trials=[_TuneTrial("t0", "TERMINATED"), _TuneTrial("t1", "PENDING")])
        assert isinstance(b.suggest("t3"), dict)  # t2 was lost with Ray's trial list: t3 takes its place
        S = optuna.trial.TrialState
        states = {t.user_attrs["ray_trial_id"]: t.state for t in b.study.trials}
        assert states == {"t0": S.COMPLETE, "t1": S.RUNNING, "t2": S.FAIL, "t3": S.RUNNING}
        assert b.suggest("t4") is None  # t1 and t3 run
        b.on_trial_complete("t1", result(60, 0.5, finished=1))
        b.on_trial_complete("t3", result(60, 0.5, finished=1))
        assert b.suggest("t4") == Searcher.FINISHED
    finally:
        forget("t")
