"""``mitogan explain``: which geometric features of mitochondria the discriminator relies on.

    mitogan explain RUN_OR_BUNDLE_OR_SEARCH --data MOVIES_OR_TILES --out DIR [--wandb]

Explains the discriminator of a training run (its folder or checkpoint.pt), of an exported bundle, of a
search trial folder, or of the best trial of a search folder, on real data and as many generated tiles from
the same run's generator. The real data is tiles (a tiles file or the folder `mitogan preprocess --out`
wrote) or raw movies (a file or a folder of them): raw data goes through the source's own preprocessing. DIR receives overlay_real.png and
overlay_generated.png (tile | map | map over tile | structures), ranked.csv and ranked.md (geometry,
features, edits, with effect sizes and 95 % intervals), geometry.csv, features.csv, edits.csv,
summary.json and index.html. Attribution methods that fail the model-randomisation check are not
reported. See docs/explain.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers) -> None:
    p = subparsers.add_parser("explain", help="explain which geometric features the discriminator relies on",
                              description=__doc__)
    p.add_argument("source", type=Path, help="a run folder, a checkpoint.pt, an exported bundle or a search folder")
    p.add_argument("--data", type=Path, required=True, metavar="MOVIES_OR_TILES",
                   help="real data: movies (TIFF, GIF, AVI, ...) or a folder of them, preprocessed as the source "
                        "was; or a tiles .npz or the folder `mitogan preprocess --out` wrote")
    p.add_argument("--out", type=Path, required=True, help="folder for the explanation (new, empty or an earlier "
                                                           "`mitogan explain` output with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier explanation in --out")
    p.add_argument("--max-tiles", type=int, default=1000, help="real tiles explained (a random subset; as many "
                                                                "generated ones)")
    p.add_argument("--no-generated", dest="generated", action="store_false",
                   help="explain real tiles only (no generated tiles from the source's generator)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="which tiles and latents are drawn")
    p.add_argument("--wandb", action="store_true", help="also log the overlays and the table to W&B (offline "
                                                         "by default)")
    p.set_defaults(func=run)


def _check_args(args) -> None:
    from mitogan.errors import MitoganError
    from mitogan.fsutil import claim_output_dir

    if not 2 <= args.max_tiles <= 10**6:
        raise MitoganError(f"--max-tiles {args.max_tiles}: give a whole number from 2 to 1000000")
    if not 0 <= args.seed < 2**31:
        raise MitoganError(f"--seed {args.seed}: give a whole number from 0 to 2147483647")
    if args.device is not None:
        import torch

        try:
            torch.empty(0, device=args.device)
        except Exception as e:
            raise MitoganError(f"--device {args.device}: not usable here ({type(e).__name__}); try cpu") from None
    for p in (args.data, args.source):
        if args.out.resolve() == p.resolve() or p.resolve().is_relative_to(args.out.resolve()):
            raise MitoganError(f"--out {args.out}: it is or holds {p}; choose another --out (nothing was changed)")
    claim_output_dir(args.out, "explain", overwrite=args.overwrite, create=False)


def _check_kinds(args):
    """The source is a run/trial/search/bundle and --data is real data (swapped arguments are named as such);
    returns the source's provenance (its preprocessing, for raw --data)."""
    import shlex

    from mitogan.resolve import RAW_KINDS, SOURCE_KINDS, TILES_KINDS, kind_of, provenance, wrong_input

    source_kind, data_kind = kind_of(args.source), kind_of(args.data)
    if source_kind not in SOURCE_KINDS:
        swapped = data_kind in SOURCE_KINDS
        example = (f"mitogan explain {shlex.quote(str(args.data if swapped else 'BUNDLE'))} --data "
                   f"{shlex.quote(str(args.source))} --out {shlex.quote(str(args.out))}")
        if source_kind in (*TILES_KINDS, *RAW_KINDS):
            raise wrong_input(args.source, source_kind, "source", option="SOURCE", example=example)
        raise wrong_input(args.source, source_kind, "source", option="SOURCE", command="mitogan explain")
    return provenance(args.source, option="SOURCE", command="mitogan explain")


