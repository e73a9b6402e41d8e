"""`mitogan search --scheduler pbt|pb2`: what population-based training may perturb, the population Optuna
draws, the explore step kept inside the space, one-line refusals before Ray starts, and a real PBT search
in which worse trials continue from better trials' whole training state (lineage in the trial folders, the
report and every later result)."""

from __future__ import annotations

import json

import pytest

from search.schedulers import Explore, mutable_params, population
from search.space import load_space
from tests.search.spaces import tiny_space


def test_only_training_time_floats_are_perturbed_in_every_shipped_space():
    for name in ("default", "smoke", "fewshot"):
        space = load_space(name)
        names = {p.name for p in mutable_params(space)}
        # learning rates are in every shipped space; architecture and data never are
        assert {"optim.lr_g", "optim.lr_d"} <= names, name
        assert not any(n.startswith(("model.", "preprocess.")) and n != "model.recon_weight" for n in names)
        floats_elsewhere = {p.name for p in space.params if p.type == "float"} - names
        assert all(n.startswith(("model.", "preprocess.", "init.")) for n in floats_elsewhere), floats_elsewhere


def test_the_population_is_seeded_conditional_and_holds_every_perturbed_key():
    from mitogan.config import to_flat

    space = load_space("default")
    pop = population(space, 12, seed=3)
    assert pop == population(space, 12, seed=3) and pop != population(space, 12, seed=4)
    base = to_flat(space.base_config())
    kinds = {c["loss.kind"] for c in pop}
    assert len(kinds) > 1  # the conditional space is explored, not one branch
    for config in pop:
        for p in mutable_params(space):
            assert p.name in config
            if p.active(config):
                assert p.low <= config[p.name] <= p.high
            else:  # e.g. loss.gp_lambda of a BCE trial: the value that trial uses anyway
                assert config[p.name] == base[p.name]


def test_explore_clamps_into_the_range_and_keeps_inactive_parameters_at_base():
    space = load_space("default")
    explore = Explore(space)
    lr = next(p for p in mutable_params(space) if p.name == "optim.lr_g")
    config = population(space, 1, seed=0)[0]
    config.update({"optim.lr_g": lr.high * 1.2, "loss.kind": "bce", "loss.gp_lambda": 123.0})
    out = explore(dict(config))
    assert out["optim.lr_g"] == lr.high and out["loss.gp_lambda"] == explore.base["loss.gp_lambda"]
    config["optim.lr_g"] = lr.low * 0.8
    assert explore(dict(config))["optim.lr_g"] == lr.low


