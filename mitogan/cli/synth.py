"""``mitogan synth``: a synthetic dataset from a generator bundle."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate a synthetic dataset from a generator bundle",
                       description="Generate N images from a bundle (GPU when present): PNG or TIFF tiles, an "
                                   "ImageJ/OME-TIFF stack, or one .npy array; a manifest.csv; reproducible from "
                                   "--seed, resumable. TIFFs carry the pixel size in µm when known and intensities "
                                   "in the data's units when the bundle records the mapping.")
    p.add_argument("bundle", help="a generator bundle directory (from `mitogan export`), or a search folder "
                                  "whose best/ bundle was exported")
    p.add_argument("-n", type=int, default=1000, help="number of images to write")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", default="png", choices=["png", "tiff", "npy"],
                   help="png (8-bit), tiff (ImageJ, in the data's units when the bundle knows them), npy (float32)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (same seed = same images)")
    p.add_argument("--batch-size", type=int, default=512, help="images per generator batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--min-set-distance", type=float, default=0.0,
                   help="drop near-duplicates: RMS distance (16x16, [0,1]) to an earlier image below this (e.g. 0.02)")
    p.add_argument("--reference", default=None,
                   help="training tiles (.npz from `mitogan preprocess`) for novelty scores and --min-novelty")
    p.add_argument("--min-novelty", type=float, default=0.0,
                   help="drop images whose distance to the nearest reference tile is below this (memorisation)")
    p.add_argument("--stack", action="store_true",
                   help="tiff: one ImageJ stack OUT/images.tif (manifest row k = slice k+1), not one file per image")
    p.add_argument("--ome", action="store_true", help="tiff: write OME-TIFF instead of ImageJ TIFF")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="tiff: µm per pixel (default: the bundle's, when its training data recorded one)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mitogan.errors import MitoganError
    from mitogan.synth import SynthOptions, synthesize

    reference = None
    if args.reference:
        from mitogan.tiles import load_tiles

        reference = load_tiles(args.reference).tiles
    elif args.min_novelty:
        raise MitoganError("--min-novelty needs --reference TILES (the training tiles to compare with)")
    opts = SynthOptions(n=args.n, seed=args.seed, batch_size=args.batch_size, format=args.format, device=args.device,
                        min_set_distance=args.min_set_distance, min_train_distance=args.min_novelty,
                        stack=args.stack, ome=args.ome, pixel_size_um=args.pixel_size)
    summary = synthesize(_bundle_dir(args.bundle), args.out, opts, reference=reference, progress=not args.quiet)
    print(f"wrote {summary['kept']} images to {summary['out']} (dropped: {summary['dropped_duplicate']} "
          f"near-duplicates, {summary['dropped_memorised']} too close to training tiles; resumed "
          f"{summary['resumed_batches']} batches)")
    if opts.format == "tiff":
        px = summary["pixel_size_um"]
        print(f"tiff: {summary['units']}; pixel size {f'{px:.4g} µm' if px else 'unknown (pass --pixel-size UM)'}")
    if "warning" in summary:
        print(f"warning: {summary['warning']}")
    return 0


def _bundle_dir(path: str):
    """The bundle itself, or SEARCH/best when given the search folder `mitogan export` wrote it into."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir() and not (p / "checksums.sha256").exists() and (p / "best" / "checksums.sha256").exists():
        return p / "best"
    return p
