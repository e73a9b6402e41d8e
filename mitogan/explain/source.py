"""What ``mitogan explain`` explains: the discriminator (and generator) of a run, checkpoint, bundle or search.

``load_source(path)`` -> ``Source(d, g, image_size, info)``. A search folder is resolved through the
search layer's ``explain_source`` plugin (entry point group ``mitogan.plugins``), so the core never imports
it: the plugin returns the best trial's checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from mitogan.errors import InputError, MitoganError

__all__ = ["Source", "load_source"]


@dataclass
class Source:
    d: nn.Module
    g: nn.Module | None
    image_size: int
    info: dict = field(default_factory=dict)
    truncation: float = 1.0  # latents are drawn as truncation x z: the factor a search trial kept (synth's default)


def _from_checkpoint(ckpt_path: Path, info: dict, truncation: float = 1.0) -> Source:
    from mitogan.export import checked_checkpoint
    from mitogan.models import discriminator_from_config, generator_from_config

    ckpt = checked_checkpoint(ckpt_path)
    if "D" not in ckpt or "discriminator_config" not in ckpt:
        raise InputError(ckpt_path, "the checkpoint holds no discriminator (not a `mitogan train` checkpoint)")
    d = discriminator_from_config(ckpt["discriminator_config"])
    d.load_state_dict(ckpt["D"])
    g = generator_from_config(ckpt["generator_config"])
    g.load_state_dict(ckpt["EMA"])
    return Source(d.eval(), g.eval(), int(ckpt["discriminator_config"]["image_size"]),
                  {"kind": "checkpoint", "checkpoint": str(ckpt_path), "step": int(ckpt.get("step", 0)), **info},
                  truncation)


def _from_bundle(bundle: Path) -> Source:
    from mitogan.export import load_bundle_config, load_discriminator, load_generator

    config = load_bundle_config(bundle)
    d = load_discriminator(bundle)
    return Source(d, load_generator(bundle), int(config["image_size"]), {"kind": "bundle", "bundle": str(bundle)},
                  float(config.get("truncation", 1.0)))  # load_bundle_config checked it is a factor in (0, 1]


def _is_bundle(path: Path) -> bool:
    return (path / "checksums.sha256").is_file() and (path / "config.json").is_file()


def load_source(path) -> Source:
    """The discriminator to explain, from a run folder, a checkpoint file, a bundle or a search folder."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such run, checkpoint, bundle or search folder")
    if path.is_file():
        return _from_checkpoint(path, {})
    if _is_bundle(path):
        return _from_bundle(path)
    if (path / "checkpoint.pt").is_file() and not (path / "search.json").exists():
        return _from_checkpoint(path / "checkpoint.pt", {"run_dir": str(path)})
    from mitogan.cli import plugin

    find = plugin("explain_source")
    if find is None:
        raise MitoganError(f"{path}: not a run folder, checkpoint or bundle (explaining a search folder needs "
                           f"MitoGAN's search layer installed)")
    found = find(path)  # {"checkpoint": path, ...} of the best trial; raises MitoganError when there is none
    return _from_checkpoint(Path(found["checkpoint"]), {"search": str(path), **found}, found.get("truncation", 1.0))
