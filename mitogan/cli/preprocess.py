"""``mitogan preprocess``: frames → training tiles, with a quality report and a before/after preview.

Writes OUT/tiles.npz (read by training and metrics; ``mitogan train --data OUT`` finds it), OUT/config.yaml
(the resolved preprocess config), OUT/quality.json (per-frame SNR and the frames flagged as having no signal)
and a contact sheet: one row per step, one column per sample frame, plus a row of sample tiles.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["register", "run", "save_preview"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "preprocess", help="turn videos/stacks into training tiles (normalise, denoise, ..., tile)",
        description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="TIFF/OME-TIFF stacks, GIF/AVI/MP4 videos or image folders (none: the built-in "
                        "simulated dataset)")
    p.add_argument("--config", metavar="FILE_OR_SOURCE",
                   help="YAML/JSON with a top-level `preprocess:` section, or bare preprocess keys; or a generator "
                        "bundle (its folder or config.json), a training run, a search trial folder, a search folder "
                        "(its best) or a tiles folder: preprocess as it did")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a preprocess key, e.g. --set denoise.enabled=true (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier `mitogan preprocess` output in DIR (once the new one is complete)")
    p.add_argument("--preview", metavar="PNG", help="before/after contact sheet (default: OUT/preview.png)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="µm per pixel of the input frames, when their files do not say (TIFF/OME metadata and the "
                        "built-in simulator do): carried into the tiles, runs, bundles and synthetic TIFFs")
    p.add_argument("--frame-interval", type=float, default=None, metavar="S",
                   help="seconds between frames, when the files do not say")
    p.add_argument("--channel", default=None, help="channel index for multi-channel inputs")
    p.add_argument("--z", default="max", help="z-stacks: max or mean projection, or a plane index")
    p.add_argument("--strict", action="store_true",
                   help="fail at the first unreadable file or folder inside a folder (default: skip it with a warning)")
    p.add_argument("--no-cache", action="store_true", help="recompute even if these tiles are cached")
    p.add_argument("--samples", type=int, default=4, help="sample frames in the preview (1-32)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mitogan.preprocess import Pipeline
    from mitogan.tiles import save_tiles

    # --set accepts "denoise.h=5" and the Ray spelling "preprocess.denoise.h=5"
    overrides = [o.removeprefix("preprocess.") for o in args.overrides]
    from mitogan.fsutil import atomic_dir, json_safe

    cfg = _config(args, overrides)
    out = Path(args.out)
    _check_outputs(args, out)  # before any input is read
    _check_inputs(args)
    videos = _read(args)
    pipeline = Pipeline(cfg)
    tiles = pipeline.run(videos, progress=not args.quiet, cache=not args.no_cache)
    _record_scale(args, tiles)
    quality = _quality_summary(tiles.meta["quality"], cfg.quality)
    _check_outputs(args, out)
    with atomic_dir(out, "preprocess") as tmp:  # an earlier output (--overwrite) is replaced only once this one is complete
        save_tiles(tmp / "tiles.npz", tiles)
        _save_config(cfg, tmp / "config.yaml")
        (tmp / "quality.json").write_text(json.dumps(json_safe(quality), indent=1, allow_nan=False))
        preview = save_preview(pipeline, videos, tiles, Path(args.preview) if args.preview else tmp / "preview.png",
                               args.samples)
    preview = Path(args.preview) if args.preview else out / preview.name
    _print_summary(tiles, videos, quality, pipeline, out, preview)
    return 0


# the files that mark a preprocess folder written before output folders carried a marker
PREPROCESS_FILES = ("tiles.npz", "config.yaml", "quality.json")


def _check_outputs(args, out: Path) -> None:
    """--out may be new, empty or our own earlier output (with --overwrite); --preview a writable file path."""
    from mitogan.errors import MitoganError
    from mitogan.fsutil import check_writable_dir, claim_output_dir

    if not 1 <= args.samples <= 32:
        raise MitoganError(f"--samples {args.samples}: give 1 to 32 sample frames")
    claim_output_dir(out, "preprocess", overwrite=args.overwrite, create=False, legacy=PREPROCESS_FILES)
    if args.preview:
        preview = Path(args.preview)
        if preview.is_dir():
            raise MitoganError(f"--preview {preview}: is a folder; give a .png file name")
        if preview.suffix.lower() != ".png":
            raise MitoganError(f"--preview {preview}: give a .png file name")
        check_writable_dir(preview.parent, "--preview")


def _config(args, overrides):
    """The preprocess config: a YAML/JSON file, or the preprocessing of a bundle / run / trial / search / tiles
    folder (``mitogan.resolve.provenance``), then --set."""
    from mitogan.config import PreprocessConfig, apply_overrides, load_config
    from mitogan.resolve import SOURCE_KINDS, TILES_KINDS, kind_of, provenance

    if args.config and kind_of(args.config) in (*SOURCE_KINDS, *TILES_KINDS, "synth"):
        prov = provenance(args.config, option="--config", command="mitogan preprocess")
        print(f"preprocessing as the {prov.label} did: {prov.steps()}; {prov.image_size} px tiles")
        return apply_overrides(prov.preprocess, overrides)
    return load_config(args.config, PreprocessConfig, overrides=overrides, section="preprocess")


def _check_inputs(args) -> None:
    """Every INPUT is raw data (a movie/image file or a folder of them): tiles, bundles, runs, searches and
    other outputs are one line naming the command that takes them."""
    from mitogan.resolve import SOURCE_KINDS, TILES_KINDS, kind_of, wrong_input

    for name in args.inputs:
        kind = kind_of(name)  # MitoGAN's own outputs; anything else gets the reader's own message
        if kind in (*TILES_KINDS, *SOURCE_KINDS, "synth", "synth-incomplete", "evaluate", "explain"):
            raise wrong_input(Path(name), kind, "raw", option="INPUT", command="mitogan preprocess")
    for flag, value in (("--pixel-size", args.pixel_size), ("--frame-interval", args.frame_interval)):
        if value is not None and not (np.isfinite(value) and 0 < value < 1e6):
            from mitogan.errors import MitoganError

            raise MitoganError(f"{flag} {value}: give a positive number ({'µm per pixel' if 'pixel' in flag else 's'})")


def _record_scale(args, tiles) -> None:
    """The frames' pixel size (µm) and frame interval (s) in the tiles' meta: the inputs' own (their metadata,
    or the simulator's; ``Pipeline.run`` records them), or --pixel-size / --frame-interval, which say it for
    inputs that do not. Exports and ``mitogan synth --format tiff`` carry the pixel size on (over the tile
    scale)."""
    for key, value in (("pixel_size_um", args.pixel_size), ("frame_interval_s", args.frame_interval)):
        if value is not None:
            known = tiles.meta.get(key)
            if known and abs(known - value) > 0.01 * value:
                print(f"{key.replace('_', ' ')}: the inputs say {known:.4g}, --{key.split('_')[0]}"
                      f"{'-size' if 'pixel' in key else '-interval'} says {value:.4g}; using {value:.4g}")
            tiles.meta[key] = float(value)


def _read(args):
    from mitogan.io import read_inputs

    inputs = args.inputs
    if not inputs:
        from mitogan.simulate import default_dataset

        inputs = [default_dataset()]
        print(f"no INPUT given: using the built-in simulated dataset in {inputs[0]}")

    def skipped(path, problem):
        print(f"skipped {path}: {problem}")

    return read_inputs(inputs, channel=args.channel, z=args.z, strict=args.strict, on_skip=skipped,
                       progress=not args.quiet)


def _save_config(cfg, path: Path) -> None:
    import yaml

    from mitogan.config import to_dict

    path.write_text(yaml.safe_dump({"preprocess": to_dict(cfg)}, sort_keys=False))


def _quality_summary(reports: list[dict], qcfg) -> dict:
    flagged = sum(len(r["flagged"]) for r in reports)
    return {"min_snr": qcfg.min_snr, "drop_flagged": qcfg.drop_flagged,
            "n_frames": sum(r["n_frames"] for r in reports), "n_flagged": flagged,
            "no_signal_sources": [r["source"] for r in reports if r["no_signal"]], "videos": reports}


def _print_summary(tiles, videos, quality, pipeline, out: Path, preview: Path) -> None:
    cached = " (from cache)" if pipeline.stats["cache_hits"] else ""
    print(f"{len(tiles)} tiles of {tiles.size}×{tiles.size}{cached} from {quality['n_frames']} frames of "
          f"{len(videos)} videos → {out / 'tiles.npz'}")
    if quality["n_flagged"]:
        verb = "left out" if quality["drop_flagged"] else "kept"
        print(f"{quality['n_flagged']} frames flagged as no signal (SNR < {quality['min_snr']}, {verb}); "
              f"see {out / 'quality.json'}")
        for src in quality["no_signal_sources"]:
            print(f"  no signal in any frame: {src}")
    px, dt = tiles.meta.get("pixel_size_um"), tiles.meta.get("frame_interval_s")
    print(f"steps: {' → '.join(pipeline.steps)}; preview: {preview}; pixel size "
          + (f"{px:.4g} µm" if px else "unknown (pass --pixel-size UM)") + (f", frame interval {dt:.4g} s" if dt else ""))


def save_preview(pipeline, videos, tiles, path: Path, samples: int = 4) -> Path:
    """Contact sheet: rows = input and each enabled step, columns = sample frames; then sample tiles."""
    from mitogan.viz import contact_sheet

    picks = _sample_frames(videos, tiles.meta.get("quality"), samples)
    columns = []  # one list of (step, image) per sample frame
    for vi, t in picks:
        columns.append(pipeline.trace(videos[vi], frames=[t]))
    names = [name for name, _ in columns[0]]
    rows = [(name, [col[r][1][0] for col in columns]) for r, name in enumerate(names)]
    n_tiles = min(len(tiles), max(samples, 6))
    pick = np.linspace(0, len(tiles) - 1, n_tiles).round().astype(int)
    rows.append((f"tiles {tiles.size}px", [tiles.tiles[i, 0] for i in pick]))
    title = "columns: " + ", ".join(f"{_short(videos[vi].source)}[{videos[vi].frame_index[t]}]"
                                    for vi, t in picks)
    return contact_sheet(rows, path, title=title)


def _short(source: str) -> str:
    """The last two path parts (``<id>/images.tif`` says more than ``images.tif``), at most 28 chars."""
    name = "/".join(Path(source).parts[-2:])
    return name if len(name) <= 28 else "…" + name[-27:]


def _sample_frames(videos, reports, samples: int) -> list[tuple[int, int]]:
    """(video, frame position) pairs spread over the videos, preferring frames not flagged as no signal."""
    good = []
    for vi, video in enumerate(videos):
        flagged = set(reports[vi]["flagged"]) if reports else set()
        good += [(vi, t) for t in range(video.n_frames) if t not in flagged]
    pool = good or [(vi, t) for vi, v in enumerate(videos) for t in range(v.n_frames)]
    # one frame from each of `samples` videos when there are enough videos, else spread over the frames
    by_video = {}
    for vi, t in pool:
        by_video.setdefault(vi, []).append(t)
    if len(by_video) >= samples:
        keys = [sorted(by_video)[i] for i in np.linspace(0, len(by_video) - 1, samples).round().astype(int)]
        return [(k, by_video[k][len(by_video[k]) // 2]) for k in keys]
    idx = np.linspace(0, len(pool) - 1, min(samples, len(pool))).round().astype(int)
    return [pool[i] for i in idx]
