"""Non-convergence: one set of thresholds (``cfg.stop``), one rule. The trainer measures; this decides.

``signals(report, cfg.stop)`` turns a report's measurements into 0/1 signals (the trainer records them in
every report, so ``metrics.jsonl`` and ``signals.png`` show what the policy sees):

    nonfinite       a loss, output, gradient norm or sample is NaN/Inf (``nonfinite``)
    critic_explode  |critic estimate| (``wasserstein``) beyond ``stop.critic_limit``, or not finite
    critic_drift    |``critic_drift``| beyond ``stop.drift_limit`` (the estimate keeps moving one way)
    grad_blowup     a gradient norm in the window (``grad_norm_*_max``) beyond ``stop.grad_limit``, or not finite
    collapse        ``diversity`` below ``stop.diversity_floor`` (the generator makes one image), or not finite

``NonConvergencePolicy(cfg).check(report)`` returns a stop reason or ``None``: ``nonfinite`` stops at
once; any other signal must hold for ``stop.patience`` consecutive reports from ``grace_steps(cfg)`` on,
because WGAN critics swing early and the eval-mode EMA generator's samples look collapsed until its
BatchNorm statistics settle. ``grace_steps(cfg)`` is also ASHA's grace period (``search.run``): no trial
is judged on anything but NaN before it. Pure Python; used by the Ray trainable and usable by any loop.
"""

from __future__ import annotations

import dataclasses
import math

from mitogan.config import Config, StopConfig
from mitogan.report import SIGNALS, TrainReport

__all__ = ["NonConvergencePolicy", "STOP_REASONS", "SIGNALS", "signals", "grace_steps"]

STOP_REASONS: tuple[str, ...] = tuple(s.removeprefix("signal_") for s in SIGNALS)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def signals(report: TrainReport, stop: StopConfig) -> dict[str, int]:
    """``signal_<reason>`` (0/1) for every reason in STOP_REASONS, and ``signal_any``, from the
    measurements in ``report`` and the thresholds in ``stop``."""
    w, drift, div = report["wasserstein"], report["critic_drift"], report["diversity"]
    gmax = max(report["grad_norm_d_max"], report["grad_norm_g_max"])
    losses_ok = all(_finite(report[k]) for k in ("loss_d", "loss_g", "grad_norm_d", "grad_norm_g"))
    s = {"signal_nonfinite": int(bool(report["nonfinite"]) or not losses_ok),
         "signal_critic_explode": int(not _finite(w) or abs(w) > stop.critic_limit),
         "signal_critic_drift": int(_finite(drift) and abs(drift) > stop.drift_limit),
         "signal_grad_blowup": int(not _finite(gmax) or gmax > stop.grad_limit),
         "signal_collapse": int(not _finite(div) or div < stop.diversity_floor)}
    s["signal_any"] = max(s.values())
    return s


def grace_steps(cfg: Config) -> int:
    """The generator step before which no run is stopped except for NaN/Inf: ``stop.grace`` of
    ``train.steps``, and at least one report interval (the policy and ASHA only see reports)."""
    return max(cfg.train.report_every, int(cfg.train.steps * cfg.stop.grace))


class NonConvergencePolicy:
    """Decides, report by report, whether a run has stopped converging (thresholds from ``cfg.stop``).

    ``changes`` override fields of ``cfg.stop`` for this policy only, e.g. ``enabled=False``.
    """

    def __init__(self, cfg: Config, **changes):
        self.stop = dataclasses.replace(cfg.stop, **changes) if changes else cfg.stop
        self.grace_steps = grace_steps(dataclasses.replace(cfg, stop=self.stop))
        self._streak = dict.fromkeys(STOP_REASONS, 0)

    def check(self, report: TrainReport) -> str | None:
        """The reason to stop this run now, or None to go on."""
        if not self.stop.enabled:
            return None
        raised = signals(report, self.stop)
        if raised["signal_nonfinite"]:
            return "nonfinite"
        if report["step"] < self.grace_steps:
            return None
        for reason in STOP_REASONS[1:]:
            self._streak[reason] = self._streak[reason] + 1 if raised["signal_" + reason] else 0
            if self._streak[reason] >= self.stop.patience:
                return reason
        return None
