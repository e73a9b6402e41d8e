"""``mitogan train``: one local GAN training run (CPU or one GPU) writing a run folder.

    mitogan train --config FILE [--set key=value ...] --data TILES --out RUNDIR [--resume | --overwrite] [--wandb]
                  [--smoke]
    mitogan train --help-config     (every config key: default, allowed values, meaning)

TILES is a tiles file or the folder ``mitogan preprocess --out`` wrote; with --resume it may also be the raw
movies (a file or a folder), which then go through the run's own preprocessing. RUNDIR receives config.yaml (resolved),
checkpoint.pt, metrics.jsonl, data.json (what it trained on: sources, intensity mapping, pixel size, split;
``mitogan export`` reads it), samples/step_XXXXXX.png, loss_curves.png and signals.png. Without --data the
built-in simulated dataset is preprocessed with the config's ``preprocess`` section (cached).

RUNDIR must be new or empty; a run folder from an earlier ``mitogan train`` is continued with --resume or
replaced with --overwrite (only once the new run is complete), and any other folder is refused untouched.
Ctrl-C (or SIGTERM) stops at the end of the current step with a checkpoint and prints the command that
resumes the run (exit status 130, or 143).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mitogan.errors import InputError, MitoganError

__all__ = ["register", "run", "config_help", "SMOKE_OVERRIDES"]

# Tiny networks and few steps: finishes in seconds on a CPU. Applied before the user's --set.
SMOKE_OVERRIDES = ["model.g_width=8", "model.d_width=8", "model.latent_dim=16", "model.depth=0",
                   "train.steps=12", "train.batch_size=16", "train.report_every=4", "train.sample_every=6",
                   "train.checkpoint_every=6", "train.n_samples=16", "train.eval_samples=64"]


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train one GAN locally and write a run folder",
                              description=__doc__)
    p.add_argument("--config", type=Path, help="YAML/JSON config file (nested or flat dotted keys)")
    p.add_argument("--help-config", action=_HelpConfig,
                   help="list every config key with its default, allowed values and meaning, and exit")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set loss.kind=wgan_gp (repeatable)")
    p.add_argument("--data", type=Path, metavar="TILES",
                   help="tiles .npz, or the folder `mitogan preprocess --out` wrote (default: the built-in simulated "
                        "data); with --resume also raw movies, preprocessed as the run's own data was")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--resume", action="store_true", help="continue the run from RUNDIR/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in RUNDIR (only once the new run is complete)")
    p.add_argument("--wandb", action="store_true", help="also log to Weights & Biases (offline by default)")
    p.add_argument("--smoke", action="store_true", help="tiny networks, 12 steps: a seconds-long check")
    p.add_argument("--no-eval", dest="evaluate", action="store_false",
                   help="skip the metrics (primary objective, ...) at train.eval_every and at the end, and train "
                        "on all tiles (no held-out split)")
    p.set_defaults(func=run)


class _HelpConfig(argparse.Action):
    """``--help-config``: like ``--help``, acts as soon as it is parsed (no --out needed)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(config_help())
        parser.exit()


def config_help() -> str:
    """Every config key (dotted, as for --set and search spaces), its default, allowed values and help."""
    from mitogan.config import Config

    rows = list(_config_rows(Config))
    width = max(len(key) for key, *_ in rows if key)
    lines = []
    for key, default, allowed, text in rows:
        if not key:  # a section heading
            lines += ["", text]
        else:
            lines.append(f"  {key:<{width}}  {default:<8} {allowed + '  ' if allowed else ''}{text}")
    return "config keys (set with --set KEY=VALUE, a --config file, or a search space):" + "\n".join(lines)


def _config_rows(cls, prefix: str = ""):
    import dataclasses
    import typing

    from mitogan.config import Section

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if isinstance(hints[f.name], type) and issubclass(hints[f.name], Section):
            yield "", "", "", f"{prefix}{f.name}: {f.metadata['help']}"
            yield from _config_rows(hints[f.name], f"{prefix}{f.name}.")
            continue
        meta = f.metadata
        if meta.get("choices"):
            allowed = "{" + ", ".join(map(str, meta["choices"])) + "}"
        elif meta.get("lo") is not None or meta.get("hi") is not None:
            lo, hi = meta.get("lo"), meta.get("hi")
            allowed = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"[{lo}, {hi}]"
        else:
            allowed = ""
        default = "null" if f.default is None else str(f.default).lower() if isinstance(f.default, bool) \
            else str(f.default)
        yield f"{prefix}{f.name}", default, allowed, meta.get("help", "")


