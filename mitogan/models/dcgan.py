"""DCGAN generator/discriminator (Radford et al. 2016) with width, depth, norm and activation knobs.

Channel plan for image size S with n = log2(S) - 2 stages and width w: the generator goes
4x4 with w*2^(n-1) channels, doubling the resolution and halving the channels each stage down to w at S/2,
then a last transposed conv to 1 channel at S. The discriminator mirrors it.
"""

from __future__ import annotations

import torch
from torch import nn

from mitogan.models.layers import make_act, make_norm, maybe_sn, n_stages

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]


class DCGANGenerator(nn.Module):
    """z (B, Z) → images (B, 1, S, S) in [-1, 1]."""

    def __init__(self, image_size: int = 64, latent_dim: int = 64, width: int = 32, depth: int = 0,
                 norm: str = "batch", activation: str = "relu"):
        super().__init__()
        self.config = dict(arch="dcgan", image_size=image_size, latent_dim=latent_dim, width=width,
                           depth=depth, norm=norm, activation=activation)
        n = n_stages(image_size)
        ch = [width * 2 ** (n - 1 - i) for i in range(n)]  # channels at 4, 8, ..., S/2
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, ch[0], 4, 1, 0, bias=False),
                                   make_norm(norm, ch[0]), make_act(activation)]
        for i in range(n):
            c_in = ch[i]
            for _ in range(depth):
                layers += [nn.Conv2d(c_in, c_in, 3, 1, 1, bias=False), make_norm(norm, c_in), make_act(activation)]
            if i + 1 < n:
                layers += [nn.ConvTranspose2d(c_in, ch[i + 1], 4, 2, 1, bias=False),
                           make_norm(norm, ch[i + 1]), make_act(activation)]
        layers += [nn.ConvTranspose2d(ch[-1], 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # (B, Z, 1, 1) → (B, 1, S, S)


class DCGANDiscriminator(nn.Module):
    """images (B, 1, S, S) → logits / critic values (B,)."""

    def __init__(self, image_size: int = 64, width: int = 32, depth: int = 0, norm: str = "spectral",
                 activation: str = "leaky_relu"):
        super().__init__()
        self.config = dict(arch="dcgan", image_size=image_size, width=width, depth=depth, norm=norm,
                           activation=activation)
        n = n_stages(image_size)
        ch = [width * 2 ** i for i in range(n)]  # channels at S/2, S/4, ..., 4
        # no normalisation on the first layer (DCGAN): it would wash out the input intensities
        layers: list[nn.Module] = [maybe_sn(nn.Conv2d(1, ch[0], 4, 2, 1), norm), make_act(activation)]
        for i in range(n):
            for _ in range(depth):
                layers += [maybe_sn(nn.Conv2d(ch[i], ch[i], 3, 1, 1), norm), make_norm(norm, ch[i]),
                           make_act(activation)]
            if i + 1 < n:
                layers += [maybe_sn(nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1), norm), make_norm(norm, ch[i + 1]),
                           make_act(activation)]
        layers += [maybe_sn(nn.Conv2d(ch[-1], 1, 4, 1, 0), norm)]  # (B, C, 4, 4) → (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (B,)
