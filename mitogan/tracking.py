"""Weights & Biases logging that can never kill a run.

``WandbRun`` imports wandb lazily (the core package must not import it at module level), runs offline
unless the user asked for online (``WANDB_API_KEY`` set, or ``WANDB_MODE`` given), and turns every W&B
failure into a warning: after the first failure it disables itself and training goes on.

Reports are the trainer's dicts: scalars are logged as metrics, ``samples`` arrays (B, 1, S, S) in
[-1, 1] become a ``wandb.Image`` grid, and anything else (paths, strings) is left out of the time series.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["WandbRun", "wandb_mode", "flush_all"]

log = logging.getLogger(__name__)


def wandb_mode() -> str:
    """``WANDB_MODE`` if the user set it; online when an API key is present; offline otherwise."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def flush_all() -> None:
    """Wait until W&B has written every finished run to disk (``run.finish()`` can return before an
    offline ``.wandb`` file is complete) and free its background service. Call it when no run is open."""
    import sys

    if "wandb" not in sys.modules:
        return
    try:
        sys.modules["wandb"].teardown()
    except Exception as e:
        log.warning("W&B teardown failed (%s: %s)", type(e).__name__, e)


class WandbRun:
    """One W&B run. All methods are no-ops after a failure (logged once as a warning)."""

    def __init__(self, *, project: str = "mitogan", name: str | None = None, group: str | None = None,
                 config: dict | None = None, dir: str | Path | None = None, tags: list[str] | None = None,
                 run_id: str | None = None, job_type: str | None = None, settings: dict | None = None):
        """``settings``: extra ``wandb.Settings`` fields (e.g. the search driver's, which skip collecting
        the driver's environment for every trial's run)."""
        self.run = None
        self.dir = Path(dir) if dir else None
        try:
            import wandb

            if self.dir:
                self.dir.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=project, name=name, group=group, config=config, tags=tags,
                                  job_type=job_type, dir=str(self.dir) if self.dir else None, mode=wandb_mode(),
                                  id=run_id,
                                  resume="allow" if run_id else None, reinit="create_new",
                                  settings=wandb.Settings(silent=True, console="off", **(settings or {})))
        except Exception as e:  # network, disk, bad key, version skew: never fatal
            self._fail("init", e)

    @property
    def active(self) -> bool:
        return self.run is not None

    def log(self, report: dict[str, Any], step: int | None = None) -> None:
        """Log a trainer report: scalars as metrics, ``samples`` as an image grid."""
        if self.run is None:
            return
        try:
            import wandb

            data = _numbers(report)
            data.pop("step", None)
            samples = report.get("samples")
            if isinstance(samples, np.ndarray):
                from mitogan.viz import image_grid

                data["samples"] = wandb.Image(image_grid(samples[:64], nrow=8), caption=f"step {step}")
            self.run.log(data, step=step)
        except Exception as e:
            self._fail("log", e)

    def log_row(self, data: dict[str, Any], step: int, images: dict[str, str | Path] | None = None) -> None:
        """Log one row as is (scalars; strings are left out) at ``step``, with PNG files as images."""
        if self.run is None:
            return
        try:
            import wandb

            row = _numbers(data)
            row.update({k: wandb.Image(str(p), caption=f"step {step}") for k, p in (images or {}).items()})
            self.run.log(row, step=step)
        except Exception as e:
            self._fail("log_row", e)

    def log_table(self, key: str, columns: list[str], rows: list[list], image_columns: tuple[str, ...] = ()) -> None:
        """Log a ``wandb.Table``; cells of ``image_columns`` are PNG paths (or None) shown as images."""
        if self.run is None:
            return
        try:
            import wandb

            idx = [columns.index(c) for c in image_columns]
            table = wandb.Table(columns=columns)
            for row in rows:
                row = list(row)
                for i in idx:
                    row[i] = wandb.Image(str(row[i])) if row[i] else None
                table.add_data(*row)
            self.run.log({key: table})
        except Exception as e:
            self._fail("log_table", e)

    def log_image(self, key: str, path: str | Path, step: int | None = None) -> None:
        """Log a PNG file (sample grid, loss curves, preview) as an image."""
        if self.run is None:
            return
        try:
            import wandb

            self.run.log({key: wandb.Image(str(path))}, step=step)
        except Exception as e:
            self._fail("log_image", e)

    def summary(self, values: dict[str, Any]) -> None:
        """Set summary fields (final metrics, stop reason)."""
        if self.run is None:
            return
        try:
            for k, v in values.items():
                self.run.summary[k] = v
        except Exception as e:
            self._fail("summary", e)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None:
            return
        try:
            self.run.finish(exit_code=exit_code)
        except Exception as e:
            self._fail("finish", e)
        self.run = None

    def _fail(self, what: str, error: Exception) -> None:
        log.warning("W&B %s failed (%s: %s); continuing without W&B logging", what, type(error).__name__, error)
        self.run = None


def _numbers(report: dict) -> dict[str, float]:
    """The numbers of a report as floats, through the one scalar conversion (mitogan.report.scalars)."""
    from mitogan.report import scalars

    return {k: float(v) for k, v in scalars(report, finite=True).items() if not isinstance(v, str)}
