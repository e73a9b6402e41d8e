"""FastGAN (Liu et al., ICLR 2021, "Towards faster and stabilized GAN training for high-fidelity few-shot
image synthesis"), single-channel and sized for 32–256 px tiles on a CPU.

Channels at resolution r for image size S and width w: ``w * min(S / r, 16)`` (w at full resolution,
doubling per stage down, capped at 16w as in the paper's channel table).

Generator: z (B, Z) → 4x4 (transposed conv, norm, GLU) → up-blocks to S (nearest 2x, conv3x3, norm, GLU,
plus ``depth`` more conv-norm-GLU) → conv3x3 → tanh. Skip-layer excitation (SLE): the 4, 8 and 16 px
features gate the channels of the features ``span`` times larger (span = 16, as in the paper, or S/4 at
32 px), ``big * sigmoid(conv1x1(act(conv4x4(avgpool4(small)))))``. The paper's noise injection is left
out: a bundle's generator is a deterministic function of z (synth and export rely on it).

Discriminator: conv3x3 on the image, then down-blocks to 8x8 (conv4x4/2-norm-act-conv3x3-norm-act, averaged
with an avgpool-conv1x1 shortcut), ``depth`` extra conv3x3 per stage, and a patch head (conv1x1, conv4x4 →
5x5 logits, averaged) → (B,). It is self-supervised on real images: two small decoders reconstruct the
whole image from the 8x8 features and a random quadrant from the 16x16 features, both compared (L1) with
the real image area-averaged to ``min(S/2, 64)`` px. ``forward_real(x)`` returns the logits and that
loss (times ``recon_weight``); the trainer adds it to D's loss (``mitogan.models.discriminate_real``), so
``forward`` stays (B, 1, S, S) → (B,) like every discriminator. The paper's perceptual (LPIPS) loss is L1
here: it needs no pretrained network. Its second, low-resolution image path is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mitogan.models.layers import (MinibatchStd, ZNoise, image_noise, make_act, make_norm, make_out, maybe_psf,
                                   maybe_sn, n_stages)

__all__ = ["FastGANGenerator", "FastGANDiscriminator", "sle_pairs"]

_CAP = 16  # channels at most 16x the full-resolution width


def _channels(image_size: int, width: int, r: int) -> int:
    return width * min(image_size // r, _CAP)


def _check_size(image_size: int) -> int:
    n = n_stages(image_size)  # a power of two >= 8
    if image_size < 32:
        raise ValueError(f"fastgan needs image_size >= 32 (its discriminator reads 16 and 8 px features), "
                         f"got {image_size}")
    return n


def sle_pairs(image_size: int) -> list[tuple[int, int]]:
    """(small, big) resolutions joined by skip-layer excitation: [(4, 32)] at 32 px, ..., 3 pairs at 256 px."""
    span = min(16, image_size // 4)
    return [(r, r * span) for r in (4, 8, 16) if r * span <= image_size]


def _up(c_in: int, c_out: int, norm: str) -> list[nn.Module]:
    """(B, C_in, H, W) → (B, C_out, 2H, 2W): nearest upsampling, conv3x3 to 2·C_out, norm, GLU."""
    return [nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(c_in, 2 * c_out, 3, 1, 1, bias=False),
            make_norm(norm, 2 * c_out), nn.GLU(dim=1)]


def _same(c: int, norm: str) -> list[nn.Module]:
    return [nn.Conv2d(c, 2 * c, 3, 1, 1, bias=False), make_norm(norm, 2 * c), nn.GLU(dim=1)]


class SLE(nn.Module):
    """Skip-layer excitation: channel gates for ``big`` (B, C_big, H, W) from ``small`` (B, C_small, h, w)."""

    def __init__(self, c_small: int, c_big: int, activation: str):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_small, c_big, 4, 1, 0, bias=False),
                                  make_act(activation), nn.Conv2d(c_big, c_big, 1, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.gate(small)  # (B, C_big, 1, 1) gates broadcast over (H, W)


class FastGANGenerator(nn.Module):
    """z (B, Z) → images (B, 1, S, S) in [-1, 1]."""

    def __init__(self, image_size: int = 64, latent_dim: int = 64, width: int = 32, depth: int = 0,
                 norm: str = "batch", activation: str = "leaky_relu", noise: bool = False, output: str = "tanh",
                 pixel_noise: bool = False, psf: bool = False):
        super().__init__()
        self.config = dict(arch="fastgan", image_size=image_size, latent_dim=latent_dim, width=width,
                           depth=depth, norm=norm, activation=activation, noise=noise, output=output,
                           pixel_noise=pixel_noise, psf=psf)
        n = _check_size(image_size)
        res = [4 * 2 ** i for i in range(n + 1)]  # 4, 8, ..., S
        ch = [_channels(image_size, width, r) for r in res]
        self.latent_dim = latent_dim
        self.init = nn.Sequential(nn.ConvTranspose2d(latent_dim, 2 * ch[0], 4, 1, 0, bias=False),
                                  make_norm(norm, 2 * ch[0]), nn.GLU(dim=1))
        self.ups = nn.ModuleList()
        for i in range(n):
            layers = _up(ch[i], ch[i + 1], norm)
            for _ in range(depth):
                layers += _same(ch[i + 1], norm)
            self.ups.append(nn.Sequential(*layers))
        self.sle = nn.ModuleDict({f"{s}_{b}": SLE(ch[res.index(s)], ch[res.index(b)], activation)
                                  for s, b in sle_pairs(image_size)})
        self._sle_at = {b: (res.index(s), f"{s}_{b}") for s, b in sle_pairs(image_size)}  # big r → (small, key)
        self.res = res
        # noise after each up-block (its input to SLE included), and on the image before the output activation
        self.noise = nn.ModuleList([ZNoise(latent_dim, res[i + 1], ch[i + 1], seed=i) for i in range(n)] if noise
                                   else [])
        self.image_noise = image_noise(latent_dim, image_size, noise, pixel_noise, seed=n)
        self.out = nn.Sequential(nn.Conv2d(ch[-1], 1 + pixel_noise, 3, 1, 1), make_out(output))
        self.psf = maybe_psf(psf)  # the optics, before the camera noise

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        feats = [self.init(z[:, :, None, None])]  # (B, Z, 1, 1) → (B, C4, 4, 4)
        for i, up in enumerate(self.ups):
            h = up(feats[-1])  # (B, C, r, r) → (B, C', 2r, 2r)
            if len(self.noise):
                h = self.noise[i](h, z)
            r = self.res[i + 1]
            if r in self._sle_at:
                j, key = self._sle_at[r]
                h = self.sle[key](feats[j], h)
            feats.append(h)
        h = self.psf(self.out[0](feats[-1]))  # → (B, 1, S, S)
        if self.image_noise is not None:
            h = self.image_noise(h, z)
        return self.out[1](h)


class _Down(nn.Module):
    """(B, C_in, H, W) → (B, C_out, H/2, W/2): FastGAN's DownBlockComp (main path and pooled shortcut, averaged)."""

    def __init__(self, c_in: int, c_out: int, norm: str, activation: str):
        super().__init__()
        self.main = nn.Sequential(maybe_sn(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), norm), make_norm(norm, c_out),
                                  make_act(activation), maybe_sn(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), norm),
                                  make_norm(norm, c_out), make_act(activation))
        self.direct = nn.Sequential(nn.AvgPool2d(2, 2), maybe_sn(nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False), norm),
                                    make_norm(norm, c_out), make_act(activation))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


