"""The trainable's restart rule: a trial whose driver died after the trial had trained all its steps (but
before Ray saved that it ended) reports its end again from the checkpoint, finished, and trains nothing."""

import os

import numpy as np
import pytest

from mitogan.config import Config, from_flat
from search.trainable import _ended_result

TINY = {"preprocess.tile.size": 32, "model.g_width": 8, "model.d_width": 8, "model.latent_dim": 16,
        "train.batch_size": 4, "train.steps": 3, "train.report_every": 1, "train.n_samples": 8,
        "train.eval_samples": 8, "train.threads": 1}


@pytest.mark.slow  # ~10 s: Ray's and torch's imports
def test_a_trial_restored_at_its_last_step_reports_finished_with_its_metrics(tmp_path):
    from mitogan.train import train

    rng = np.random.default_rng(0)
    tiles = np.clip(rng.normal(-0.5, 0.3, (16, 1, 32, 32)), -1, 1).astype(np.float32)
    train(from_flat(Config, TINY), tiles, out_dir=tmp_path, evaluate=lambda fake: {"primary": 0.25, "fidelity": 0.5})
    final = _ended_result(tmp_path / "checkpoint.pt", 3)
    assert final["finished"] == 1 and final["stop_reason"] == "" and final["step"] == final["start_step"] == 3
    assert final["primary"] == 0.25 and final["fidelity"] == 0.5  # the last evaluation, not the worst value
    assert "loss_d" in final or "loss_g" in final  # the trainer's own numbers of its last report


# Ray's variable: how long its actor reset waits for the previous trial's thread
RESET_WAIT = "TUNE_FUNCTION_THREAD_TIMEOUT_S"


def test_a_reused_worker_gives_each_trial_the_thread_count_it_started_with(monkeypatch):
    """Warm trials: a trial that changed torch's thread count (``train.threads``) does not pass it on to the next
    trial in the same worker; Ray's actor reset waits for a stopped trial's thread longer than its 2 s default."""
    import torch

    from search import trainable

    monkeypatch.delenv(RESET_WAIT, raising=False)
    monkeypatch.setattr(trainable, "_FIRST", {})
    start = torch.get_num_threads()
    try:
        trainable._as_fresh_process()
        torch.set_num_threads(start + 1)  # what a trial with train.threads = start + 1 leaves behind
        trainable._as_fresh_process()
        assert torch.get_num_threads() == start
        assert int(os.environ[RESET_WAIT]) > 2
        monkeypatch.setenv(RESET_WAIT, "7")  # the user's own value wins
        trainable._as_fresh_process()
        assert os.environ[RESET_WAIT] == "7"
    finally:
        torch.set_num_threads(start)


def test_a_worker_builds_the_evaluator_once_per_dataset(monkeypatch):
    from search import trainable

    class Tiles:
        def __init__(self, key):
            self.meta = {"cache_key": key} if key else {}

    built = []

    def make(tiles, holdout):
        built.append((tiles.meta.get("cache_key"), holdout))
        return object()

    monkeypatch.setattr(trainable, "_EVALUATORS", {})
    a = trainable._evaluator(make, Tiles("a"), 0.25)
    assert trainable._evaluator(make, Tiles("a"), 0.25) is a  # the next trial on the same data
    assert trainable._evaluator(make, Tiles("a"), 0.5) is not a  # another held-out share: another split
    assert trainable._evaluator(make, Tiles("b"), 0.25) is not a  # other preprocessing: other tiles
    assert trainable._evaluator(make, Tiles("a"), 0.25) is not a  # only the newest dataset is kept
    trainable._evaluator(make, Tiles(None), 0.25), trainable._evaluator(make, Tiles(None), 0.25)  # no content key
    assert built == [("a", 0.25), ("a", 0.5), ("b", 0.25), ("a", 0.25), (None, 0.25), (None, 0.25)]


def test_sample_grids_never_ride_on_a_result_with_a_checkpoint():
    """Ray keeps a checkpoint's result (bytes and all) in its experiment state: a grid written at a checkpoint
    step ships with the next result without one, named there; the final result ships the last one."""
    from search.trainable import _defer_sample

    state = {"unshipped": None}
    plan = [(10, False, None), (20, True, "samples/step_000020.png"), (30, False, None),
            (40, True, "samples/step_000040.png"), (40, False, None)]  # the last: the trial's final result
    shipped = []
    for step, checkpoint, grid in plan:
        metrics = {"step": step, **({"samples_png": grid} if grid else {})}
        if _defer_sample(metrics, state, checkpoint):
            shipped.append((step, metrics["samples_png"]))
    assert shipped == [(30, "samples/step_000020.png"), (40, "samples/step_000040.png")]
    metrics = {"step": 50, "samples_png": "samples/step_000050.png"}
    assert _defer_sample(metrics, state, False) and metrics["samples_png"] == "samples/step_000050.png"


