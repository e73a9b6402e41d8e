"""Readers: turn the files a lab has into :class:`mitogan.frames.Video` objects.

Every reader returns frames ``(T, H, W)`` of dtype uint8, uint16 or float32 plus provenance
(``source``, ``frame_index``, ``meta``). Anything unusable raises :class:`~mitogan.errors.InputError`
with one line naming the file and the problem, never a bare library traceback.

Formats (by suffix, see ``SUPPORTED_SUFFIXES``):

* TIFF / OME-TIFF (``.tif``, ``.tiff``) through tifffile. Axes come from OME or ImageJ metadata, or
  from tifffile's own labels (``series[0].axes``); where the file does not label them (tifffile says
  ``Q``), they are inferred from the shape:

  - ``(H, W)`` is one frame; ``(T, H, W)`` a stack;
  - a last axis of 2-4 that is at most 1/8 of H and W is channels-last: ``(H, W, C)``, ``(T, H, W, C)``;
  - ``(T, C, H, W)`` when the second of four axes is 2-4;
  - a leading axis of 2-4 in ``(N, H, W)`` is ambiguous (two colours, or a short time-lapse). It is
    read as channels only when the planes look like different stains: weakly correlated (Pearson
    r < 0.5 between neighbours) *and* with different intensity distributions (mean or standard
    deviation differing by more than 20 %). Frames of one time-lapse are correlated, or (pure
    noise) share one distribution, so they stay frames. ``meta["axes_note"]`` records the decision;
    save ImageJ/OME axes to make it explicit.

  An ImageJ *plain* stack (``slices=N`` with no ``hyperstack`` flag) is read as a time series: ImageJ
  calls every unlabelled stack "slices", and most of them are time-lapses.
* GIF through imageio (pillow): palette GIFs decode as RGB.
* Video (``.avi``, ``.mp4``, ``.mov``, ``.mkv``) through OpenCV, converted to grey.
* Still images (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``) through imageio. Inside a folder, consecutive
  (name-sorted) still images of one shape and dtype are grouped into one Video per folder — labs export
  time-lapses as ``frame_0001.png ...`` — with ``meta["files"]`` listing the file of each frame. TIFFs are
  never grouped: a TIFF carries its own stack.
* Uncompressed tars of still images (``.tar``, the shards of ``mitogan synth --format tar``): one Video per
  tar, its image members in name order, read as a folder of those images would be.

Extra axes: ``channel`` picks a channel (default 0 when there are several; ``meta["channel_note"]``
says so); ``z`` reduces a z axis (``"max"``, ``"mean"`` or a plane index). Any other axes (time,
positions, tiles, ...) are flattened into frames.

Colour: RGB content whose channels agree (mean channel spread at most 15 % of the mean brightness —
tolerates small coloured overlays such as a play icon) becomes one channel (per-pixel median of R, G, B,
exact for equal channels); genuinely coloured RGB becomes luminance (ITU-R 601 weights),
``meta["colour"]`` says which. Alpha is dropped. With ``channel`` given, that RGB component is taken.

Dtypes: uint8, uint16 and float32 are kept; float16 and float64 become float32; signed or wide integers
become uint16 when all values fit in [0, 65535] (uint8 for non-negative int8), else float32.
Boolean (mask) and complex images are rejected, as are float images with NaN/inf. A ``z="mean"``
projection gives float32.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mitogan.errors import ConfigError, InputError
from mitogan.frames import Video

__all__ = ["SUPPORTED_SUFFIXES", "read_file", "read_inputs", "physical_scale", "common_scale"]

log = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
GIF_SUFFIXES = (".gif",)
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TAR_SUFFIXES = (".tar",)  # uncompressed tars of still images (`mitogan synth --format tar` shards)
SUPPORTED_SUFFIXES: tuple[str, ...] = TIFF_SUFFIXES + GIF_SUFFIXES + VIDEO_SUFFIXES + STILL_SUFFIXES + TAR_SUFFIXES

MIN_SIZE = 2  # smallest H and W a frame may have
_GREY_SPREAD = 0.15  # max mean(channel spread) / mean(brightness) for RGB to count as grey
_CHANNEL_R = 0.5  # planes correlated at least this much are frames, not channels
_CHANNEL_STAT_DIFF = 0.2  # relative mean/std difference that marks planes as different stains
_SPATIAL = set("YX")
_LUMA = np.array([0.299, 0.587, 0.114])


# ----------------------------------------------------------------------------------------------- API


def read_file(path, *, channel: int | None = None, z: str | int = "max", progress: bool = True) -> list[Video]:
    """Read one image/video file into Videos (one per file; a list so formats may split later).

    Parameters:
        path: a file with a suffix in ``SUPPORTED_SUFFIXES``.
        channel: channel index to keep; None keeps channel 0 of multi-channel data (noted in meta)
            and converts RGB to grey/luminance.
        z: ``"max"`` or ``"mean"`` projection of a z axis, or the index of one z plane (ignored for
            data without a z axis).
        progress: a progress bar while a long video is decoded (``-q`` turns it off).

    Returns:
        ``[Video]`` with frames ``(T, H, W)`` uint8/uint16/float32, T >= 1, H, W >= 2.

    Raises:
        InputError: nonexistent, empty, undecodable or unusable file (one line naming the problem).
        ConfigError: ``channel`` or ``z`` is not a valid option.
    """
    channel, z = _check_options(channel, z)
    path = Path(path)
    kind = _check_file(path)
    if kind == "video":
        return [_read_video(path, channel, z, progress)]
    reader = {"tiff": _read_tiff, "gif": _read_gif, "still": _read_still, "tar": _read_tar}[kind]
    return [reader(path, channel, z)]


def read_inputs(
    paths,
    *,
    channel: int | None = None,
    z: str | int = "max",
    strict: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    progress: bool = True,
) -> list[Video]:
    """Read files and folders (recursively, name-sorted) into a list of Videos.

    Files inside folders with an unsupported suffix (LICENSE, *.yaml, README.md) and hidden files are
    ignored silently. Anything else inside a folder that cannot be used — a supported file that cannot be
    read, a subfolder that cannot be listed, a dangling symbolic link, a symbolic link loop — is reported
    through ``on_skip(path, problem)`` and a logged warning, then skipped — unless ``strict``, where it
    raises InputError. A video whose decoded frame count disagrees with its header (truncated or damaged)
    keeps the frames it has, with a warning (``meta["frames_note"]``); under ``strict`` it raises.
    ``progress``: "reading" bars for large folders and long videos (``-q`` turns them off).
    A file named explicitly in ``paths`` that cannot be read always raises. Files given twice (or also
    found through a folder) are read once.

    Raises:
        InputError: a named path does not exist or cannot be read, a folder file is bad with
            ``strict=True``, or nothing readable was found in the inputs.
    """
    channel, z = _check_options(channel, z)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise InputError("<inputs>", "no input files or folders given")
    videos: list[Video] = []
    seen: set[Path] = set()
    n_skipped = 0
    for path in paths:
        if path.is_dir():
            found, skipped = _read_folder(path, channel, z, strict, on_skip, seen, progress)
            videos += found
            n_skipped += skipped
        elif _mark_seen(path, seen):
            videos += _checked(read_file(path, channel=channel, z=z, progress=progress), strict)
    if not videos:
        names = ", ".join(str(p) for p in paths)
        why = f"{n_skipped} unreadable file(s) skipped" if n_skipped else "no supported files"
        raise InputError(names, f"no readable images found ({why}; supported: {' '.join(SUPPORTED_SUFFIXES)})")
    return videos


# ----------------------------------------------------------------------------------- physical units

_UM_PER = {"um": 1.0, "µm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}
_S_PER = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0}


def physical_scale(path) -> dict:
    """``{"pixel_size_um", "frame_interval_s"}`` of an input file (each None when unknown).

    From the file's own metadata: OME ``PhysicalSizeX`` / ``TimeIncrement``, ImageJ resolution + unit and
    ``finterval``, or a plain TIFF resolution in pixels per centimetre (inches are usually screen dpi, so
    not a physical statement). A TIFF of MitoGAN's simulator (``simulation.json`` beside it) without these
    tags gets the simulator's own nominal scale (``mitogan.simulate.PIXEL_SIZE_UM`` / ``FRAME_INTERVAL_S``).
    Non-TIFF inputs (GIF, video, PNG) carry none.
    """
    path = Path(path)
    scale = {"pixel_size_um": None, "frame_interval_s": None}
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        scale.update(_tiff_scale(path))
    if None in scale.values():
        for key, value in _simulator_scale(path).items():
            scale[key] = scale[key] or value
    return scale


def common_scale(sources) -> dict:
    """The physical scale shared by ``sources`` (paths): each value only when every source has one and they
    agree within 1 %, else None (tiles of mixed pixel sizes have no one pixel size)."""
    scales = [physical_scale(s) for s in sources or ()]
    out = {}
    for key in ("pixel_size_um", "frame_interval_s"):
        values = [sc[key] for sc in scales]
        ok = values and all(v for v in values) and max(values) <= 1.01 * min(values)
        out[key] = float(values[0]) if ok else None
    return out


def _tiff_scale(path: Path) -> dict:
    import tifffile

    out = {}
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                ome = tif.ome_metadata or ""
                m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', ome)
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', ome)
                factor = _UM_PER.get(unit.group(1) if unit else "µm")
                out["pixel_size_um"] = float(m.group(1)) * factor if m and factor else None
                t = re.search(r'TimeIncrement="([0-9.eE+-]+)"', ome)
                t_unit = re.search(r'TimeIncrementUnit="([^"]+)"', ome)
                out["frame_interval_s"] = float(t.group(1)) * _S_PER.get(t_unit.group(1) if t_unit else "s", 1.0) \
                    if t else None
                return {k: v for k, v in out.items() if v and np.isfinite(v) and v > 0}
            page = tif.pages[0]
            tag = page.tags.get("XResolution")
            ij = (tif.imagej_metadata or {}) if tif.is_imagej else None
            if ij is not None and ij.get("finterval"):
                out["frame_interval_s"] = float(ij["finterval"])
            if tag is not None and tag.value[0] and tag.value[1]:
                per_unit = tag.value[0] / tag.value[1]
                if ij is not None:
                    factor = _UM_PER.get(str(ij.get("unit", "")))
                else:  # plain TIFF: only centimetres are a physical statement (inches are usually screen dpi)
                    unit = page.tags.get("ResolutionUnit")
                    factor = 1e4 if unit is not None and int(unit.value) == 3 else None
                out["pixel_size_um"] = factor / per_unit if factor else None
    except Exception:  # unreadable metadata: the scale is simply unknown
        return {}
    return {k: v for k, v in out.items() if v and np.isfinite(v) and v > 0}


def _simulator_scale(path: Path) -> dict:
    """The simulator's nominal scale for one of its TIFFs (a ``simulation.json`` of its format beside it)."""
    import json

    info = path.parent / "simulation.json" if path.is_file() else path / "simulation.json"
    if not info.is_file():
        return {}
    try:
        meta = json.loads(info.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("mitogan-sim-dataset"):
        return {}
    from mitogan import simulate

    return {"pixel_size_um": meta.get("pixel_size_um") or simulate.PIXEL_SIZE_UM,
            "frame_interval_s": meta.get("frame_interval_s") or simulate.FRAME_INTERVAL_S}


# ------------------------------------------------------------------------------------------ checks


def _check_options(channel, z) -> tuple[int | None, str | int]:
    """Validate ``channel``/``z``; CLI strings like ``"2"`` become ints."""
    if channel is not None:
        try:
            channel = int(channel)
        except (TypeError, ValueError):
            raise ConfigError(f"channel: must be a channel index (0, 1, ...), got {channel!r}") from None
        if channel < 0:
            raise ConfigError(f"channel: must be >= 0, got {channel}")
    if isinstance(z, str) and z.strip().lstrip("-").isdigit():
        z = int(z)
    if isinstance(z, (int, np.integer)) and not isinstance(z, bool):
        if z < 0:
            raise ConfigError(f"z: a plane index must be >= 0, got {z}")
        return channel, int(z)
    if z not in ("max", "mean"):
        raise ConfigError(f"z: must be 'max', 'mean' or a z-plane index, got {z!r}")
    return channel, z


def _checked(videos: list[Video], strict: bool) -> list[Video]:
    """Videos as read, warning about (or, when ``strict``, refusing) those whose frame count disagrees."""
    for v in videos:
        note = v.meta.get("frames_note")
        if note:
            if strict:
                raise InputError(v.source, note)
            log.warning("%s: %s", v.source, note)
    return videos


def _check_file(path: Path) -> str:
    """Return the reader kind for ``path`` or raise InputError (missing, folder, empty, unknown suffix)."""
    if not path.exists():
        if path.is_symlink():
            raise InputError(path, f"dangling symbolic link (its target {os.readlink(path)} does not exist)")
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        raise InputError(path, "is a folder; pass it to read_inputs to read the files inside")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        supported = " ".join(SUPPORTED_SUFFIXES)
        raise InputError(path, f"unsupported file type '{suffix or path.name}'; supported: {supported}")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    for kind, suffixes in (("tiff", TIFF_SUFFIXES), ("gif", GIF_SUFFIXES), ("video", VIDEO_SUFFIXES),
                           ("tar", TAR_SUFFIXES)):
        if suffix in suffixes:
            return kind
    return "still"


def _decode_error(path: Path, what: str, err: Exception) -> InputError:
    """A one-line InputError for a library failure while decoding ``path``."""
    first = (str(err).strip().splitlines() or [""])[0][:160]
    if "backend" in first or "can not handle" in first:
        first = f"its content is not {what} data"  # imageio's wording names plugins, not the problem
    return InputError(path, f"not a readable {what} ({type(err).__name__}: {first})")


def _mark_seen(path: Path, seen: set[Path]) -> bool:
    """True the first time ``path`` (resolved) is met."""
    key = path.resolve() if path.exists() else path
    if key in seen:
        return False
    seen.add(key)
    return True


# ------------------------------------------------------------------------------------------ folders


def _natural_key(path: Path):
    """Sort key where frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _is_masks(folder: Path) -> bool:
    from mitogan.fsutil import read_marker

    return (read_marker(folder) or {}).get("kind") == "masks"


def _folder_files(folder: Path) -> tuple[list[Path], list[InputError]]:
    """Supported, non-hidden files under ``folder``, recursively (through symbolic links to folders), in
    natural name order; and what could not be looked into: unlistable subfolders, dangling links, link loops."""
    files: list[Path] = []
    problems: list[InputError] = []

    def walk(d: Path, ancestors: frozenset) -> None:
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            problems.append(InputError(d, f"cannot list this folder ({e.strerror or type(e).__name__}); "
                                          "its files were not read"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files, macOS ._* resource forks, .git
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if entry.is_symlink() and not (is_dir or is_file):
                if not os.path.exists(entry.path):
                    problems.append(InputError(path, f"dangling symbolic link (its target {os.readlink(path)} "
                                                     "does not exist)"))
                elif path.suffix.lower() in SUPPORTED_SUFFIXES:
                    problems.append(InputError(path, "symbolic link to something that is not a file or folder"))
                continue
            if is_dir:
                real = os.path.realpath(path)
                if real in ancestors:
                    problems.append(InputError(path, f"symbolic link loop (points back to {real}); not followed"))
                elif _is_masks(path):
                    continue  # label masks `mitogan simulate` wrote beside its movies: not movies themselves
                else:
                    walk(path, ancestors | {real})
            elif is_file and path.suffix.lower() in SUPPORTED_SUFFIXES:
                files.append(path)

    walk(folder, frozenset({os.path.realpath(folder)}))
    return sorted(files, key=lambda p: _natural_key(p.relative_to(folder))), problems


def _read_folder(folder, channel, z, strict, on_skip, seen, progress=True) -> tuple[list[Video], int]:
    """Read every supported file under ``folder``; returns (videos, number of files and folders skipped)."""
    from tqdm.auto import tqdm

    found, problems = _folder_files(folder)
    skipped = 0

    def skip(err: InputError) -> None:
        nonlocal skipped
        if strict:
            raise err
        skipped += 1
        log.warning("skipped %s", err)
        if on_skip is not None:
            on_skip(err.path, err.problem)

    for err in problems:
        skip(err)
    files = [f for f in found if _mark_seen(f, seen)]
    videos: list[Video] = []
    for path in tqdm(files, desc=f"reading {folder.name}", unit="file", leave=False,
                     disable=not progress or len(files) < 50):
        try:
            videos += _checked(read_file(path, channel=channel, z=z, progress=progress), strict)
        except InputError as err:
            skip(err)
    return _group_stills(videos), skipped


def _group_stills(videos: list[Video]) -> list[Video]:
    """Merge runs of single-frame still images from one folder with one shape/dtype into one Video."""
    out: list[Video] = []
    run: list[Video] = []

    def flush():
        if len(run) == 1:
            out.append(run[0])
        elif run:
            frames = np.concatenate([v.frames for v in run])  # (T, H, W)
            meta = dict(run[0].meta, files=[v.source for v in run], grouped="still images of one folder")
            out.append(Video(frames, str(Path(run[0].source).parent), np.arange(len(run)), meta))
        run.clear()

    for video in videos:
        groupable = video.meta.get("format") == "still" and video.n_frames == 1
        if run and not (
            groupable
            and Path(video.source).parent == Path(run[0].source).parent
            and video.frames.shape[1:] == run[0].frames.shape[1:]
            and video.frames.dtype == run[0].frames.dtype
        ):
            flush()
        (run if groupable else out).append(video)
    flush()
    return out


# --------------------------------------------------------------------------------------------- TIFF


def _read_tiff(path: Path, channel, z) -> Video:
    """Multi-page TIFF / OME-TIFF / ImageJ hyperstack → Video (axes from metadata or inferred)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series or not tif.pages:
                raise InputError(path, "TIFF contains zero frames")
            series = tif.series[0]
            arr = series.asarray()
            axes, source = _tiff_axes(tif, series.axes)
    except InputError:
        raise
    except Exception as err:
        raise _tiff_error(path, err) from None
    meta = {"format": "tiff", "original_shape": tuple(arr.shape), "original_dtype": str(arr.dtype),
            "axes_source": source}
    if axes is None:
        axes = _infer_axes(path, arr, meta)
    rgb = "S" in axes and arr.shape[axes.index("S")] in (3, 4) and "C" not in axes
    meta.update({k: v for k, v in physical_scale(path).items() if v})  # pixel_size_um, frame_interval_s
    return _to_video(path, arr, axes, channel, z, meta, rgb=rgb)


def _tiff_error(path: Path, err: Exception) -> InputError:
    """Name the failure: not a TIFF at all, or a TIFF whose pages/data run past the end of the file."""
    msg = str(err)
    if "not a TIFF" in msg or "not a valid TIFF" in msg:
        return _decode_error(path, "TIFF image", err)
    truncated = ("failed to read", "offset", "EOF", "truncat", "corrupt")
    if isinstance(err, EOFError) or any(k in msg for k in truncated):
        first = (msg.strip().splitlines() or [""])[0][:120]
        return InputError(path, f"TIFF is truncated or corrupt ({first}); re-export or re-copy the file")
    return _decode_error(path, "TIFF image", err)


def _tiff_axes(tif, axes: str) -> tuple[str | None, str]:
    """Axes labels to trust for ``series[0]``, or None when they must be inferred from the shape."""
    if tif.is_ome:
        return axes, "ome"
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        if axes == "ZYX" and not ij.get("hyperstack"):
            return "TYX", "imagej (plain stack read as time)"
        return axes.replace("I", "T"), "imagej"
    if "Q" in axes:
        return None, "inferred"  # shaped file without axes: tifffile's Y/X are guesses too
    shaped_axes = any("axes" in m for m in (tif.shaped_metadata or ()))
    if tif.is_shaped and not shaped_axes and axes.startswith("S"):
        # tifffile stores any (3|4, H, W) uint8 stack as planar RGB unless told otherwise: not evidence
        return None, "inferred"
    return axes.replace("I", "T"), "tiff"


def _infer_axes(path: Path, arr: np.ndarray, meta: dict) -> str:
    """Guess axes letters for an unlabelled array (rules in the module docstring)."""
    shape = arr.shape
    small = lambda n: 2 <= n <= 4  # noqa: E731
    if arr.ndim >= 3 and small(shape[-1]) and shape[-1] * 8 <= min(shape[-3], shape[-2]) and arr.ndim <= 4:
        return "YXC" if arr.ndim == 3 else "TYXC"
    if arr.ndim == 2:
        return "YX"
    if arr.ndim == 3:
        if small(shape[0]) and _planes_look_like_channels(arr, meta):
            return "CYX"
        return "TYX"
    if arr.ndim == 4 and small(shape[1]):
        return "TCYX"
    raise InputError(path, f"cannot tell which axes of shape {shape} are time, z and channel; "
                           "save it with ImageJ or OME axes metadata")


def _planes_look_like_channels(arr: np.ndarray, meta: dict) -> bool:
    """Decide whether the 2-4 leading planes of ``arr`` (N, H, W) are stains rather than frames."""
    step = max(1, max(arr.shape[1:]) // 256)  # subsample big planes; the statistics barely change
    planes = arr[:, ::step, ::step].reshape(arr.shape[0], -1).astype(np.float64)  # (N, P)
    means, stds = planes.mean(1), planes.std(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = [np.corrcoef(planes[i], planes[i + 1])[0, 1] for i in range(len(planes) - 1)]
        r_min = float(np.nanmin(r)) if not np.all(np.isnan(r)) else float("nan")
    differ = max(_relative_range(means), _relative_range(stds)) > _CHANNEL_STAT_DIFF
    is_channels = bool(not (r_min >= _CHANNEL_R) and differ)  # NaN r (constant planes) is not "correlated"
    what = "channels" if is_channels else "frames"
    stats = "differ" if differ else "match"
    meta["axes_note"] = (f"leading axis of size {arr.shape[0]} read as {what} (neighbour correlation "
                         f"r={r_min:.2f}, intensity distributions {stats}); "
                         "save ImageJ/OME axes to make this explicit")
    return is_channels


def _relative_range(values: np.ndarray) -> float:
    """(max - min) / max|value|: 0 for equal values, 1 when one is zero."""
    return float((values.max() - values.min()) / max(float(np.abs(values).max()), 1e-12))


# -------------------------------------------------------------------------------- GIF, video, still


def _read_gif(path: Path, channel, z) -> Video:
    """GIF → Video; palette frames decode as RGB (T, H, W, 3) and are turned grey."""
    import imageio.v3 as iio

    try:
        arr = np.asarray(iio.imread(path, index=None, plugin="pillow"))
    except Exception as err:
        raise _decode_error(path, "GIF image", err) from None
    meta = {"format": "gif", "original_shape": tuple(arr.shape), "original_dtype": str(arr.dtype)}
    if arr.ndim == 3:
        return _to_video(path, arr, "TYX", channel, z, meta)
    if arr.ndim != 4:
        raise InputError(path, f"unexpected GIF array shape {arr.shape}")
    return _to_video(path, arr, "TYXS", channel, z, meta, rgb=True)


def _read_still(path: Path, channel, z) -> Video:
    """PNG/JPEG/BMP → one-frame Video (16-bit PNG stays uint16; RGB turned grey; alpha dropped)."""
    return _read_still_bytes(path, path, channel, z)


def _read_still_bytes(path: Path, source, channel, z) -> Video:
    """``_read_still`` of ``source`` (a file or a file-like object), named ``path`` in messages."""
    import imageio.v3 as iio

    try:
        arr = np.asarray(iio.imread(source, plugin="pillow", extension=path.suffix.lower()))
    except Exception as err:
        raise _decode_error(path, f"{path.suffix.lower().lstrip('.').upper()} image", err) from None
    meta = {"format": "still", "original_shape": tuple(arr.shape), "original_dtype": str(arr.dtype)}
    if arr.ndim == 2:
        return _to_video(path, arr, "YX", channel, z, meta)
    if arr.ndim == 3 and arr.shape[-1] == 2:
        return _to_video(path, arr[..., 0], "YX", channel, z, meta)  # grey + alpha
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return _to_video(path, arr, "YXS", channel, z, meta, rgb=True)
    raise InputError(path, f"unexpected image array shape {arr.shape}")


def _read_tar(path: Path, channel, z) -> Video:
    """An uncompressed tar of still images (``mitogan synth --format tar`` writes one per batch) → one Video
    of its image members in name order, as a folder of those images would be read (one shape and dtype)."""
    import io
    import tarfile

    try:
        with tarfile.open(path, mode="r:") as tar:
            members = sorted((m for m in tar.getmembers() if m.isfile() and Path(m.name).suffix.lower() in STILL_SUFFIXES),
                             key=lambda m: m.name)
            stills = [(m.name, tar.extractfile(m).read()) for m in members]
    except (tarfile.TarError, OSError) as err:
        raise _decode_error(path, "tar of images", err) from None
    if not stills:
        raise InputError(path, f"a tar with no image members ({', '.join(STILL_SUFFIXES)}); nothing to read")
    frames = []
    for name, data in stills:
        member = path / name  # named for messages only
        video = _read_still_bytes(member, io.BytesIO(data), channel, z)
        if frames and (video.frames.shape[1:] != frames[0].shape[1:] or video.frames.dtype != frames[0].dtype):
            raise InputError(path, f"member {name} is {video.frames.shape[1:]} {video.frames.dtype}, the first "
                                   f"{frames[0].shape[1:]} {frames[0].dtype}: a tar must hold images of one shape")
        frames.append(video.frames)
    meta = {"format": "tar", "files": [f"{path}/{name}" for name, _ in stills], "grouped": "image members of a tar"}
    return Video(np.concatenate(frames), str(path), np.arange(len(frames)), meta)


def _read_video(path: Path, channel, z, progress: bool = True) -> Video:
    """AVI/MP4/... through OpenCV → grey Video (BGR frames reordered to RGB, then turned grey)."""
    import cv2
    from tqdm.auto import tqdm

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise InputError(path, "not a readable video (OpenCV could not open it)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        frames = []
        with tqdm(total=expected or None, desc=f"reading {path.name}", unit="frame", leave=False,
                  disable=not progress or expected < 500) as bar:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame[..., ::-1] if frame.ndim == 3 else frame)  # BGR → RGB
                bar.update()
    finally:
        cap.release()
    if not frames:
        raise InputError(path, "video contains zero frames")
    arr = np.stack(frames)  # (T, H, W, 3) or (T, H, W)
    meta = {"format": "video", "original_shape": tuple(arr.shape), "original_dtype": str(arr.dtype), "fps": fps}
    if expected > 0 and len(frames) != expected:  # a truncated or damaged file decodes fewer frames
        meta["frames_note"] = (f"decoded {len(frames)} of the {expected} frames its header announces (truncated or "
                               "damaged?); re-export or re-copy the file")
    if arr.ndim == 3:
        return _to_video(path, arr, "TYX", channel, z, meta)
    return _to_video(path, arr, "TYXS", channel, z, meta, rgb=True)


# ------------------------------------------------------------------------------ axes → (T, H, W)


def _to_video(path: Path, arr: np.ndarray, axes: str, channel, z, meta: dict, *, rgb: bool = False) -> Video:
    """Select channel, reduce z, flatten the rest into frames and check the result.

    ``arr`` has one axis per letter of ``axes`` (must include Y and X); ``rgb`` marks an S axis that
    holds an RGB(A) rendering rather than independent stains.
    """
    if arr.ndim != len(axes) or not _SPATIAL <= set(axes):
        raise InputError(path, f"cannot map axes '{axes}' onto shape {arr.shape}")
    meta["axes"] = axes
    _check_dtype_kind(path, arr.dtype)
    if any(arr.shape[i] == 0 for i, a in enumerate(axes) if a not in _SPATIAL):
        raise InputError(path, f"contains zero frames (shape {arr.shape})")
    h, w = arr.shape[axes.index("Y")], arr.shape[axes.index("X")]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise InputError(path, f"frames are {h}x{w} pixels; need at least {MIN_SIZE}x{MIN_SIZE}")
    arr, axes = _merge_channel_axes(arr, axes)
    if "C" in axes:
        arr, axes = _select_channel(path, arr, axes, channel, meta, rgb=rgb)
    elif channel not in (None, 0):
        raise InputError(path, f"channel {channel} requested but the file has 1 channel")
    if "Z" in axes:
        arr, axes = _reduce_z(path, arr, axes, z, meta)
    rest = [i for i, a in enumerate(axes) if a not in _SPATIAL]
    order = rest + [axes.index("Y"), axes.index("X")]
    frames = np.transpose(arr, order)
    frames = frames.reshape((-1,) + frames.shape[-2:])  # (T, H, W): time, positions, ... flattened
    return _finish(path, frames, meta)


def _merge_channel_axes(arr: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Rename S to C; if both C and S exist, fold them into one C axis."""
    if "S" not in axes:
        return arr, axes
    if "C" not in axes:
        return arr, axes.replace("S", "C")
    c, s = axes.index("C"), axes.index("S")
    arr = np.moveaxis(arr, [c, s], [-2, -1])
    rest = "".join(a for a in axes if a not in "CS")
    arr = arr.reshape(arr.shape[:-2] + (-1,))
    return arr, rest + "C"


def _select_channel(path, arr, axes, channel, meta, *, rgb):
    """Keep one channel (or turn RGB grey); returns the array without its C axis."""
    c = axes.index("C")
    n = arr.shape[c]
    meta["n_channels"] = n
    rest = axes.replace("C", "")
    if rgb and n in (3, 4) and channel is None:
        frames_last = np.moveaxis(arr, c, -1)[..., :3]  # (..., 3): alpha dropped
        return _rgb_to_grey(frames_last, meta), rest
    if channel is None:
        channel = 0
        meta["channel_note"] = f"channel 0 of {n} kept by default (choose with channel=/--channel)"
    if channel >= n:
        raise InputError(path, f"channel {channel} requested but the file has {n} channels (0-{n - 1})")
    meta["channel"] = channel
    return np.take(arr, channel, axis=c), rest


def _rgb_to_grey(rgb: np.ndarray, meta: dict) -> np.ndarray:
    """(..., 3) RGB → (...) grey: median of channels when they agree, else ITU-R 601 luminance."""
    step = max(1, rgb.size // (3 * 2_000_000))  # measure colourfulness on a subsample of big stacks
    sample = rgb.reshape(-1, 3)[::step].astype(np.float32)
    r, g, b = sample[:, 0], sample[:, 1], sample[:, 2]
    top = np.maximum(np.maximum(r, g), b)  # explicit: reducing over a length-3 axis is slow in numpy
    spread = float((top - np.minimum(np.minimum(r, g), b)).mean())
    brightness = float(top.mean())
    ratio = spread / brightness if brightness > 0 else 0.0
    meta["colour_spread"] = round(ratio, 4)
    if ratio <= _GREY_SPREAD:
        meta["colour"] = "grey (RGB with equal channels, collapsed to one)"
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        # median of three, exact for equal channels (np.median is ~10x slower on stacks)
        return np.maximum(np.minimum(r, g), np.minimum(np.maximum(r, g), b))
    meta["colour"] = "luminance (coloured RGB converted with ITU-R 601 weights)"
    grey = rgb.astype(np.float32) @ _LUMA.astype(np.float32)
    if np.issubdtype(rgb.dtype, np.integer):
        return np.clip(np.rint(grey), 0, np.iinfo(rgb.dtype).max).astype(rgb.dtype)
    return grey


def _reduce_z(path, arr, axes, z, meta):
    """Max/mean projection over Z, or one Z plane; returns the array without its Z axis."""
    k = axes.index("Z")
    n = arr.shape[k]
    meta["n_z"] = n
    meta["z"] = z
    rest = axes.replace("Z", "")
    if z == "max":
        return arr.max(axis=k), rest
    if z == "mean":
        return arr.mean(axis=k, dtype=np.float64).astype(np.float32), rest
    if z >= n:
        raise InputError(path, f"z plane {z} requested but the file has {n} z planes (0-{n - 1})")
    return np.take(arr, z, axis=k), rest


# ------------------------------------------------------------------------------------------ dtypes


def _check_dtype_kind(path: Path, dt: np.dtype) -> None:
    """Reject dtypes that are not intensities (bool masks, complex, non-numeric) before any maths."""
    if dt == np.bool_:
        raise InputError(path, "unsupported dtype bool (a 1-bit mask, not fluorescence intensities)")
    if np.issubdtype(dt, np.complexfloating):
        raise InputError(path, f"unsupported dtype {dt} (complex values are not intensities)")
    if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise InputError(path, f"unsupported dtype {dt}; need integer or float intensities")


def _normalise_dtype(path: Path, frames: np.ndarray, meta: dict) -> np.ndarray:
    """Map an integer/float dtype onto uint8/uint16/float32 (rules in the module docstring)."""
    dt = frames.dtype
    _check_dtype_kind(path, dt)
    if dt in (np.uint8, np.uint16, np.float32):
        out = frames
    elif np.issubdtype(dt, np.floating):
        out = frames.astype(np.float32)
    elif np.issubdtype(dt, np.integer):
        lo, hi = int(frames.min()), int(frames.max())
        if lo >= 0 and hi <= 255 and dt.itemsize == 1:
            out = frames.astype(np.uint8)
        elif lo >= 0 and hi <= 65535:
            out = frames.astype(np.uint16)
        else:
            out = frames.astype(np.float32)
    if out.dtype == np.float32 and not np.isfinite(out).all():
        raise InputError(path, "contains NaN or infinite values (or floats beyond float32 range)")
    if out.dtype != dt:
        meta["converted_from"] = str(dt)
    return out


def _finish(path: Path, frames: np.ndarray, meta: dict) -> Video:
    """Check frames (T, H, W) and wrap them in a Video."""
    t, h, w = frames.shape
    if t == 0:
        raise InputError(path, "contains zero frames")
    if h < MIN_SIZE or w < MIN_SIZE:
        raise InputError(path, f"frames are {h}x{w} pixels; need at least {MIN_SIZE}x{MIN_SIZE}")
    frames = np.ascontiguousarray(_normalise_dtype(path, frames, meta))
    return Video(frames=frames, source=str(path), frame_index=np.arange(t), meta=meta)