def run(args) -> int:
    from mitogan.cli import StopRequest
    from mitogan.config import Config, load_config
    from mitogan.fsutil import atomic_dir, claim_output_dir

    cfg = load_config(args.config, Config, overrides=(SMOKE_OVERRIDES if args.smoke else []) + args.overrides)
    if args.resume and args.overwrite:
        raise MitoganError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    if cfg.train.device == "cuda":  # an impossible request fails now, not after the data is read
        import torch

        if not torch.cuda.is_available():
            raise MitoganError("train.device: 'cuda' requested but this machine has no CUDA GPU (use auto or cpu)")
    if cfg.train.sim_share > 0:  # a missing or unreadable simulator fails now, not after the data is read
        from mitogan.simmix import sim_params

        sim_params(cfg.train.sim_config)
    # refuse before any data is read: a folder we did not make, a finished run without --resume/--overwrite
    claim = dict(overwrite=args.overwrite, resume=args.resume, legacy=RUN_FILES)
    mode = claim_output_dir(args.out, "run", create=False, **claim)
    if args.resume and mode == "new":
        raise InputError(args.out, "no run to resume here (start without --resume)")
    if args.resume:
        _check_checkpoint(args.out / "checkpoint.pt")
    tiles = _load_data(args.data, cfg, run=args.out if args.resume else None, quiet=args.quiet)
    cfg = _tile_size_from_data(args, cfg, tiles)
    claim_output_dir(args.out, "run", **claim)
    with StopRequest() as stop:
        if mode != "overwrite":
            result = _train(args, cfg, tiles, args.out, stop)
        else:  # the earlier run stays until the new one is complete
            try:
                with atomic_dir(args.out, "run") as tmp:
                    result = _train(args, cfg, tiles, tmp, stop)
                    if stop():
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                if not stop():
                    raise
                print(f"mitogan: stopped before the new run was complete; {args.out} still holds the earlier run",
                      file=sys.stderr)
                return stop.exit_status
    if stop():
        print(f"mitogan: stopped at step {result.steps}; the checkpoint is saved. Resume with: "
              f"{_resume_command(args)}", file=sys.stderr)
        return stop.exit_status
    r = result.report
    print(f"trained {result.steps} steps{' (stopped)' if result.stopped else ''}: loss_d {r['loss_d']:.4g}, "
          f"loss_g {r['loss_g']:.4g}, critic estimate {r['wasserstein']:.4g}, diversity {r['diversity']:.3g}; "
          f"signals: {_fired(r) or 'none'}" + (f"; primary {r['primary']:.4g}" if "primary" in r else ""),
          file=sys.stderr)
    print(args.out)
    return 0


