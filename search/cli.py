"""``mitogan search``: a Ray Tune + Optuna search over preprocessing × architecture × loss × init.

The command belongs to the search layer and reaches the ``mitogan`` CLI as a plugin (the entry point
``mitogan.commands: search`` in pyproject.toml), so the core package never imports the search layer.
Ray itself is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser("search", help="run a hyperparameter search on a local Ray or a cluster",
                       description="Run a Ray Tune + Optuna search over preprocessing, architecture, loss and "
                                   "initialisation; write a report and export the best generator.",
                       epilog="Environment: WANDB_MODE (offline unless WANDB_API_KEY is set), WANDB_PROJECT "
                              "(default mitogan), WANDB_API_KEY, RAY_ADDRESS (like --address).",
                       formatter_class=_Formatter)
    p.add_argument("--data", nargs="+", default=[], metavar="PATH",
                   help="files/folders of frames (TIFF, OME-TIFF, GIF, AVI/MP4, PNG/JPEG); default: the built-in simulator")
    p.add_argument("--space", default="smoke", help="a shipped space (smoke, default) or a YAML space file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="change a fixed key of the space, e.g. --set train.steps=200 (repeatable)")
    p.add_argument("--trials", type=int, default=8, help="number of trials")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (default: as resources allow)")
    p.add_argument("--time-budget", metavar="DURATION", default=None,
                   help="stop starting trials once the search has run this long, e.g. 90s, 20m, 2h (plain "
                        "number: seconds); running trials finish, then the report and export follow as usual "
                        "(Optuna's timeout; a resumed search gets what is left). Not with pbt/pb2, whose "
                        "population trains together")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs reserved per trial")
    p.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs per trial; fractional values share a GPU, e.g. 0.25 = four trials per GPU")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--storage", default="runs", help="where searches are stored (directory, NFS, s3://, gs://)")
    p.add_argument("--name", default=None, help="search name, one folder name (default: <space>-<date>-<time>)")
    p.add_argument("--resume", metavar="NAME", default=None,
                   help="continue the stopped search NAME in --storage with the options it was started with "
                        "(finished trials are kept, running ones continue from their last checkpoint). Ray "
                        "unpickles the search's state from the folder, so whoever can write there can run code "
                        "as you: a folder (or state file) that is group/world-writable or not yours is refused")
    p.add_argument("--trust-storage", action="store_true",
                   help="with --resume: resume although the folder is writable by others, or is in an object "
                        "store (s3://, gs://), whose permissions MitoGAN cannot check; only when everyone who "
                        "can write there is trusted")
    p.add_argument("--optuna-storage", metavar="URL", default=None,
                   help="an RDB URL for the Optuna study, e.g. sqlite:////abs/study.db (default: the journal "
                        "optuna.log in the search folder)")
    p.add_argument("--seed", type=int, default=0, help="seed of Optuna's TPE sampler")
    p.add_argument("--scheduler", default="asha", choices=["asha", "pbt", "pb2", "none"],
                   help="asha: Optuna proposes each trial, ASHA stops the worst early; pbt/pb2: population-based "
                        "training (Optuna draws the population; every train.checkpoint_every steps the worst "
                        "quarter copy the best quarter's training state and go on with perturbed learning rates, "
                        "augmentation strength and loss weights; pb2 needs scikit-learn); none: no early stop")
    p.add_argument("--no-asha", dest="asha", action="store_false", help="same as --scheduler none")
    p.add_argument("--no-stopper", dest="stop_nonconvergent", action="store_false",
                   help="do not stop diverging/collapsing trials early")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "random"], help="Optuna sampler (seeded)")
    p.add_argument("--no-wandb", dest="wandb", action="store_false", help="no W&B runs")
    p.add_argument("--cold-trials", dest="reuse_actors", action="store_false",
                   help="start every trial in a fresh worker process (default: a worker that ended a trial runs "
                        "the next one, its imports and data caches warm)")
    p.add_argument("--channel", type=int, default=None, help="channel to read from multi-channel files")
    p.add_argument("--z", default="max", help="z reduction for z-stacks: max, mean or an index")
    p.add_argument("--sim-videos", type=int, default=None, help="videos in the built-in dataset (smaller = faster)")
    p.add_argument("--sim-frames", type=int, default=None, help="frames per simulated video")
    p.add_argument("--sim-config", metavar="FITTED", default=None,
                   help="mix simulator tiles into training: a fitted.yaml of `mitogan fit-sim` (or its --out folder); "
                        "the share (train.sim_share) is then searched unless --set fixes it (mitogan.simmix)")
    p.add_argument("--dashboard", action="store_true",
                   help="start the Ray dashboard on 127.0.0.1 (local Ray) and print its URL (default: off)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show Ray's and Optuna's own console output (results folder, hints, warnings)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", metavar="SEARCH_DIR", default=None,
                   help="only (re)write the HTML report of an existing search and exit")
    p.set_defaults(func=run, supervised=True)  # drives a local Ray: mitogan.cli


# options a resumed search takes from its search.json; giving them with --resume is refused
_FROM_LAUNCH = ("space", "overrides", "data", "trials", "max_concurrent", "time_budget", "cpus_per_trial",
                "gpus_per_trial", "name", "seed", "asha", "scheduler", "stop_nonconvergent", "sampler", "wandb", "channel", "z",
                "sim_videos", "sim_frames", "optuna_storage", "sim_config", "reuse_actors")


def run(args) -> int:
    from mitogan.errors import MitoganError

    if args.report:
        from search.report import write_report_at

        print(write_report_at(args.report))
        return 0
    from search.run import SearchInterrupted, SearchOptions, run_search

    if args.resume:
        defaults = vars(build_defaults())
        given = [k for k in _FROM_LAUNCH if getattr(args, k) != defaults.get(k)]
        if given:
            flag = {"overrides": "--set", "reuse_actors": "--cold-trials"}.get(given[0], "--" + given[0].replace("_", "-"))
            raise MitoganError(f"{flag} with --resume: a resumed search keeps the options it was started with; "
                               "give only --resume NAME --storage DIR (and --address, --trust-storage, -q, -v, --dashboard)")
    if args.sim_config:  # a fixed key of the space (search.json keeps it for --resume): search/space.py
        args.overrides = [*args.overrides, f"train.sim_config={args.sim_config}"]
    from search.run import parse_duration

    opts = SearchOptions(space=args.space, overrides=args.overrides, data=args.data, trials=args.trials,
                         max_concurrent=args.max_concurrent, cpus_per_trial=args.cpus_per_trial,
                         time_budget=None if args.time_budget is None else parse_duration(args.time_budget),
                         gpus_per_trial=args.gpus_per_trial, address=args.address, storage=args.storage,
                         name=args.name, seed=args.seed, asha=args.asha, scheduler=args.scheduler,
                         stop_nonconvergent=args.stop_nonconvergent,
                         sampler=args.sampler, wandb=args.wandb, channel=args.channel, z=_z(args.z),
                         sim_videos=args.sim_videos, sim_frames=args.sim_frames, progress=not args.quiet,
                         verbose=args.verbose, dashboard=args.dashboard, resume=args.resume,
                         optuna_storage=args.optuna_storage, trust_storage=args.trust_storage,
                         reuse_actors=args.reuse_actors)
    try:
        search_dir = run_search(opts)
    except SearchInterrupted as e:
        print(f"mitogan: {e}", file=sys.stderr)
        return e.exit_code
    from search.storage import is_uri

    where = f"{opts.storage.rstrip('/')}/{search_dir.name}" if is_uri(opts.storage) else str(search_dir)
    print(f"search finished: {where}")
    print(f"report: {where}/report/index.html")
    return 0


def build_defaults():
    """The parsed defaults of ``mitogan search`` (to tell what a user gave)."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    register(sub)
    return sub.choices["search"].parse_args([])


class _Formatter(argparse.HelpFormatter):
    """Shows a default only when there is one worth showing (not None, not a flag's False, not [])."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or isinstance(default, bool) or default == [] \
                or default is argparse.SUPPRESS:
            return text
        return f"{text} (default: {action.default})"


def _z(value: str):
    return int(value) if value.lstrip("-").isdigit() else value
