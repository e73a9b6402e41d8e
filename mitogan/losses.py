"""Adversarial losses and regularisers.

All functions take discriminator outputs as (B,) float tensors (logits for ``bce``, critic values for
the Wasserstein losses and ``hinge``) and return scalar tensors to *minimise*.

| kind       | discriminator loss                           | generator loss          |
|------------|----------------------------------------------|-------------------------|
| bce        | softplus(-D(x)) + softplus(D(G(z)))          | softplus(-D(G(z)))      |
| wgan_clip  | E[D(G(z))] - E[D(x)], then weights clipped   | -E[D(G(z))]             |
| wgan_gp    | as wgan_clip, plus λ·E[(‖∇D(x̂)‖ - 1)²]       | -E[D(G(z))]             |
| hinge      | E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]     | -E[D(G(z))]             |

The generator loss for ``bce`` is the non-saturating one of Goodfellow et al. R1 (Mescheder et al.
2018) is γ/2·E[‖∇D(x)‖²] on real images and can be added to any loss.

``spectral_distance`` is not adversarial: it compares how a batch of generated tiles and a batch of real ones
spread their fine detail over spatial frequencies (a GAN's upsampling leaves its own spectrum; Durall et al.
2020, "Watch your up-convolution"), and is added to the generator's loss with weight ``loss.spectral``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "d_loss", "g_loss", "gradient_penalty", "r1_penalty", "clip_weights", "band_powers",
           "spectral_distance"]

LOSSES = ("bce", "wgan_clip", "wgan_gp", "hinge")


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Discriminator loss from outputs on real (B,) and fake (B,) images."""
    real, fake = real.float(), fake.float()
    if kind == "bce":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind in ("wgan_clip", "wgan_gp"):
        return fake.mean() - real.mean()
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown loss {kind!r} (one of {LOSSES})")


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    """Generator loss from discriminator outputs on fake images (B,)."""
    fake = fake.float()
    if kind == "bce":
        return F.softplus(-fake).mean()
    if kind in ("wgan_clip", "wgan_gp", "hinge"):
        return -fake.mean()
    raise ValueError(f"unknown loss {kind!r} (one of {LOSSES})")


def gradient_penalty(disc: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(‖∇D(x̂)‖₂ - 1)²] at random interpolates x̂ of real and fake (B, 1, S, S).

    Uses the global torch RNG (on ``real.device``) for the interpolation weights.
    """
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = disc(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()  # (B, 1, S, S) → (B,) → ()


def r1_penalty(disc: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """R1 penalty E[‖∇D(x)‖₂²] on real images (B, 1, S, S), without the γ/2 factor."""
    x = real.detach().requires_grad_(True)
    out = disc(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()


@torch.no_grad()
def clip_weights(disc: nn.Module, clip: float) -> None:
    """Clamp every discriminator parameter to [-clip, clip] (the original WGAN's Lipschitz constraint)."""
    for p in disc.parameters():
        p.clamp_(-clip, clip)


def band_powers(x: torch.Tensor) -> torch.Tensor:
    """Each tile's log10 power in rings of spatial frequency: (B, 1, S, S) → (B, S // 4).

    The rings split 0 to 0.5 cycles/px evenly (S // 4 of them, the corners past 0.5 in the last) and leave out
    the mean brightness; the power is |FFT|² over the tile's pixel count, averaged over each ring.
    """
    x = x.float()
    s = x.shape[-1]
    power = torch.fft.rfft2(x[:, 0] - x.mean(dim=(2, 3))[:, :, None]).abs().pow(2) / (s * s)  # (B, S, S//2+1)
    fy = torch.fft.fftfreq(s, device=x.device)[:, None]
    fx = torch.fft.rfftfreq(s, device=x.device)[None, :]
    radius = (fy.pow(2) + fx.pow(2)).sqrt()  # (S, S//2+1), cycles/px
    n = max(1, s // 4)
    ring = (radius / 0.5 * n).ceil().clamp(max=n).long() - 1  # -1 is the mean brightness alone
    keep = ring >= 0
    sums = power.new_zeros(x.shape[0], n).index_add_(1, ring[keep], power[:, keep])
    counts = torch.bincount(ring[keep], minlength=n).to(power.dtype)
    return torch.log10(sums / counts + 1e-8)


def spectral_distance(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """How far apart two batches of tiles (B, 1, S, S) spread their power over frequency rings: per ring, the
    1-D Wasserstein distance between the two batches' log10 ring powers (sorted, compared in order), averaged
    over rings. Sorting compares the whole spread per ring, so a batch of clean tiles and noisy ones is not
    matched by tiles all half-noisy. Batches of different sizes are compared at the smaller's quantiles.
    """
    a, b = band_powers(fake), band_powers(real).detach()  # (B, R)
    n = min(a.shape[0], b.shape[0])
    q = torch.linspace(0, 1, n, device=a.device)
    a = torch.quantile(a, q, dim=0) if a.shape[0] != n else a.sort(dim=0).values
    b = torch.quantile(b, q, dim=0) if b.shape[0] != n else b.sort(dim=0).values
    return (a - b).abs().mean()
