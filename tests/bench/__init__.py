"""Tests of the bench scripts. ``bench/*.py`` are scripts, not a package: ``load_bench`` imports one by path."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_bench(name: str):
    """``bench/<name>.py`` as the module ``name``, registered in ``sys.modules`` (dataclasses look their module up
    while a class is built; a caller may pop it when done)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
