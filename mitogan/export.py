"""Generator bundles: the exported product of a search, loadable in one line.

A bundle is a directory::

    generator.safetensors EMA generator state_dict (safetensors; the generator config in its metadata)
    generator.pt          the same tensors for ``torch.load(..., weights_only=True)``
    discriminator.safetensors  the trained discriminator/critic's state_dict (weights only, its config in the
                          metadata and in config.json), so that ``mitogan explain`` can interpret a bundle later
    config.json           format + version, the generator's constructor args, latent size, image size,
                          how to map outputs back to intensities, pixel size, the trial's full flat config
    metrics.json          the trial's metrics (no Ray bookkeeping) and where it came from (relative paths)
    generator.pt2         ``torch.export`` program for consumers without MitoGAN: z (B, Z) -> (B, 1, S, S)
    generator.torchscript the same as TorchScript (deprecated by PyTorch; kept for older consumers)
    samples.png           a grid from a fixed latent batch
    README.md             the model card (Hugging Face layout: YAML front matter, then the card)
    checksums.sha256      sha256 of every file above

``export_bundle(checkpoint, out_dir, ...)`` writes one from a training checkpoint; ``load_generator(dir)``
verifies it (every file present, checksums, known format version) and returns the generator in eval mode;
``load_discriminator(dir)`` the discriminator (bundles written before it was kept have none: one-line error).
The bundle folder is MitoGAN's own output (marker ``.mitogan.json``, kind ``"bundle"``): an existing folder
is replaced only with ``overwrite`` and only when it is a bundle, and only once the new bundle is complete.
Modules are never pickled: the bundle is config + weights. Files and the folder get the modes the umask
gives (not tempfile's 0600/0700), so others on shared storage can read a bundle.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import warnings
from pathlib import Path

import torch
from torch import nn

from mitogan.errors import InputError, MitoganError, one_line, torch_load_problem
from mitogan.fsutil import cache_root, sha256_file

__all__ = ["export_bundle", "load_generator", "load_discriminator", "load_bundle_config", "BUNDLE_FORMAT",
           "BUNDLE_VERSION", "sample_latents", "intensity_mapping", "checked_checkpoint", "flagged_copying"]

BUNDLE_FORMAT = "mitogan-generator-bundle"
BUNDLE_VERSION = 1
_FILES = ("generator.safetensors", "generator.pt", "discriminator.safetensors", "config.json", "metrics.json", "generator.pt2",
          "generator.torchscript", "samples.png", "README.md")
_READ = ("config.json", "generator.pt", "generator.safetensors")  # what load_generator reads: always listed
# Ray Tune's per-result bookkeeping: not properties of the generator, left out of metrics.json and the card
_BOOKKEEPING = {"pid", "hostname", "node_ip", "done", "iterations_since_restore", "training_iteration",
                "timestamp", "date", "trial_id", "experiment_id", "experiment_tag", "checkpoint_dir_name",
                "should_checkpoint", "checkpoint", "timesteps_total", "timesteps_since_restore", "episodes_total",
                "time_this_iter_s", "time_total_s", "time_since_restore", "warmup_time", "config"}
def sample_latents(latent_dim: int, n: int, seed: int, offset: int = 0) -> torch.Tensor:
    """Latents z_offset … z_{offset+n-1} of seed ``seed``: (n, latent_dim) float32, identical on any device.

    One stream per (seed, offset): the same call gives the same latents on any machine. Latent *i* of a
    synthetic dataset comes from :func:`mitogan.synth.latents`, which always draws fixed chunks of 64
    through this function, so it does not depend on the batch size.
    """
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(offset))
    return torch.randn(n, latent_dim, generator=g)


def export_bundle(checkpoint, out_dir, *, metrics: dict | None = None, source: dict | None = None,
                  intensity=None, data: dict | None = None, overwrite: bool = False,
                  allow_copying: bool = False) -> Path:
    """Write a bundle from a ``mitogan.train`` checkpoint file (its EMA generator and its discriminator) to
    ``out_dir``.

    ``metrics``: the trial's metrics (Ray bookkeeping keys are dropped); ``source``: where it came from
    (search, trial id; absolute paths are written relative to the bundle); ``data``: what it trained on
    (a search trial's ``data.json`` or a train run's: ``sources``, ``intensity``, ``n_tiles``, ``evaluation``,
    ``tile_pixel_size_um`` or the frames' ``pixel_size_um``); ``intensity``: how [-1, 1] maps back to data
    units, either ``{"lo", "hi"}`` or the tiles' per-video mappings (default: ``data["intensity"]``),
    summarised by ``intensity_mapping``.
    ``out_dir`` must be new, empty, or a bundle MitoGAN wrote; the latter is replaced only with ``overwrite``.
    A generator whose metrics flag it as copying its training data (:func:`flagged_copying`) is refused in one
    line unless ``allow_copying``; then the bundle records ``"allow_copying": true`` (config.json, card) and a
    warning is issued. Anything else is refused with one line and left
    as it was. The bundle is built in a temporary folder and renamed into place, so a crash leaves no half
    bundle and the old one stays until the new one is complete.
    """
    from mitogan.claim import claimed_while

    with claimed_while(out_dir):
        return _export(checkpoint, Path(out_dir), overwrite, metrics, source, data, intensity, allow_copying)


def _export(checkpoint, out_dir: Path, overwrite, metrics, source, data, intensity, allow_copying) -> Path:
    from mitogan.fsutil import atomic_dir, claim_output_dir
    from mitogan.models import generator_from_config

    copying = flagged_copying(metrics or {})
    if copying and not allow_copying:
        raise MitoganError(f"{checkpoint}: its metrics flag the generator as copying its training data (copying = "
                           f"{(metrics or {}).get('copying')!r}): a bundle would share near-copies of training tiles; "
                           "nothing was exported (pass --allow-copying to export it anyway)")
    if copying:
        warnings.warn(f"{checkpoint}: exporting a generator flagged as copying its training data (--allow-copying); "
                      "the bundle records allow_copying: true", UserWarning, stacklevel=2)
    # bundles written before they carried the marker are recognised by their config + checksums
    claim_output_dir(out_dir, "bundle", overwrite=overwrite,
                     create=False, legacy=("config.json", "checksums.sha256"))
    ckpt = checked_checkpoint(checkpoint)
    gen = generator_from_config(ckpt["generator_config"])
    gen.load_state_dict(ckpt["EMA"])
    gen.eval()
    base = out_dir.resolve()
    data = _portable(_with_scale(dict(data or {}), source or {}), base)
    data.setdefault("intensity", None)
    info = {"metrics": {k: v for k, v in (metrics or {}).items() if not _is_bookkeeping(k)},
            "source": _portable(dict(source or {}), base), "data": data,
            "intensity": intensity_mapping(intensity if intensity is not None else data.get("intensity")),
            "allow_copying": copying}
    try:
        with atomic_dir(out_dir, "bundle", {"format": BUNDLE_FORMAT}) as tmp:
            _write_files(tmp, gen, ckpt, info)
    except OSError as e:  # a full disk or quota (ENOSPC, EDQUOT, EFBIG): the temporary folder is gone
        raise MitoganError(f"{out_dir}: the bundle could not be written ({e.strerror or type(e).__name__}); "
                           f"{'the earlier bundle there is unchanged' if out_dir.exists() else 'nothing was left'}"
                           f" (free some space, or choose another --out, and export again)") from None
    return out_dir


def _with_scale(data: dict, source: dict) -> dict:
    """``data`` with the frames' pixel size and frame interval, from the training data's own files when the
    record lacks them (a search trial records only its sources: TIFF/OME metadata or the simulator's scale)."""
    if (data.get("pixel_size_um") or data.get("tile_pixel_size_um")) and data.get("frame_interval_s"):
        return data
    sources = [s for s in (data.get("sources") or source.get("data") or []) if isinstance(s, str)]
    if sources:
        from mitogan.io import common_scale

        found = common_scale(sources)
        if not (data.get("pixel_size_um") or data.get("tile_pixel_size_um")):
            data["pixel_size_um"] = found["pixel_size_um"]
        data["frame_interval_s"] = data.get("frame_interval_s") or found["frame_interval_s"]
    return data


def checked_checkpoint(path) -> dict:
    """``mitogan.train.load_checkpoint``, with torch's advice to retry with unsafe loading left out of the
    one-line error (a checkpoint that is not tensors only is refused, never unpickled)."""
    from mitogan.train import load_checkpoint

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol chatter: the error says what matters
            return load_checkpoint(path)
    except InputError as e:
        if "weights_only" in e.problem or "Weights only" in e.problem:
            problem = torch_load_problem(Exception(e.problem))
            raise InputError(e.path, f"not a MitoGAN checkpoint: it {problem}") from None
        raise


def chosen_truncation(metrics: dict) -> float | None:
    """The truncation factor a search trial chose for its generator (``mitogan.truncation``), when it is one below 1;
    else None (none chosen, or none helped)."""
    from mitogan.truncation import is_factor

    psi = metrics.get("truncation")
    return float(psi) if is_factor(psi) and psi < 1 else None


def flagged_copying(metrics: dict) -> bool:
    """Whether a run's or trial's metrics flag its generator as copying its training data: ``copying`` is
    True (the metrics layer's flag) or 1 (the same flag as a number, as search trial results carry it)."""
    value = metrics.get("copying")
    return value is True or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1)


def intensity_mapping(intensity) -> dict | None:
    """One ``{"lo", "hi", ...}`` mapping of u in [0, 1] to data units, I = lo + u * (hi - lo), or None.

    ``intensity`` is ``{"lo", "hi"}`` already, or the tiles' per-video list (``meta["intensity"]``) of
    ``{"source", "mapping", "range": [lo, hi], "dtype", ...}``: the generator learned all videos on one
    unit scale, so lo and hi are the medians over the videos (their spread is recorded). None when no
    mapping is known (e.g. normalised per frame).
    """
    if not intensity:
        return None
    if isinstance(intensity, dict):
        return dict(intensity) if "lo" in intensity and "hi" in intensity else None
    ranges = [m["range"] for m in intensity if isinstance(m, dict) and m.get("range")]
    if not ranges:
        return None
    los, his = [float(r[0]) for r in ranges], [float(r[1]) for r in ranges]
    dtypes = [m.get("dtype") for m in intensity if isinstance(m, dict) and m.get("range")]
    first = next(m for m in intensity if isinstance(m, dict) and m.get("range"))
    return {"lo": statistics.median(los), "hi": statistics.median(his),
            "dtype": max(set(dtypes), key=dtypes.count), "mapping": first.get("mapping"),
            "percentiles": first.get("percentiles"), "summary": f"median over {len(ranges)} videos",
            "lo_spread": [min(los), max(los)], "hi_spread": [min(his), max(his)]}


def _is_bookkeeping(key: str) -> bool:
    return key in _BOOKKEEPING or key.startswith(("config/", "time_"))


def _portable(value, base: Path):
    """``value`` with absolute paths made relative: to the cache root as ``$MITOGAN_CACHE_DIR/...``,
    otherwise to ``base`` (the bundle folder). Recurses through dicts and lists."""
    if isinstance(value, dict):
        return {k: _portable(v, base) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_portable(v, base) for v in value]
    if not isinstance(value, str) or not os.path.isabs(value) or "\n" in value:
        return value
    path = Path(value).resolve()
    cache = cache_root().resolve()
    if path.is_relative_to(cache):
        return "$MITOGAN_CACHE_DIR/" + path.relative_to(cache).as_posix()
    return Path(os.path.relpath(path, base)).as_posix()


def _write_files(d: Path, gen: nn.Module, ckpt: dict, info: dict) -> None:
    from mitogan.viz import save_image_grid

    cfg = dict(gen.config)
    state = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    _write_bytes(d / "generator.pt", lambda f: torch.save(state, f))
    _save_safetensors(state, cfg, d / "generator.safetensors")
    d_cfg = _save_discriminator(ckpt, d / "discriminator.safetensors")
    intensity = info["intensity"]
    config = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "generator": cfg,
              "discriminator": d_cfg, "discriminator_weights": "discriminator.safetensors",
              "latent_dim": cfg["latent_dim"], "image_size": cfg["image_size"],
              "output": {"range": [-1.0, 1.0], "to_unit": "u = (x + 1) / 2",
                         "to_intensity": "I = lo + u * (hi - lo), lo/hi in output.intensity (data units)"
                         if intensity else None, "intensity": intensity},
              "pixel_size_um": _pixel_size(info["data"], ckpt["config"]),
              "frame_interval_s": info["data"].get("frame_interval_s"),
              "trial_config": ckpt["config"], "step": int(ckpt["step"])}
    psi = chosen_truncation(info["metrics"])
    if psi is not None:  # the factor the search trial chose for this generator: synth draws at it by default
        config["truncation"] = psi
    if info["allow_copying"]:  # exported although its metrics flag it as copying its training data
        config["allow_copying"] = True
    if ckpt.get("sim"):  # simulator tiles were mixed into its real batches (train.sim_share; mitogan.simmix)
        config["simulator"] = ckpt["sim"]
    (d / "config.json").write_text(json.dumps(config, indent=2))
    (d / "metrics.json").write_text(json.dumps({"metrics": info["metrics"], "source": info["source"],
                                                "data": info["data"], "step": int(ckpt["step"])},
                                               indent=2, default=str))
    z = sample_latents(cfg["latent_dim"], 64, seed=0)
    with torch.inference_mode():  # drawn as synth draws them by default
        save_image_grid(gen(z * (psi or 1.0)).numpy(), d / "samples.png", nrow=8)
    _save_programs(gen, z[:2], d)
    (d / "README.md").write_text(_model_card(config, info))
    lines = [f"{sha256_file(d / name)}  {name}" for name in _FILES]
    (d / "checksums.sha256").write_text("\n".join(lines) + "\n")


