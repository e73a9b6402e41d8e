"""Losses have the values of their textbook formulas; penalties and clipping do what they claim."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mitogan import losses

REAL = torch.tensor([2.0, 0.5, -1.0])
FAKE = torch.tensor([-1.5, 0.0, 3.0])


def _softplus(x):
    return math.log1p(math.exp(x))


def test_bce_matches_formula():
    # D: -log σ(r) - log(1 - σ(f)) = softplus(-r) + softplus(f); G (non-saturating): softplus(-f)
    want_d = sum(_softplus(-r) for r in REAL.tolist()) / 3 + sum(_softplus(f) for f in FAKE.tolist()) / 3
    assert losses.d_loss("bce", REAL, FAKE).item() == pytest.approx(want_d, rel=1e-6)
    want_g = sum(_softplus(-f) for f in FAKE.tolist()) / 3
    assert losses.g_loss("bce", FAKE).item() == pytest.approx(want_g, rel=1e-6)


@pytest.mark.parametrize("kind", ["wgan_clip", "wgan_gp"])
def test_wasserstein_losses(kind):
    # D minimises E[f] - E[r] = -(critic estimate); G minimises -E[f]
    assert losses.d_loss(kind, REAL, FAKE).item() == pytest.approx(FAKE.mean() - REAL.mean())
    assert losses.g_loss(kind, FAKE).item() == pytest.approx(-FAKE.mean().item())


def test_hinge():
    # relu(1 - r): [0, .5, 2] → 2.5/3 ; relu(1 + f): [0, 1, 4] → 5/3
    assert losses.d_loss("hinge", REAL, FAKE).item() == pytest.approx(2.5 / 3 + 5 / 3)
    assert losses.g_loss("hinge", FAKE).item() == pytest.approx(-FAKE.mean().item())


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        losses.d_loss("lsgan", REAL, FAKE)


class _Linear(nn.Module):
    """D(x) = a · sum(x): gradient norm w.r.t. x is |a|·sqrt(numel) everywhere."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a))

    def forward(self, x):
        return self.a * x.flatten(1).sum(1)


def test_gradient_penalty_value():
    real, fake = torch.rand(4, 1, 4, 4), torch.rand(4, 1, 4, 4)
    d = _Linear(0.5)  # grad norm = 0.5 * 4 = 2 → penalty (2 - 1)^2 = 1
    assert losses.gradient_penalty(d, real, fake).item() == pytest.approx(1.0, rel=1e-5)
    d1 = _Linear(0.25)  # grad norm exactly 1 → no penalty
    assert losses.gradient_penalty(d1, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_gradient_penalty_trains_the_critic():
    # the penalty is differentiable w.r.t. D's parameters (double backprop)
    d = _Linear(0.5)
    losses.gradient_penalty(d, torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)).backward()
    assert d.a.grad.item() == pytest.approx(2 * (2 - 1) * 4, rel=1e-5)  # d/da (4a - 1)^2 at a = .5


def test_r1_value():
    d = _Linear(0.5)  # ‖∇‖² = 0.25 * 16 = 4
    assert losses.r1_penalty(d, torch.rand(3, 1, 4, 4)).item() == pytest.approx(4.0, rel=1e-5)


def test_clip_weights():
    net = nn.Linear(8, 8)
    with torch.no_grad():
        net.weight.mul_(100)
    losses.clip_weights(net, 0.01)
    assert net.weight.abs().max() <= 0.01 and net.bias.abs().max() <= 0.01
