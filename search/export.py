"""Export a search's best finished trial (or a chosen one) as a generator bundle (``mitogan export``)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from mitogan.errors import MitoganError
from search.trials import best_trial, collect_trials

__all__ = ["export_search", "checkpoint_of"]


def export_search(search_dir, out=None, trial_id: str | None = None, overwrite: bool = False,
                  allow_copying: bool = False) -> Path:
    """Export the best finished trial (or ``trial_id``) of a search as a generator bundle.

    A trial whose results flag its generator as copying its training data (``copying`` 1) is refused in one
    line unless ``allow_copying`` (see ``mitogan.export.export_bundle``).

    Default destination: ``<search_dir>/best`` (or ``<search_dir>/trial-<id>`` for ``trial_id``); an earlier
    bundle there is replaced only with ``overwrite`` (and only once the new one is complete).
    """
    from mitogan.export import export_bundle
    from mitogan.export import flagged_copying
    from mitogan.metrics import PRIMARY_MODE, PRIMARY_NAME

    search_dir = Path(search_dir)
    trials = collect_trials(search_dir)
    if trial_id:
        match = [t for t in trials if t.trial_id == trial_id or t.dir.name == trial_id]
        if not match:
            raise MitoganError(f"--trial {trial_id}: no such trial in {search_dir} "
                               f"(trials: {', '.join(t.trial_id for t in trials)})")
        chosen = match[0]
    else:
        chosen = best_trial(trials, PRIMARY_MODE)
        if chosen is not None and not allow_copying and flagged_copying(chosen.last):
            honest = best_trial([t for t in trials if not flagged_copying(t.last)], PRIMARY_MODE)
            if honest is not None:  # the best trial that does not copy its training data
                warnings.warn(f"{search_dir}: the best trial {chosen.trial_id} is flagged as copying its training "
                              f"data; exporting the best trial that is not, {honest.trial_id}", UserWarning,
                              stacklevel=2)
                chosen = honest
        if chosen is None:
            raise MitoganError(f"{search_dir}: no trial finished, so there is no best generator; pick one "
                               "with --trial ID (see the report) or run a longer search")
    ckpt = checkpoint_of(chosen.dir)
    try:
        data = json.loads((chosen.dir / "data.json").read_text()) if (chosen.dir / "data.json").exists() else {}
    except (OSError, ValueError) as e:
        raise MitoganError(f"{chosen.dir / 'data.json'}: not readable JSON ({type(e).__name__}); the trial "
                           "folder is damaged") from None
    metrics = {k: v for k, v in chosen.last.items() if isinstance(v, (int, float, str)) and k not in ("trial_id",)}
    source = {"search": search_dir.name, "search_dir": str(search_dir), "trial_id": chosen.trial_id,
              "primary_name": PRIMARY_NAME, "primary_mode": PRIMARY_MODE, "data": data.get("sources")}
    dest = Path(out) if out else search_dir / ("best" if not trial_id else f"trial-{chosen.trial_id}")
    return export_bundle(ckpt, dest, metrics=metrics, source=source, intensity=data.get("intensity"),
                         overwrite=overwrite, allow_copying=allow_copying)


def checkpoint_of(trial_dir: Path) -> Path:
    """The trial's final weights: the trainer's ``checkpoint.pt`` in the trial folder or, where only Ray's
    copies reached the storage (another node's disk), its newest ``checkpoint_*/checkpoint.pt``."""
    ckpt = trial_dir / "checkpoint.pt"
    if ckpt.is_file():
        return ckpt
    ray_ckpts = sorted(trial_dir.glob("checkpoint_*/checkpoint.pt"))
    if ray_ckpts:
        return ray_ckpts[-1]
    raise MitoganError(f"{ckpt}: the trial left no checkpoint to export")
