"""``mitogan synth``: a synthetic dataset from a generator bundle."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("synth", help="generate a synthetic dataset from a generator bundle",
                       description="Generate N images from a bundle (GPU when present): PNG or TIFF tiles, an "
                                   "ImageJ/OME-TIFF stack, or one .npy array; a manifest.csv; reproducible from "
                                   "--seed (image i comes from latent i whatever --batch-size), resumable with --resume "
                                   "after an interruption. TIFFs carry the pixel size in µm when known and intensities "
                                   "in the data's units when the bundle records the mapping.")
    p.add_argument("bundle", help="a generator bundle directory (from `mitogan export`), or a search folder "
                                  "whose best/ bundle was exported")
    p.add_argument("-n", type=int, default=1000, help="number of images to write")
    p.add_argument("--out", required=True, help="output directory (new, empty, or an earlier synth output with "
                                                "--resume/--overwrite)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted synth in --out (same bundle and options): the same images as an "
                        "uninterrupted run")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier synth output in --out (only once the new one is complete)")
    p.add_argument("--format", default="png", choices=["png", "tiff", "npy", "tar"],
                   help="png (8-bit), tiff (ImageJ, in the data's units when the bundle knows them), npy (float32), "
                        "tar (the PNGs as one tar shard per batch, OUT/images/shard_*.tar: for 100k+ images)")
    p.add_argument("--seed", type=int, default=0, help="latent seed (same seed = same images)")
    p.add_argument("--batch-size", type=int, default=512, help="images per generator batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--min-set-distance", type=float, default=0.0,
                   help="drop near-duplicates: RMS distance (16x16, [0,1]) to an earlier image below this (e.g. 0.02)")
    p.add_argument("--reference", default=None, metavar="MOVIES_OR_TILES",
                   help="the training data, for novelty scores and --min-novelty: tiles (.npz or the folder from "
                        "`mitogan preprocess`), or raw movies (a file or folder), preprocessed as the bundle's "
                        "training data was")
    p.add_argument("--min-novelty", default="auto",
                   help="drop images whose distance to the nearest reference tile is below this (memorisation); "
                        "auto (default with --reference): the distance that 95 %% of held-out real tiles exceed; "
                        "0 turns the filter off")
    p.add_argument("--truncation", type=float, default=None, metavar="PSI",
                   help="the truncation trick: draw every latent as PSI x z, in (0, 1]; 1 is off. Lower trades "
                        "diversity for typical images. Default: the factor the bundle's search trial chose by its "
                        "held-out score (the model card says which), else 1")
    p.add_argument("--stack", action="store_true",
                   help="tiff: one ImageJ stack OUT/images.tif (manifest row k = slice k+1), not one file per image")
    p.add_argument("--ome", action="store_true", help="tiff: write OME-TIFF instead of ImageJ TIFF")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="tiff: µm per pixel (default: the bundle's, when its training data recorded one)")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from mitogan.cli import StopRequest
    from mitogan.errors import MitoganError
    from mitogan.fsutil import atomic_dir, claim_output_dir
    from mitogan.synth import SynthOptions, check_options, synthesize

    auto = str(args.min_novelty).strip().lower() == "auto"
    try:
        min_novelty = 0.0 if auto else float(args.min_novelty)
    except ValueError:
        raise MitoganError(f"--min-novelty: {args.min_novelty!r} is neither a number nor 'auto'") from None
    opts = SynthOptions(n=args.n, seed=args.seed, batch_size=args.batch_size, format=args.format, device=args.device,
                        min_set_distance=args.min_set_distance, min_train_distance=min_novelty,
                        stack=args.stack, ome=args.ome, pixel_size_um=args.pixel_size, truncation=args.truncation)
    check_options(opts)
    if min_novelty and not args.reference:
        raise MitoganError("--min-novelty needs --reference TILES (the training tiles to compare with)")
    if args.resume and args.overwrite:
        raise MitoganError("--resume continues the synth in --out and --overwrite replaces it: pass one of them")
    out = Path(args.out)
    mode = claim_output_dir(out, "synth", resume=args.resume, overwrite=args.overwrite, create=False,
                            legacy=(".synth-run.json",))
    bundle = _bundle_dir(args.bundle)
    reference = None
    if args.reference:
        from mitogan.resolve import provenance, real_tiles

        ref_set = real_tiles(args.reference, provenance(bundle), option="--reference", command="mitogan synth",
                             quiet=args.quiet)
        reference = ref_set.tiles
        if auto:
            from dataclasses import replace

            from mitogan.errors import InputError
            from mitogan.export import load_bundle_config
            from mitogan.synth import novelty_threshold

            size = load_bundle_config(bundle)["generator"]["image_size"]
            if reference.ndim != 4 or reference.shape[-1] != size:  # checked before the threshold is computed
                raise InputError("--reference", f"tiles of shape {reference.shape} do not match the bundle's "
                                                f"{size} px images")
            opts = replace(opts, min_train_distance=novelty_threshold(ref_set))
            if not args.quiet:
                print(f"synth: novelty filter at {opts.min_train_distance:.4g} (95 % of held-out real tiles are "
                      "further from a training tile; --min-novelty 0 turns it off)", file=sys.stderr)
    resume = _resume_command(args)
    with StopRequest() as stop:
        if mode != "overwrite":
            summary = synthesize(bundle, out, opts, reference=reference, progress=not args.quiet, stop=stop,
                                 resume_command=resume)
        else:  # the earlier output stays until the new one is complete
            try:
                with atomic_dir(out, "synth") as tmp:
                    summary = synthesize(bundle, tmp, opts, reference=reference, progress=not args.quiet, stop=stop,
                                         resume_command=_resume_command(args, "--overwrite"))
                    if summary.get("stopped"):
                        raise KeyboardInterrupt
                    _relocate_summary(tmp, out, summary)
            except KeyboardInterrupt:
                if not stop():
                    raise
                print(f"mitogan: stopped before the new output was complete; {out} still holds the earlier one",
                      file=sys.stderr)
                return stop.exit_status
    if summary.get("stopped"):
        print(f"mitogan: stopped after {summary['kept']} images; continue with `{resume}` (it writes the same "
              "images an uninterrupted run would)", file=sys.stderr)
        return stop.exit_status
    print(f"wrote {summary['kept']} images to {out} (dropped: {summary['dropped_duplicate']} "
          f"near-duplicates, {summary['dropped_memorised']} too close to training tiles; resumed "
          f"{summary['resumed_batches']} batches)")
    if args.truncation is None and summary.get("truncation", 1) != 1:
        print(f"truncation {summary['truncation']:g}: every latent drawn as {summary['truncation']:g} x z, the factor "
              "the bundle's search trial chose (its model card says why; --truncation 1 draws without)")
    if opts.format == "tiff":
        px = summary["pixel_size_um"]
        print(f"tiff: {summary['units']}; pixel size {f'{px:.4g} µm' if px else 'unknown (pass --pixel-size UM)'}")
    if "warning" in summary:
        print(f"warning: {summary['warning']}")
    return 0


def _relocate_summary(tmp, out, summary: dict) -> None:
    """synth.json of an output built in a temporary folder names the final one."""
    import json

    from mitogan.fsutil import atomic_write

    summary["out"] = str(out)
    atomic_write(tmp / "synth.json", json.dumps(summary, indent=2))


def _bundle_dir(path: str):
    """The bundle itself, or SEARCH/best when given the search folder `mitogan export` wrote it into; anything
    else is one line naming the command that makes a bundle of it."""
    from pathlib import Path

    from mitogan.resolve import kind_of, wrong_input

    p = Path(path)
    kind = kind_of(p)
    if kind == "bundle":
        return p.parent if p.is_file() else p
    if kind == "search" and kind_of(p / "best") == "bundle":
        return p / "best"
    raise wrong_input(p, kind, "bundle", option="BUNDLE", command="mitogan synth")


def _resume_command(args, flag: str = "--resume") -> str:
    """The command line that continues this synth: the user's own, with --resume (an --overwrite run, which
    builds in a temporary folder, starts again with --overwrite)."""
    import shlex

    parts = ["mitogan", "synth", str(args.bundle), "-n", str(args.n), "--out", str(args.out)]
    defaults = {"format": "png", "seed": 0, "batch_size": 512, "device": "auto", "min_set_distance": 0.0,
                "reference": None, "min_novelty": "auto", "pixel_size": None}
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    parts += ["--stack"] * args.stack + ["--ome"] * args.ome + [flag]
    return " ".join(shlex.quote(p) for p in parts)
