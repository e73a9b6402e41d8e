"""``mitogan train``: one local GAN training run (CPU or one GPU) writing a run folder.

    mitogan train --config FILE [--set key=value ...] --data TILES --out RUNDIR [--resume] [--wandb] [--smoke]

TILES is a tiles file or the folder ``mitogan preprocess --out`` wrote. RUNDIR receives config.yaml (resolved),
checkpoint.pt, metrics.jsonl, data.json (what it trained on: sources, intensity mapping, pixel size, split;
``mitogan export`` reads it), samples/step_XXXXXX.png, loss_curves.png and signals.png. Without --data the
built-in simulated dataset is preprocessed with the config's ``preprocess`` section (cached).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mitogan.errors import InputError, MitoganError

__all__ = ["register", "run", "SMOKE_OVERRIDES"]

# Tiny networks and few steps: finishes in seconds on a CPU. Applied before the user's --set.
SMOKE_OVERRIDES = ["model.g_width=8", "model.d_width=8", "model.latent_dim=16", "model.depth=0",
                   "train.steps=12", "train.batch_size=16", "train.report_every=4", "train.sample_every=6",
                   "train.checkpoint_every=6", "train.n_samples=16", "train.eval_samples=64"]


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one GAN locally and write a run folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML/JSON config file (nested or flat dotted keys)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set loss.kind=wgan_gp (repeatable)")
    p.add_argument("--data", type=Path, metavar="TILES",
                   help="tiles .npz, or the folder `mitogan preprocess --out` wrote (default: the built-in simulated "
                        "data)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the run from RUNDIR/checkpoint.pt")
    p.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (offline by default)")
    p.add_argument("--smoke", action="store_true", help="tiny networks, 12 steps: a seconds-long check")
    p.add_argument("--no-eval", dest="evaluate", action="store_false",
                   help="skip the metrics (primary objective, ...) at train.eval_every and at the end, and train "
                        "on all tiles (no held-out split)")
    p.set_defaults(func=run)


def run(args) -> int:
    from mitogan.config import Config, load_config, to_flat
    from mitogan.train import train

    cfg = load_config(args.config, Config, overrides=(SMOKE_OVERRIDES if args.smoke else []) + args.overrides)
    tiles = _load_data(args.data, cfg)
    resume = args.out / "checkpoint.pt" if args.resume else None
    if resume is not None and not resume.is_file():
        raise InputError(resume, "no checkpoint to resume from (run once without --resume first)")
    tracker = _tracker(args, to_flat(cfg)) if args.wandb else None
    evaluate = _evaluator(tiles, cfg) if args.evaluate else None
    _write_data_info(args.out / "data.json", tiles, evaluate)
    if evaluate is not None:  # train on the training split; the evaluator scores against the held-out one
        from mitogan.metrics.protocol import training_tiles

        tiles = training_tiles(tiles, cfg.train.holdout)
    try:
        result = train(cfg, tiles, out_dir=args.out, resume=resume, progress=not args.quiet, evaluate=evaluate,
                       on_report=(lambda r: tracker.log(r, step=int(r["step"]))) if tracker else None)
    finally:
        if tracker is not None:
            tracker.finish()
            from mitogan.tracking import flush_all

            flush_all()  # finish() can return before the offline .wandb file is complete
    r = result.report
    print(f"trained {result.steps} steps{' (stopped)' if result.stopped else ''}: loss_d {r['loss_d']:.4g}, "
          f"loss_g {r['loss_g']:.4g}, critic estimate {r['wasserstein']:.4g}, diversity {r['diversity']:.3g}; "
          f"signals: {_fired(r) or 'none'}" + (f"; primary {r['primary']:.4g}" if "primary" in r else ""),
          file=sys.stderr)
    print(args.out)
    return 0


def _evaluator(tiles, cfg):
    """The search's own objective (mitogan.metrics) against held-out real tiles, cached per dataset."""
    from mitogan.metrics import InTrainingEvaluator

    return InTrainingEvaluator(tiles, holdout=cfg.train.holdout)


def _write_data_info(path: Path, tiles, evaluator) -> None:
    """What the run trains on, for `mitogan export` (the same record a search trial writes)."""
    import json

    from mitogan.tiles import tile_pixel_size

    info = {"n_tiles": len(tiles), "size": tiles.size, "sources": tiles.meta.get("sources"),
            "intensity": tiles.meta.get("intensity"), "pixel_size_um": tiles.meta.get("pixel_size_um"),
            "tile_pixel_size_um": tile_pixel_size(tiles.meta),
            "cache_key": tiles.meta.get("cache_key"),
            "evaluation": dict(evaluator.reference.split) if evaluator is not None else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2, default=str))


def _fired(report: dict) -> str:
    return ", ".join(k[len("signal_"):] for k, v in report.items() if k.startswith("signal_") and k != "signal_any"
                     and v)


def _load_data(path, cfg):
    """Tiles from ``path`` (size checked against the config) or the simulated default dataset."""
    from mitogan.tiles import load_tiles

    if path is None:
        return _simulated_tiles(cfg)
    ts = load_tiles(path)
    if ts.size != cfg.image_size:
        raise InputError(path, f"tiles are {ts.size}x{ts.size} px but preprocess.tile.size is {cfg.image_size} "
                               f"(pass --set preprocess.tile.size={ts.size} or re-run `mitogan preprocess`)")
    return ts


def _simulated_tiles(cfg):
    try:
        from mitogan.io import read_inputs
        from mitogan.preprocess import Pipeline
        from mitogan.simulate import default_dataset
    except ImportError as e:
        raise MitoganError(f"no --data given and the built-in simulated dataset is unavailable ({e}); "
                           "pass --data TILES.npz") from None
    return Pipeline(cfg.preprocess).run(read_inputs([default_dataset()]))


def _tracker(args, flat_config: dict):
    from mitogan.tracking import WandbRun

    return WandbRun(name=args.out.name, config=flat_config, dir=args.out, tags=["train"])
