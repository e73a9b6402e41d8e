"""Property-based tests (hypothesis) of the space parser: any generated space file is either refused before Ray
starts, with one line naming the file and the parameter, or every value a real Optuna trial samples from it
is a config the trainer accepts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import optuna
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mitogan.errors import ConfigError
from search.space import load_space

optuna.logging.set_verbosity(optuna.logging.ERROR)

NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                    st.integers(min_value=-10**6, max_value=10**6), st.sampled_from([0, 1e-7, 1e-3, 0.5, 2, 64]))
ODD = st.one_of(NUMBERS, st.none(), st.booleans(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
NAMES = st.sampled_from(["optim.lr_g", "optim.beta1", "train.steps", "train.batch_size", "model.g_width",
                         "loss.gp_lambda", "augment.p", "model.arch", "loss.kind", "model.widht"])


@st.composite
def entries(draw):
    entry = {"name": draw(NAMES), "type": draw(st.sampled_from(["float", "int", "categorical", "normal"]))}
    for key, values in (("low", NUMBERS), ("high", NUMBERS), ("step", ODD), ("log", ODD),
                        ("choices", st.lists(st.sampled_from(["dcgan", "resnet", "bce", "hinge", 1, None]),
                                             max_size=3))):
        if draw(st.booleans()):
            entry[key] = draw(values)
    return entry


RANGES = {"optim.lr_g": (1e-7, 10.0), "augment.p": (0.0, 1.0), "loss.gp_lambda": (0.0, 1000.0),
          "optim.beta1": (0.0, 0.9999)}
INT_RANGES = {"train.steps": (1, 10**6), "model.g_width": (4, 1024), "train.batch_size": (2, 4096)}


@st.composite
def plausible(draw):
    """An entry that is often valid (a range inside the field's, a step that may or may not fit), so that the
    accepted side of the property is exercised too."""
    kind = draw(st.sampled_from(["float", "int", "categorical"]))
    if kind == "categorical":
        return {"name": "model.arch", "type": kind,
                "choices": draw(st.lists(st.sampled_from(["dcgan", "resnet"]), min_size=1, max_size=2, unique=True))}
    if kind == "float":
        name = draw(st.sampled_from(sorted(RANGES)))
        lo, hi = RANGES[name]
        a, b = sorted(draw(st.lists(st.floats(lo, hi), min_size=2, max_size=2, unique=True)))
    else:
        name = draw(st.sampled_from(sorted(INT_RANGES)))
        lo, hi = INT_RANGES[name]
        a, b = sorted(draw(st.lists(st.integers(lo, hi), min_size=2, max_size=2, unique=True)))
    entry = {"name": name, "type": kind, "low": a, "high": b}
    if a > 0 and draw(st.booleans()):
        entry["log"] = True
    elif draw(st.booleans()):
        k = draw(st.integers(1, 10))
        entry["step"] = (b - a) // k if kind == "int" else (b - a) / k
    return entry


@settings(max_examples=80, deadline=None, database=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.lists(st.one_of(plausible(), entries()), min_size=1, max_size=3, unique_by=lambda e: e["name"]))
def test_a_space_is_refused_in_one_line_or_every_sample_is_a_valid_config(params):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "space.yaml"
        path.write_text(yaml.safe_dump({"name": "gen", "params": params}))
        try:
            space = load_space(path)
        except ConfigError as e:
            event("refused")
            msg = str(e)
            assert msg.startswith(f"{path}: ") and "\n" not in msg
            assert "params[" in msg or "params" in msg
            return
        event("accepted")
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(5):
            trial = study.ask()
            space.define(trial)
            space.config_for(trial.params)  # raises ConfigError if a sampled value is not a valid config
            for p in space.params:
                if p.type != "categorical":
                    assert p.low <= trial.params[p.name] <= p.high
            study.tell(trial, 0.0)
