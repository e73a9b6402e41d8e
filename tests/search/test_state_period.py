"""How often Ray saves a search's experiment state: saving the state at the search's final size takes 1 % of
the time (Ray's own rule says 5 %), never below the 2 s that the resume guarantees were measured with; a user's
TUNE_GLOBAL_CHECKPOINT_S wins, and nothing is left in the environment after the search."""

import os

from search.run import (EXPERIMENT_STATE_PERIOD_S, STATE_SAVE_S_PER_TRIAL, STATE_SAVE_SHARE, _state_period,
                        experiment_state_period)


def test_small_searches_save_every_2_s_and_large_ones_at_most_1_percent_of_the_time():
    assert experiment_state_period(3) == experiment_state_period(120) == float(EXPERIMENT_STATE_PERIOD_S) == 2.0
    assert STATE_SAVE_SHARE == 0.01
    for trials in (200, 1_000, 5_000, 100_000):
        period = experiment_state_period(trials)
        # one save of the whole state, over one period plus that save: 1 % (Ray's "auto" rule says 5 %)
        assert abs(trials * STATE_SAVE_S_PER_TRIAL / (period + trials * STATE_SAVE_S_PER_TRIAL) - 0.01) < 1e-9
    assert abs(experiment_state_period(5_000) - 5 * experiment_state_period(1_000)) < 1e-9  # grows with the state


def test_the_period_is_set_only_while_tune_runs_and_a_users_own_is_kept(monkeypatch):
    monkeypatch.delenv("TUNE_GLOBAL_CHECKPOINT_S", raising=False)
    monkeypatch.delenv("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", raising=False)
    with _state_period(3.04):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "3.0"
        assert "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S" not in os.environ  # Ray warns as it would
    assert "TUNE_GLOBAL_CHECKPOINT_S" not in os.environ  # the next search in this process computes its own
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "auto")
    with _state_period(2.0):
        assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "auto"
    assert os.environ["TUNE_GLOBAL_CHECKPOINT_S"] == "auto"
