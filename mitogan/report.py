"""The training report: the record ``mitogan.train.train`` hands to ``on_report`` at each report step.

``TrainReport`` is the contract between the trainer (which fills it), the stopping policy
(``mitogan.stopping``, which reads its measurements), the Ray trainable (``search.trainable``, which turns
it into a Ray result) and the run folder (``metrics.jsonl``). It is a ``TypedDict``: a plain dict at run
time, with its keys declared once here. ``scalars(report)`` is the one conversion to the JSON-able
scalar part (what ``metrics.jsonl``, the history and Ray results hold).
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

import numpy as np

__all__ = ["TrainReport", "MEASURED", "SIGNALS", "scalars"]


class _Measured(TypedDict):
    """Keys in every report. Averages over the steps since the previous report unless noted."""

    step: int  # generator steps done
    steps_total: int  # generator steps the run is configured for (train.steps)
    loss_d: float  # discriminator loss (penalties included)
    loss_g: float  # generator loss
    penalty: float  # gradient penalty / R1 term added to loss_d (0 when off)
    d_real: float  # mean D output on augmented real images (logits or critic values)
    d_fake: float  # mean D output on augmented fake images
    wasserstein: float  # critic estimate E[D(real)] - E[D(fake)], for every loss
    grad_norm_d: float  # global L2 gradient norm of D (mean over the window)
    grad_norm_g: float  # the same for G
    grad_norm_d_max: float  # its maximum over the window
    grad_norm_g_max: float
    diversity: float  # mean pairwise L2 distance of the fixed-latent EMA samples / that of real tiles; at this step
    aug_p: float  # augmentation probability now (moves when augment.adaptive)
    nonfinite: float  # 1 if any loss, output, gradient or sample in the window was NaN/Inf, else 0
    critic_drift: float  # robust (Theil-Sen) slope of wasserstein over train.drift_window reports x their span
    steps_per_s: float  # throughput since the previous report (wall clock; not reproducible)
    # convergence signals, 0/1 each: mitogan.stopping.signals() with the thresholds of cfg.stop
    signal_nonfinite: int
    signal_critic_explode: int
    signal_critic_drift: int
    signal_grad_blowup: int
    signal_collapse: int
    signal_any: int  # max of the above


class TrainReport(_Measured, total=False):
    """A report: the measured keys, plus these at some steps only (and whatever ``evaluate`` returned)."""

    samples: np.ndarray  # (n_samples, 1, S, S) float32 in [-1, 1], fixed latents (every train.sample_every)
    checkpoint: str  # path of the checkpoint written at this step
    primary: float  # the search objective (mitogan.metrics.PRIMARY_NAME) when evaluated at this step
    fidelity: float  # its components
    diversity_gap: float


MEASURED: tuple[str, ...] = tuple(_Measured.__annotations__)
SIGNALS: tuple[str, ...] = tuple(k for k in MEASURED if k.startswith("signal_") and k != "signal_any")


def scalars(report: TrainReport | dict, *, finite: bool = False) -> dict[str, Any]:
    """The JSON-able scalar part of a report: numbers (numpy/torch scalars made plain Python) and strings;
    arrays are dropped.

    ``finite=True`` replaces +-Inf by +-1e30 (NaN stays NaN), for consumers that rank or chart the values:
    Ray's schedulers and W&B's charts.
    """
    out: dict[str, Any] = {}
    for k, v in report.items():
        if hasattr(v, "item") and np.ndim(v) == 0:  # numpy and torch scalars
            v = v.item()
        if isinstance(v, (bool, int, float, str)):
            if finite and isinstance(v, float) and math.isinf(v):
                v = 1e30 if v > 0 else -1e30
            out[k] = v
    return out
