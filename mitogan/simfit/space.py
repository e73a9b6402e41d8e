"""The fitted part of ``SimParams``: which fields a fit searches, over which ranges, and how the rest follow.

Lengths are in pixels of the data and rates per frame (the simulator's units); :func:`physical` converts a
fit to µm and s when the data's pixel size and frame interval are known. Fields not listed in
:data:`FIT_SPACE` keep their ``SimParams`` defaults, except the spreads, which follow their means at the
default ratios (so a fitted mean never leaves an impossible spread behind, e.g. a length sd that
``SimParams.validate`` refuses). Camera gain and offset are not fitted: every frame is normalised on its own
percentiles before tiling, which removes them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from mitogan.errors import ConfigError
from mitogan.simulate import SimParams

__all__ = ["FitParam", "FIT_SPACE", "GROUPS", "fit_names", "to_params", "physical", "select_space", "UNITS"]


@dataclass(frozen=True)
class FitParam:
    """One searched ``SimParams`` field: ``lo`` <= value <= ``hi``, sampled on a log scale when ``log``."""

    name: str
    lo: float
    hi: float
    log: bool
    group: str  # morphology | optics | dynamics: the identifiability table's rows are grouped so

    def to_unit(self, value: float) -> float:
        """``value`` -> [0, 1] on this parameter's own scale (log or linear)."""
        if self.log:
            return (math.log(value) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return (value - self.lo) / (self.hi - self.lo)

    def from_unit(self, u: float) -> float:
        """[0, 1] -> a value of this parameter (the inverse of :meth:`to_unit`)."""
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            return math.exp(math.log(self.lo) + u * (math.log(self.hi) - math.log(self.lo)))
        return self.lo + u * (self.hi - self.lo)


# Ranges: wide enough for iSIM/confocal/widefield mitochondria from 30 to 120 nm pixels and 0.5 to 10 s
# frames; the defaults of SimParams all lie inside.
FIT_SPACE: tuple[FitParam, ...] = (
    FitParam("density", 0.5, 12.0, True, "morphology"),
    FitParam("length_mean", 15.0, 160.0, True, "morphology"),
    FitParam("width_mean", 2.0, 14.0, True, "morphology"),
    FitParam("persistence_mean", 5.0, 100.0, True, "morphology"),
    FitParam("branch_prob", 0.0, 1.0, False, "morphology"),
    FitParam("bead_prob", 0.0, 1.0, False, "morphology"),
    FitParam("bead_amplitude", 0.1, 1.5, False, "morphology"),
    FitParam("psf_sigma", 0.5, 4.0, True, "optics"),
    FitParam("brightness", 20.0, 2000.0, True, "optics"),
    FitParam("background", 2.0, 200.0, True, "optics"),
    FitParam("autofluorescence", 1.0, 200.0, True, "optics"),
    FitParam("read_noise", 0.5, 20.0, True, "optics"),
    FitParam("speed", 0.01, 1.0, True, "dynamics"),
    FitParam("jitter", 0.01, 1.0, True, "dynamics"),
    FitParam("wiggle", 0.05, 3.0, True, "dynamics"),
    FitParam("fission_rate", 0.001, 0.1, True, "dynamics"),
    FitParam("bleach_rate", 0.0005, 0.1, True, "dynamics"),
    FitParam("stage_drift", 0.01, 1.0, True, "dynamics"),
)
GROUPS = ("morphology", "optics", "dynamics")

# spreads that follow their means at the SimParams default ratios
_DEFAULT = SimParams()
_TIED = {"length_sd": ("length_mean", _DEFAULT.length_sd / _DEFAULT.length_mean),
         "width_sd": ("width_mean", _DEFAULT.width_sd / _DEFAULT.width_mean),
         "persistence_sd": ("persistence_mean", _DEFAULT.persistence_sd / _DEFAULT.persistence_mean)}

# unit of each fitted field: "px", "px/frame", "1/frame", or "" (a ratio or count); "photons" for intensities
UNITS = {"density": "1/(100 px)^2", "length_mean": "px", "width_mean": "px", "persistence_mean": "px",
         "psf_sigma": "px", "speed": "px/frame", "jitter": "px/frame", "wiggle": "px", "stage_drift": "px/frame",
         "fission_rate": "1/frame", "bleach_rate": "1/frame", "brightness": "photons", "background": "photons",
         "autofluorescence": "photons", "read_noise": "ADU", "branch_prob": "", "bead_prob": "", "bead_amplitude": ""}


def fit_names(space=FIT_SPACE) -> list[str]:
    return [p.name for p in space]


def select_space(names: list[str] | None) -> tuple[FitParam, ...]:
    """The fitted parameters named in ``names`` (None: all of :data:`FIT_SPACE`); unknown names are an error."""
    if not names:
        return FIT_SPACE
    known = {p.name: p for p in FIT_SPACE}
    bad = [n for n in names if n not in known]
    if bad:
        raise ConfigError(f"--params {','.join(bad)}: not fitted parameters; choose from {', '.join(known)}")
    return tuple(known[n] for n in dict.fromkeys(names))


def to_params(values: dict, base: SimParams | None = None, **fixed) -> SimParams:
    """Fitted ``values`` {field: float} on top of ``base`` (default SimParams) -> a validated ``SimParams``.

    Spreads follow their means (``_TIED``) and ``min_length`` stays at most half the mean length; ``fixed``
    sets fields outright (e.g. ``size``, ``frames``)."""
    base = base or SimParams()
    known = {f.name for f in dataclasses.fields(SimParams)}
    bad = sorted(set(values) - known)
    if bad:
        raise ConfigError(f"{bad[0]}: not a SimParams field")
    new = {k: float(v) for k, v in values.items()}
    for sd, (mean, ratio) in _TIED.items():
        if mean in new:
            new[sd] = ratio * new[mean]
    if "length_mean" in new:
        new["min_length"] = max(3.0, min(base.min_length, 0.5 * new["length_mean"]))
    return dataclasses.replace(base, **new, **fixed)


def physical(values: dict, pixel_size_um: float | None, frame_interval_s: float | None) -> dict:
    """Fitted values in physical units: {field: (value, unit)} in µm and s where the scale is known, else
    in the simulator's own units (px, frame)."""
    out = {}
    for name, v in values.items():
        unit = UNITS.get(name, "")
        v = float(v)
        if pixel_size_um and "px" in unit:
            if unit.startswith("1/(100 px)"):
                v, unit = v / (100 * pixel_size_um) ** 2, "1/µm^2"
            else:
                v, unit = v * pixel_size_um, unit.replace("px", "µm")
        if frame_interval_s and "frame" in unit:
            v, unit = v / frame_interval_s, unit.replace("frame", "s")
        out[name] = (v, unit)
    return out
