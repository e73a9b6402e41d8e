"""The trainable's restart rule: a trial whose driver died after the trial had trained all its steps (but
before Ray saved that it ended) reports its end again from the checkpoint, finished, and trains nothing."""

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