def _pixel_size(data: dict, trial_config: dict) -> float | None:
    """µm per generated pixel: the tiles' own (data provenance), else the input frames' / the tile scale."""
    from mitogan.tiles import tile_pixel_size

    if data.get("tile_pixel_size_um"):
        return float(data["tile_pixel_size_um"])
    return tile_pixel_size({"pixel_size_um": data.get("pixel_size_um"), "config": trial_config})


def _write_bytes(path: Path, write) -> None:
    """``write(buffer)`` into memory, then the bytes to ``path`` with Python's own file I/O. Torch's and
    safetensors' writers meet a full disk with a C++ abort or their own error types; here it is an OSError."""
    import io

    buffer = io.BytesIO()
    write(buffer)
    path.write_bytes(buffer.getbuffer())


def _save_safetensors(state: dict, cfg: dict, path: Path, key: str = "mitogan_generator") -> None:
    from safetensors.torch import save

    path.write_bytes(save(state, metadata={"format": "pt", key: json.dumps(cfg)}))


def _save_discriminator(ckpt: dict, path: Path) -> dict:
    """The checkpoint's discriminator (the one trained against the generator; there is no EMA of D),
    weights only, rebuilt once from its config so a bundle never holds weights its config cannot load."""
    from mitogan.models import discriminator_from_config

    d_cfg = dict(ckpt["discriminator_config"])
    disc = discriminator_from_config(d_cfg)
    disc.load_state_dict(ckpt["D"])
    state = {k: v.detach().cpu().contiguous() for k, v in disc.state_dict().items()}
    _save_safetensors(state, d_cfg, path, key="mitogan_discriminator")
    return d_cfg


