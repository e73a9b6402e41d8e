"""Generators, discriminators and weight initialisation.

``build_generator(model_cfg, image_size)`` maps z (B, Z) → images (B, 1, S, S) in [-1, 1] (tanh, or tanh
stretched and clipped: ``model.g_output``), with noise that is a fixed function of z (``model.g_noise``,
``model.g_pixel_noise``);
``build_discriminator(model_cfg, image_size)`` maps (B, 1, S, S) → logits / critic values (B,).
Every network stores its constructor arguments in ``.config`` so it can be rebuilt from a plain dict:
``generator_from_config(g.config)`` + ``load_state_dict`` (export never pickles modules).

A family is one entry of ``FAMILIES``: its generator and discriminator classes and the ``model.*`` keys
its discriminator takes beyond the common ones. A discriminator that learns more from real images than
real/fake (FastGAN's reconstruction decoders) defines ``forward_real(x) -> (logits, aux_loss)``; the
trainer calls it through ``discriminate_real`` and needs no case per family.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

from mitogan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from mitogan.models.fastgan import FastGANDiscriminator, FastGANGenerator
from mitogan.models.init import INIT_SCHEMES, init_weights
from mitogan.models.resnet import ResNetDiscriminator, ResNetGenerator

__all__ = ["build_generator", "build_discriminator", "generator_from_config", "discriminator_from_config",
           "discriminate_real", "init_weights", "INIT_SCHEMES", "FAMILIES", "Family", "DCGANGenerator",
           "DCGANDiscriminator", "ResNetGenerator", "ResNetDiscriminator", "FastGANGenerator",
           "FastGANDiscriminator", "count_params", "config_problem", "generator_settings"]


@dataclass(frozen=True)
class Family:
    """A model family: its networks and the extra ``model.*`` keys its discriminator is built with."""

    generator: type
    discriminator: type
    d_keys: tuple[str, ...] = ()
    g_keys: tuple[tuple[str, str], ...] = ()  # (model.* key, the generator's argument) beyond the common ones


FAMILIES = {
    "dcgan": Family(DCGANGenerator, DCGANDiscriminator, g_keys=(("g_upsample", "upsample"),)),
    "resnet": Family(ResNetGenerator, ResNetDiscriminator),
    "fastgan": Family(FastGANGenerator, FastGANDiscriminator, d_keys=("recon_weight",)),
}


# every family's generator arguments and the ``model.*`` key each comes from (a family's own: its ``g_keys``)
G_ARGS = (("latent_dim", "latent_dim"), ("width", "g_width"), ("depth", "depth"), ("norm", "g_norm"),
          ("activation", "activation"), ("noise", "g_noise"), ("output", "g_output"),
          ("pixel_noise", "g_pixel_noise"), ("psf", "g_psf"))


def build_generator(model_cfg, image_size: int) -> nn.Module:
    """The generator described by a ``ModelConfig`` for ``image_size`` px tiles (not yet initialised)."""
    family = FAMILIES[model_cfg.arch]
    args = {arg: getattr(model_cfg, key) for arg, key in G_ARGS}
    args.update({arg: getattr(model_cfg, key) for key, arg in family.g_keys})
    return family.generator(image_size=image_size, **{**args, "activation": _g_act(model_cfg)})


def generator_settings() -> dict[str, str]:
    """Each setting a generator's ``.config`` may hold (any family) → the config key it is built from."""
    keys = {"arch": "model.arch", "image_size": "preprocess.tile.size"}
    keys.update({arg: f"model.{key}" for arg, key in G_ARGS})
    for family in FAMILIES.values():
        keys.update({arg: f"model.{key}" for key, arg in family.g_keys})
    return keys


def build_discriminator(model_cfg, image_size: int) -> nn.Module:
    """The discriminator/critic described by a ``ModelConfig`` (not yet initialised)."""
    family = FAMILIES[model_cfg.arch]
    extra = {k: getattr(model_cfg, k) for k in family.d_keys}
    return family.discriminator(image_size=image_size, width=model_cfg.d_width, depth=model_cfg.depth,
                                norm=model_cfg.d_norm, activation=model_cfg.activation, mbstd=model_cfg.d_mbstd,
                                **extra)


def _g_act(model_cfg) -> str:
    # DCGAN's generator uses ReLU where its discriminator uses LeakyReLU; the knob sets both otherwise
    return "relu" if model_cfg.activation == "leaky_relu" and model_cfg.arch == "dcgan" else model_cfg.activation


def discriminate_real(disc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D's outputs (B,) on real images (B, 1, S, S) and its auxiliary loss on them (a scalar, 0 for most)."""
    forward_real = getattr(disc, "forward_real", None)
    if forward_real is None:
        out = disc(x)
        return out, out.new_zeros(())
    return forward_real(x)


def generator_from_config(config: dict) -> nn.Module:
    """Rebuild a generator from its ``.config`` dict (then ``load_state_dict`` the weights)."""
    return _from_config("generator", config)


def discriminator_from_config(config: dict) -> nn.Module:
    """Rebuild a discriminator from its ``.config`` dict."""
    return _from_config("discriminator", config)


def config_problem(kind: str, config) -> str | None:
    """Why a stored ``generator``/``discriminator`` config (a checkpoint's or a bundle's) cannot be rebuilt by this
    MitoGAN, in words, or None: not a mapping, an unknown family, or settings its networks do not take (a file
    written by another version)."""
    if not isinstance(config, dict):
        return f"its {kind} config is not a mapping"
    arch = config.get("arch")
    if arch not in FAMILIES:
        return f"its {kind} is of an unknown family {arch!r} (this MitoGAN builds {', '.join(sorted(FAMILIES))})"
    takes = inspect.signature(getattr(FAMILIES[arch], kind)).parameters
    unknown = sorted(k for k in config if k != "arch" and k not in takes)
    if unknown:
        return (f"its {kind} has settings this MitoGAN does not know ({', '.join(map(str, unknown))}): it was written "
                "by another version of MitoGAN; use that version, or train or export again with this one")
    return None


def _from_config(kind: str, config: dict) -> nn.Module:
    problem = config_problem(kind, config)
    if problem:
        raise ValueError(problem)
    config = dict(config)
    arch = config.pop("arch")
    return getattr(FAMILIES[arch], kind)(**config)


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
