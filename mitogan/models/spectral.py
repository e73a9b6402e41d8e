"""A spectral head for any discriminator (``model.d_spectral``): SSD-GAN's idea (Chen et al., AAAI 2021).

A convolutional discriminator under spectral normalisation is smooth, and it lets a generator leave out the
highest frequencies: the story's DCGAN drew the noisy backgrounds of the shared movies with 20x less power near
the Nyquist frequency than the real tiles have, and a small CNN judge (the C2ST) tells their fine detail apart at
0.99 (README, "The generator's fine detail"). The head gives the discriminator each image's power spectrum,
averaged over rings of equal frequency and on a log scale, and adds a linear score of it to the discriminator's
own: missing or surplus noise, mottle and checkerboards are one weight away.
"""

from __future__ import annotations

import torch
from torch import nn

from mitogan.models.layers import maybe_sn

__all__ = ["SpectralHead", "SpectralD", "ring_spectrum"]

FLOOR = 1e-4  # power (orthonormal FFT) added before the log: white noise of sd 0.01 per pixel


def _rings(size: int) -> torch.Tensor:
    """(S·(S/2+1), S/2) averaging matrix: the rfft2 coefficients at integer radius 1 … S/2 (DC left out)."""
    fy = torch.fft.fftfreq(size) * size
    fx = torch.fft.rfftfreq(size) * size
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round().long().flatten()
    n = size // 2
    m = torch.zeros(r.numel(), n)
    keep = (r >= 1) & (r <= n)
    m[keep.nonzero().flatten(), r[keep] - 1] = 1.0
    return m / m.sum(0, keepdim=True)


def ring_spectrum(x: torch.Tensor, rings: torch.Tensor) -> torch.Tensor:
    """(B, 1, S, S) images → (B, S/2) log mean power per frequency ring (fp32, orthonormal FFT)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        f = torch.fft.rfft2(x.float()[:, 0], norm="ortho")
        power = (f.real ** 2 + f.imag ** 2).flatten(1)  # (B, S·(S/2+1))
        return torch.log(power @ rings + FLOOR)


class SpectralHead(nn.Module):
    """(B, 1, S, S) → (B,): a linear score of the image's log ring spectrum (spectrally normalised with D)."""

    def __init__(self, image_size: int, norm: str):
        super().__init__()
        self.register_buffer("rings", _rings(image_size), persistent=False)
        self.fc = maybe_sn(nn.Linear(image_size // 2, 1), norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(ring_spectrum(x, self.rings)).flatten().to(x.dtype)


class SpectralD(nn.Module):
    """A discriminator plus a ``SpectralHead``: logits = D(x) + head(x); ``forward_real`` keeps D's auxiliary
    loss (FastGAN's reconstructions). ``.config`` is D's with ``spectral: True``."""

    def __init__(self, d: nn.Module, image_size: int, norm: str):
        super().__init__()
        self.d = d
        self.spectral = SpectralHead(image_size, norm)
        self.config = {**d.config, "spectral": True}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.d(x) + self.spectral(x)

    def forward_real(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inner = getattr(self.d, "forward_real", None)
        logits, aux = inner(x) if inner is not None else (self.d(x), x.new_zeros(()))
        return logits + self.spectral(x), aux