def _save_programs(gen: nn.Module, z: torch.Tensor, d: Path) -> None:
    """``generator.pt2`` (torch.export, any batch size) and ``generator.torchscript`` (traced)."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.export/jit chatter about deprecations and guards
        program = torch.export.export(gen, (z,), dynamic_shapes=({0: batch},))
        _write_bytes(d / "generator.pt2", lambda f: torch.export.save(program, f))
        traced = torch.jit.trace(gen, z, check_trace=False)
        _write_bytes(d / "generator.torchscript", lambda f: torch.jit.save(traced, f))



def load_bundle_config(bundle) -> dict:
    """Verify a bundle completely and return its config.json, or raise a one-line ``InputError``.

    Complete means: ``checksums.sha256`` lists every bundle file the folder holds (and at least the files the
    loaders read: config.json, both generator weight files, the discriminator when config.json names one),
    lists nothing else (no paths outside the bundle, no unknown names, no duplicates), every listed file
    matches, config.json has a known format and version, and every path it names is a listed file of the
    bundle. Checksums are integrity (the files are the ones export wrote, undamaged), not authenticity:
    whoever can write the folder can also rewrite the list, so trust a bundle as you trust its source.
    """
    return _verified(Path(bundle))[0]


def _verified(bundle: Path) -> tuple[dict, dict[str, Path]]:
    """(config.json, {listed name: its path}) of a completely verified bundle (see ``load_bundle_config``)."""
    if not bundle.is_dir():
        raise InputError(bundle, "not a generator bundle directory (make one with `mitogan export`)")
    listed = _checksum_list(bundle)
    files = {}
    for name, digest in listed.items():
        f = bundle / name
        if not f.is_file():
            raise InputError(f, "missing: the bundle is incomplete (re-run `mitogan export`)")
        if not f.resolve().is_relative_to(bundle.resolve()):
            raise InputError(f, "links outside the bundle; a bundle's files must be its own (re-run `mitogan export`)")
        if sha256_file(f) != digest:
            raise InputError(f, "checksum mismatch: the file was changed or damaged after export")
        files[name] = f
    try:
        config = json.loads(files["config.json"].read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(bundle / "config.json", f"not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != BUNDLE_FORMAT:
        raise InputError(bundle / "config.json", "not a MitoGAN generator bundle (format "
                                                 f"{config.get('format') if isinstance(config, dict) else None!r})")
    if config.get("format_version") != BUNDLE_VERSION:
        raise InputError(bundle / "config.json", f"unknown bundle format version {config.get('format_version')!r} "
                                                 f"(this MitoGAN reads version {BUNDLE_VERSION}); upgrade mitogan")
    from mitogan.models import config_problem

    for kind in ("generator", "discriminator"):  # networks this MitoGAN can rebuild
        if kind == "discriminator" and not config.get(kind):
            continue  # bundles exported before they kept the discriminator have none
        problem = config_problem(kind, config.get(kind))
        if problem:
            raise InputError(bundle / "config.json", problem)
    weights = config.get("discriminator_weights")
    if weights not in (None, "discriminator.safetensors"):  # the one name a bundle uses; unlisted = absent
        raise InputError(bundle / "config.json", f"discriminator_weights {weights!r} is not a file of this bundle's "
                                                 "checksum list; paths in a bundle stay inside it (re-run `mitogan "
                                                 "export`)")
    return config, files


def _checksum_list(bundle: Path) -> dict[str, str]:
    """``checksums.sha256`` as {file name: sha256}, refused in one line unless it is complete and names only
    the bundle's own files (never a path: nothing outside the folder is read because a list names it)."""
    sums = bundle / "checksums.sha256"
    if not sums.is_file():
        raise InputError(sums, "missing: the bundle is incomplete (re-run `mitogan export`)")
    if not sums.resolve().is_relative_to(bundle.resolve()):
        raise InputError(sums, "links outside the bundle; a bundle's files must be its own (re-run `mitogan export`)")
    try:
        lines = sums.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(sums, f"unreadable ({type(e).__name__}); re-run `mitogan export`") from None
    listed: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        digest = digest.lower()  # sha256sum writes lower case; other tools may not
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise InputError(sums, f"line {number} is not '<sha256>  <file>': the list is damaged (re-run "
                                   "`mitogan export`)")
        if name not in _FILES:
            raise InputError(sums, f"line {number} names {name!r}, which is not a file of a bundle (the list may "
                                   "name only the bundle's own files); re-run `mitogan export`")
        if name in listed:
            raise InputError(sums, f"line {number} lists {name} a second time; re-run `mitogan export`")
        listed[name] = digest
    if not listed:
        raise InputError(sums, "lists no files, so nothing would be verified; re-run `mitogan export`")
    unlisted = [n for n in _FILES if n not in listed and (n in _READ or (bundle / n).exists())]
    if unlisted:
        raise InputError(sums, f"does not list {unlisted[0]}, so it would be used unverified; the list is "
                               "incomplete (re-run `mitogan export`)")
    return listed


