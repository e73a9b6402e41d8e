"""Differentiable augmentation: each transform does what it says, p=0 is the identity, gradients flow,
it is reproducible from the torch seed, and the adaptive controller moves p the right way."""

from __future__ import annotations

import pytest
import torch

from mitogan.augment import AdaptiveP, diff_augment
from mitogan.config import AugmentConfig

NONE = dict(translation=False, cutout=False, color=False, gain=False, flips=False, rot90=False)


def _imgs(b=16, s=16):
    torch.manual_seed(0)
    return torch.rand(b, 1, s, s) * 2 - 1


def test_p_zero_is_identity():
    x = _imgs()
    assert diff_augment(x, AugmentConfig(p=0.0)) is x


@pytest.mark.parametrize("name", ["translation", "cutout", "color", "gain", "flips", "rot90"])
def test_each_transform_changes_images_and_keeps_shape(name):
    x = _imgs()
    y = diff_augment(x, AugmentConfig(**{**NONE, name: True}, p=1.0))
    assert y.shape == x.shape
    changed = (y != x).flatten(1).any(1).float().mean()
    assert changed > 0.4  # most images altered (a few draws are identity-like, e.g. zero shift)


def test_geometric_transforms_preserve_pixel_values():
    # flips and 90° rotations only permute pixels: the sorted values of each image are unchanged
    x = _imgs()
    y = diff_augment(x, AugmentConfig(**{**NONE, "flips": True, "rot90": True}, p=1.0))
    assert torch.equal(x.flatten(1).sort(1).values, y.flatten(1).sort(1).values)


def test_translation_fills_background():
    x = torch.ones(64, 1, 16, 16)
    y = diff_augment(x, AugmentConfig(**{**NONE, "translation": True}, p=1.0))
    vals = set(y.unique().tolist())
    assert vals <= {1.0, -1.0} and -1.0 in vals  # revealed border is background, the rest is moved
    shifted = (y == -1).flatten(1).sum(1)
    assert shifted.max() <= 16 * 16 - 14 * 14  # at most a 2-px (1/8 of 16) border in each direction


def test_gain_scales_intensity_about_the_black_level():
    # fluorescence: a brighter or dimmer sample on the same dark background; one factor per image in [2^-0.5, 2^0.5]
    x = _imgs(b=64)
    x[:, :, :4] = -1.0  # background rows
    y = diff_augment(x, AugmentConfig(**{**NONE, "gain": True}, p=1.0))
    assert torch.equal(y[:, :, :4], x[:, :, :4])
    g = (y + 1).flatten(1).sum(1) / (x + 1).flatten(1).sum(1)  # (B,) the factor of each image
    assert torch.allclose(y, (x + 1) * g[:, None, None, None] - 1, atol=1e-5)
    assert g.min() >= 2 ** -0.5 - 1e-5 and g.max() <= 2 ** 0.5 + 1e-5
    assert g.std() > 0.1  # drawn per image


def test_cutout_area():
    x = torch.ones(32, 1, 16, 16)
    y = diff_augment(x, AugmentConfig(**{**NONE, "cutout": True}, p=1.0))
    holes = (y == -1).flatten(1).sum(1).float()
    assert holes.max() <= 64 and holes.max() > 0  # an up-to 8x8 square, clipped at the border


def test_partial_probability():
    torch.manual_seed(3)
    x = _imgs(b=400)
    y = diff_augment(x, AugmentConfig(**{**NONE, "color": True}, p=0.25))
    frac = (y != x).flatten(1).any(1).float().mean().item()
    assert 0.15 < frac < 0.35


def test_gradients_flow_and_reproducible():
    cfg = AugmentConfig(cutout=True)
    x = _imgs().requires_grad_(True)
    torch.manual_seed(7)
    y1 = diff_augment(x, cfg)
    y1.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    torch.manual_seed(7)
    y2 = diff_augment(x.detach(), cfg)
    assert torch.equal(y1.detach(), y2)


def test_adaptive_p_moves_towards_target():
    ada = AdaptiveP(p=0.5, target=0.6, kimg=1.0, interval=1)
    ada.observe(torch.ones(100))  # D says "real" to every real image: overfitting → more augmentation
    assert ada.p == pytest.approx(0.6)
    ada.observe(-torch.ones(100))  # D unsure → less augmentation
    assert ada.p == pytest.approx(0.5)
    for _ in range(20):
        ada.observe(torch.ones(100))
    assert ada.p == 1.0  # clamped
    state = ada.state_dict()
    other = AdaptiveP(0.0, 0.6, 1.0, 1)
    other.load_state_dict(state)
    assert other.p == 1.0


def test_adaptive_p_reads_its_statistic_back_once_per_update(monkeypatch):
    # as in StyleGAN2-ADA the sign statistic stays a device tensor between updates: one host read-back per
    # `interval` D steps (on a GPU, every read-back is a synchronisation)
    reads = []
    for name in ("__float__", "item", "tolist", "__bool__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _real=real, **kw: reads.append(1) or _real(self, *a, **kw))
    ada = AdaptiveP(p=0.5, target=0.6, kimg=1.0, interval=4)
    for _ in range(12):
        ada.observe(torch.ones(8))
    assert len(reads) == 3  # three updates in twelve steps
    assert ada.p == pytest.approx(0.5 + 3 * 32 / 1000)
