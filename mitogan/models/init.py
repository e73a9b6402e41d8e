"""Weight initialisation schemes, applied per layer type.

Conv / transposed conv / linear weights get the scheme; their biases are zeroed. Affine normalisation
layers get weight 1 (``dcgan_normal``: N(1, 0.02·gain)) and bias 0. ``default`` keeps PyTorch's own
initialisation and only scales conv/linear weights by ``gain``. Spectrally normalised layers are
initialised through their underlying (original) weight.

| scheme          | conv/linear weight                                                        |
|-----------------|---------------------------------------------------------------------------|
| dcgan_normal    | N(0, (0.02·gain)²)                                                         |
| xavier_uniform  | U(-a, a), a = gain·sqrt(6 / (fan_in + fan_out))                            |
| xavier_normal   | N(0, gain²·2 / (fan_in + fan_out))                                         |
| kaiming_fan_in  | N(0, gain²·2 / fan_in)   (He, for ReLU)                                    |
| kaiming_fan_out | N(0, gain²·2 / fan_out)                                                    |
| orthogonal      | (out, in·k·k) matrix with orthonormal rows/columns, times gain             |
| default         | PyTorch's reset_parameters(), times gain                                   |
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["init_weights", "INIT_SCHEMES"]

INIT_SCHEMES = ("dcgan_normal", "xavier_uniform", "xavier_normal", "kaiming_fan_in", "kaiming_fan_out",
                "orthogonal", "default")
_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_NORMS = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm)


def _weight(m: nn.Module) -> torch.Tensor:
    """The trainable weight tensor (the original one under spectral normalisation)."""
    if parametrize.is_parametrized(m, "weight"):
        return m.parametrizations.weight.original
    return m.weight


@torch.no_grad()
def _init_conv(w: torch.Tensor, scheme: str, gain: float) -> None:
    if scheme == "dcgan_normal":
        nn.init.normal_(w, 0.0, 0.02 * gain)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w, gain=gain)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w, gain=gain)
    elif scheme in ("kaiming_fan_in", "kaiming_fan_out"):
        nn.init.kaiming_normal_(w, mode=scheme.split("_", 1)[1], nonlinearity="relu")
        w.mul_(gain)
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w, gain=gain)
    elif scheme == "default":
        w.mul_(gain)  # reset_parameters() already ran in the caller
    else:
        raise ValueError(f"unknown init scheme {scheme!r} (one of {INIT_SCHEMES})")


@torch.no_grad()
def init_weights(module: nn.Module, scheme: str = "dcgan_normal", gain: float = 1.0) -> nn.Module:
    """Initialise every conv/linear/norm layer of ``module`` in place; returns ``module``."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r} (one of {INIT_SCHEMES})")
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            if scheme == "default":
                m.reset_parameters() if not parametrize.is_parametrized(m, "weight") else None
            _init_conv(_weight(m), scheme, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            if scheme == "dcgan_normal":
                nn.init.normal_(m.weight, 1.0, 0.02 * gain)
            else:
                nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return module