def load_generator(bundle, device: str | torch.device = "cpu") -> nn.Module:
    """The bundle's generator, verified, in eval mode on ``device``: ready for ``torch.inference_mode()``.

    Both weight files are read and must hold the same tensors (and ``generator.safetensors`` the same
    generator config as config.json): a bundle whose copies disagree is refused, whichever one was changed.

    >>> G = load_generator("runs/my-search/best")             # doctest: +SKIP
    >>> with torch.inference_mode():                            # doctest: +SKIP
    ...     images = G(torch.randn(16, G.config["latent_dim"]))  # (16, 1, S, S) in [-1, 1]
    """
    from mitogan.models import generator_from_config

    config, files = _verified(Path(bundle))
    gen = generator_from_config(config["generator"])
    state = _torch_weights(files["generator.pt"])
    same, meta = _safetensors_weights(files["generator.safetensors"])
    _check_agree(files["generator.safetensors"], state, same, meta.get("mitogan_generator"), config["generator"])
    try:
        gen.load_state_dict(state)
    except Exception as e:
        raise InputError(files["generator.pt"], f"cannot load the weights ({type(e).__name__}: "
                                                f"{one_line(str(e), 200)}); re-run `mitogan export`") from None
    return gen.eval().to(device)


def _torch_weights(path: Path) -> dict:
    """A ``torch.save``d state_dict, read with ``weights_only=True`` (anything but tensors is refused)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's pickle-protocol chatter: the error below says what matters
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(path, torch_load_problem(e)) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(path, "does not hold a state_dict of tensors; re-run `mitogan export`")
    return state


def _safetensors_weights(path: Path) -> tuple[dict, dict]:
    """A safetensors file's tensors and metadata; damage (truncation, a bad header) is one line."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as e:
        raise InputError(path, f"cannot be read ({type(e).__name__}: {one_line(str(e), 200)}); re-run "
                               "`mitogan export`") from None


