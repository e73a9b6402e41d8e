"""The training report's one conversion to scalars (metrics.jsonl, the history and Ray results use it)."""

import math

import numpy as np
import torch

from mitogan.report import MEASURED, SIGNALS, TrainReport, scalars


def test_scalars_keeps_numbers_and_strings_and_drops_arrays():
    r = {"step": 4, "loss_d": np.float32(0.5), "n": np.int64(3), "t": torch.tensor(2.0), "checkpoint": "c.pt",
         "samples": np.zeros((2, 1, 4, 4)), "grid": torch.zeros(3), "diversity": math.nan, "wasserstein": math.inf}
    out = scalars(r)
    assert out.keys() == {"step", "loss_d", "n", "t", "checkpoint", "diversity", "wasserstein"}
    assert type(out["loss_d"]) is float and type(out["n"]) is int and out["t"] == 2.0
    assert math.isnan(out["diversity"]) and out["wasserstein"] == math.inf


def test_scalars_for_ray_and_wandb_clamp_infinities_only():
    out = scalars({"a": math.inf, "b": -math.inf, "c": math.nan, "d": 1.5}, finite=True)
    assert out["a"] == 1e30 and out["b"] == -1e30 and math.isnan(out["c"]) and out["d"] == 1.5


def test_the_typed_report_declares_the_signals():
    assert set(SIGNALS) < set(MEASURED) and "signal_any" in MEASURED and "step" in MEASURED
    assert {"samples", "checkpoint", "primary"} <= set(TrainReport.__annotations__) - set(MEASURED)
