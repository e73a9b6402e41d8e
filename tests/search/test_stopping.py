"""The non-convergence policy: NaN stops at once; other signals need the grace period and patience."""

import math

from search.stopping import NonConvergencePolicy

HEALTHY = {"loss_d": 0.6, "loss_g": 0.9, "wasserstein": 0.3, "grad_norm_d": 2.0, "grad_norm_g": 1.0, "diversity": 0.9}


def reports(n, start=50, every=50, **override):
    return [dict(HEALTHY, step=start + i * every, **override) for i in range(n)]


def first_stop(policy, rs):
    for r in rs:
        reason = policy.check(r)
        if reason:
            return r["step"], reason
    return None


def test_healthy_run_is_never_stopped():
    assert first_stop(NonConvergencePolicy(), reports(40)) is None


def test_nan_stops_immediately_even_in_grace_period():
    rs = reports(3) + [dict(HEALTHY, step=200, loss_d=math.nan)]
    assert first_stop(NonConvergencePolicy(grace_steps=1000), rs) == (200, "nonfinite")
    assert first_stop(NonConvergencePolicy(), [dict(HEALTHY, step=10, nonfinite=1)]) == (10, "nonfinite")


def test_exploding_critic_needs_grace_and_patience():
    rs = reports(6, wasserstein=5e3)  # steps 50..300
    # grace 100: first check at 100, patience 2 → stop at 150
    assert first_stop(NonConvergencePolicy(grace_steps=100, patience=2), rs) == (150, "critic_explode")


def test_a_single_spike_is_forgiven():
    rs = reports(10)
    rs[4] = dict(rs[4], grad_norm_d=1e6)
    assert first_stop(NonConvergencePolicy(patience=2), rs) is None


def test_collapse_and_trainer_signals():
    assert first_stop(NonConvergencePolicy(), reports(5, diversity=0.001))[1] == "collapse"
    assert first_stop(NonConvergencePolicy(), reports(5, signal_critic_drift=1))[1] == "critic_drift"
    assert first_stop(NonConvergencePolicy(), reports(5, signal_grad_blowup=1))[1] == "grad_blowup"
