"""Search spaces as data: a YAML file of parameters that Optuna samples define-by-run.

A space file::

    name: smoke
    description: finishes in a few minutes on 2 CPU cores
    fixed:                       # constants for every trial (flat dotted config keys)
      train.steps: 300
    params:                      # sampled in order; `when` makes a parameter conditional
      - {name: loss.kind, type: categorical, choices: [bce, wgan_clip, wgan_gp, hinge]}
      - {name: loss.clip, type: float, low: 0.005, high: 0.05, log: true, when: {loss.kind: wgan_clip}}
    start:                       # optional: trials to run first, e.g. the best of an earlier search
      - {loss.kind: hinge}

``name`` is a flat dotted key of ``mitogan.config.Config``; ``type`` is ``categorical`` (``choices``),
``int`` or ``float`` (``low``, ``high``, optional ``log``, optional ``step``); ``when`` maps earlier
parameters (or fixed keys) to a value or a list of allowed values. ``load_space`` checks every entry
before any trial starts (before Ray is started) — unknown keys, non-finite or empty ranges, ``log`` with
``low <= 0`` or with a ``step``, steps that are not positive, do not fit the range or (for ``int``) are not
whole, values the config would reject — and raises a one-line ``ConfigError`` naming the space file and
the entry. No Ray here: the space only needs an Optuna trial-like object.

``start`` lists known-good points (values for parameters active at that point, and none other; one left out
is sampled) that the search runs before it samples: Optuna's ``enqueue_trial`` when the study is new (a resumed
search does not enqueue them again), the first members of a PBT/PB2 population. A space is prior knowledge; a
start point is the strongest form of it, so a short search does no worse than the best configuration it was given.

Simulator tiles (``mitogan.simmix``): when ``train.sim_config`` is fixed (``mitogan search --sim-config FILE``
or ``--set train.sim_config=FILE``) and the space neither samples nor fixes ``train.sim_share``, the share is
searched too (``SIM_SHARE``: a float over [0, 0.9]); fix it (``--set train.sim_share=0``) for a baseline.
"""

from __future__ import annotations

import math
from decimal import Decimal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitogan.config import Config, from_flat, to_flat
from mitogan.errors import ConfigError

__all__ = ["Param", "Space", "load_space", "shipped_spaces", "SPACES_DIR"]

SPACES_DIR = Path(__file__).parent / "spaces"
_TYPES = ("categorical", "int", "float")
# the share of simulator tiles, searched whenever a space is given a simulator but no share
SIM_SHARE = {"name": "train.sim_share", "type": "float", "low": 0.0, "high": 0.9}


