"""``mitogan fit-sim DATA... --out DIR``: fit the simulator's parameters to a lab's movies.

A plugin command of the search layer (entry point ``mitogan.commands: fit-sim``); Ray is imported only when
it runs. See ``search.fitsim`` for what it does and writes, and docs/simulation-fit.md for what a fit can
and cannot recover.
"""

from __future__ import annotations

import sys

__all__ = ["register", "run"]

_EXAMPLE = """
examples:

  mitogan fit-sim ../shared/data --out runs/fit --trials 40
  mitogan fit-sim movie.tif --out runs/fit --pixel-size 0.056 --frame-interval 5
  mitogan fit-sim --out runs/fit --resume              (continue a stopped fit)
  mitogan simulate --config runs/fit/fitted.yaml --out sim   (labelled data from the fitted simulator)
"""


def register(sub) -> None:
    p = sub.add_parser("fit-sim", help="fit the simulator's parameters to real movies (Ray Tune + Optuna)",
                       description="Fit SimParams (width, length, density, PSF, noise, motion, fission, "
                                   "bleaching, ...) so that simulated movies look like DATA: a Ray Tune + Optuna "
                                   "search minimising realism_gap between simulated and real tiles plus a gap in "
                                   "temporal statistics, with short small simulations first (ASHA). Writes "
                                   "OUT/fitted.yaml (for `mitogan simulate --config`), OUT/report/ and "
                                   "OUT/fit.json; W&B offline runs under OUT/state/wandb.",
                       epilog=_EXAMPLE)
    p.add_argument("data", nargs="*", metavar="DATA",
                   help="movies (TIFF, OME-TIFF, GIF, AVI/MP4) or folders of them; none: the built-in "
                        "simulated dataset (a check that the fit recovers the defaults)")
    p.add_argument("--out", required=True, help="output folder (new or empty; with --resume: the stopped fit)")
    p.add_argument("--trials", type=int, default=40, help="simulator settings to try")
    p.add_argument("--resume", action="store_true", help="continue the stopped fit in --out with its options")
    p.add_argument("--storage", default=None,
                   help="where Ray's and Optuna's state goes: a folder or s3:// URI (default: OUT/state)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler, the split and the simulations")
    p.add_argument("--tile", type=int, default=64, help="tile size (px) at which frames are compared")
    p.add_argument("--params", default=None, metavar="NAME,...",
                   help="fit only these SimParams fields (the rest keep their defaults); default: all 18")
    p.add_argument("--pixel-size", dest="pixel_size_um", type=float, default=None,
                   help="µm per pixel of DATA, for the fit in physical units (default: from the TIFFs, if any)")
    p.add_argument("--frame-interval", dest="frame_interval_s", type=float, default=None,
                   help="seconds between frames of DATA, for rates per second")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--no-asha", dest="asha", action="store_false", help="every trial runs every rung")
    p.add_argument("--no-wandb", dest="wandb", action="store_false", help="no W&B runs")
    p.add_argument("--smoke", action="store_true", help="tiny simulations (seconds per trial): a quick check")
    p.add_argument("--channel", type=int, default=None, help="channel to read from multi-channel files")
    p.add_argument("--z", default="max", help="z reduction for z-stacks: max, mean or an index")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="count", default=0, help="Ray's and Optuna's own console output")
    p.set_defaults(func=run, supervised=True)  # drives a local Ray: mitogan.cli


def run(args) -> int:
    from search.fitsim import FitInterrupted, FitOptions, run_fit

    params = [s.strip() for s in args.params.split(",") if s.strip()] if args.params else None
    opts = FitOptions(data=list(args.data), out=args.out, trials=args.trials, storage=args.storage,
                      resume=args.resume, seed=args.seed, tile=args.tile, params=params, smoke=args.smoke,
                      asha=args.asha, wandb=args.wandb, progress=not args.quiet, verbose=bool(args.verbose),
                      address=args.address, cpus_per_trial=args.cpus_per_trial,
                      pixel_size_um=args.pixel_size_um, frame_interval_s=args.frame_interval_s,
                      channel=args.channel, z=args.z)
    try:
        run_fit(opts)
    except FitInterrupted as e:
        print(f"mitogan: {e}", file=sys.stderr)
        return 130
    return 0
