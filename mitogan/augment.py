"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for real and fake images alike.

Every transform is differentiable with respect to the image, so the generator is trained through it,
and the discriminator only ever sees augmented images: it cannot learn the augmentations as "real".
Each enabled transform is applied to each image independently with probability ``p``:

- flips: horizontal and vertical, each with probability p
  (label-preserving for microscopy: mitochondria have no preferred orientation);
- rot90: a random multiple of 90° (k ∈ {1, 2, 3}) with probability p;
- translation: integer shift by up to 1/8 of the side, revealed border filled with -1 (background);
- cutout: a square of half the side set to -1 (background);
- color: brightness shift U(-0.25, 0.25) and contrast scale U(0.5, 1.5) about the image mean;
- gain: intensity scale g = 2^U(-0.5, 0.5) about the black level, x → (x + 1)·g - 1: a brighter or dimmer
  sample (laser power, labelling) on the same dark background, which ``color``'s shift would lift.

All of them suit single-channel fluorescence: there is no colour or saturation to jitter.

Randomness comes from the global torch RNG on the images' device (seeded and checkpointed by the
trainer), so a run is reproducible. ``AdaptiveP`` implements ADA's controller (Karras et al. 2020):
p moves up when E[sign(D(real))] is above the target (D overfits) and down when below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["diff_augment", "AdaptiveP"]


def _pick(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """Per-image choice: y with probability p, else x. Both (B, C, H, W)."""
    mask = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
    return torch.where(mask, y, x)


def _rot90(x: torch.Tensor, p: float) -> torch.Tensor:
    k = torch.randint(1, 4, (x.shape[0],), device=x.device)
    k = torch.where(torch.rand(x.shape[0], device=x.device) < p, k, torch.zeros_like(k))
    out = x
    for r in (1, 2, 3):  # (B, C, S, S); only square images rotate in place
        out = torch.where((k == r)[:, None, None, None], torch.rot90(x, r, dims=(2, 3)), out)
    return out


def _translate(x: torch.Tensor, p: float, ratio: float = 0.125) -> torch.Tensor:
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    on = (torch.rand(b, 1, 1, device=x.device) < p).long()
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device) * on
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device) * on
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # index into a copy padded by 1 with background; out-of-range positions land on the padding
    iy = torch.clamp(gy[None] + ty + 1, 0, h + 1)  # (B, H, W)
    ix = torch.clamp(gx[None] + tx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=-1.0)  # (B, C, H+2, W+2)
    flat = padded.flatten(2)  # (B, C, (H+2)(W+2))
    idx = (iy * (w + 2) + ix).flatten(1)[:, None].expand(-1, x.shape[1], -1)
    return flat.gather(2, idx).view_as(x)


def _cutout(x: torch.Tensor, p: float, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + 1 - cw % 2, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    inside = ((gy[None] - cy).abs() < ch // 2) & ((gx[None] - cx).abs() < cw // 2)  # (B, H, W)
    inside = inside & (torch.rand(b, 1, 1, device=x.device) < p)
    return torch.where(inside[:, None], torch.full_like(x, -1.0), x)


def _color(x: torch.Tensor, p: float) -> torch.Tensor:
    b = x.shape[0]
    bright = (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5) * 0.5
    contrast = 1.0 + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _pick(x, (x - mean) * contrast + mean + bright, p)


def _gain(x: torch.Tensor, p: float) -> torch.Tensor:
    g = torch.exp2(torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # in [0.71, 1.41]
    return _pick(x, (x + 1.0) * g - 1.0, p)


def diff_augment(x: torch.Tensor, cfg, p: float | None = None) -> torch.Tensor:
    """Augment a batch (B, 1, S, S) per ``cfg`` (an ``AugmentConfig``) with probability ``p`` (default cfg.p).

    Returns a tensor of the same shape; differentiable with respect to ``x``. p == 0 returns ``x``.
    """
    p = cfg.p if p is None else float(p)
    if p <= 0.0:
        return x
    if cfg.flips:
        x = _pick(x, x.flip(3), p)
        x = _pick(x, x.flip(2), p)
    if cfg.rot90 and x.shape[2] == x.shape[3]:
        x = _rot90(x, p)
    if cfg.color:
        x = _color(x, p)
    if cfg.gain:
        x = _gain(x, p)
    if cfg.translation:
        x = _translate(x, p)
    if cfg.cutout:
        x = _cutout(x, p)
    return x


class AdaptiveP:
    """ADA controller: every ``interval`` D steps, p += sign(E[sign(D(real))] - target) · (B·interval)/(kimg·1000).

    As in StyleGAN2-ADA, the sign statistic accumulates on the discriminator's device and is read back
    once per update (every ``interval`` D steps), never per step. ``state_dict()``/``load_state_dict()``
    make it resumable. p stays in [0, 1].
    """

    def __init__(self, p: float, target: float, kimg: float, interval: int):
        self.p, self.target, self.kimg, self.interval = float(p), target, kimg, interval
        self._sum: torch.Tensor | float = 0.0  # sum of sign(D(real)) since the last update (a device tensor)
        self._count, self._steps = 0, 0
        self.last_rt = float("nan")

    def observe(self, real_out: torch.Tensor) -> None:
        """Feed discriminator outputs on (augmented) real images, (B,); updates p every ``interval`` calls."""
        self._sum = self._sum + torch.sign(real_out.detach().float()).sum()  # stays on the device
        self._count += int(real_out.shape[0])
        self._steps += 1
        if self._steps % self.interval == 0 and self._count:
            self.last_rt = float(self._sum) / self._count  # the one read-back per update
            adjust = (1.0 if self.last_rt > self.target else -1.0) * self._count / (self.kimg * 1000.0)
            self.p = min(1.0, max(0.0, self.p + adjust))
            self._sum, self._count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "sum": float(self._sum), "count": self._count, "steps": self._steps, "rt": self.last_rt}

    def load_state_dict(self, state: dict) -> None:
        self.p, self._sum, self._count = float(state["p"]), float(state["sum"]), int(state["count"])
        self._steps, self.last_rt = int(state["steps"]), float(state["rt"])
