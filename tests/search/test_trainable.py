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
