"""The real movies a fit reads, and the fitted file it writes (``fitted.yaml``, read by ``mitogan simulate``)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mitogan.config import to_dict
from mitogan.errors import InputError
from mitogan.simulate import SimParams

__all__ = ["read_movies", "write_fitted", "read_fitted", "FITTED_NAME"]

FITTED_NAME = "fitted.yaml"


def read_movies(paths, *, channel: int | None = None, z="max", progress: bool = False,
                quiet: bool = False) -> tuple[list, float | None]:
    """(videos with their frames of no signal left out, pixel size in µm or None) of the files/folders
    ``paths``, read as every command reads data (``mitogan.io.read_inputs``) and quality-checked as
    ``mitogan evaluate`` does. Videos left with no frame are dropped (and said so unless ``quiet``)."""
    from mitogan.io import read_inputs
    from mitogan.preprocess import quality_report
    from mitogan.tiles import input_pixel_size

    videos = read_inputs([str(p) for p in paths], channel=channel, z=z, progress=progress)
    kept = []
    for v in videos:
        flagged = quality_report(v)["flagged"]
        if flagged and not quiet:
            print(f"{v.source}: {len(flagged)} of {len(v.frames)} frames have no signal and are left out",
                  file=sys.stderr)
        frames = np.delete(v.frames, flagged, axis=0)
        if len(frames):
            v.frames, v.frame_index = frames, np.delete(v.frame_index, flagged)
            kept.append(v)
    if not kept:
        raise InputError(", ".join(map(str, paths)), "every frame was flagged as having no signal; nothing to fit")
    return kept, input_pixel_size(sorted({str(v.source) for v in kept}))


def write_fitted(path, params: SimParams, header: str = "") -> Path:
    """Write every ``SimParams`` field but ``size`` and ``frames`` (those are ``mitogan simulate`` options) as
    YAML, with ``header`` as comment lines; ``mitogan simulate --config`` reads it back."""
    import yaml

    from mitogan.fsutil import atomic_write

    data = {k: v for k, v in to_dict(params).items() if k not in ("size", "frames")}
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return atomic_write(Path(path), comments + yaml.safe_dump(data, sort_keys=False))


def read_fitted(path) -> SimParams:
    """The ``SimParams`` a :func:`write_fitted` file holds (defaults for fields it lacks)."""
    from mitogan.config import load_config

    return load_config(path, SimParams)