@pytest.mark.parametrize("kind", ["pbt", "pb2"])
def test_a_space_with_nothing_to_perturb_is_refused_in_one_line_before_ray(tmp_path, capsys, kind):
    from mitogan.cli import main

    space = tmp_path / "arch.yaml"
    space.write_text(tiny_space("arch", {}, "  - {name: model.activation, type: categorical, choices: [relu, leaky_relu]}"))
    code = main(["search", "--space", str(space), "--scheduler", kind, "--storage", str(tmp_path / "runs"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "to perturb" in err and "asha" in err, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


PBT_STEPS = 60
PBT_SPACE = tiny_space("pbt", {"train.steps": PBT_STEPS, "train.report_every": 10, "train.eval_every": 10,
                               "train.sample_every": 30, "train.checkpoint_every": 20}, """
  - {name: optim.lr_g, type: float, low: 0.00001, high: 0.01, log: true}
  - {name: optim.lr_d, type: float, low: 0.00001, high: 0.01, log: true}
  - {name: augment.p, type: float, low: 0.0, high: 1.0}
""")


# the lineage test's own population, 140 steps perturbed at 20, 40, ..., 120. Ray's PBT compares a trial only with
# trials that have reported, and skips an exploit when the trial to copy was not saved at its own last perturbation
# point (it saves only when it was in the upper quantile there): which trial reaches a point first decides. With
# PBT_SPACE's two points one exploit happened in a quiet run (at step 40) and none in a CI rehearsal; six leave room.
LINEAGE_STEPS = 140
LINEAGE_SPACE = tiny_space("pbt", {"train.steps": LINEAGE_STEPS, "train.report_every": 10, "train.eval_every": 20,
                                   "train.sample_every": 60, "train.checkpoint_every": 20},
                           PBT_SPACE.split("params:\n", 1)[1])


def _two_trial_search(tmp_path, scheduler: str, space: str, seed: int):
    """A real search of two trials side by side under ``scheduler`` on the built-in data; its folder."""
    from search.run import SearchOptions, run_search

    (tmp_path / f"{scheduler}.yaml").write_text(space)
    return run_search(SearchOptions(space=str(tmp_path / f"{scheduler}.yaml"), trials=2, max_concurrent=2,
                                    storage=str(tmp_path / "runs"), name=scheduler, seed=seed, scheduler=scheduler,
                                    sim_videos=3, sim_frames=4, progress=False, wandb=False, report=True))


@pytest.mark.slow
def test_pbt_search_copies_the_better_trials_state_and_records_the_lineage(tmp_path):
    from search.report import collect_trials

    search_dir = _two_trial_search(tmp_path, "pbt", LINEAGE_SPACE, seed=1)
    trials = collect_trials(search_dir)
    assert len(trials) == 2 and all(t.status in ("finished", "stopped") for t in trials)
    children = [t for t in trials if t.lineage]
    # two trials side by side, compared at steps 20 and 40: at each, the worse copies the better (if the better
    # has its checkpoint of that step yet)
    assert children, "no trial continued another's state"
    ids = {t.trial_id for t in trials}
    for child in children:
        hop = child.lineage[-1]
        assert hop["parent"] in ids and hop["parent"] != child.trial_id and hop["step"] % 20 == 0
        after = [r for r in child.results if r.get("start_step") == hop["step"] and r.get("parent") == hop["parent"]]
        assert after, "results after the copy carry the parent and start at the parent's step"
        # never at the last step (Ray's PBT would exploit there too, seen in CI: ``ToTheEnd``)
        assert hop["step"] < LINEAGE_STEPS
        assert after[0]["step"] > hop["step"]  # it trained on from the copied state, not from scratch
    assert f"continued {children[0].lineage[0]['parent']} at step" in (search_dir / "report" / "index.html").read_text()
    assert json.loads((search_dir / "search.json").read_text())["status"] == "finished"
    assert (search_dir / "best" / "config.json").exists()  # the export works on a PBT search


@pytest.mark.parametrize("kind", ["pbt", "pb2"])
def test_population_schedulers_leave_a_trial_alone_at_its_last_step(kind):
    """At a trial's last step (its own ``train.steps``) the scheduler answers CONTINUE without asking Ray's PBT,
    which would otherwise copy another trial's state into a trial that has nothing left to train; before it, Ray's
    PBT decides (here it refuses a result without the objective, which shows it was asked)."""
    if kind == "pb2":
        pytest.importorskip("sklearn")
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    from search.schedulers import build

    _, scheduler, _ = build(kind, load_space("smoke"), searcher=None, seed=0, trials=2, limit=2, grace_steps=1)
    scheduler.set_search_properties("primary", "min")
    trial = Trial("mitogan", config={"train.steps": 60}, stub=True)
    for step in (60, 61):
        assert scheduler.on_trial_result(None, trial, {"step": step}) == TrialScheduler.CONTINUE
    with pytest.raises(RuntimeError, match="primary"):
        scheduler.on_trial_result(None, trial, {"step": 59})


def test_pb2_bounds_every_perturbed_parameter_by_its_range():
    pytest.importorskip("sklearn")
    from ray.tune.schedulers.pb2 import PB2

    from search.schedulers import build

    space = load_space("smoke")
    alg, scheduler, param_space = build("pb2", space, searcher=None, seed=0, trials=3, limit=2, grace_steps=1)
    assert isinstance(scheduler, PB2)
    assert scheduler._hyperparam_bounds == {p.name: [p.low, p.high] for p in mutable_params(space)}
    assert set(param_space) >= {p.name for p in mutable_params(space)}


@pytest.mark.slow
def test_pb2_fastgan_search_runs_through_report_export_synth_and_explain(tmp_path):
    """Issue 20's chain on the few-shot family under PB2: search -> report -> export -> synth -> explain."""
    from mitogan.cli import main
    from mitogan.simulate import default_dataset
    from search.report import collect_trials

    pytest.importorskip("sklearn")  # Ray's PB2 fits a GP with it (the pb2 extra)
    space = PBT_SPACE.replace("name: pbt", "name: pb2").replace("fixed:\n", "fixed:\n  model.arch: fastgan\n", 1)
    search_dir = _two_trial_search(tmp_path, "pb2", space, seed=2)
    trials = collect_trials(search_dir)
    assert len(trials) == 2 and all(t.status in ("finished", "stopped") for t in trials)
    assert all(t.params["model.arch"] == "fastgan" for t in trials)
    assert (search_dir / "report" / "index.html").is_file()
    best = search_dir / "best"
    assert json.loads((best / "config.json").read_text())["generator"]["arch"] == "fastgan"

    synth = tmp_path / "synth"
    assert main(["synth", str(best), "-n", "40", "--format", "npy", "--out", str(synth), "-q"]) == 0
    import numpy as np

    drawn = np.load(synth / "images.npy")
    assert drawn.shape[0] == 40 and drawn.shape[-2:] == (32, 32) and np.isfinite(drawn).all()

    data = default_dataset(videos=3, frames=4)  # the built-in data the search trained on
    out = tmp_path / "explain"
    assert main(["explain", str(search_dir), "--data", str(data), "--out", str(out), "--max-tiles", "16", "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "overlay_real.png").is_file() and summary




@pytest.mark.slow
def test_a_killed_pbt_search_resumes_to_the_end_and_keeps_its_lineage(tmp_path):
    """`--resume` under PBT: the driver and its Ray SIGKILLed once both trials passed the first exploit point;
    the resumed search finishes every trial, reruns none from scratch and keeps the lineage it had."""
    import os

    from search.report import collect_trials
    from tests.search.resilience import check_completed, kill_tree, rows, run, short_tmp, snapshot, start, wait_for

    env = {**os.environ, "TMPDIR": str(short_tmp(tmp_path))}
    storage, space = str(tmp_path / "runs"), tmp_path / "pbt.yaml"
    space.write_text(PBT_SPACE)
    proc = start(["--space", str(space), "--trials", "2", "--max-concurrent", "2", "--storage", storage, "--name", "p",
                  "--scheduler", "pbt", "--sim-videos", "2", "--sim-frames", "4", "--no-wandb", "-q"], env)

    def past_first_exploit():
        trials = rows(storage, "p")
        return len(trials) == 2 and all(t and t[-1]["step"] >= 30 and t[-1]["step"] < 60 for t in trials.values())

    wait_for(past_first_exploit, 400, proc, "both trials past step 30")
    kill_tree(proc)
    at_kill = snapshot(rows(storage, "p"))
    lineage = {t.trial_id: list(t.lineage) for t in collect_trials(tmp_path / "runs" / "p")}

    out = run(["--resume", "p", "--storage", storage, "-q"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    measured = check_completed(rows(storage, "p"), at_kill, trials=2)
    assert measured["rerun_from_scratch"] == 0 and measured["finished_ran_again"] == 0, measured
    for t in collect_trials(tmp_path / "runs" / "p"):
        assert t.lineage[:len(lineage[t.trial_id])] == lineage[t.trial_id], (t.trial_id, t.lineage)
    assert json.loads((tmp_path / "runs" / "p" / "search.json").read_text())["status"] == "finished"


def test_the_next_trial_is_the_one_rays_fifo_choice_would_start_among_many(tmp_path):
    """The live-first choice (ASHA and ``--scheduler none``) starts the same trial as Ray's own FIFO choice,
    which scans every trial, through adds, starts, ends, errors, pauses and retries (Ray adds a retried
    trial again, at the end of its list); ended trials leave its index."""
    import random

    from ray.tune.experiment import Trial
    from ray.tune.schedulers import FIFOScheduler

    from search.schedulers import LiveFirstASHA, LiveFirstFIFO

    class Controller:  # what a scheduler's choice reads of Ray's TuneController: its trials, in order
        def __init__(self):
            self.trials = []

        def get_trials(self):
            return self.trials

    rng = random.Random(0)
    for ours in (LiveFirstASHA(time_attr="step", max_t=10, metric="primary", mode="min"), LiveFirstFIFO()):
        ctl, ray_fifo = Controller(), FIFOScheduler()
        for _ in range(2000):
            live = [t for t in ctl.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)]
            move = rng.random()
            if move < 0.3 or not live:
                trial = Trial("t", config={}, stub=True)
                ctl.trials.append(trial)
                ours.on_trial_add(ctl, trial)
            elif move < 0.5:  # a failed trial that Ray retries: pending again, at the end of the list
                trial = rng.choice(live)
                trial.set_status(Trial.PENDING)
                ctl.trials.remove(trial)
                ctl.trials.append(trial)
                ours.on_trial_add(ctl, trial)
            else:
                rng.choice(live).set_status(rng.choice([Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR]))
            assert ours.choose_trial_to_run(ctl) is ray_fifo.choose_trial_to_run(ctl)
        ended = [t for t in ctl.trials if t.status in (Trial.TERMINATED, Trial.ERROR)]
        assert ended and not set(ended) & set(ours._live_trials())  # gone from the index at the next choice
        assert "_live" not in ours.__getstate__()


def test_a_population_starts_with_the_space_start_points():
    space = load_space("fewshot")
    points = population(space, 4, seed=0)
    assert {k: points[0][k] for k in space.start[0]} == space.start[0]  # the story's DCGAN first
    assert len(points) == 4 and len({p["optim.lr_g"] for p in points}) == 4  # then random draws
