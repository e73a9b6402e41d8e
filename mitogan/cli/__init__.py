"""The ``mitogan`` command. Each sub-command lives in its own module here with ``register(subparsers)``.

Errors meant for a person (``MitoganError``) print as one line, ``mitogan: error: ...``, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mitogan.errors import MitoganError

__all__ = ["main", "build_parser"]

# sub-command modules, in the order shown by --help
COMMANDS = ["simulate", "preprocess", "train", "evaluate", "search", "export", "synth"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mitogan", description="MitoGAN: find stable GANs for small fluorescence-microscopy datasets of "
                                    "mitochondria (Ray Tune + Optuna), then generate synthetic data.")
    from mitogan import __version__

    parser.add_argument("--version", action="version", version=f"mitogan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mitogan.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"mitogan.cli.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MitoganError as e:
        print(f"mitogan: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mitogan: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
