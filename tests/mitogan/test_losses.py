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


# --- the spectral loss


def _noise(n, sigma, seed=0, size=32):
    return sigma * torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_band_powers_of_white_noise_are_flat_at_its_variance():
    # white noise has the same power at every frequency: |FFT|²/N averages to σ² in every ring
    rings = losses.band_powers(_noise(64, 0.1)).mean(dim=0)  # (8,)
    assert rings.shape == (8,)
    assert torch.allclose(rings, torch.full_like(rings, math.log10(0.01)), atol=0.1)


def test_band_powers_fall_where_a_blur_removes_detail():
    x = _noise(16, 1.0)
    blurred = nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    drop = (losses.band_powers(x) - losses.band_powers(blurred)).mean(dim=0)
    assert drop[-1] > 1.0 > drop[0]  # a 3x3 box keeps the lowest ring, takes the highest down by over 10x


def test_band_powers_ignore_brightness():
    x = _noise(4, 0.2)
    assert torch.allclose(losses.band_powers(x), losses.band_powers(x + 0.7), atol=1e-4)


def test_spectral_distance_is_zero_for_the_same_batch_in_any_order():
    x = _noise(32, 0.1)
    assert losses.spectral_distance(x, x[torch.randperm(32)]).item() == pytest.approx(0.0, abs=1e-6)
    assert losses.spectral_distance(_noise(32, 0.3, 1), x).item() > 0.4  # 9x the power: log10 9 ≈ 0.95 per ring


def test_spectral_distance_sees_the_spread_not_only_the_mean():
    # half clean, half noisy real tiles against tiles all middling: same mean log power, a different spread
    real = torch.cat([_noise(16, 0.02, 1), _noise(16, 0.2, 2)])
    middling = _noise(32, 0.0632, 3)  # log10 σ² halfway: 10^((log10 4e-4 + log10 4e-2) / 2) = 4e-3
    assert (losses.band_powers(middling).mean() - losses.band_powers(real).mean()).abs() < 0.1
    assert losses.spectral_distance(middling, real).item() > 0.8
    assert losses.spectral_distance(torch.cat([_noise(16, 0.02, 4), _noise(16, 0.2, 5)]), real).item() < 0.1


def test_spectral_distance_batches_of_two_sizes():
    assert losses.spectral_distance(_noise(20, 0.1), _noise(32, 0.1, 1)).item() < 0.1
    assert losses.spectral_distance(_noise(32, 0.1), _noise(20, 0.3, 1)).item() > 0.4


def test_spectral_distance_teaches_a_noise_level():
    # its gradient alone takes a learnable noise strength to the real tiles' one; none flows to the real batch
    real = _noise(32, 0.15, 1).requires_grad_(True)
    log_sigma = torch.tensor(math.log(0.01), requires_grad=True)
    opt = torch.optim.Adam([log_sigma], lr=0.05)
    for step in range(300):
        opt.zero_grad()
        losses.spectral_distance(log_sigma.exp() * _noise(32, 1.0, 100 + step), real).backward()
        opt.step()
    assert log_sigma.exp().item() == pytest.approx(0.15, rel=0.1)
    assert real.grad is None
