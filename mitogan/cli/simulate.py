"""``mitogan simulate``: write the built-in simulated dataset (uint16 TIFF stacks + ground-truth JSON + instance
masks)."""

from __future__ import annotations

import time
from pathlib import Path

from mitogan.config import apply_overrides
from mitogan.errors import ConfigError

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate mitochondria time-lapses with ground truth",
        description="Simulate mitochondria time-lapses (uint16 TIFF (T, H, W) + JSON ground truth per video, "
                    "masks/video_NNN.tif: uint16 instance masks (T, H, W), object id + 1 per pixel, 0 background; "
                    "simulation.json for the dataset). Deterministic from --seed.",
)
    p.add_argument("--out", required=True, type=Path, help="output folder (created; must be new or empty)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier `mitogan simulate` output in --out (once the new one is complete)")
    p.add_argument("--videos", type=int, default=20, help="number of videos")
    p.add_argument("--frames", type=int, default=30, help="frames per video")
    p.add_argument("--size", type=int, default=256, help="frame height and width (px, >= 32)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="YAML/JSON file of SimParams fields, e.g. the fitted.yaml of `mitogan fit-sim` (--set "
                        "overrides it; --size/--frames set size and frames)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a SimParams field, e.g. --set bead_prob=1 --set shot_noise=false "
                        "(see mitogan.simulate.SimParams)")
    p.add_argument("--no-masks", dest="masks", action="store_false",
                   help="write no instance masks (masks/video_NNN.tif)")
    p.add_argument("--preview", type=Path, default=None, metavar="PNG",
                   help="also write a contact sheet of a few frames of the first videos")
    p.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                   help="no progress bar (--no-progress: the old spelling)")
    p.set_defaults(func=run)


def _params(overrides: list[str], config: Path | None = None):
    from mitogan.config import load_config
    from mitogan.simulate import SimParams

    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in ("size", "frames"):
            raise ConfigError(f"--set {key}: use --{key} instead")
    return apply_overrides(load_config(config, SimParams), overrides)


def _preview(out: Path, png: Path, frames: int) -> Path:
    import tifffile

    from mitogan.viz import contact_sheet

    picks = sorted({0, frames // 2, frames - 1})
    rows = []
    for tif in sorted(out.glob("video_*.tif"))[:4]:
        stack = tifffile.imread(tif)
        rows.append((tif.stem, [stack[t] for t in picks]))
    return contact_sheet(rows, png, title=f"simulated frames {picks} of {out}")


# one video's frames as float64 while simulating: beyond this a request is a typo, not a dataset
MAX_VIDEO_BYTES = 8 * 2**30


def _check_args(args) -> None:
    from mitogan.fsutil import check_writable_dir, claim_output_dir

    if not 1 <= args.videos <= 100_000:
        raise ConfigError(f"videos: {args.videos} must be at least 1 (and at most 100000)")
    if not 0 <= args.seed <= 2**31 - 1:
        raise ConfigError(f"--seed {args.seed}: give a whole number from 0 to {2**31 - 1}")
    if args.frames * args.size ** 2 * 8 > MAX_VIDEO_BYTES:
        raise ConfigError(f"--frames {args.frames} x --size {args.size}: one video would need "
                          f"{args.frames * args.size ** 2 * 8 / 2**30:.0f} GiB of memory; ask for fewer frames or "
                          "smaller ones")
    claim_output_dir(args.out, "simulation", overwrite=args.overwrite, create=False, legacy=("simulation.json",))
    if args.preview is not None:
        if args.preview.is_dir():
            raise ConfigError(f"--preview {args.preview}: is a folder; give a .png file name")
        check_writable_dir(args.preview.parent, "--preview")


def run(args) -> int:
    from mitogan.fsutil import atomic_dir
    from mitogan.simulate import simulate_dataset

    params = _params(args.overrides, args.config)
    from mitogan.simulate import _dataset_params

    _dataset_params(args.videos, args.frames, args.size, params)  # --size/--frames ranges, named
    _check_args(args)
    start = time.perf_counter()
    with atomic_dir(args.out, "simulation") as tmp:  # an earlier output (--overwrite) is replaced once this one is complete
        simulate_dataset(tmp, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed,
                         params=params, progress=not args.quiet, masks=args.masks)
    out = args.out
    elapsed = time.perf_counter() - start
    print(f"wrote {args.videos} videos x {args.frames} frames ({args.size}x{args.size}) to {out} "
          f"in {elapsed:.1f} s")
    if args.preview:
        print(f"preview: {_preview(out, args.preview, args.frames)}")
    return 0