def _check_agree(path: Path, state: dict, other: dict, other_cfg: str | None, cfg: dict) -> None:
    """Refuse a bundle whose generator.safetensors differs from generator.pt (tensors or generator config)."""
    def same(a: torch.Tensor, b: torch.Tensor) -> bool:  # bit for bit (NaNs included)
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
            a.contiguous().flatten().view(torch.uint8), b.contiguous().flatten().view(torch.uint8))

    differ = sorted(set(state) ^ set(other)) or [k for k in state if not same(state[k], other[k])]
    try:
        cfg_differs = other_cfg is None or json.loads(other_cfg) != cfg
    except ValueError:
        cfg_differs = True
    if differ or cfg_differs:
        what = f"tensor {differ[0]!r}" if differ else "the generator config in its metadata"
        raise InputError(path, f"does not agree with generator.pt and config.json ({what} differs): the bundle's "
                               "weight files are inconsistent; re-run `mitogan export`")


def load_discriminator(bundle, device: str | torch.device = "cpu") -> nn.Module:
    """The bundle's discriminator/critic, verified, in eval mode on ``device`` (images (B, 1, S, S) -> (B,)).

    Bundles exported before MitoGAN kept the discriminator have none: that is a one-line ``InputError``.
    """
    from mitogan.models import discriminator_from_config

    bundle = Path(bundle)
    config, files = _verified(bundle)
    path = files.get(config.get("discriminator_weights") or "discriminator.safetensors")
    if not config.get("discriminator") or path is None:
        raise InputError(bundle, "the bundle has no discriminator (it was exported before bundles kept one); "
                                 "re-export it from its run or search with `mitogan export`")
    disc = discriminator_from_config(config["discriminator"])
    state, _ = _safetensors_weights(path)
    try:
        disc.load_state_dict(state)
    except Exception as e:
        raise InputError(path, f"cannot load the weights ({type(e).__name__}: {one_line(str(e), 200)}); re-run "
                               "`mitogan export`") from None
    return disc.eval().to(device)