def _check_checkpoint(path: Path) -> None:
    """The checkpoint to resume from loads (tensors only), before any data is read."""
    import warnings

    from mitogan.train import load_checkpoint

    if not path.is_file():
        raise InputError(path, "no checkpoint to resume from (start again with --overwrite)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's pickle-protocol warnings: the error below says what matters
        try:
            load_checkpoint(path)
        except InputError as e:
            if "Weights only load failed" in str(e) or "weights_only" in str(e):
                raise InputError(path, "not a MitoGAN checkpoint: it holds Python objects other than tensors, "
                                       "which MitoGAN never loads; start again with --overwrite") from None
            raise


# the files that mark a run folder written before run folders carried a marker
RUN_FILES = ("checkpoint.pt", "config.yaml")


def _train(args, cfg, tiles, out: Path, stop):
    """Train into ``out`` (the run folder, or the temporary one that replaces it); stops when ``stop()``."""
    from mitogan.config import to_flat
    from mitogan.train import train

    resume = out / "checkpoint.pt" if args.resume else None
    tracker = _tracker(args, to_flat(cfg), out) if args.wandb else None
    evaluate = _evaluator(tiles, cfg) if args.evaluate else None
    _write_data_info(out / "data.json", tiles, evaluate, _resume_command(args))
    if evaluate is not None:  # train on the training split; the evaluator scores against the held-out one
        from mitogan.metrics.protocol import training_tiles

        tiles = training_tiles(tiles, cfg.train.holdout)
    try:
        return train(cfg, tiles, out_dir=out, resume=resume, progress=not args.quiet, evaluate=evaluate,
                     should_stop=stop, on_report=(lambda r: tracker.log(r, step=int(r["step"]))) if tracker else None)
    finally:
        if tracker is not None:
            tracker.finish()
            from mitogan.tracking import flush_all

            flush_all()  # finish() can return before the offline .wandb file is complete


def _resume_command(args) -> str:
    import shlex

    parts = ["mitogan", "train", "--out", str(args.out), "--resume"]
    if args.config:
        parts += ["--config", str(args.config)]
    if args.data:
        parts += ["--data", str(args.data)]
    for o in args.overrides:
        parts += ["--set", o]
    parts += ["--smoke"] * args.smoke + ["--no-eval"] * (not args.evaluate) + ["--wandb"] * args.wandb
    return " ".join(shlex.quote(x) for x in parts)


def _evaluator(tiles, cfg):
    """The search's own objective (mitogan.metrics) against held-out real tiles, cached per dataset."""
    from mitogan.metrics import InTrainingEvaluator

    return InTrainingEvaluator(tiles, holdout=cfg.train.holdout)


def _write_data_info(path: Path, tiles, evaluator, resume_command: str | None = None) -> None:
    """What the run trains on, for `mitogan export` (the same record a search trial writes), and the command
    that resumes it (named by commands that refuse the run while it is unfinished)."""
    import json

    from mitogan.tiles import tile_pixel_size

    info = {"n_tiles": len(tiles), "size": tiles.size, "sources": tiles.meta.get("sources"),
            "intensity": tiles.meta.get("intensity"), "pixel_size_um": tiles.meta.get("pixel_size_um"),
            "tile_pixel_size_um": tile_pixel_size(tiles.meta), "frame_interval_s": tiles.meta.get("frame_interval_s"),
            "resume_command": resume_command,
            "cache_key": tiles.meta.get("cache_key"),
            "evaluation": dict(evaluator.reference.split) if evaluator is not None else None}
    from mitogan.fsutil import atomic_write, json_safe

    atomic_write(path, json.dumps(json_safe(info), indent=2, default=str))


def _fired(report: dict) -> str:
    return ", ".join(k[len("signal_"):] for k, v in report.items() if k.startswith("signal_") and k != "signal_any"
                     and v)


def _load_data(path, cfg, run: Path | None = None, quiet: bool = False):
    """Tiles from ``path`` (size checked against the config) or the simulated default dataset. When resuming
    ``run``, raw movies are accepted too and go through the run's own preprocessing; anything else that is not
    tiles is one line naming the command that makes tiles of it."""
    from mitogan.resolve import RAW_KINDS, TILES_KINDS, kind_of, provenance, real_tiles, wrong_input
    from mitogan.tiles import load_tiles

    if path is None:
        return _simulated_tiles(cfg)
    kind = kind_of(path)
    if kind in RAW_KINDS and run is not None:
        ts = real_tiles(path, provenance(run, option="--out"), option="--data", quiet=quiet)
    elif kind not in TILES_KINDS:
        raise wrong_input(path, kind, "tiles", option="--data", command="mitogan train")
    else:
        ts = load_tiles(path)
    return ts


def _tile_size_from_data(args, cfg, tiles):
    """The tiles fix the image size when neither --config nor --set chose one (so the command `mitogan
    preprocess` suggests, `mitogan train --data TILES --out RUN`, works for tiles of any size)."""
    if tiles.size == cfg.image_size:
        return cfg
    if args.config or args.resume or any(o.split("=")[0].strip() == "preprocess.tile.size" for o in args.overrides):
        raise InputError(args.data, f"tiles are {tiles.size}x{tiles.size} px but preprocess.tile.size is "
                                    f"{cfg.image_size} (pass --set preprocess.tile.size={tiles.size} or re-run "
                                    "`mitogan preprocess`)")
    from mitogan.config import apply_overrides

    print(f"mitogan: --data holds {tiles.size} px tiles: training {tiles.size} px images", file=sys.stderr)
    return apply_overrides(cfg, [f"preprocess.tile.size={tiles.size}"])


def _simulated_tiles(cfg):
    try:
        from mitogan.io import read_inputs
        from mitogan.preprocess import Pipeline
        from mitogan.simulate import default_dataset
    except ImportError as e:
        raise MitoganError(f"no --data given and the built-in simulated dataset is unavailable ({e}); "
                           "pass --data TILES.npz") from None
    return Pipeline(cfg.preprocess).run(read_inputs([default_dataset()]))


def _tracker(args, flat_config: dict, out: Path):
    from mitogan.tracking import WandbRun

    return WandbRun(name=args.out.name, config=flat_config, dir=out, tags=["train"])
