"""Shared building blocks: normalisation and activation factories, spectral-norm wrapping."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["make_norm", "make_act", "maybe_sn", "n_stages"]


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
