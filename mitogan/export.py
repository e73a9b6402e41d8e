"""Generator bundles: the exported product of a search, loadable in one line.

A bundle is a directory::

    generator.pt          EMA generator state_dict, tensors only (load with weights_only=True)
    config.json           format + version, the generator's constructor args, latent size, image size,
                          how to map outputs back to intensities, the trial's full flat config
    metrics.json          the trial's metrics and where it came from (search, trial id, step)
    generator.torchscript TorchScript module for consumers without MitoGAN: z (B, Z) -> (B, 1, S, S)
    samples.png           a grid from a fixed latent batch
    README.md             the model card
    checksums.sha256      sha256 of every file above

``export_bundle(checkpoint, out_dir, ...)`` writes one from a training checkpoint; ``load_generator(dir)``
verifies it (every file present, checksums, known format version) and returns the generator in eval mode.
Modules are never pickled: the bundle is config + weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from mitogan.errors import InputError

__all__ = ["export_bundle", "load_generator", "load_bundle_config", "BUNDLE_FORMAT", "BUNDLE_VERSION",
           "sample_latents"]

BUNDLE_FORMAT = "mitogan-generator-bundle"
BUNDLE_VERSION = 1
_FILES = ("generator.pt", "config.json", "metrics.json", "generator.torchscript", "samples.png", "README.md")


def sample_latents(latent_dim: int, n: int, seed: int, offset: int = 0) -> torch.Tensor:
    """Latents z_offset … z_{offset+n-1} of seed ``seed``: (n, latent_dim) float32, identical on any device.

    Each latent index has its own stream, so a subset (a resumed batch) reproduces exactly.
    """
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(offset))
    return torch.randn(n, latent_dim, generator=g)


def export_bundle(checkpoint, out_dir, *, metrics: dict | None = None, source: dict | None = None,
                  intensity: dict | None = None) -> Path:
    """Write a bundle from a ``mitogan.train`` checkpoint file (its EMA generator) to ``out_dir``.

    ``metrics``: the trial's metrics; ``source``: where it came from (search dir, trial id);
    ``intensity``: how [-1, 1] maps back to data units (from the tiles' meta), recorded in config.json.
    The bundle is built in a temporary folder and renamed into place, so a crash leaves no half bundle.
    """
    from mitogan.models import generator_from_config
    from mitogan.train import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    gen = generator_from_config(ckpt["generator_config"])
    gen.load_state_dict(ckpt["EMA"])
    gen.eval()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _write_files(tmp, gen, ckpt, metrics or {}, source or {}, intensity)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_files(d: Path, gen: nn.Module, ckpt: dict, metrics: dict, source: dict, intensity: dict | None):
    from mitogan.viz import save_image_grid

    cfg = dict(gen.config)
    torch.save({k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}, d / "generator.pt")
    config = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "generator": cfg,
              "latent_dim": cfg["latent_dim"], "image_size": cfg["image_size"],
              "output": {"range": [-1.0, 1.0], "to_unit": "u = (x + 1) / 2",
                         "to_intensity": "I = lo + u * (hi - lo) with lo/hi below (data units)",
                         "intensity": intensity},
              "trial_config": ckpt["config"], "step": int(ckpt["step"])}
    (d / "config.json").write_text(json.dumps(config, indent=2))
    (d / "metrics.json").write_text(json.dumps({"metrics": metrics, "source": source, "step": int(ckpt["step"])},
                                               indent=2, default=str))
    z = sample_latents(cfg["latent_dim"], 64, seed=0)
    with torch.inference_mode():
        save_image_grid(gen(z).numpy(), d / "samples.png", nrow=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated but still the portable format
        torch.jit.trace(gen, z[:2], check_trace=False).save(str(d / "generator.torchscript"))
    (d / "README.md").write_text(_model_card(config, metrics, source))
    lines = [f"{_sha256(d / name)}  {name}" for name in _FILES]
    (d / "checksums.sha256").write_text("\n".join(lines) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_bundle_config(bundle) -> dict:
    """Verify a bundle (files present, checksums, format version) and return its config.json."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise InputError(bundle, "not a generator bundle directory (make one with `mitogan export`)")
    sums = bundle / "checksums.sha256"
    if not sums.is_file():
        raise InputError(sums, "missing: the bundle is incomplete (re-run `mitogan export`)")
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        f = bundle / name
        if not f.is_file():
            raise InputError(f, "missing: the bundle is incomplete (re-run `mitogan export`)")
        if _sha256(f) != digest:
            raise InputError(f, "checksum mismatch: the file was changed or damaged after export")
    try:
        config = json.loads((bundle / "config.json").read_text())
    except ValueError as e:
        raise InputError(bundle / "config.json", f"not valid JSON ({e})") from None
    if config.get("format") != BUNDLE_FORMAT:
        raise InputError(bundle / "config.json", f"not a MitoGAN generator bundle (format {config.get('format')!r})")
    if config.get("format_version") != BUNDLE_VERSION:
        raise InputError(bundle / "config.json", f"unknown bundle format version {config.get('format_version')!r} "
                                                 f"(this MitoGAN reads version {BUNDLE_VERSION}); upgrade mitogan")
    return config


def load_generator(bundle, device: str | torch.device = "cpu") -> nn.Module:
    """The bundle's generator, verified, in eval mode on ``device``: ready for ``torch.inference_mode()``.

    >>> G = load_generator("runs/my-search/best")             # doctest: +SKIP
    >>> with torch.inference_mode():                            # doctest: +SKIP
    ...     images = G(torch.randn(16, G.config["latent_dim"]))  # (16, 1, S, S) in [-1, 1]
    """
    from mitogan.models import generator_from_config

    config = load_bundle_config(bundle)
    gen = generator_from_config(config["generator"])
    try:
        state = torch.load(Path(bundle) / "generator.pt", map_location="cpu", weights_only=True)
        gen.load_state_dict(state)
    except Exception as e:
        raise InputError(Path(bundle) / "generator.pt", f"cannot load the weights ({type(e).__name__}: {e})") from None
    return gen.eval().to(device)


def _model_card(config: dict, metrics: dict, source: dict) -> str:
    tc = config["trial_config"]
    pre = {k.split(".", 1)[1]: v for k, v in tc.items() if k.startswith("preprocess.")}
    enabled = [k.split(".")[0] for k, v in pre.items() if k.endswith(".enabled") and v]
    lines = [
        "# MitoGAN generator", "",
        "Synthetic fluorescence-microscopy tiles of mitochondria from a GAN found by a MitoGAN search.", "",
        "![samples](samples.png)", "",
        "## Use", "",
        "```python", "import torch, mitogan", "G = mitogan.load_generator('path/to/this/folder')",
        "with torch.inference_mode():",
        f"    x = G(torch.randn(16, {config['latent_dim']}))  # (16, 1, {config['image_size']}, "
        f"{config['image_size']}) in [-1, 1]",
        "```", "",
        "Without MitoGAN: `torch.jit.load('generator.torchscript')` takes the same latents.",
        "Or from the shell: `mitogan synth THIS_FOLDER -n 30000 --out DIR`.", "",
        "## Data and preprocessing", "",
        f"- source: {json.dumps(source, default=str)}",
        f"- preprocessing steps on: {', '.join(enabled) or 'normalisation only'}; tile size "
        f"{tc.get('preprocess.tile.size')} px at scale {tc.get('preprocess.tile.scale')}",
        f"- output mapping: {config['output']['to_unit']}; intensities: {json.dumps(config['output']['intensity'])}", "",
        "## Architecture and training", "",
        f"- generator: `{json.dumps(config['generator'])}`",
        f"- loss {tc.get('loss.kind')}, init {tc.get('init.scheme')} (gain {tc.get('init.gain')}), optimiser "
        f"{tc.get('optim.name')} (lr G {tc.get('optim.lr_g')}, D {tc.get('optim.lr_d')}), {config['step']} steps, "
        f"EMA decay {tc.get('train.ema_decay')}", "",
        "## Metrics", "",
        *[f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}" for k, v in sorted(metrics.items())
          if isinstance(v, (int, float, str))], "",
        "## Intended use and limits", "",
        "- Intended: augmenting training data for segmentation/classification models of mitochondrial",
        "  morphology, and testing analysis pipelines. Keep real held-out data for evaluation.",
        "- The generator learned from a small dataset (hundreds of frames) of one lab/microscope: it reproduces",
        "  that distribution, its artefacts and biases. It does not model time, 3D, or other organelles.",
        "- Check memorisation (nearest-training-image distances, `mitogan synth --min-novelty`) before sharing",
        "  synthetic data derived from data with restrictions.", "",
    ]
    return "\n".join(lines)
