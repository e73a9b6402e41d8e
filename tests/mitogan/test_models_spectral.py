"""mitogan/models/spectral.py: the discriminator's spectral head (model.d_spectral)."""

import numpy as np
import pytest
import torch
from torch import nn

from mitogan.config import Config, from_flat
from mitogan.models import build_discriminator, discriminate_real, discriminator_from_config
from mitogan.models.spectral import SpectralD, _rings, ring_spectrum

ARCHS = ("dcgan", "resnet", "fastgan")


def _cfg(arch, **model):
    return from_flat(Config, {"model.arch": arch, "model.d_width": 8, **{f"model.{k}": v for k, v in model.items()}})


def test_ring_spectrum_sees_white_noise_at_every_frequency_and_a_smooth_image_only_at_low_ones():
    rings = _rings(32)
    assert rings.shape == (32 * 17, 16) and torch.allclose(rings.sum(0), torch.ones(16))  # every ring averaged
    g = torch.Generator().manual_seed(0)
    noise = 0.1 * torch.randn(64, 1, 32, 32, generator=g)
    spec = ring_spectrum(noise, rings).exp().mean(0)  # orthonormal FFT: white noise of sd σ has power σ² everywhere
    assert torch.allclose(spec, torch.full((16,), 0.01 + 1e-4), rtol=0.1)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.exp(-((yy - 16) ** 2 + (xx - 16) ** 2) / 50)[None, None].repeat(4, 1, 1, 1)
    s = ring_spectrum(smooth, rings)[0]
    assert s[0] > s[-1] + 5 and s[-1] < np.log(2e-4)  # at the floor by the Nyquist ring
    assert torch.allclose(ring_spectrum(smooth + 0.3, rings), s, atol=1e-3)  # DC is left out: brightness is D's


@pytest.mark.parametrize("arch", ARCHS)
def test_a_spectral_discriminator_adds_its_head_and_rebuilds_from_its_config(arch):
    torch.manual_seed(0)
    d = build_discriminator(_cfg(arch, d_spectral=True).model, 32)
    assert isinstance(d, SpectralD) and d.config["spectral"] is True and d.config["arch"] == arch
    x = torch.rand(6, 1, 32, 32) * 2 - 1
    d.eval()
    with torch.no_grad():
        assert torch.allclose(d(x), d.d(x) + d.spectral(x))
        logits, aux = discriminate_real(d, x)  # FastGAN's reconstruction loss is kept
        assert torch.allclose(logits, d(x)) and (float(aux) > 0) == (arch == "fastgan")
        rebuilt = discriminator_from_config(d.config)
        rebuilt.load_state_dict(d.state_dict())
        assert torch.equal(d(x), rebuilt.eval()(x))
    plain = build_discriminator(_cfg(arch).model, 32)  # off by default: the family's discriminator as it was
    assert not isinstance(plain, SpectralD) and "spectral" not in plain.config


@pytest.mark.parametrize("norm,level", [("none", 0.95), ("spectral", 0.95)])
def test_the_head_tells_images_with_fine_noise_from_images_without(norm, level):
    # two sets of smooth fields, one with faint fine noise (sd 0.05): the head's linear layer learns to separate
    # them in 200 steps, under spectral normalisation (weights of norm <= 1) too
    from mitogan.models.spectral import SpectralHead

    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1)
    base = gaussian_filter(rng.standard_normal((256, 1, 32, 32)), (0, 0, 2, 2), mode="wrap") * 4  # sd ~0.5
    base = torch.tensor(base, dtype=torch.float32)
    clean, noisy = base[:128], base[128:] + 0.05 * torch.tensor(rng.standard_normal((128, 1, 32, 32)),
                                                               dtype=torch.float32)
    head = SpectralHead(32, norm)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    y = torch.cat([torch.zeros(128), torch.ones(128)])
    x = torch.cat([clean, noisy])
    for _ in range(200):
        opt.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(head(x), y).backward()
        opt.step()
    with torch.no_grad():
        acc = float(((head(x) > 0).float() == y).float().mean())
    assert acc > level


def test_penalties_differentiate_through_the_head():
    # the gradient penalty and R1 take D's gradient with respect to its input and then differentiate again
    import torch.autograd as ag

    d = build_discriminator(_cfg("dcgan", d_spectral=True, d_norm="layer").model, 32)
    x = (torch.rand(4, 1, 32, 32) * 2 - 1).requires_grad_(True)
    (grad,) = ag.grad(d(x).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert d.spectral.fc.weight.grad.abs().sum() > 0  # (its bias does not move D's gradient in x)