def _real_tiles(args, size: int, prov=None):
    import numpy as np

    from mitogan.errors import InputError
    from mitogan.resolve import real_tiles
    from mitogan.tiles import tiles_path

    import shlex

    example = f"mitogan explain {shlex.quote(str(args.source))} --data MOVIES --out {shlex.quote(str(args.out))}"
    ts = real_tiles(args.data, prov, option="--data", command="mitogan explain", quiet=args.quiet, example=example)
    where = tiles_path(args.data) if args.data.is_dir() and (args.data / "tiles.npz").is_file() else args.data
    if ts.size != size:
        raise InputError(where, f"tiles are {ts.size}x{ts.size} px but the discriminator takes "
                                f"{size}x{size} px tiles; explain it on tiles of its own size")
    if len(ts) < 2:
        raise InputError(where, "holds fewer than 2 tiles; an explanation needs more")
    idx = np.sort(np.random.default_rng(args.seed).permutation(len(ts))[: args.max_tiles])
    return ts.tiles[idx]


def _generated(g, n: int, seed: int, device, truncation: float = 1.0):
    import numpy as np
    import torch

    from mitogan.synth import latents

    out = []
    # latent i is the one `mitogan synth --seed` draws for image i, at the factor it draws at by default
    with torch.inference_mode():
        for i in range(0, n, 256):
            z = latents(g.config["latent_dim"], seed, i, min(256, n - i)) * truncation
            out.append(g(z.to(device)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def run(args) -> int:
    import torch

    from mitogan.explain.pipeline import explain_discriminator
    from mitogan.explain.source import load_source
    from mitogan.fsutil import atomic_dir

    _check_args(args)
    prov = _check_kinds(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    src = load_source(args.source)
    step = src.info.get("step")
    if prov.kind == "run" and step is not None and prov.train_steps and step < prov.train_steps:
        print(f"mitogan: note: {args.source} is an interrupted training run (step {step} of {prov.train_steps}): "
              f"explaining its discriminator as it was at step {step}", file=sys.stderr)
    real = _real_tiles(args, src.image_size, prov)
    d = src.d.to(device)
    fake = _generated(src.g.to(device), len(real), args.seed, device, src.truncation) \
        if args.generated and src.g is not None else None
    info = {"source": str(args.source), "data": str(args.data), "device": str(device), **{
        f"source_{k}": v for k, v in src.info.items()}}
    if fake is not None:  # the generated tiles are what `mitogan synth` draws by default
        info["generated_truncation"] = src.truncation
    with atomic_dir(args.out, "explain") as tmp:  # an earlier explanation (--overwrite) is replaced once this one is complete
        result = explain_discriminator(d, real, fake, tmp, info=info, progress=not args.quiet)
    if args.wandb:
        _log_wandb(args, result)
    s = result["summary"]
    top = [r for r in result["rows"] if r["level"] == "geometry" and r["set"] == "real" and r["rank"] == 1]
    feat = [r for r in result["rows"] if r["level"] == "feature" and r["rank"] == 1]
    print(f"explained {s['n_real']} real + {s['n_fake']} generated tiles in {s['seconds']} s; methods reported: "
          f"{', '.join(s['reported_methods']) or 'none (all failed the sanity check)'}"
          + "".join(f"; {r['method']}: most attention on {r['name']} ({r['estimate']:.2f}x)" for r in top)
          + (f"; top feature {feat[0]['name']}" if feat else ""), file=sys.stderr)
    print(args.out / "index.html")
    return 0


def _log_wandb(args, result) -> None:
    """The overlays as images and the ranked table as a W&B table, in one (offline by default) run."""
    from mitogan.explain.report import TABLE_COLUMNS
    from mitogan.report import scalars
    from mitogan.tracking import WandbRun, flush_all

    run = WandbRun(name=f"explain-{args.out.name}", job_type="explain", dir=args.out,
                   config={"source": str(args.source), "data": str(args.data), "max_tiles": args.max_tiles})
    try:
        for p in result["overlays"]:
            run.log_image(f"explain/{Path(p).stem}", args.out / Path(p).name)
        run.log_table("explain/ranked", list(TABLE_COLUMNS),
                      [[r.get(c) for c in TABLE_COLUMNS] for r in result["rows"]])
        run.summary(scalars(result["summary"]))
    finally:
        run.finish()
        flush_all()