def _model_card(config: dict, info: dict) -> str:
    """README.md in the Hugging Face model-card layout: YAML front matter, then the card's sections."""
    import yaml

    tc, g = config["trial_config"], config["generator"]
    front = {"library_name": "pytorch", "pipeline_tag": "unconditional-image-generation",
             "tags": ["gan", "fluorescence-microscopy", "mitochondria", "synthetic-data", "mitogan",
                      f"arch-{g.get('arch')}", f"loss-{tc.get('loss.kind')}"],
             "mitogan": {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, "image_size": config["image_size"],
                         "latent_dim": config["latent_dim"], "step": config["step"],
                         "pixel_size_um": config["pixel_size_um"]}}
    if config.get("allow_copying"):
        front["mitogan"]["allow_copying"] = True
    warning = (["> **Warning: this generator copies its training data.** Its metrics flag it (`copying`) and it was "
                "exported with `--allow-copying`: generated tiles may be near-copies of training tiles. Do not share "
                "its output where the training data may not go.", ""] if config.get("allow_copying") else [])
    body = [f"# MitoGAN generator ({g.get('arch')}, {config['image_size']}×{config['image_size']} px)", "",
            *warning,
            "Synthetic fluorescence-microscopy tiles of mitochondria from a GAN found by a MitoGAN search.", "",
            "![samples](samples.png)", "",
            *_card_model(config), *_card_use(config), *_card_intended(), *_card_data(config, info),
            *_card_preprocessing(config), *_card_metrics(tc, info), *_card_limitations()]
    return "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(body)


def _card_model(config: dict) -> list[str]:
    tc = config["trial_config"]
    return ["## Model", "",
            f"- generator: `{json.dumps(config['generator'])}`",
            f"- input: latents z (B, {config['latent_dim']}) float32 ~ N(0, 1); output: images (B, 1, "
            f"{config['image_size']}, {config['image_size']}) in [-1, 1]",
            f"- trained {config['step']} generator steps: loss {tc.get('loss.kind')}, init {tc.get('init.scheme')} "
            f"(gain {tc.get('init.gain')}), optimiser {tc.get('optim.name')} (lr G {tc.get('optim.lr_g')}, "
            f"D {tc.get('optim.lr_d')}), batch {tc.get('train.batch_size')}, EMA decay {tc.get('train.ema_decay')}",
            "- files: `generator.safetensors` (weights; the config in its metadata), `generator.pt` (the same, for "
            "`torch.load(weights_only=True)`), `generator.pt2` (`torch.export` program), `generator.torchscript`, "
            "`discriminator.safetensors` (the trained discriminator/critic, weights only, its config in `config.json` "
            "under `discriminator`: for `mitogan explain`), `config.json`, `metrics.json`, `checksums.sha256`", ""]


