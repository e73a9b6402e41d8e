"""DCGAN generator/discriminator (Radford et al. 2016) with width, depth, norm and activation knobs.

Channel plan for image size S with n = log2(S) - 2 stages and width w: the generator goes
4x4 with w*2^(n-1) channels, doubling the resolution and halving the channels each stage down to w at S/2,
then a last transposed conv to 1 channel at S. The discriminator mirrors it.
"""

from __future__ import annotations

import torch
from torch import nn

from mitogan.models.layers import (MinibatchStd, PSFBlur, ZNoise, image_noise, make_act, make_norm, make_out,
                                   maybe_sn, n_stages)

__all__ = ["DCGANGenerator", "DCGANDiscriminator"]


def _up(c_in: int, c_out: int, how: str, bias: bool) -> list[nn.Module]:
    """(B, C_in, H, W) → (B, C_out, 2H, 2W): DCGAN's transposed 4x4 conv, or a resize-convolution (nearest 2x,
    conv 3x3), which has no checkerboard pattern (Odena et al., Distill 2016: a stride-2 transposed conv covers
    the pixels of each 2x2 cell with other kernel taps, a pattern a small CNN judge finds); ``bilinear``: the same
    with bilinear instead of nearest upsampling (no 2x2 blocks either)."""
    if how in ("resize", "bilinear"):
        mode = "nearest" if how == "resize" else "bilinear"
        return [nn.Upsample(scale_factor=2.0, mode=mode), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]


class DCGANGenerator(nn.Module):
    """z (B, Z) → images (B, 1, S, S) in [-1, 1]."""

    def __init__(self, image_size: int = 64, latent_dim: int = 64, width: int = 32, depth: int = 0,
                 norm: str = "batch", activation: str = "relu", noise: bool = False, output: str = "tanh",
                 upsample: str = "transposed", pixel_noise: bool = False, psf: bool = False):
        super().__init__()
        self.config = dict(arch="dcgan", image_size=image_size, latent_dim=latent_dim, width=width,
                           depth=depth, norm=norm, activation=activation, noise=noise, output=output,
                           upsample=upsample, pixel_noise=pixel_noise, psf=psf)
        if upsample not in ("transposed", "resize", "bilinear"):
            raise ValueError(f"unknown upsampling {upsample!r} (transposed, resize or bilinear)")
        n = n_stages(image_size)
        ch = [width * 2 ** (n - 1 - i) for i in range(n)]  # channels at 4, 8, ..., S/2
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, ch[0], 4, 1, 0, bias=False),
                                   make_norm(norm, ch[0]), make_act(activation)]
        noises = {}  # index of a layer → the noise added to its output (after each upsampling's norm, the image)
        for i in range(n):
            c_in = ch[i]
            for _ in range(depth):
                layers += [nn.Conv2d(c_in, c_in, 3, 1, 1, bias=False), make_norm(norm, c_in), make_act(activation)]
            if i + 1 < n:
                layers += [*_up(c_in, ch[i + 1], upsample, bias=False), make_norm(norm, ch[i + 1])]
                if noise:
                    noises[str(len(layers) - 1)] = ZNoise(latent_dim, 8 << i, ch[i + 1], seed=i)
                layers += [make_act(activation)]
        layers += _up(ch[-1], 1 + pixel_noise, upsample, bias=True)  # the image (and its noise level)
        if psf:  # the optics, before the camera noise
            layers += [PSFBlur()]
        if noise or pixel_noise:
            noises[str(len(layers) - 1)] = image_noise(latent_dim, image_size, noise, pixel_noise, seed=n)
        self.net = nn.Sequential(*layers, make_out(output))
        self.noise = nn.ModuleDict(noises)
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z[:, :, None, None]  # (B, Z, 1, 1) → ... → (B, 1, S, S)
        for i, layer in enumerate(self.net):
            h = layer(h)
            if str(i) in self.noise:
                h = self.noise[str(i)](h, z)
        return h


class DCGANDiscriminator(nn.Module):
    """images (B, 1, S, S) → logits / critic values (B,)."""

    def __init__(self, image_size: int = 64, width: int = 32, depth: int = 0, norm: str = "spectral",
                 activation: str = "leaky_relu", mbstd: bool = False):
        super().__init__()
        self.config = dict(arch="dcgan", image_size=image_size, width=width, depth=depth, norm=norm,
                           activation=activation, mbstd=mbstd)
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
        if mbstd:  # the batch's spread as one more feature map at 4x4, mixed in by a conv 3x3 (as in StyleGAN2)
            layers += [MinibatchStd(), maybe_sn(nn.Conv2d(ch[-1] + 1, ch[-1], 3, 1, 1), norm), make_act(activation)]
        layers += [maybe_sn(nn.Conv2d(ch[-1], 1, 4, 1, 0), norm)]  # (B, C, 4, 4) → (B, 1, 1, 1)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()  # (B,)
