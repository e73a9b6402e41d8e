"""Residual generator/discriminator with SNGAN/BigGAN-style pre-activation blocks.

Generator: linear z → (w*2^(n-1), 4, 4), n up-blocks (norm-act-up-conv3-norm-act-conv3 + up-conv1
shortcut), each followed by ``depth`` same-resolution blocks, then norm-act-conv3-tanh. Discriminator:
an "optimised" first down-block on the image, n-1 further down-blocks (act-conv3-act-conv3-avgpool +
conv1-avgpool shortcut), ``depth`` extra blocks per stage, then act, global sum pooling and a linear head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mitogan.models.layers import (MinibatchStd, ZNoise, image_noise, make_act, make_norm, make_out, maybe_psf,
                                   maybe_sn, n_stages)

__all__ = ["ResNetGenerator", "ResNetDiscriminator"]


class GBlock(nn.Module):
    """(B, C_in, H, W) → (B, C_out, 2H, 2W) when ``up`` else (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int, up: bool, norm: str, activation: str):
        super().__init__()
        self.up = up
        self.n1, self.a1 = make_norm(norm, c_in), make_act(activation)
        self.c1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.n2, self.a2 = make_norm(norm, c_out), make_act(activation)
        self.c2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or up) else nn.Identity()

    def forward(self, x):
        h = self.a1(self.n1(x))
        if self.up:
            h, x = F.interpolate(h, scale_factor=2.0), F.interpolate(x, scale_factor=2.0)
        h = self.c2(self.a2(self.n2(self.c1(h))))
        return h + self.skip(x)


class DBlock(nn.Module):
    """(B, C_in, H, W) → (B, C_out, H/2, W/2) when ``down`` else same size; ``first`` skips the pre-act."""

    def __init__(self, c_in: int, c_out: int, down: bool, norm: str, activation: str, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.a1 = nn.Identity() if first else make_act(activation)
        self.c1 = maybe_sn(nn.Conv2d(c_in, c_out, 3, 1, 1), norm)
        self.n1, self.a2 = make_norm(norm, c_out), make_act(activation)
        self.c2 = maybe_sn(nn.Conv2d(c_out, c_out, 3, 1, 1), norm)
        self.skip = maybe_sn(nn.Conv2d(c_in, c_out, 1), norm) if (c_in != c_out or down) else nn.Identity()

    def forward(self, x):
        h = self.c2(self.a2(self.n1(self.c1(self.a1(x)))))
        s = x
        if self.down:
            h = F.avg_pool2d(h, 2)
            # the optimised first block pools before its 1x1 conv (cheaper, same function class)
            s = self.skip(F.avg_pool2d(s, 2)) if self.first else F.avg_pool2d(self.skip(s), 2)
        else:
            s = self.skip(s)
        return h + s


class ResNetGenerator(nn.Module):
    """z (B, Z) → images (B, 1, S, S) in [-1, 1]."""

    def __init__(self, image_size: int = 64, latent_dim: int = 64, width: int = 32, depth: int = 0,
                 norm: str = "batch", activation: str = "relu", noise: bool = False, output: str = "tanh",
                 pixel_noise: bool = False, psf: bool = False):
        super().__init__()
        self.config = dict(arch="resnet", image_size=image_size, latent_dim=latent_dim, width=width,
                           depth=depth, norm=norm, activation=activation, noise=noise, output=output,
                           pixel_noise=pixel_noise, psf=psf)
        n = n_stages(image_size)
        ch = [width * 2 ** (n - 1 - i) for i in range(n)] + [width]  # at 4, 8, ..., S
        self.latent_dim, self.c0 = latent_dim, ch[0]
        self.fc = nn.Linear(latent_dim, ch[0] * 16)
        blocks, noises = [], {}
        for i in range(n):
            if noise:  # after the up block to 8 << i px (and its depth blocks)
                noises[str(len(blocks) + depth)] = ZNoise(latent_dim, 8 << i, ch[i + 1], seed=i)
            blocks.append(GBlock(ch[i], ch[i + 1], True, norm, activation))
            blocks += [GBlock(ch[i + 1], ch[i + 1], False, norm, activation) for _ in range(depth)]
        self.blocks = nn.Sequential(*blocks)
        self.noise = nn.ModuleDict(noises)  # block index → noise added after it; empty without noise
        self.out = nn.Sequential(make_norm(norm, width), make_act(activation),
                                 nn.Conv2d(width, 1 + pixel_noise, 3, 1, 1))  # the image (and its noise level)
        self.psf = maybe_psf(psf)  # the optics, before the camera noise
        self.image_noise = image_noise(latent_dim, image_size, noise, pixel_noise, seed=n)
        self.out_act = make_out(output)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(z.shape[0], self.c0, 4, 4)  # (B, Z) → (B, C0, 4, 4)
        for i, block in enumerate(self.blocks):
            h = block(h)
            if str(i) in self.noise:
                h = self.noise[str(i)](h, z)
        h = self.psf(self.out(h))  # → (B, 1, S, S)
        if self.image_noise is not None:
            h = self.image_noise(h, z)
        return self.out_act(h)


class ResNetDiscriminator(nn.Module):
    """images (B, 1, S, S) → logits / critic values (B,)."""

    def __init__(self, image_size: int = 64, width: int = 32, depth: int = 0, norm: str = "spectral",
                 activation: str = "relu", mbstd: bool = False):
        super().__init__()
        self.config = dict(arch="resnet", image_size=image_size, width=width, depth=depth, norm=norm,
                           activation=activation, mbstd=mbstd)
        n = n_stages(image_size)
        ch = [width * 2 ** i for i in range(n)]  # at S/2, ..., 4
        blocks = [DBlock(1, ch[0], True, norm, activation, first=True)]
        for i in range(n):
            blocks += [DBlock(ch[i], ch[i], False, norm, activation) for _ in range(depth)]
            if i + 1 < n:
                blocks.append(DBlock(ch[i], ch[i + 1], True, norm, activation))
        self.blocks = nn.Sequential(*blocks)
        # the batch's spread as one more feature map at 4x4, mixed in by one more block
        self.mbstd = nn.Sequential(MinibatchStd(), DBlock(ch[-1] + 1, ch[-1], False, norm, activation)) if mbstd \
            else nn.Identity()
        self.act = make_act(activation)
        self.fc = maybe_sn(nn.Linear(ch[-1], 1), norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.mbstd(self.blocks(x))).sum(dim=(2, 3))  # (B, C, 4, 4) → (B, C)
        return self.fc(h).flatten()  # (B,)
