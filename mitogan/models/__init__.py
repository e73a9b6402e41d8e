"""Generators, discriminators and weight initialisation.

``build_generator(model_cfg, image_size)`` maps z (B, Z) → images (B, 1, S, S) in [-1, 1] (tanh);
``build_discriminator(model_cfg, image_size)`` maps (B, 1, S, S) → logits / critic values (B,).
Every network stores its constructor arguments in ``.config`` so it can be rebuilt from a plain dict:
``generator_from_config(g.config)`` + ``load_state_dict`` (export never pickles modules).
"""

from __future__ import annotations

from torch import nn

from mitogan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from mitogan.models.init import INIT_SCHEMES, init_weights
from mitogan.models.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = ["build_generator", "build_discriminator", "generator_from_config", "discriminator_from_config",
           "init_weights", "INIT_SCHEMES", "DCGANGenerator", "DCGANDiscriminator", "ResNetGenerator",
           "ResNetDiscriminator", "count_params"]

_G = {"dcgan": DCGANGenerator, "resnet": ResNetGenerator}
_D = {"dcgan": DCGANDiscriminator, "resnet": ResNetDiscriminator}


def build_generator(model_cfg, image_size: int) -> nn.Module:
    """The generator described by a ``ModelConfig`` for ``image_size`` px tiles (not yet initialised)."""
    return _G[model_cfg.arch](image_size=image_size, latent_dim=model_cfg.latent_dim, width=model_cfg.g_width,
                              depth=model_cfg.depth, norm=model_cfg.g_norm, activation=_g_act(model_cfg))


def build_discriminator(model_cfg, image_size: int) -> nn.Module:
    """The discriminator/critic described by a ``ModelConfig`` (not yet initialised)."""
    return _D[model_cfg.arch](image_size=image_size, width=model_cfg.d_width, depth=model_cfg.depth,
                              norm=model_cfg.d_norm, activation=model_cfg.activation)


def _g_act(model_cfg) -> str:
    # DCGAN's generator uses ReLU where its discriminator uses LeakyReLU; the knob sets both otherwise
    return "relu" if model_cfg.activation == "leaky_relu" and model_cfg.arch == "dcgan" else model_cfg.activation


def generator_from_config(config: dict) -> nn.Module:
    """Rebuild a generator from its ``.config`` dict (then ``load_state_dict`` the weights)."""
    return _from_config(_G, config, "generator")


def discriminator_from_config(config: dict) -> nn.Module:
    """Rebuild a discriminator from its ``.config`` dict."""
    return _from_config(_D, config, "discriminator")


def _from_config(table: dict, config: dict, kind: str) -> nn.Module:
    config = dict(config)
    arch = config.pop("arch")
    if arch not in table:
        raise ValueError(f"unknown {kind} arch {arch!r} (one of {sorted(table)})")
    return table[arch](**config)


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
