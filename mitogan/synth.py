"""Batched generation to disk: the synthetic dataset, resumable, with a manifest.

``synthesize(bundle, n, out_dir)`` generates batches on the GPU when present (else CPU) while a thread
pool encodes and writes the previous batch (PNG, TIFF, or one ``.npy`` array at the end). Image
``i`` always comes from latent ``i`` of ``seed`` (:func:`latents`: fixed chunks of 64 latents, whatever the
batch size), so a run is reproducible and an interrupted one resumes: each finished batch leaves
``parts/batch_XXXXXX.csv`` (written after its images, atomically; beside it the duplicate filter's features
and the batch's drop counts), and a restart skips those batches and decides and counts exactly as an
uninterrupted run would. ``stop()`` (e.g. on Ctrl-C) ends a run between batches in that resumable state.
``out_dir`` must be new, empty, or a synth folder MitoGAN made (marker ``.mitogan.json``); a folder of
other files is refused untouched.

The manifest ``manifest.csv`` has one row per kept image: file (``images/img_XXXXXXXX.png``/``.tif``, or
``images.npy`` / ``images.tif`` whose row k of the manifest is item k of the array / slice k + 1 of the
stack, or ``images/shard_BBBBBB.tar/img_XXXXXXXX.png``: member ``img_XXXXXXXX.png`` of batch B's tar shard), seed, latent_index, contrast (RMS
contrast: std of the image in [0, 1], a cheap quality score — near 0 for blank tiles), nn_set (distance to
the nearest earlier image of the set, when the duplicate filter is on) and nn_train (distance to the
nearest reference/training tile, when ``reference`` is given). Filters: ``min_set_distance`` drops
near-duplicates within the set, ``min_train_distance`` drops images too close to a training image
(memorisation); the numbers dropped are reported in ``synth.json``. Distances are RMS differences of 16×16
downsampled images in [0, 1].

TIFFs are ImageJ-compatible (OME-TIFF with ``ome=True``): one file per image, or with ``stack=True`` one
stack ``images.tif`` (row k of the manifest is slice k + 1) assembled at the end from per-batch parts. They
carry the pixel size in µm when known (``pixel_size_um``, else the bundle's data provenance) and hold
intensities in the data's units, I = lo + u (hi - lo) in the data's dtype, when the bundle records that
mapping; otherwise u is stretched to 0–65535 (uint16).

``format="tar"`` writes each batch's PNGs as the members of one uncompressed tar, ``images/shard_BBBBBB.tar``
(WebDataset's layout: one key per image), published atomically before the batch's manifest part. For 100k+
images: creating a file cost ~0.45 ms of kernel CPU on our ext4 VM, 5x the PNG encoding and ~13x the same
bytes appended to a tar, and a folder of 100k files is slow to list, copy and delete.
"""

from __future__ import annotations

import csv
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mitogan.errors import ConfigError, InputError, MitoganError
from mitogan.truncation import is_factor

__all__ = ["novelty_threshold", "SynthOptions", "synthesize", "FORMATS", "TiffSpec", "latents", "check_options", "resolve_device",
           "check_bundle_config", "human_size", "disk_need"]

FORMATS = ("png", "tiff", "npy", "tar")
LATENT_CHUNK = 64  # latents are drawn in fixed chunks of this many: latent i never depends on the batch size
MAX_BATCH = 8192  # images per generator batch (beyond this, memory runs out long before speed improves)
MAX_IMAGES = 100_000_000
_FIELDS = ["file", "seed", "latent_index", "contrast", "nn_set", "nn_train"]
_DROPS = ("dropped_duplicate", "dropped_memorised")
_PNG = [16, 1, 17, 3]  # cv2.IMWRITE_PNG_COMPRESSION 1, cv2.IMWRITE_PNG_STRATEGY RLE (cv2 imported lazily)


@dataclass
class SynthOptions:
    """How to generate."""

    n: int = 1000  # images to keep
    seed: int = 0
    batch_size: int = 512
    format: str = "png"  # png (8-bit), tiff (data units, ImageJ), npy (one float32 array in [-1, 1]), tar (PNG shards)
    device: str = "auto"
    min_set_distance: float = 0.0  # drop images closer than this to an earlier kept image (0: off)
    min_train_distance: float = 0.0  # drop images closer than this to a reference tile (0: off)
    max_batches: int | None = None  # stop after this many batches even if filters keep dropping
    stack: bool = False  # tiff: one ImageJ stack images.tif instead of one file per image
    ome: bool = False  # tiff: OME-TIFF (images.ome.tif / img_*.ome.tif) instead of ImageJ TIFF
    pixel_size_um: float | None = None  # tiff: µm per pixel (default: the bundle's, when it knows one)
    # latent i is drawn as truncation x z_i (the truncation trick; 1: off); None: the factor the bundle's search trial
    # chose (config.json "truncation", mitogan.truncation), else 1
    truncation: float | None = None