def _card_use(config: dict) -> list[str]:
    z, psi = config["latent_dim"], config.get("truncation")
    draw = f"{psi:g} * torch.randn(16, {z})" if psi else f"torch.randn(16, {z})"
    why = f"  # latents x {psi:g}: the truncation factor its search trial kept" if psi else ""
    return ["## How to use", "",
            "```python", "import torch, mitogan", "G = mitogan.load_generator('path/to/this/folder')",
            "with torch.inference_mode():", f"    x = G({draw})  # (16, 1, S, S) in [-1, 1]{why}", "```", "",
            "Without MitoGAN (plain PyTorch):", "",
            "```python", "import torch", "G = torch.export.load('generator.pt2').module()",
            f"x = G({draw})", "```", "",
            "From the shell: `mitogan synth THIS_FOLDER -n 30000 --out DIR` (`--format tiff --stack` for an "
            "ImageJ stack in the data's units; `--truncation PSI` draws every latent as PSI x z, nearer the prior's "
            "centre: more typical images, a little less varied" + (f"; {psi:g} by default for this generator, 1 "
                                                                   "draws without" if psi else "") + ").", ""]


def _card_intended() -> list[str]:
    return ["## Intended use", "",
            "- Augmenting training data for segmentation/classification models of mitochondrial morphology, and "
            "testing analysis pipelines on data of known provenance.",
            "- Not for: evaluating models (keep real held-out data for that), or as evidence about biology.", ""]


def _card_data(config: dict, info: dict) -> list[str]:
    data, source = info["data"], info["source"]
    sources = data.get("sources") or source.get("data") or []
    shown = ", ".join(f"`{s}`" for s in sources[:5]) + (f" (+{len(sources) - 5} more)" if len(sources) > 5 else "")
    where = {k: v for k, v in source.items() if k not in ("data",)}
    return ["## Training data", "",
            f"- {len(sources)} source file(s): {shown or 'unknown'} (paths relative to this bundle or to "
            "`$MITOGAN_CACHE_DIR`; `sim-*` is MitoGAN's built-in simulated dataset)",
            f"- tiles: {data.get('n_tiles', 'unknown')} of {config['image_size']}×{config['image_size']} px"
            + (f"; evaluation split: {json.dumps(data['evaluation'])}" if data.get("evaluation") else ""),
            f"- exported from: `{json.dumps(where, default=str)}`", *_card_simulator(config), ""]


def _card_simulator(config: dict) -> list[str]:
    sim = config.get("simulator")
    if not sim:
        return []
    return [f"- **simulator tiles**: {sim['share']:.0%} of each real training batch (on average) came from "
            f"{sim['n_tiles']} tiles of the simulator `{sim['config']}` (sha256 `{sim['sha256'][:16]}…`; "
            f"{sim['videos']} videos × {sim['frames']} frames of {sim['size']} px, seed {sim['seed']}; every "
            "parameter in `config.json` under `simulator`), preprocessed as the real tiles; the metrics compare "
            "against held-out real tiles only"]


def _card_preprocessing(config: dict) -> list[str]:
    tc, it, px = config["trial_config"], config["output"]["intensity"], config["pixel_size_um"]
    steps = [k.split(".")[1] for k, v in tc.items() if k.startswith("preprocess.") and k.endswith(".enabled") and v]
    mapping = (f"I = lo + u × (hi − lo) with lo {it['lo']:.6g}, hi {it['hi']:.6g} ({it.get('dtype') or 'data'} units"
               + (f"; {it['summary']}, lo in {it['lo_spread']}, hi in {it['hi_spread']}" if "summary" in it else "")
               + ")") if it else "unknown (images stay on the [-1, 1] scale)"
    return ["## Preprocessing", "",
            f"- steps: {', '.join(steps) or 'normalisation only'}; tiles of {tc.get('preprocess.tile.size')} px at "
            f"scale {tc.get('preprocess.tile.scale')} of the frames",
            f"- pixel size: {f'{px:.4g} µm per generated pixel' if px else 'unknown (the inputs carried none)'}"
            + (f"; the training movies had {config['frame_interval_s']:.4g} s between frames"
               if config.get("frame_interval_s") else ""),
            f"- intensities: u = (x + 1) / 2, {mapping}", ""]


