"""The non-convergence policy: one set of thresholds (cfg.stop); NaN stops at once; other signals need the
grace period and patience; the trainer's own reports drive it."""

import math

import pytest

from mitogan.config import Config, from_flat
from mitogan.stopping import STOP_REASONS, NonConvergencePolicy, grace_steps, signals

HEALTHY = {"loss_d": 0.6, "loss_g": 0.9, "penalty": 0.0, "d_real": 0.4, "d_fake": 0.1, "wasserstein": 0.3,
           "grad_norm_d": 2.0, "grad_norm_g": 1.0, "grad_norm_d_max": 3.0, "grad_norm_g_max": 1.5, "diversity": 0.9,
           "aug_p": 1.0, "nonfinite": 0.0, "critic_drift": 0.5, "steps_per_s": 10.0, "steps_total": 500}


def cfg(**flat) -> Config:
    # 500 steps reported every 50: grace period 125 (a quarter of the run)
    return from_flat(Config, {"train.steps": 500, "train.report_every": 50, **flat})


def reports(n, start=50, every=50, **override):
    return [dict(HEALTHY, step=start + i * every, **override) for i in range(n)]


def first_stop(policy, rs):
    for r in rs:
        reason = policy.check(r)
        if reason:
            return r["step"], reason
    return None


def test_healthy_run_is_never_stopped():
    assert first_stop(NonConvergencePolicy(cfg()), reports(40)) is None


def test_nan_stops_immediately_even_in_grace_period():
    rs = reports(3) + [dict(HEALTHY, step=200, loss_d=math.nan)]
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.grace": 1.0})), rs) == (200, "nonfinite")
    assert first_stop(NonConvergencePolicy(cfg()), [dict(HEALTHY, step=10, nonfinite=1.0)]) == (10, "nonfinite")


def test_exploding_critic_needs_grace_and_patience():
    rs = reports(6, wasserstein=5e3)  # steps 50..300
    # grace 125: first counted report at 150, patience 2 → stop at 200
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.patience": 2})), rs) == (200, "critic_explode")
    # grace 0.1 of 500 = 50: counted from 50, stop at 100
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.grace": 0.1})), rs) == (100, "critic_explode")


def test_a_single_spike_is_forgiven():
    rs = reports(10)
    rs[4] = dict(rs[4], grad_norm_d_max=1e6)
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.patience": 2})), rs) is None
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.patience": 1})), rs) == (250, "grad_blowup")


@pytest.mark.parametrize("measured, reason", [
    ({"diversity": 0.001}, "collapse"),
    ({"critic_drift": -500.0}, "critic_drift"),
    ({"grad_norm_g_max": 1e5}, "grad_blowup"),
    ({"wasserstein": -2e3}, "critic_explode"),
])
def test_each_measurement_has_its_reason(measured, reason):
    assert first_stop(NonConvergencePolicy(cfg()), reports(5, **measured)) == (200, reason)


def test_the_config_thresholds_are_the_ones_that_count():
    # one set of thresholds: moving a limit in cfg.stop moves the decision (no second, OR-ed limit)
    high = cfg(**{"stop.critic_limit": 1e4, "stop.grad_limit": 1e6, "stop.diversity_floor": 0.01,
                  "stop.drift_limit": 1e3})
    for measured in ({"wasserstein": 5e3}, {"grad_norm_d_max": 1e5}, {"diversity": 0.05}, {"critic_drift": 500.0}):
        assert first_stop(NonConvergencePolicy(cfg()), reports(6, **measured)) is not None, measured
        assert first_stop(NonConvergencePolicy(high), reports(6, **measured)) is None, measured
    # the diversity floor (0.1 by default) is used as written: 0.07 collapses under 0.1, not under 0.05
    assert first_stop(NonConvergencePolicy(cfg()), reports(6, diversity=0.07))[1] == "collapse"
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.diversity_floor": 0.05})), reports(6, diversity=0.07)) is None


def test_disabled_policy_never_stops():
    rs = reports(6, loss_d=math.nan, wasserstein=1e9)
    assert first_stop(NonConvergencePolicy(cfg(**{"stop.enabled": False})), rs) is None
    assert first_stop(NonConvergencePolicy(cfg(), enabled=False), rs) is None  # `mitogan search --no-stopper`


def test_grace_period_is_derived_in_one_place():
    assert grace_steps(cfg()) == 125
    assert grace_steps(cfg(**{"stop.grace": 0.0})) == 50  # never before the first report
    assert NonConvergencePolicy(cfg(**{"stop.grace": 0.5})).grace_steps == 250


def test_thresholds_come_from_the_cli_and_config_files(tmp_path):
    from mitogan.config import load_config

    # `mitogan train --set stop.critic_limit=50` goes through load_config's overrides
    c = load_config(None, Config, overrides=["stop.critic_limit=50", "stop.patience=3"])
    assert (c.stop.critic_limit, c.stop.patience) == (50.0, 3)
    assert NonConvergencePolicy(c).stop.critic_limit == 50.0
    (tmp_path / "c.yaml").write_text("stop:\n  diversity_floor: 0.02\n")
    assert load_config(tmp_path / "c.yaml", Config).stop.diversity_floor == 0.02


def test_the_old_train_keys_say_where_they_moved():
    from mitogan.errors import ConfigError

    with pytest.raises(ConfigError, match=r"train\.explode_limit: moved to stop\.critic_limit"):
        cfg(**{"train.explode_limit": 1e4})


def test_signals_name_every_reason():
    s = signals(dict(HEALTHY, step=1), cfg().stop)
    assert set(s) == {f"signal_{r}" for r in STOP_REASONS} | {"signal_any"} and s["signal_any"] == 0


# ------------------------------------------------- the trainer's measurements through the policy


TINY = {"preprocess.tile.size": 32, "model.g_width": 8, "model.d_width": 8, "model.latent_dim": 16,
        "train.batch_size": 8, "train.n_samples": 8, "train.threads": 1, "train.report_every": 1}


def _run(tiles, **flat):
    from mitogan.train import train

    c = from_flat(Config, {**TINY, **flat})
    policy, reasons = NonConvergencePolicy(c), []

    def on_report(r):
        reasons.append(policy.check(r))

    result = train(c, tiles, on_report=on_report, should_stop=lambda: any(reasons))
    return result, [x for x in reasons if x]


def test_policy_stops_a_diverging_trainer_run(tiles):
    # the bad WGAN of test_train (huge init gain and learning rate) explodes: stopped right after the grace period
    bad = {"loss.kind": "wgan_clip", "init.scheme": "kaiming_fan_in", "init.gain": 100.0, "optim.lr_d": 5.0,
           "optim.lr_g": 5.0, "model.g_norm": "none", "model.d_norm": "none", "loss.clip": 10.0, "train.steps": 20}
    result, reasons = _run(tiles, **bad)
    assert result.stopped and reasons[0] in ("critic_explode", "grad_blowup", "nonfinite")
    assert result.steps < 20


def test_policy_lets_a_sane_trainer_run_finish(tiles):
    # same loss, sane init: runs to its end; lowering the critic limit below its estimate stops it
    result, reasons = _run(tiles, **{"loss.kind": "wgan_clip", "train.steps": 12, "stop.diversity_floor": 0.0})
    assert not result.stopped and result.steps == 12 and reasons == []
    w = max(abs(h["wasserstein"]) for h in result.history[3:])
    result, reasons = _run(tiles, **{"loss.kind": "wgan_clip", "train.steps": 12, "stop.diversity_floor": 0.0,
                                     "stop.critic_limit": w / 1e3})
    assert result.stopped and reasons[0] == "critic_explode"
