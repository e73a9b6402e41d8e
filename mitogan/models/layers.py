"""Shared building blocks: normalisation and activation factories, spectral-norm wrapping, the generators' output
activations (tanh, ClipTanh) and noise (ZNoise, PixelNoise)."""

from __future__ import annotations

import copy
import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["make_norm", "make_act", "maybe_sn", "n_stages", "make_out", "ClipTanh", "ZNoiseField", "ZNoise",
           "PixelNoise", "image_noise", "MinibatchStd", "PSFBlur", "maybe_psf", "per_image"]


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer over ``channels``; ``spectral``/``none`` give Identity (SN wraps convs)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        # GroupNorm with one group = LayerNorm over (C, H, W), independent of the spatial size
        return nn.GroupNorm(1, channels)
    if kind in ("spectral", "none"):
        return nn.Identity()
    raise ValueError(f"unknown normalisation {kind!r}")


def make_act(kind: str) -> nn.Module:
    """The hidden activation by name (leaky_relu uses slope 0.2, as in DCGAN)."""
    table = {"relu": lambda: nn.ReLU(), "leaky_relu": lambda: nn.LeakyReLU(0.2),
             "elu": lambda: nn.ELU(), "silu": lambda: nn.SiLU()}
    if kind not in table:
        raise ValueError(f"unknown activation {kind!r}")
    return table[kind]()


def maybe_sn(layer: nn.Module, norm: str) -> nn.Module:
    """Wrap a conv/linear layer in spectral normalisation when ``norm == "spectral"``."""
    return spectral_norm(layer) if norm == "spectral" else layer


def n_stages(image_size: int) -> int:
    """Number of 2x resolution stages between 4x4 and ``image_size`` (a power of two >= 8)."""
    n = image_size.bit_length() - 1
    if image_size < 8 or (1 << n) != image_size:
        raise ValueError(f"image_size must be a power of two >= 8, got {image_size}")
    return n - 2


class ClipTanh(nn.Module):
    """``clamp(1.1 · tanh(x), -1, 1)``: tanh stretched by 10 % and clipped, so a generator can draw exactly -1
    (and 1). Normalised data are clipped at their percentiles: a dark background is a floor of exact -1 (on the
    shared data 28 % of the pixels of 32 px tiles), which plain tanh only approaches. (A straight-through
    version, the same images with 1.1 · tanh's gradient passing the clamp, was measured worse: README, "The
    generator's fine detail".)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(1.1 * torch.tanh(x), -1.0, 1.0)


def make_out(kind: str) -> nn.Module:
    """The generator's output activation: ``tanh`` or ``clip`` (``ClipTanh``)."""
    if kind == "tanh":
        return nn.Tanh()
    if kind == "clip":
        return ClipTanh()
    raise ValueError(f"unknown generator output {kind!r} (tanh or clip)")