def _decoder(c_in: int, width: int, out_size: int, norm: str) -> nn.Sequential:
    """(B, C_in, 8, 8) → (B, 1, out_size, out_size) in [-1, 1]: up-blocks of ``width`` channels, conv3x3, tanh."""
    layers: list[nn.Module] = []
    c, r = c_in, 8
    while r < out_size:
        layers += _up(c, width, norm)
        c, r = width, r * 2
    layers += [nn.Conv2d(c, 1, 3, 1, 1), nn.Tanh()]
    return nn.Sequential(*layers)


class FastGANDiscriminator(nn.Module):
    """images (B, 1, S, S) → logits / critic values (B,); ``forward_real`` adds the reconstruction loss."""

    def __init__(self, image_size: int = 64, width: int = 32, depth: int = 0, norm: str = "spectral",
                 activation: str = "leaky_relu", recon_weight: float = 1.0, mbstd: bool = False):
        super().__init__()
        self.config = dict(arch="fastgan", image_size=image_size, width=width, depth=depth, norm=norm,
                           activation=activation, recon_weight=recon_weight, mbstd=mbstd)
        n = _check_size(image_size)
        res = [image_size // 2 ** i for i in range(n)]  # S, S/2, ..., 8
        ch = [_channels(image_size, width, r) for r in res]
        # no normalisation on the image layer (as in DCGAN): it would wash out the input intensities
        self.stem = nn.Sequential(maybe_sn(nn.Conv2d(1, ch[0], 3, 1, 1, bias=False), norm), make_act(activation))
        self.downs = nn.ModuleList()
        for i in range(n - 1):
            layers: list[nn.Module] = [_Down(ch[i], ch[i + 1], norm, activation)]
            for _ in range(depth):
                layers += [maybe_sn(nn.Conv2d(ch[i + 1], ch[i + 1], 3, 1, 1, bias=False), norm),
                           make_norm(norm, ch[i + 1]), make_act(activation)]
            self.downs.append(nn.Sequential(*layers))
        self.res = res
        c4 = _channels(image_size, width, 4)
        # the batch's spread as one more feature map at 8x8 (the decoders read the features without it)
        self.head = nn.Sequential(*([MinibatchStd()] if mbstd else []),
                                  maybe_sn(nn.Conv2d(ch[-1] + mbstd, c4, 1, 1, 0, bias=False), norm),
                                  make_norm(norm, c4), make_act(activation), maybe_sn(nn.Conv2d(c4, 1, 4, 1, 0), norm))
        self.recon_weight = recon_weight
        self.rec_size = min(image_size // 2, 64)
        if recon_weight > 0:
            self.dec_all = _decoder(ch[-1], width, self.rec_size, norm)
            self.dec_part = _decoder(ch[-2], width, self.rec_size, norm)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, S, S) → the 16x16 and 8x8 feature maps."""
        h = self.stem(x)  # (B, C_S, S, S)
        f16 = h if self.res[0] == 16 else None
        for i, down in enumerate(self.downs):
            h = down(h)  # halves the side
            if self.res[i + 1] == 16:
                f16 = h
        return f16, h  # (B, C16, 16, 16), (B, C8, 8, 8)

    def _logits(self, f8: torch.Tensor) -> torch.Tensor:
        return self.head(f8).mean(dim=(1, 2, 3))  # (B, 1, 5, 5) patch logits → (B,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._logits(self._features(x)[1])

    def forward_real(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B,) on real images and the weighted reconstruction loss (a scalar; 0 without decoders).

        The quadrant each image's part decoder sees is drawn from the global torch RNG on ``x``'s device.
        """
        f16, f8 = self._features(x)
        logits = self._logits(f8)
        if self.recon_weight <= 0:
            return logits, logits.new_zeros(())
        b, s = x.shape[0], self.rec_size
        q = torch.randint(4, (b,), device=x.device)
        rec_all = self.dec_all(f8)  # (B, 1, s, s)
        rec_part = self.dec_part(_quadrant(f16, q))  # (B, C16, 8, 8) → (B, 1, s, s)
        target_all = F.adaptive_avg_pool2d(x, s)
        target_part = F.adaptive_avg_pool2d(_quadrant(x, q), s)
        loss = F.l1_loss(rec_all.float(), target_all.float()) + F.l1_loss(rec_part.float(), target_part.float())
        return logits, self.recon_weight * loss


def _quadrant(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Quadrant q[i] ∈ {0: top-left, 1: top-right, 2: bottom-left, 3: bottom-right} of each x[i] (B, C, H, W)."""
    b, c, h, w = x.shape
    parts = x.view(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5).reshape(b, 4, c, h // 2, w // 2)
    return parts[torch.arange(b, device=x.device), q]  # (B, C, H/2, W/2)
