"""The stopping policy for runs that do not converge (the trainer only measures; this decides).

``NonConvergencePolicy.check(report)`` looks at each report of ``mitogan.train.train`` and returns a
``stop_reason`` string, or ``None`` to go on:

    nonfinite       a loss, the critic estimate or a gradient norm is NaN/Inf — stops at once
    critic_explode  the critic's Wasserstein estimate |E[D(real)] - E[D(fake)]| is beyond ``critic_limit``
    critic_drift    the trainer's drift signal (the estimate keeps moving one way without bound)
    grad_blowup     a gradient norm beyond ``grad_limit``
    collapse        batch diversity below ``diversity_floor`` (the generator makes one image)

Apart from ``nonfinite``, a signal must hold for ``patience`` consecutive reports after ``grace_steps``,
because WGAN critics swing early in training. Pure Python: it is used inside the Ray trainable (so the
reason lands in the trial's own last result and W&B run) and works the same for local runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["NonConvergencePolicy", "STOP_REASONS"]

STOP_REASONS = ("nonfinite", "critic_explode", "critic_drift", "grad_blowup", "collapse")


@dataclass
class NonConvergencePolicy:
    """Thresholds; the defaults suit 32–128 px GANs with any of MitoGAN's losses."""

    enabled: bool = True  # False: measure nothing, never stop (for comparisons without early stopping)
    grace_steps: int = 100  # no decision except nonfinite before this step
    patience: int = 2  # consecutive reports a signal must hold
    critic_limit: float = 1e3  # |Wasserstein estimate| considered exploded
    grad_limit: float = 1e4  # gradient norm considered blown up
    diversity_floor: float = 0.05  # generated-batch diversity relative to the real batch's
    _streak: dict = field(default_factory=dict, repr=False)

    def check(self, report: dict) -> str | None:
        """The reason to stop this run now, or None."""
        if not self.enabled:
            return None
        if _nonfinite(report):
            return "nonfinite"
        if report.get("step", 0) < self.grace_steps:
            return None
        raised = {
            "critic_explode": abs(report.get("wasserstein", 0.0)) > self.critic_limit
            or bool(report.get("signal_critic_explode", 0)),
            "critic_drift": bool(report.get("signal_critic_drift", 0)),
            "grad_blowup": max(report.get("grad_norm_d", 0.0), report.get("grad_norm_g", 0.0)) > self.grad_limit
            or bool(report.get("signal_grad_blowup", 0)),
            "collapse": report.get("diversity", 1.0) < self.diversity_floor or bool(report.get("signal_collapse", 0)),
        }
        for reason in STOP_REASONS[1:]:
            self._streak[reason] = self._streak.get(reason, 0) + 1 if raised[reason] else 0
            if self._streak[reason] >= self.patience:
                return reason
        return None


def _nonfinite(report: dict) -> bool:
    if report.get("nonfinite", 0) or report.get("signal_nonfinite", 0):
        return True
    for key in ("loss_d", "loss_g", "wasserstein", "grad_norm_d", "grad_norm_g"):
        value = report.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return True
    return False