def _card_metrics(tc: dict, info: dict) -> list[str]:
    metrics, ev, src = info["metrics"], info["data"].get("evaluation") or {}, info["source"]
    rows = [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in sorted(metrics.items())
            if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    if "primary" not in metrics:
        head = "No evaluation was recorded (e.g. trained with --no-eval): score it with `mitogan evaluate`."
    else:
        n_fake = _scored_fakes(tc.get("train.eval_samples"))
        head = (f"Scored at the last evaluation on {n_fake or 'an unknown number of'} generated tiles vs "
                f"{ev.get('n_heldout', 'an unknown number of')} held-out real tiles"
                + (f" (split by {ev['split']}; the generator trained on the other {ev.get('n_train')})"
                   if ev.get("split") else "") + ".")
        if src.get("primary_name"):
            better = "lower" if src.get("primary_mode") == "min" else "higher"
            head += f" `primary` is {src['primary_name']} ({better} is better; see MitoGAN's docs/metrics.md)."
    return ["## Metrics", "", head, "", *_card_judges(metrics), "| metric | value |", "|---|---|", *rows, ""]


def _card_judges(metrics: dict) -> list[str]:
    """Diversity, authenticity, structure and the classifier two-sample test, each beside the baseline it must be
    read against."""
    lines = []
    if all(isinstance(metrics.get(k), (int, float)) for k in ("pairwise_correlation", "pairwise_correlation_real")):
        from mitogan.metrics.builtin import DIVERSITY_PARTS, correlation_level

        level = correlation_level(metrics)
        parts = ", ".join(f"{p} {metrics[f'diversity_gap_{p}']:.3f}" for p in DIVERSITY_PARTS
                          if isinstance(metrics.get(f"diversity_gap_{p}"), (int, float)))
        lines.append(f"- Diversity: generated tiles correlate with each other, pixel by pixel, at "
                     f"{metrics['pairwise_correlation']:.3f} on average, against {level:.3f} for real tiles (baseline: "
                     f"the more alike of the held-out and the training split); diversity gap "
                     f"{metrics.get('diversity_gap', 0):.3f}" + (f" ({parts})" if parts else "") + ".")
    if isinstance(metrics.get("copy_share"), (int, float)):
        flag = "**flagged as copying**" if metrics.get("copying") else "not flagged as copying"
        lines.append(f"- Authenticity: {metrics['copy_share']:.1%} of generated tiles are nearer to a training tile "
                     f"(up to rotation, mirroring, small shifts and zoom) than 95 % of real frames of other times "
                     f"are (baseline: 5 %); authenticity gap {metrics.get('authenticity_gap', 0):.3f}; {flag}.")
    if isinstance(metrics.get("structure_auc"), (int, float)):
        lines.append(f"- Structure: a generated tile has less shape than a held-out real tile (each against random "
                     f"fields with its own histogram and power spectrum) in {metrics['structure_auc']:.1%} of pairs, "
                     f"against {metrics.get('structure_auc_null', 0.5):.1%} for the training tiles (baseline); "
                     f"structure gap {metrics.get('structure_gap', 0):.3f}.")
    psi = chosen_truncation(metrics)
    if psi is not None:
        by = metrics.get("truncation_by", "judged")
        tried = ", ".join(f"{int(k.rsplit('_', 1)[1]) / 100:g}: {v:.3f}" for k, v in metrics.items()
                          if k.startswith(f"truncation_{by}_") and isinstance(v, (int, float)))
        share = metrics.get("truncation_copy_share")
        lines.append(f"- Sampling: `mitogan synth` draws every latent as {psi:g} × z (the truncation trick), the factor "
                     f"the search trial kept: the best {'judged_gap' if by == 'judged' else 'primary'} against the "
                     f"held-out tiles" + (f" ({tried})" if tried else "") + " among the factors whose samples are "
                     "not flagged as copying. Judged again at that factor on other latents: primary "
                     f"{metrics.get('truncation_primary', float('nan')):.3f}"
                     + (f", copy share {share:.1%}" if isinstance(share, (int, float)) else "")
                     + "; the classifier test below is of those samples. `--truncation 1` draws without.")
    if isinstance(metrics.get("c2st_accuracy"), (int, float)) and isinstance(metrics.get("c2st_baseline"), (int, float)):
        lines.append(f"- Classifier two-sample test (a small CNN told generated from held-out real tiles): accuracy "
                     f"{metrics['c2st_accuracy']:.3f} ± {metrics.get('c2st_accuracy_sd', 0):.3f}, against a baseline "
                     f"of {metrics['c2st_baseline']:.3f} ± {metrics.get('c2st_baseline_sd', 0):.3f} for the training "
                     "split vs the held-out split (same CNN and budget); 0.5 would be indistinguishable.")
    return [*lines, ""] if lines else []


def _scored_fakes(eval_samples) -> int | None:
    """Generated tiles the in-training evaluator scores: train.eval_samples, capped at its n_fake."""
    import inspect

    from mitogan.metrics import InTrainingEvaluator

    cap = inspect.signature(InTrainingEvaluator).parameters["n_fake"].default
    return None if eval_samples is None else min(int(eval_samples), int(cap))


def _card_limitations() -> list[str]:
    return ["## Limitations", "",
            "- Learned from a small dataset (hundreds of frames) of one lab/microscope: it reproduces that "
            "distribution, its artefacts and biases. It does not model time, 3D, or other organelles.",
            "- Check memorisation (nearest-training-image distances, `mitogan synth --min-novelty`) before sharing "
            "synthetic data derived from data with restrictions.", ""]