@dataclass(frozen=True)
class TiffSpec:
    """How u in [0, 1] becomes TIFF pixels: I = lo + u (hi - lo) as ``dtype``; ``pixel_size`` in µm or None."""

    dtype: str = "uint16"
    lo: float = 0.0
    hi: float = 65535.0
    units: str = "u stretched to 0-65535 (the bundle records no intensity mapping)"
    pixel_size: float | None = None
    ome: bool = False

    @classmethod
    def from_bundle(cls, config: dict, opts: SynthOptions) -> "TiffSpec":
        from mitogan.export import intensity_mapping

        # {"lo", "hi", "dtype"}; bundles exported before it was summarised carry the per-video list
        it = intensity_mapping((config.get("output") or {}).get("intensity"))
        px = opts.pixel_size_um or config.get("pixel_size_um")
        if not it:
            return cls(pixel_size=px, ome=opts.ome)
        dtype = it.get("dtype") if it.get("dtype") in ("uint8", "uint16") else "float32"  # what ImageJ reads
        return cls(dtype, float(it["lo"]), float(it["hi"]), f"data units ({it.get('dtype') or 'float'})", px, opts.ome)

    def encode(self, img: np.ndarray) -> np.ndarray:
        """(..., S, S) in [-1, 1] → pixels in data units."""
        x = self.lo + np.clip((img + 1) / 2, 0, 1) * (self.hi - self.lo)
        if self.dtype == "float32":
            return x.astype(np.float32)
        info = np.iinfo(self.dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(self.dtype)

    def decode(self, pixels: np.ndarray) -> np.ndarray:
        """Inverse of ``encode`` (up to rounding): pixels → [-1, 1] float32."""
        u = (pixels.astype(np.float32) - self.lo) / max(self.hi - self.lo, 1e-12)
        return u * 2 - 1

    def write(self, f, pixels: np.ndarray) -> None:
        """ImageJ TIFF (or OME-TIFF) of (S, S) or a (N, S, S) stack, with the pixel size when known."""
        import tifffile

        px = self.pixel_size
        if self.ome:
            meta = {"axes": "ZYX" if pixels.ndim == 3 else "YX"}
            if px:
                meta.update(PhysicalSizeX=px, PhysicalSizeY=px, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
            tifffile.imwrite(f, pixels, ome=True, photometric="minisblack", metadata=meta)
            return
        meta = {"axes": "ZYX" if pixels.ndim == 3 else "YX", **({"unit": "um"} if px else {})}
        tifffile.imwrite(f, pixels, imagej=True, photometric="minisblack", metadata=meta,
                         resolution=(1 / px, 1 / px) if px else None)


def check_options(opts: SynthOptions) -> None:
    """Refuse impossible options with one line naming the option, before anything is read or written."""
    if opts.format not in FORMATS:
        raise MitoganError(f"--format {opts.format!r}: use one of {list(FORMATS)}")
    if (opts.stack or opts.ome) and opts.format != "tiff":
        raise MitoganError(f"--{'stack' if opts.stack else 'ome'} needs --format tiff (got --format {opts.format})")
    if opts.pixel_size_um is not None and not (np.isfinite(opts.pixel_size_um) and 0 < opts.pixel_size_um < 1e6):
        raise MitoganError(f"--pixel-size {opts.pixel_size_um}: give µm per pixel, > 0")
    if isinstance(opts.n, (int, np.integer)) and opts.n < 1:
        raise MitoganError(f"-n {opts.n}: ask for at least one image")
    for flag, value, lo, hi in (("-n", opts.n, 1, MAX_IMAGES), ("--batch-size", opts.batch_size, 1, MAX_BATCH),
                                ("--seed", opts.seed, 0, 2**31 - 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise MitoganError(f"{flag} {value}: give a whole number from {lo} to {hi}")
    if opts.max_batches is not None and not (isinstance(opts.max_batches, int) and opts.max_batches >= 1):
        raise MitoganError(f"max_batches {opts.max_batches}: give a whole number >= 1 (or None)")
    t = opts.truncation
    if t is not None and not is_factor(t):
        raise MitoganError(f"--truncation {t}: give a factor above 0 and at most 1 (1 turns it off; 0.8 draws "
                           "nearer the latent prior's centre)")
    for flag, value in (("--min-set-distance", opts.min_set_distance), ("--min-novelty", opts.min_train_distance)):
        if not (np.isfinite(value) and 0 <= value <= 2):  # RMS distances of images in [0, 1] are at most 1
            raise MitoganError(f"{flag} {value}: give a distance from 0 (off) to 2")
    resolve_device(opts.device)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` — checked against this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise MitoganError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise MitoganError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise MitoganError(f"--device {name}: no CUDA GPU is available here; use --device cpu (or auto)")
        if device.index is not None and device.index >= count:
            raise MitoganError(f"--device {name}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1})")
    return device


def check_bundle_config(bundle, config: dict) -> None:
    """Validate a bundle's config.json like a config: the generator's settings and the trial's config."""
    from mitogan.config import Config, from_flat
    from mitogan.models import generator_settings

    where = Path(bundle) / "config.json"
    gen = config.get("generator")
    if not isinstance(gen, dict):
        raise InputError(where, "has no 'generator' settings (re-run `mitogan export`)")
    names = generator_settings()
    unknown = sorted(set(gen) - set(names))
    if unknown or not {"arch", "latent_dim", "image_size"} <= set(gen):
        raise InputError(where, f"generator settings {sorted(gen)} are not those of a MitoGAN generator"
                                f"{f' (unknown: {unknown[0]})' if unknown else ''}")
    for key, value in gen.items():
        try:
            from_flat(Config, {names[key]: value})
        except ConfigError as e:
            detail = str(e).split(": ", 1)[-1]
            raise InputError(where, f"invalid setting generator.{key}: {detail}") from None
    try:
        tc = config.get("trial_config")
        if tc is not None:
            if not isinstance(tc, dict):
                raise ConfigError(f"trial_config: expected a mapping of config keys, got {tc!r}")
            from_flat(Config, tc)
    except ConfigError as e:
        raise InputError(where, f"invalid setting in trial_config: {e}") from None
    if "truncation" in config and not is_factor(config["truncation"]):
        raise InputError(where, f"truncation {config['truncation']!r} is not a factor above 0 and at most 1")
    px = config.get("pixel_size_um")
    if px is not None and not (_finite(px) and px > 0):
        raise InputError(where, f"pixel_size_um {px!r} is not a positive number")
    from mitogan.export import intensity_mapping

    try:
        it = intensity_mapping((config.get("output") or {}).get("intensity"))
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise InputError(where, f"output.intensity is not an intensity mapping ({type(e).__name__}: {e})") from None
    if it and not (_finite(it.get("lo")) and _finite(it.get("hi")) and it["lo"] < it["hi"]):
        raise InputError(where, f"output.intensity lo={it.get('lo')!r}, hi={it.get('hi')!r}: need finite lo < hi")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def human_size(n: float) -> str:
    """A byte count a user can act on: ``812 KB``, ``3.4 MB``, ``1.25 GiB`` (never ``0.0 GiB``)."""
    n = float(n)
    if n < 2**20:
        return f"{max(n / 2**10, 0.1):.1f} KB" if n < 10 * 2**10 else f"{n / 2**10:.0f} KB"
    if n < 2**30:
        return f"{n / 2**20:.1f} MB" if n < 100 * 2**20 else f"{n / 2**20:.0f} MB"
    return f"{n / 2**30:.2f} GiB"


def disk_need(opts: SynthOptions, size: int) -> int:
    """Bytes ``opts`` may take on disk at most: one file per image rounds up to whole 4 KB blocks (PNG at most
    ~1 byte per pixel plus headers, TIFF 2, ...); npy and stacks keep float32 parts, then the assembled file."""
    pixels = size * size
    if _in_parts(opts):
        return opts.n * pixels * 8  # float32 parts, then the assembled file (float32 at most)
    per_file = pixels * {"png": 1, "tiff": 2, "tar": 1}[opts.format] + 1024  # headers; a PNG of noise barely compresses
    if opts.format == "tar":  # members padded to 512 bytes, no file-system block each
        return opts.n * per_file
    return opts.n * (-(-per_file // 4096) * 4096)


def _check_resources(out: Path, opts: SynthOptions, size: int) -> None:
    """Refuse at once what cannot fit: the images on disk, or (npy, tiff --stack) the whole array in memory."""
    import shutil

    need = disk_need(opts, size)
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free + 2**20:
        raise MitoganError(f"-n {opts.n}: {opts.n} images of {size}x{size} px need up to {human_size(need)} and "
                           f"{probe} has {human_size(free)} free; free some space, ask for fewer (-n), or choose "
                           "another --out")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if _in_parts(opts) and memory and opts.n * size * size * 4 * 2 > memory:
        raise MitoganError(f"-n {opts.n}: --format {opts.format}{' --stack' if opts.stack else ''} assembles all "
                           f"images in memory ({human_size(opts.n * size * size * 8)}) and this machine has "
                           f"{human_size(memory)}; use --format png/tiff or ask for fewer")


def latents(latent_dim: int, seed: int, start: int, n: int) -> torch.Tensor:
    """Latents ``start`` … ``start + n - 1`` of ``seed``: (n, latent_dim) float32, the same whatever ``n``.

    They are drawn in fixed chunks of ``LATENT_CHUNK`` (chunk c = ``sample_latents(..., offset=c * 64)``), so
    latent i is one fixed vector however the images are batched (and a resumed run draws the same ones).
    """
    from mitogan.export import sample_latents

    first, last = start // LATENT_CHUNK, (start + n - 1) // LATENT_CHUNK
    z = torch.cat([sample_latents(latent_dim, LATENT_CHUNK, seed=seed, offset=c * LATENT_CHUNK)
                   for c in range(first, last + 1)])
    skip = start - first * LATENT_CHUNK
    return z[skip: skip + n]


def synthesize(bundle, out_dir, opts: SynthOptions, reference: np.ndarray | None = None, progress: bool = True,
               stop=None, resume_command: str | None = None) -> dict:
    """Generate ``opts.n`` images from ``bundle`` into ``out_dir``; returns the summary (also synth.json).

    ``stop()`` (optional) is polled between batches: True ends the run after the batches in flight are
    written, leaving a folder that the next call (same options) resumes; the summary then has ``stopped``.
    ``resume_command``: the command line that continues this run (``mitogan synth ... --resume``); it is kept
    in the folder so that an error here, or a command refusing the incomplete folder, can name it. A full
    disk (or quota) is one line naming the folder and that command.
    """
    from mitogan.export import load_bundle_config, load_generator
    from mitogan.fsutil import claim_output_dir

    check_options(opts)
    device = resolve_device(opts.device)
    config = load_bundle_config(bundle)
    check_bundle_config(bundle, config)
    if opts.truncation is None:  # the factor the search chose for this generator, else none
        opts = replace(opts, truncation=float(config.get("truncation", 1.0)))
    if config.get("allow_copying"):
        import warnings

        warnings.warn(f"{bundle}: this generator was exported although its metrics flag it as copying its training "
                      "data (allow_copying); its images may be near-copies of training tiles", UserWarning,
                      stacklevel=2)
    if reference is not None and (np.ndim(reference) < 2 or np.shape(reference)[-1] != config["generator"]["image_size"]):
        raise InputError("--reference", f"tiles of shape {np.shape(reference)} do not match the bundle's "
                                        f"{config['generator']['image_size']} px images")
    out = Path(out_dir)
    _check_resources(out, opts, int(config["generator"]["image_size"]))
    gen = load_generator(bundle, device=device)
    spec = TiffSpec.from_bundle(config, opts)
    # claimed only once the inputs are known good: a refused bundle leaves no folder a rerun would refuse
    claim_output_dir(out, "synth", resume=True, legacy=(".synth-run.json",))
    resume_command = resume_command or f"the same synthesize() call on {out} (it resumes)"
    try:
        (out / "parts").mkdir(parents=True, exist_ok=True)
        _check_same_run(out, bundle, opts, {"n": opts.n, "resume_command": resume_command})
        state = _resume(out, opts, spec)
        ref = None if reference is None else _features(torch.as_tensor(reference).float())
        bar = _bar(opts.n, state["kept"], progress)
        b = _generate_all(gen, device, opts, spec, out, state, ref, bar, stop)
        bar.close()
        if state["kept"] < opts.n and stop is not None and stop():
            return {"stopped": True, "kept": state["kept"], "out": str(out), "batches": b}
        return _finish(out, bundle, opts, state, b, spec)
    except OSError as e:
        import errno

        short = e.errno is None and "written" in str(e)  # numpy's tofile: "N requested and M written"
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) and not short:
            raise
        done = sum(1 for p in (out / "parts").glob("batch_*.csv") for line in p.read_text().splitlines() if line)
        rest = _space_to_free(opts, int(config["generator"]["image_size"]), done)
        raise MitoganError(f"{out}: the disk is full ({e.strerror or 'a write stopped short'}) after {done} of {opts.n} "
                           f"images; the images so far are kept: free at least {human_size(rest)} there, then "
                           f"continue with `{resume_command}`") from None


def _space_to_free(opts: SynthOptions, size: int, done: int) -> int:
    """Bytes the rest of a run needs: the images still to write and, for npy and stacks, the assembled file."""
    if _in_parts(opts):  # float32 parts still to write, then the assembled images.npy / images.tif
        return max((opts.n - done) * size * size * 4 + opts.n * size * size * 4, 2**20)
    return max(disk_need(opts, size) * (opts.n - done) // opts.n, 2**20)


def _generate_all(gen, device, opts: SynthOptions, spec: "TiffSpec", out: Path, state: dict, ref, bar, stop) -> int:
    """Generate batches from ``state["next_batch"]`` on while the writer threads write the previous ones;
    returns the number of batches. A batch is published (counted, and skipped by a resume) only by its
    manifest part, written after its images."""
    max_batches = opts.max_batches or 4 * (-(-opts.n // opts.batch_size)) + 4
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        b = state["next_batch"]
        try:
            while state["kept"] < opts.n and b < max_batches and not (stop is not None and stop()):
                before = {k: state[k] for k in _DROPS}
                images, rows, feats = _generate_batch(gen, device, opts, b, state, ref)
                drops = {k: state[k] - before[k] for k in _DROPS}
                # the writer threads write this batch while the next one is generated (a GPU, or the CPU's
                # spare time: on a quiet 2-core machine this beat writing between batches, 0.99x vs 0.85x)
                pending.append(pool.submit(_write_batch, out, b, images, rows, opts, spec, feats, drops))
                _drain(pending)
                bar.update(len(rows))
                b += 1
            _drain(pending, wait_all=True)
        except BaseException:  # a failed write (full disk) or Ctrl-C: the writes in flight end first
            for f in pending:
                f.cancel()
            _drain(pending, wait_all=True, errors=False)
            raise
    return b


def _generate_batch(gen, device, opts: SynthOptions, b: int, state: dict, ref):
    """Generate batch ``b``, apply the filters, return kept images (B', S, S) in [-1, 1] and manifest rows."""
    z = latents(gen.config["latent_dim"], opts.seed, b * opts.batch_size, opts.batch_size)  # (B, Z)
    if opts.truncation != 1:  # the truncation trick: every latent pulled towards the prior's centre
        z = z * float(opts.truncation)
    with torch.inference_mode():
        x = gen(z.to(device)).float().cpu()[:, 0]  # (B, S, S)
    dedup = opts.min_set_distance > 0
    feats = _features(x) if dedup or ref is not None else None  # (B, 256)
    nan = torch.full((len(x),), float("nan"))
    nn_set = _nearest(feats, state["bank"]) if dedup else nan  # to images kept in earlier batches
    intra = torch.cdist(feats, feats) / feats.shape[1] ** 0.5 if dedup else None  # (B, B) within this batch
    nn_train = _nearest(feats, ref) if ref is not None else nan
    keep: list[int] = []
    for i in range(len(x)):
        if state["kept"] + len(keep) >= opts.n:
            break
        if dedup and keep:
            nn_set[i] = min(float(nn_set[i]), float(intra[i, keep].min()))
        if dedup and nn_set[i] < opts.min_set_distance:
            state["dropped_duplicate"] += 1
            continue
        if opts.min_train_distance and float(nn_train[i]) < opts.min_train_distance:
            state["dropped_memorised"] += 1
            continue
        keep.append(i)
    kept = x[keep].numpy()
    if dedup:
        state["bank"] = torch.cat([state["bank"], feats[keep]]) if state["bank"] is not None else feats[keep]
    contrast = ((kept + 1) / 2).std(axis=(1, 2))  # RMS contrast in [0, 0.5]; kept is (B', S, S)
    rows = [{"file": _name(b * opts.batch_size + i, opts), "seed": opts.seed,
             "latent_index": b * opts.batch_size + i, "contrast": round(float(c), 5),
             "nn_set": _fmt(nn_set[i]), "nn_train": _fmt(nn_train[i])} for i, c in zip(keep, contrast)]
    state["kept"] += len(rows)
    return kept, rows, (feats[keep].numpy() if dedup else None)


def _features(x: torch.Tensor) -> torch.Tensor:
    """(N, S, S) or (N, 1, S, S) in [-1, 1] → (N, 256) images downsampled to 16×16, in [0, 1]."""
    x = x.reshape(len(x), 1, x.shape[-2], x.shape[-1])
    return torch.nn.functional.adaptive_avg_pool2d((x + 1) / 2, 16).flatten(1)


def novelty_threshold(reference, q: float = 0.05, holdout: float = 0.25, seed: int = 0) -> float:
    """The default ``min_train_distance`` for ``reference`` (a ``TileSet`` of the real tiles): split it as the
    metrics do (whole videos or time blocks, twin videos as one), and return the ``q`` quantile of the
    held-out tiles' distances to their nearest training tile, in the filter's units. A generated image nearer
    to a real tile than 95 % of NEW real tiles are is treated as a reproduction and dropped."""
    from mitogan.metrics.protocol import split_real

    tiles = np.asarray(getattr(reference, "tiles", reference), np.float32)
    n = len(tiles)
    source = getattr(reference, "source", np.zeros(n, np.int64))
    frame = getattr(reference, "frame", np.arange(n))
    sp = split_real(source, frame, holdout, seed, tiles=tiles)
    f = _features(torch.as_tensor(tiles))
    return float(np.quantile(_nearest(f[sp.heldout], f[sp.train]).numpy(), q))


def _nearest(a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """RMS distance of each row of ``a`` to its nearest row of ``b`` (inf when b is empty)."""
    if b is None or len(b) == 0:
        return torch.full((len(a),), float("inf"))
    return (torch.cdist(a, b).min(dim=1).values / a.shape[1] ** 0.5)


def _fmt(v) -> str:
    v = float(v)
    return "" if not np.isfinite(v) else f"{v:.5f}"


def _name(index: int, opts: SynthOptions) -> str:
    tif = "ome.tif" if opts.ome else "tif"
    if opts.stack:
        return f"images.{tif}"  # one stack: row k of the manifest is slice k + 1
    if opts.format == "npy":
        return "images.npy"  # one array: row k of the manifest is images.npy[k]
    if opts.format == "tar":  # member img_XXXXXXXX.png of its batch's shard
        return f"images/{_shard_name(index // opts.batch_size)}/img_{index:08d}.png"
    return f"images/img_{index:08d}.{tif if opts.format == 'tiff' else opts.format}"


def _shard_name(b: int) -> str:
    return f"shard_{b:06d}.tar"


def _in_parts(opts: SynthOptions) -> bool:
    """Formats that keep each batch as a float array part and assemble one file at the end."""
    return opts.format == "npy" or opts.stack


def _write_batch(out: Path, b: int, images: np.ndarray, rows: list[dict], opts: SynthOptions,
                 spec: TiffSpec, feats: np.ndarray | None = None, drops: dict | None = None) -> None:
    """Write a batch's images, then publish the batch with one atomic write of its manifest part: only a
    published batch counts (a resume redoes the others, removing what they left), so the images are written
    straight to their names, without a temporary file and a rename each (the cost of the old per-image
    publish). ``feats``: the kept images' duplicate-filter features and ``drops`` the batch's filter counts,
    kept so that a resumed run filters and counts exactly as an uninterrupted one."""
    if drops and any(drops.values()):
        _atomic(out / "parts" / f"batch_{b:06d}.drops.json", lambda f: f.write(json.dumps(drops).encode()))
    if feats is not None:
        _atomic(out / "parts" / f"batch_{b:06d}.feat.npy", lambda f: np.save(f, feats.astype(np.float32)))
    if _in_parts(opts):
        _atomic(out / "parts" / f"batch_{b:06d}.npy", lambda f: np.save(f, images.astype(np.float32)))
    elif opts.format == "tar":
        (out / "images").mkdir(exist_ok=True)
        _atomic(out / "images" / _shard_name(b), lambda f: _write_shard(f, images, [r["file"] for r in rows]))
    else:
        (out / "images").mkdir(exist_ok=True)
        _write_images(images, [str(out / row["file"]) for row in rows], opts.format, spec)
    _atomic(out / "parts" / f"batch_{b:06d}.csv", lambda f: _write_csv(f, rows))


def _write_images(images: np.ndarray, files: list[str], fmt: str, spec: TiffSpec) -> None:
    """(B, S, S) in [-1, 1] to one file each, straight to its name (the batch's manifest part publishes them)."""
    if fmt == "png":
        for buf, name in zip(_encode_png(images), files):
            with open(name, "wb") as f:
                f.write(buf)
        return
    for img, name in zip(spec.encode(images), files):
        with open(name, "wb") as f:
            spec.write(f, img)


def _encode_png(images: np.ndarray):
    """(B, S, S) in [-1, 1] -> 8-bit PNG buffers, one per image."""
    import cv2

    u8 = (np.clip((images + 1) / 2, 0, 1) * 255 + 0.5).astype(np.uint8)  # the whole slice at once
    # OpenCV's encoder (~1.5x faster than PIL's, and it releases the GIL for the writer threads); run-length
    # deflate: ~15 % faster than the default strategy at level 1, and smaller on generated tiles
    return (cv2.imencode(".png", img, _PNG)[1] for img in u8)


def _write_shard(f, images: np.ndarray, files: list[str]) -> None:
    """One uncompressed tar of the batch's PNGs, members named as the manifest's ``.../img_XXXXXXXX.png``."""
    import io
    import tarfile

    with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for buf, name in zip(_encode_png(images), files):
            info = tarfile.TarInfo(name.rsplit("/", 1)[1])
            info.size, info.mode = len(buf), 0o644
            tar.addfile(info, io.BytesIO(buf.tobytes()))


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _write_csv(f, rows: list[dict]) -> None:
    import io

    s = io.StringIO()
    w = csv.DictWriter(s, fieldnames=_FIELDS)
    w.writerows(rows)
    f.write(s.getvalue().encode())


def _drain(pending: deque, wait_all: bool = False, max_in_flight: int = 2, errors: bool = True) -> None:
    """Collect finished writes in order, re-raising their errors (unless ``errors`` is False); wait while more
    than ``max_in_flight`` batches are queued (bounds memory) or for all of them at the end."""
    from concurrent.futures import wait

    while pending and (wait_all or len(pending) > max_in_flight or pending[0].done()):
        f = pending.popleft()
        f.result() if errors else wait([f])


def _check_same_run(out: Path, bundle, opts: SynthOptions, extra: dict | None = None) -> None:
    """Refuse to resume into a folder made by a different bundle/seed/format/filters. ``extra`` (the number
    asked for, the command that resumes) is recorded beside them but not compared: a resume may ask for more."""
    info = out / "synth.json"
    key = {"bundle": str(Path(bundle).resolve()), "seed": opts.seed, "batch_size": opts.batch_size,
           "format": opts.format, "min_set_distance": opts.min_set_distance,
           "min_train_distance": opts.min_train_distance}
    key.update({k: True for k in ("stack", "ome") if getattr(opts, k)})  # absent in older stamps
    if opts.truncation != 1:  # absent in older stamps, as when off
        key["truncation"] = float(opts.truncation)
    stamp = out / ".synth-run.json"
    extra = extra or {}
    if stamp.exists():
        old = json.loads(stamp.read_text())
        compared = {k: v for k, v in old.items() if k not in ("n", "resume_command")}
        if compared != key:
            diff = sorted(k for k in set(key) | set(compared) if compared.get(k) != key.get(k))  # either side's
            raise MitoganError(f"{out}: holds a synth run with different {', '.join(diff)}; use another --out "
                               "or delete the folder")
        if any(old.get(k) != v for k, v in extra.items()):
            from mitogan.fsutil import atomic_write

            atomic_write(stamp, json.dumps({**old, **extra}))
    else:
        stamp.write_text(json.dumps({**key, **extra}))
    if info.exists():
        info.unlink()  # rewritten at the end


def _resume(out: Path, opts: SynthOptions, spec: TiffSpec) -> dict:
    """Counters from the batches already done (their parts exist); rebuild the dedup bank from their images."""
    state = {"kept": 0, "next_batch": 0, "dropped_duplicate": 0, "dropped_memorised": 0, "bank": None,
             "resumed_batches": 0}
    parts = sorted((out / "parts").glob("batch_*.csv"))
    # batches are written in order by a pool, so only a contiguous prefix counts as done
    done = 0
    for p in parts:
        if p.name != f"batch_{done:06d}.csv":
            break
        done += 1
    for p in parts[done:]:  # a batch after a gap: done again, with its side files
        for side in (p, *(p.with_name(p.name.replace(".csv", ext)) for ext in (".drops.json", ".feat.npy"))):
            side.unlink(missing_ok=True)
    _remove_unpublished(out, done * opts.batch_size, done)
    for p in parts[:done]:
        with p.open() as f:
            rows = list(csv.DictReader(f, fieldnames=_FIELDS))
        state["kept"] += len(rows)
        drops = p.with_name(p.name.replace(".csv", ".drops.json"))
        if drops.is_file():
            for k, v in json.loads(drops.read_text()).items():
                state[k] += int(v)
        if opts.min_set_distance and rows:
            saved = p.with_name(p.name.replace(".csv", ".feat.npy"))
            if saved.is_file():  # the features the filter used (exact)
                feats = torch.from_numpy(np.load(saved))
            else:  # written by an older MitoGAN: from the images (8-bit PNGs round the features slightly)
                feats = _features(torch.as_tensor(_read_images(out, rows, opts, p, spec)))
            state["bank"] = feats if state["bank"] is None else torch.cat([state["bank"], feats])
    state["next_batch"] = state["resumed_batches"] = done
    return state


def _remove_unpublished(out: Path, first: int, first_batch: int) -> None:
    """Image files of batches that were not published (latent index >= ``first``: a killed run may have left
    them half written), tar shards of batches >= ``first_batch``, and temporary files (of a killed shard
    write, or of older MitoGANs): the resumed run writes them again."""
    images = out / "images"
    if not images.is_dir():
        return
    for entry in os.scandir(images):
        name = entry.name
        shard = name.startswith("shard_") and name[6:12].isdigit() and int(name[6:12]) >= first_batch
        if name.endswith(".tmp") or shard or (name.startswith("img_") and name[4:12].isdigit() and int(name[4:12]) >= first):
            os.unlink(entry.path)


def _read_images(out: Path, rows, opts: SynthOptions, part: Path, spec: TiffSpec) -> np.ndarray:
    """A finished batch's kept images back as (B', S, S) in [-1, 1] (rebuilds the duplicate filter's bank)."""
    if _in_parts(opts):
        return np.load(part.with_suffix(".npy"))
    if opts.format == "tar":
        import io
        import tarfile

        from PIL import Image

        with tarfile.open(out / "images" / rows[0]["file"].split("/")[1]) as tar:
            return np.stack([np.asarray(Image.open(io.BytesIO(tar.extractfile(r["file"].rsplit("/", 1)[1]).read())),
                                        np.float32) / 255 * 2 - 1 for r in rows])
    if opts.format == "png":
        from PIL import Image

        return np.stack([np.asarray(Image.open(out / r["file"]), np.float32) / 255 * 2 - 1 for r in rows])
    import tifffile

    return np.stack([spec.decode(tifffile.imread(out / r["file"])) for r in rows])


def _finish(out: Path, bundle, opts: SynthOptions, state: dict, batches: int, spec: TiffSpec) -> dict:
    parts = sorted((out / "parts").glob("batch_*.csv"))
    with open(out / "manifest.csv.tmp", "w", newline="") as f:
        f.write(",".join(_FIELDS) + "\n")
        for p in parts:
            f.write(p.read_text())
    os.replace(out / "manifest.csv.tmp", out / "manifest.csv")
    if _in_parts(opts):
        arrays = np.concatenate([np.load(p.with_suffix(".npy")) for p in parts])  # (N, S, S), batch order
        if opts.stack:
            _atomic(out / _name(0, opts), lambda f: spec.write(f, spec.encode(arrays)))
        else:
            _atomic(out / "images.npy", lambda f: np.save(f, arrays[:, None]))
    tiff = {"units": spec.units, "pixel_size_um": spec.pixel_size} if opts.format == "tiff" else {}
    summary = {"bundle": str(bundle), "out": str(out), **{k: v for k, v in asdict(opts).items()}, **tiff,
               "kept": state["kept"], "dropped_duplicate": state["dropped_duplicate"],
               "dropped_memorised": state["dropped_memorised"], "batches": batches,
               "resumed_batches": state["resumed_batches"]}
    if state["kept"] < opts.n:
        summary["warning"] = (f"only {state['kept']} of {opts.n} images passed the filters in {batches} batches; "
                              "lower --min-set-distance/--min-novelty")
    from mitogan.fsutil import atomic_write, json_safe

    atomic_write(out / "synth.json", json.dumps(json_safe(summary), indent=2))
    return summary


def _bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="synth", disable=not enabled, dynamic_ncols=True)