WARM_SPACE = """name: warm
fixed:
""" + "".join(f"  {k}: {v}\n" for k, v in {
    "preprocess.tile.size": 32, "preprocess.tile.scale": 0.5, "model.g_width": 8, "model.d_width": 8,
    "model.latent_dim": 16, "train.batch_size": 16, "train.judge_samples": 0, "train.steps": 40,
    "train.report_every": 10, "train.eval_every": 10, "train.sample_every": 20, "train.checkpoint_every": 20}.items()) + """\
params:
  - {name: optim.lr_g, type: float, low: 0.00001, high: 0.01, log: true}
  - {name: loss.kind, type: categorical, choices: [hinge, bce]}
  - {name: train.threads, type: categorical, choices: [null, 2]}
"""
# what differs between two runs of the same trial whatever the process: clocks, processes, Ray's own counters
_RUN_KEYS = {"date", "hostname", "node", "node_ip", "pid", "steps_per_s", "time_since_restore", "time_this_iter_s",
             "time_total_s", "timestamp", "trial_id", "iterations_since_restore", "training_iteration",
             "checkpoint_dir_name", "done", "experiment_tag", "config", "samples_png"}


def _trials(search_dir):
    """{the trial's sampled parameters: ({step: its results}, the worker's pid)} of a search folder."""
    import json

    from search.trials import expand

    out = {}
    for t in search_dir.glob("trial_*"):
        rows = [expand(json.loads(line)) for line in (t / "result.json").read_text().splitlines()]
        params = json.dumps(json.loads((t / "params.json").read_text()), sort_keys=True)
        by_step = {}
        for r in rows:
            by_step.setdefault(r["step"], []).append({k: v for k, v in r.items() if k not in _RUN_KEYS})
        out[params] = (by_step, rows[-1]["pid"])
    return out


TRIALS = 4  # per search: with 2 at once, each warm worker runs about two in turn


@pytest.mark.long  # beyond CI's budget: `make test-long` (README, Tests)
@pytest.mark.slow  # two 4-trial searches
def test_a_warm_trial_reports_exactly_what_it_reports_in_a_fresh_process(tmp_path):
    """Warm trials (the default): a worker runs trial after trial, ASHA-stopped ones included, and every trial
    reports the same numbers, step by step, as in a search that starts each trial in a fresh process
    (``--cold-trials``): same seeds, same RNG streams, same thread count (a trial that set ``train.threads`` does
    not leave it to the next), same metrics reference."""
    from search.run import SearchOptions, run_search

    (tmp_path / "warm.yaml").write_text(WARM_SPACE)
    runs = {}
    for name, warm in (("warm", True), ("cold", False)):
        opts = SearchOptions(space=str(tmp_path / "warm.yaml"), trials=TRIALS, max_concurrent=2,
                             storage=str(tmp_path / "runs"), name=name, sampler="random", grace_steps=10,
                             sim_videos=3, sim_frames=4, progress=False, report=False, wandb=False,
                             reuse_actors=warm)
        search_dir = run_search(opts)
        runs[name] = _trials(search_dir)
        for trial in search_dir.glob("trial_*"):  # the trainer's own logs: Ray's result.json holds every report
            assert not {"metrics.jsonl", "loss_curves.png", "signals.png"} & {p.name for p in trial.iterdir()}
    warm, cold = runs["warm"], runs["cold"]
    assert set(warm) == set(cold) and len(warm) == TRIALS  # the random sampler: the same trials
    assert len({pid for _, pid in warm.values()}) < TRIALS <= len({pid for _, pid in cold.values()})
    common = {params: steps.keys() & cold[params][0].keys() for params, (steps, _) in warm.items()}
    for params, (steps, _) in warm.items():
        for step in common[params]:  # ASHA may stop a trial at another rung in each search
            assert steps[step][0] == cold[params][0][step][0], (params, step)
    assert all(common.values()) and max(map(len, common.values())) >= 3  # each trial, some past two rungs