@dataclass
class Param:
    """One sampled parameter."""

    name: str
    type: str
    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: dict[str, Any] = field(default_factory=dict)

    def active(self, values: dict[str, Any]) -> bool:
        """Whether the conditions in ``when`` hold for the values sampled (or fixed) so far."""
        for key, want in self.when.items():
            allowed = want if isinstance(want, list) else [want]
            if key not in values or values[key] not in allowed:
                return False
        return True

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial (or Ray's captor of one) for a value."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, self.choices)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)


@dataclass
class Space:
    """A named search space: fixed constants plus conditional sampled parameters."""

    name: str
    params: list[Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    start: list[dict[str, Any]] = field(default_factory=list)  # sampled values of the trials to run first
    # every other key's value when the search was launched (``--resume``: a search continued by a newer MitoGAN
    # whose defaults changed keeps training what it started with); empty: this version's defaults
    defaults: dict[str, Any] = field(default_factory=dict)

    def define(self, trial) -> dict[str, Any]:
        """Optuna define-by-run function: samples the active parameters; returns the fixed constants."""
        values = dict(self.fixed)
        for p in self.params:
            if p.active(values):
                values[p.name] = p.suggest(trial)
        return dict(self.fixed)

    def base_config(self) -> Config:
        """The config every trial starts from: defaults + ``fixed``."""
        return from_flat(Config, self.constants())

    def config_for(self, sampled: dict[str, Any]) -> Config:
        """The trial's whole config from its sampled (flat) values."""
        return from_flat(Config, {**self.constants(), **sampled})

    def constants(self) -> dict[str, Any]:
        """What every trial is given besides its sampled values: ``fixed`` over the launch's ``defaults``."""
        return {**self.defaults, **self.fixed}


def shipped_spaces() -> dict[str, Path]:
    """Spaces that ship with MitoGAN, by name."""
    return {p.stem: p for p in sorted(SPACES_DIR.glob("*.yaml"))}


def load_space(name_or_path: str | Path, overrides: list[str] | None = None) -> Space:
    """Load and validate a shipped space by name (``smoke``, ``default``) or a YAML file path.

    ``overrides`` (``["train.steps=200", ...]``, as ``mitogan search --set``) change or add fixed keys; a
    key the space samples cannot be overridden (edit a copy of the space file instead).
    """
    import yaml

    shipped = shipped_spaces()
    path = shipped.get(str(name_or_path), Path(name_or_path))
    if not path.is_file():
        raise ConfigError(f"--space {name_or_path}: neither a shipped space ({', '.join(shipped)}) nor a file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or "params" not in data:
        raise ConfigError(f"{path}: a space file needs a top-level mapping with a 'params' list")
    if not isinstance(data["params"], list) or not isinstance(data.get("fixed") or {}, dict):
        raise ConfigError(f"{path}: 'params' must be a list of entries and 'fixed' a mapping of config keys")
    if overrides:
        data["fixed"] = {**(data.get("fixed") or {}), **_parse_overrides(overrides, data)}
    try:
        return _validate(data, path)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _parse_overrides(overrides: list[str], data: dict) -> dict:
    from mitogan.config import parse_scalar

    sampled = {p.get("name") for p in data.get("params") or [] if isinstance(p, dict)}
    out = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set train.steps=200")
        if key in sampled:
            raise ConfigError(f"--set {key}: the space samples this parameter; edit a copy of the space file instead")
        out[key] = parse_scalar(value.strip())
    return out


def _validate(data: dict, path: Path) -> Space:
    unknown = set(data) - {"name", "description", "fixed", "params", "start"}
    if unknown:
        raise ConfigError(f"unknown top-level key {sorted(unknown)[0]!r} "
                          "(allowed: name, description, fixed, params, start)")
    known = to_flat(Config())
    fixed = dict(data.get("fixed") or {})
    for key in fixed:
        if key not in known:
            raise ConfigError(f"fixed.{key}: unknown config key")
    from_flat(Config, fixed)  # values out of range fail here, naming the key
    params, seen = [], set(fixed)
    for i, entry in enumerate(data["params"] or []):
        where = f"params[{i}]" + (f" ({entry.get('name')})" if isinstance(entry, dict) else "")
        try:
            p = _param(entry, known, seen)
            _check_values(p, fixed)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        params.append(p)
        seen.add(p.name)
    if fixed.get("train.sim_config"):
        params += _sim_share(fixed, known, seen)
    if not params:
        raise ConfigError("the space samples no parameters ('params' is empty)")
    start = data.get("start") or []
    if not isinstance(start, list):
        raise ConfigError("'start' must be a list of points, each a mapping of parameter names to values")
    start = [_start_point(point, i, params, fixed) for i, point in enumerate(start)]
    return Space(name=str(data.get("name") or path.stem), params=params, fixed=fixed,
                 description=str(data.get("description") or ""), source=str(path), start=start)


def _start_point(point, i: int, params: list[Param], fixed: dict) -> dict[str, Any]:
    """Start point ``i`` checked against the space: values (in range, one of the choices) for parameters active
    there and for no other; returned with ints as ints. A parameter it leaves out is sampled when it runs."""
    if not isinstance(point, dict):
        raise ConfigError(f"start[{i}]: expected a mapping of parameter names to values, got {point!r}")
    names = {p.name for p in params}
    for key in point:
        if key not in names:
            raise ConfigError(f"start[{i}].{key}: not a parameter of this space (fixed keys are set under 'fixed')")
    values, out = dict(fixed), {}
    for p in params:
        # a condition on a parameter the point leaves out is decided when it runs: the value is kept for then
        if all(key in values for key in p.when) and not p.active(values):
            if p.name in point:
                raise ConfigError(f"start[{i}].{p.name}: inactive at this point (it needs {p.when}); leave it out")
            continue
        if p.name not in point:  # sampled when the point runs (the share a simulator adds, say)
            continue
        v = point[p.name]
        if p.type == "categorical":
            same = [c for c in p.choices if c == v and isinstance(c, bool) == isinstance(v, bool)]
            if not same:
                raise ConfigError(f"start[{i}].{p.name}: {v!r} is not one of the choices {p.choices}")
            v = same[0]  # the choice as written in the space (3 for 3.0): what Optuna stores
        elif not _is_number(v) or not p.low <= v <= p.high or (p.type == "int" and not float(v).is_integer()):
            raise ConfigError(f"start[{i}].{p.name}: {v!r} is not {'a whole number' if p.type == 'int' else 'a number'}"
                              f" in {p.low}..{p.high}")
        elif p.step is not None and (Decimal(str(v)) - Decimal(str(p.low))) % Decimal(str(p.step)) != 0:
            raise ConfigError(f"start[{i}].{p.name}: {v!r} is not on the grid {p.low}, {p.low} + {p.step}, ...")
        values[p.name] = out[p.name] = int(v) if p.type == "int" else v
    try:
        from_flat(Config, values)  # a combination the config refuses fails here, naming the key
    except ConfigError as e:
        raise ConfigError(f"start[{i}]: {e}") from None
    return out


def _sim_share(fixed: dict, known: dict, seen: set) -> list[Param]:
    """The searched simulator share when the space has a simulator (made absolute: trials run elsewhere)."""
    from mitogan.simmix import resolve_sim_config

    fixed["train.sim_config"] = str(resolve_sim_config(fixed["train.sim_config"]))
    return [] if "train.sim_share" in seen else [_param(dict(SIM_SHARE), known, seen)]


def _param(entry, known: dict, seen: set) -> Param:
    if not isinstance(entry, dict):
        raise ConfigError(f"expected a mapping, got {entry!r}")
    allowed = {"name", "type", "choices", "low", "high", "log", "step", "when"}
    if set(entry) - allowed:
        raise ConfigError(f"unknown field {sorted(set(entry) - allowed)[0]!r} (allowed: {sorted(allowed)})")
    name, kind = entry.get("name"), entry.get("type")
    if not isinstance(name, str) or name not in known:
        raise ConfigError(f"unknown parameter {name!r}: not a config key (see `mitogan train --help-config`)")
    if name in seen:
        raise ConfigError(f"{name} is defined twice (or is also fixed)")
    if kind not in _TYPES:
        raise ConfigError(f"type {kind!r} is not a distribution (use one of {list(_TYPES)})")
    if not isinstance(entry.get("when") or {}, dict):
        raise ConfigError(f"'when' must map earlier parameters to allowed values, got {entry.get('when')!r}")
    if not isinstance(entry.get("log", False), bool):
        raise ConfigError(f"'log' must be true or false, got {entry.get('log')!r}")
    for key in entry.get("when") or {}:
        if key not in seen:
            raise ConfigError(f"condition on {key!r}, which is not a parameter defined above nor fixed")
    p = Param(name=name, type=kind, choices=entry.get("choices"), low=entry.get("low"), high=entry.get("high"),
              log=bool(entry.get("log", False)), step=entry.get("step"), when=dict(entry.get("when") or {}))
    if kind == "categorical":
        if not isinstance(p.choices, list) or not p.choices:
            raise ConfigError("categorical needs a non-empty 'choices' list")
        if any(c is not None and not isinstance(c, (bool, int, float, str)) for c in p.choices):
            raise ConfigError(f"choices must be plain values (numbers, strings, true/false, null), got {p.choices!r}")
        if len({repr(c) for c in p.choices}) != len(p.choices):
            raise ConfigError(f"choices {p.choices!r} repeat a value")
        if p.low is not None or p.high is not None or p.step is not None or p.log:
            raise ConfigError("categorical takes 'choices' only (no low/high/step/log)")
    else:
        _check_range(p)
    return p


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_range(p: Param) -> None:
    """low/high/step/log of an int or float parameter: finite, a non-empty range, steps that fit it."""
    if p.choices is not None:
        raise ConfigError(f"{p.type} takes low/high (and step/log), not 'choices'")
    if not all(_is_number(v) for v in (p.low, p.high)):
        raise ConfigError(f"{p.type} needs numeric 'low' and 'high'")
    if not (math.isfinite(p.low) and math.isfinite(p.high)):
        raise ConfigError(f"low={p.low} and high={p.high} must be finite numbers")
    if p.type == "int" and not all(float(v).is_integer() for v in (p.low, p.high)):
        raise ConfigError(f"int needs whole-number bounds, got low={p.low}, high={p.high}")
    if not p.low < p.high:
        raise ConfigError(f"empty range: low={p.low} must be below high={p.high}")
    if p.log and p.low <= 0:
        raise ConfigError(f"log scale needs low > 0, got {p.low}")
    if p.step is None:
        return
    if not _is_number(p.step) or not math.isfinite(p.step) or p.step <= 0:
        raise ConfigError(f"step must be a positive number, got {p.step!r}")
    if p.log:
        raise ConfigError("step and log cannot be combined (Optuna samples a log scale continuously)")
    if p.type == "int" and not float(p.step).is_integer():
        raise ConfigError(f"int needs a whole-number step, got {p.step}")
    # decimal arithmetic on the written values, as Optuna checks it: a range Optuna would silently shrink
    # (0.3 - 0.1 is not 2 x 0.1 in binary floating point) is refused here instead
    span = Decimal(str(p.high)) - Decimal(str(p.low))
    if p.step > p.high - p.low or span % Decimal(str(p.step)) != 0:
        raise ConfigError(f"step {p.step} does not divide the range {p.low}..{p.high} into whole steps")


def _check_values(p: Param, fixed: dict) -> None:
    """Every value the parameter can take must be one the config accepts."""
    values = p.choices if p.type == "categorical" else [p.low, p.high]
    if p.type == "int":
        values = [int(v) for v in values]
    for v in values:
        try:
            from_flat(Config, {**fixed, p.name: v})
        except ConfigError as e:
            raise ConfigError(f"value {v!r} is rejected by the config: {e}") from None