class ZNoiseField(nn.Module):
    """White unit noise (B, 1, r, r) drawn as a fixed function of z, so that a generator using it stays a
    deterministic function of z (synth, export and resume rely on it).

    noise[b, y, x] = √2 · sin(997 · z_b · p_yx): p_yx are fixed Gaussian vectors of norm ~1 (seeded, not
    trained, not saved), so z_b · p_yx is N(0, |z_b|²/Z)-distributed per pixel and the large factor makes the
    sines of different pixels and of different z uncorrelated: unit-variance noise, independent across pixels and
    samples to the eye and to a small CNN. No gradient flows through it into z. Drawn in fp32 even under autocast
    (a bf16 product has 8 bits).
    """

    def __init__(self, latent_dim: int, size: int, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(int(seed))
        proj = torch.randn(latent_dim, size * size, generator=gen) / latent_dim ** 0.5
        self.register_buffer("proj", proj, persistent=False)
        self.size = size

    def draw(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=z.device.type, enabled=False):
            u = z.detach().float() @ self.proj  # (B, r·r)
            return ((2.0 ** 0.5) * torch.sin(997.0 * u)).view(-1, 1, self.size, self.size)


class ZNoise(ZNoiseField):
    """Per-pixel noise added to (B, C, r, r) features with a learned strength per channel (StyleGAN's noise
    inputs, Karras et al. 2019, strength 0 at the start), drawn by ``ZNoiseField``."""

    def __init__(self, latent_dim: int, size: int, channels: int, seed: int):
        super().__init__(latent_dim, size, seed)
        self.strength = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return h + self.strength * self.draw(z).to(h.dtype)


class PixelNoise(ZNoiseField):
    """Sensor noise whose strength the generator draws per pixel: (B, 2, S, S) → (B, 1, S, S), the image
    (channel 0) plus ``LEVEL · softplus(channel 1)`` times white noise from ``ZNoiseField``.

    Real movies differ in their noise: some videos have a clean black floor, others a noisy background, and
    shot noise grows with brightness. One learned strength per channel (``ZNoise``) draws the same noise in every
    tile and at every brightness, and it starts at a stationary point: the loss depends on the noise through its
    variance, so its gradient in a strength of 0 is 0 in expectation (measured: the image's strength of the
    story's DCGAN with noise inputs stayed at 0.0002 over 8,000 steps). Here the level starts at
    ``LEVEL · softplus(0) ≈ 0.035`` (the background noise of the noisy shared movies is ~0.02–0.03 after the
    output activation) and the generator turns it up or down where it draws. (On the shared data's 32 px story
    it measured neutral: README, "The generator's fine detail".)
    """

    LEVEL = 0.05

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        level = self.LEVEL * nn.functional.softplus(h[:, 1:2].float())
        return (h[:, :1].float() + level * self.draw(z)).to(h.dtype)


def image_noise(latent_dim: int, size: int, noise: bool, pixel_noise: bool, seed: int) -> nn.Module | None:
    """The noise on a generator's image before its output activation: drawn per pixel (``PixelNoise``, the last
    layer then has 2 output channels), one learned strength (``ZNoise``, with the noise inputs), or none."""
    if pixel_noise:
        return PixelNoise(latent_dim, size, seed)
    return ZNoise(latent_dim, size, 1, seed) if noise else None


class MinibatchStd(nn.Module):
    """(B, C, H, W) → (B, C + 1, H, W): the discriminator's minibatch standard deviation (Karras et al. 2018,
    ProGAN; kept in StyleGAN2). The batch is split into groups of up to ``group`` images (the largest size ≤
    ``group`` that divides B); each group's standard deviation across its images, averaged over channels and
    pixels, is appended to every image of the group as one constant feature map. A generator that draws the same
    image again and again gives groups of near-zero spread, which no single image shows: the discriminator can
    see a collapse to a few templates. A discriminator's outputs then depend on the other images of its batch
    (as in StyleGAN2); a batch of one reads a spread of 0. ``per_image`` makes a copy that appends a fixed spread
    instead (explain: each tile on its own).
    """

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group
        self.fixed: float | None = None  # a spread to append in place of the batch's (``per_image``)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if self.fixed is not None:
            return torch.cat([x, x.new_full((b, 1, h, w), self.fixed)], dim=1)
        g = next(k for k in range(min(self.group, b), 0, -1) if b % k == 0)
        y = x.float().view(g, b // g, c, h, w)  # image i is in group i mod (B/g)
        spread = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
        y = spread.view(1, b // g, 1, 1, 1).expand(g, b // g, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class PSFBlur(nn.Module):
    """(B, C, S, S) → the same, blurred by a Gaussian of learned width σ (px): the microscope's point-spread
    function, applied to the generator's image before the camera noise is added.

    A fluorescence image is band-limited by its optics (the structure convolved with the PSF, then the camera's
    noise, which is white). A generator's last convolution can draw any detail at the pixel scale, and on the
    shared data the classifier tells its tiles from real ones by their fine detail far more than by their coarse
    structure (README, "The generator's fine detail"). σ starts at ``sigma`` and is learned (softplus, kept
    between 0.05 px and radius / 3, so the kernel holds ±3σ: its variance is within 3 % of σ²); a separable
    kernel of radius ``radius`` with reflected borders. The same for every image.
    """

    def __init__(self, sigma: float = 0.5, radius: int = 6):
        super().__init__()
        self.raw = nn.Parameter(torch.tensor(math.log(math.expm1(sigma))))  # softplus⁻¹(σ)
        self.radius = radius

    def sigma(self) -> torch.Tensor:
        return F.softplus(self.raw).clamp(0.05, self.radius / 3)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r, c = self.radius, h.shape[1]
        x = torch.arange(-r, r + 1, dtype=torch.float32, device=h.device)
        k = torch.exp(-x ** 2 / (2 * self.sigma().float() ** 2))
        k = (k / k.sum()).to(h.dtype)
        h = F.pad(h, (r, r, r, r), mode="reflect")
        h = F.conv2d(h, k.view(1, 1, 1, -1).expand(c, 1, 1, 2 * r + 1), groups=c)  # along x
        return F.conv2d(h, k.view(1, 1, -1, 1).expand(c, 1, 2 * r + 1, 1), groups=c)  # along y


@torch.no_grad()
def per_image(model: nn.Module, tiles, batch: int = 64) -> nn.Module:
    """A copy of ``model`` whose output for an image does not depend on the other images of its batch: each
    ``MinibatchStd`` in it appends a fixed spread, the mean it reads over groups of ``tiles`` (real images, in
    batches of ``batch``), in place of the batch's own. The tiles are grouped in an order of their own (by a
    checksum of each tile's pixels), so the spread is the same whatever order they come in. For what looks at one
    image at a time (explain's maps and edits); the model itself is left as it is. A model without
    ``MinibatchStd`` comes back as it is (and ``tiles``, an array or a tensor, is not touched)."""
    layers = [m for m in model.modules() if isinstance(m, MinibatchStd)]
    if not layers:
        return model
    x = np.ascontiguousarray(tiles.cpu().numpy() if torch.is_tensor(tiles) else tiles, np.float32)
    order = np.argsort([zlib.crc32(t.tobytes()) for t in x], kind="stable")
    tiles = torch.from_numpy(x[order]).to(next(model.parameters()).device)
    seen: dict[int, list[torch.Tensor]] = {id(m): [] for m in layers}
    hooks = [m.register_forward_hook(lambda m, _, out: seen[id(m)].append(out[:, -1, 0, 0].float()))
             for m in layers]
    try:
        for i in range(0, len(tiles), batch):
            model(tiles[i:i + batch])
    finally:
        for h in hooks:
            h.remove()
    fixed = copy.deepcopy(model)
    for m, mine in zip(layers, [m for m in fixed.modules() if isinstance(m, MinibatchStd)]):
        mine.fixed = float(torch.cat(seen[id(m)]).mean())
    return fixed


def maybe_psf(psf: bool) -> nn.Module:
    """``PSFBlur`` when ``psf``, else Identity."""
    return PSFBlur() if psf else nn.Identity()
