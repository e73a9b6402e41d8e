"""Physics-style mitochondria time-lapse simulator: the built-in dataset, with exact ground truth.

No downloads; everything is drawn from one ``numpy.random.Generator`` seeded per video, so the same
``(params, seed)`` gives bit-identical frames and JSON.

The model, per video
--------------------
* **Objects** are tubes along worm-like chains (WLC): a polyline sampled every 1 px of arc length whose
  heading takes Gaussian steps of variance ``2 ds / P`` (``P`` = persistence length), so the tangent
  correlation decays as ``<t(s).t(0)> = exp(-s / P)``. Each object has a base width (tube diameter, px),
  a brightness and a length. With probability ``branch_prob``
  an object is a network: 1..``max_branches`` side branches, each at least two tube widths long, start
  from points of earlier branches at least two tube widths from their ends (Y junctions, one *branch
  point* each).
* **Beading** (pearling): with probability ``bead_prob`` an object carries periodic swellings: along each
  branch, bead centres every ``period`` px (random phase), each drawn as a sphere of radius
  ``r0 * (1 + bead_amplitude)`` (r0 = tube radius) into which the tube fades, so a bead peaks at about
  ``1 + bead_amplitude`` times the tube's brightness and is wider than the tube.
* **Motion**: each object drifts (constant velocity), jitters (Brownian centre), rotates slowly and flexes
  (a smooth travelling-wave displacement field in object coordinates, zero at the object's birth, so
  topology and junctions are preserved). The whole field of view moves by a linear *stage drift*.
* **Fission**: an unbranched object splits at a random interior point (a 2 px gap); the two children
  separate slowly. **Fusion**: when the end of an unbranched object comes within ``fusion_distance`` of
  another object, they join, either end-to-end (one longer chain) or tip-to-side (the chain becomes a new
  branch: a new Y junction). Parents end and children start at the event frame, so every object has a
  fixed morphology over its life.
* **Rendering**: a tube is a dense chain of uniform disks of the local radius (its line integral is the
  projected thickness ``2 sqrt(r^2 - d^2)`` of a cylinder) plus one projected sphere per bead, splatted
  bilinearly at sub-pixel positions and blurred by a Gaussian PSF (``psf_sigma``). Peak photons of a
  straight unbeaded tube before blur = its brightness. Then background: a constant level tilted by a linear
  illumination gradient (fixed to the camera) plus smooth autofluorescence haze (moves with the stage,
  bleaches). Signal and haze bleach as ``exp(-bleach_rate * t)``. Camera: Poisson shot noise, times
  ``gain``, plus Gaussian read noise, a fixed per-column pattern and ``offset``; rounded to uint16.

Ground truth (``video_NNN.json``, all lengths and coordinates in **pixels**)
--------------------------------------------------------------------------
Coordinates are ``(x, y) = (column, row)`` of the frame, pixel centres at integers, origin at the
top-left pixel; frames are 0-based. Keys:

* ``format`` ``"mitogan-sim-truth/1"``, ``seed``, ``shape`` ``[T, H, W]``, ``dtype`` ``"uint16"``,
  ``params`` (all ``SimParams`` fields);
* ``video``: ``bleach_rate`` (per frame), ``stage_drift_per_frame`` ``[dx, dy]``, ``stage_offset_px``
  (``[dx, dy]`` of every frame relative to frame 0: content at ``p`` in frame 0 is at ``p + offset[t]``
  apart from its own motion), ``psf_sigma``, ``gain``, ``offset``, ``read_noise``, ``background``,
  ``gradient``, ``autofluorescence``;
* ``objects``: one entry per object ever present, with ``id``, ``first_frame``, ``last_frame``
  (inclusive), ``parents`` (ids, empty for initial objects), ``length_px`` (total skeleton length, all
  branches, at birth), ``width_px`` (base tube diameter, before beads and PSF), ``persistence_px``,
  ``brightness`` (photons), ``n_branches`` (polylines; 1 = unbranched), ``branch_points``
  (``count`` and ``xy`` at the first frame), ``beads`` (``count``, ``period_px``, ``amplitude``, ``radius_px``,
  ``positions`` as ``{branch, index, s_px}`` = arc length from the start of that branch, and ``xy`` at
  the first frame), ``skeleton_px`` (one ``[[x, y], ...]`` polyline per branch, at the first frame;
  a side branch starts at its branch point), and ``motion`` (reference skeleton in object coordinates,
  per-frame ``track`` ``[frame, cx, cy, angle]`` and the flex modes) from which :func:`skeleton_at`
  rebuilds the rendered skeleton of any frame;
* ``events``: ``{frame, type: "fission"|"fusion", mode, parents, children, xy}``;
* ``counts``: objects at frame 0, total objects, fission and fusion events.

``simulation.json`` beside the videos holds the dataset parameters (seed, videos, frames, size, the
``SimParams``) and, per video, its file names, seed and counts.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mitogan.config import Section, doc, to_dict
from mitogan.errors import ConfigError, InputError
from mitogan.fsutil import cache_root, cached_dir

__all__ = ["SimParams", "simulate_video", "simulate_dataset", "default_dataset", "skeleton_at", "label_masks",
           "save_video", "save_masks", "TRUTH_FORMAT", "MASKS_DIR"]

TRUTH_FORMAT = "mitogan-sim-truth/1"
MASKS_DIR = "masks"  # simulate_dataset(masks=True): OUT/masks/video_NNN.tif, label stacks beside the frames
# The physical scale the simulator's pixel lengths stand for (nominal: a 7 px tube = 0.46 µm, the PSF's
# sigma 1.5 px = 0.1 µm, as in a 60-100x super-resolution time-lapse). Written into every TIFF it saves
# (resolution in pixels per cm) and into simulation.json; ``mitogan.io.physical_scale`` reads them back, so
# tiles, bundles and synthetic TIFFs of simulator-trained generators carry a pixel size.
PIXEL_SIZE_UM = 0.065
FRAME_INTERVAL_S = 1.0
_DS = 1.0  # arc-length spacing of skeleton points (px)
_RENDER_DS = 0.5  # spacing of the disks that draw a tube (px); well below the smallest radius
_RBIN = 0.5  # radius grid of the precomputed disk kernels (px); weights interpolate between bins
_NMODES = 3  # flex modes per object


def _f(default, help: str, **kw):
    return field(default=default, metadata=doc(help, **kw))


@dataclass
class SimParams(Section):
    """Simulator parameters (lengths in pixels, rates per frame, intensities in photons unless noted)."""

    size: int = _f(256, "frame height and width (px)", lo=32, hi=4096)
    frames: int = _f(30, "frames per video", lo=1, hi=10000)
    density: float = _f(3.0, "initial objects per 100x100 px of field of view", lo=0.0, hi=50.0)
    length_mean: float = _f(65.0, "mean object skeleton length (px, all branches)", lo=4.0)
    length_sd: float = _f(30.0, "standard deviation of object length (px)", lo=0.0)
    min_length: float = _f(10.0, "shortest object or fission piece (px)", lo=3.0)
    width_mean: float = _f(7.0, "mean tube diameter (px, before PSF)", lo=1.0, hi=40.0)
    width_sd: float = _f(1.2, "standard deviation of tube diameter (px)", lo=0.0)
    persistence_mean: float = _f(25.0, "mean persistence length P (px): tangent correlation exp(-s/P)", lo=1.0)
    persistence_sd: float = _f(10.0, "standard deviation of persistence length (px)", lo=0.0)
    branch_prob: float = _f(0.3, "probability that an object is a branched network", lo=0.0, hi=1.0)
    max_branches: int = _f(3, "most side branches (branch points) of a new network", lo=1, hi=20)
    bead_prob: float = _f(0.3, "probability that an object is beaded (pearling)", lo=0.0, hi=1.0)
    bead_period: float = _f(14.0, "mean distance between bead centres (px)", lo=3.0)
    bead_amplitude: float = _f(0.5, "bead sphere radius = tube radius x (1 + amplitude)", lo=0.0, hi=5.0)
    fission_rate: float = _f(0.008, "probability per unbranched object per frame of a fission", lo=0.0, hi=1.0)
    fusion_prob: float = _f(0.5, "probability of fusing when an end touches another object", lo=0.0, hi=1.0)
    fusion_distance: float = _f(3.0, "end-to-object distance that allows fusion (px)", lo=0.0)
    speed: float = _f(0.15, "sd of each object's drift velocity per axis (px/frame)", lo=0.0)
    jitter: float = _f(0.1, "sd of each object's Brownian centre step (px/frame)", lo=0.0)
    rotation: float = _f(0.003, "sd of each object's rotation speed (rad/frame)", lo=0.0)
    wiggle: float = _f(0.8, "amplitude of the flexing of each object (px per mode)", lo=0.0)
    wiggle_speed: float = _f(0.15, "sd of the phase speed of the flexing (rad/frame)", lo=0.0)
    brightness: float = _f(250.0, "mean peak photons of an unbeaded tube before PSF blur", lo=0.0)
    brightness_sd: float = _f(0.3, "relative sd of object brightness (log-normal)", lo=0.0, hi=3.0)
    psf_sigma: float = _f(1.5, "Gaussian PSF sigma (px)", lo=0.3, hi=20.0)
    background: float = _f(25.0, "background photons per pixel", lo=0.0)
    gradient: float = _f(0.4, "relative change of background across the frame (uneven illumination)",
                         lo=0.0, hi=1.9)
    autofluorescence: float = _f(20.0, "peak photons of the smooth autofluorescence haze", lo=0.0)
    bleach_rate: float = _f(0.01, "photobleaching rate: signal x exp(-rate * frame)", lo=0.0, hi=5.0)
    stage_drift: float = _f(0.1, "stage drift speed (px/frame), random direction", lo=0.0, hi=50.0)
    gain: float = _f(1.0, "camera gain (ADU per photon)", lo=0.01, hi=100.0)
    offset: float = _f(75.0, "camera offset (ADU)", lo=0.0, hi=60000.0)
    read_noise: float = _f(2.0, "Gaussian read noise sd (ADU)", lo=0.0)
    column_noise: float = _f(0.8, "sd of the fixed per-column offset pattern (ADU)", lo=0.0)
    shot_noise: bool = _f(True, "add Poisson shot noise (false: expected photons, for tests)")

    def validate(self):
        if self.min_length * 2 > self.length_mean + 3 * self.length_sd:
            raise ConfigError(f"min_length: {self.min_length} is too long for length_mean={self.length_mean}")


# ----------------------------------------------------------------------------------------------- objects
@dataclass
class _Obj:
    """One connected object. Points are object coordinates (px) relative to its centre at birth."""

    id: int
    branches: list  # of (N, 2) float arrays; branch b>0 starts at its branch point on attach[b]
    tube: list  # of (N,) tube weight per point: 1, dipping towards 0 under each bead sphere
    attach: list  # None for branch 0, else (parent branch, point index)
    beads: list  # (branch, point index) of each bead centre
    r0: float
    persistence: float
    brightness: float
    bead_period: float | None
    birth: int
    parents: list
    center: np.ndarray  # (2,) current centre in frame coordinates (without stage drift)
    angle: float
    vel: np.ndarray  # (2,) px/frame
    omega: float
    modes: dict  # flex modes: u (K,2), n (K,2), k (K,), phase (K,), speed (K,), amp
    track: list = field(default_factory=list)
    death: int | None = None


def _wlc(rng, length: float, persistence: float, start, heading: float) -> np.ndarray:
    """Worm-like chain from ``start``: (N, 2) points every ``_DS`` px, heading steps ~ N(0, 2 ds / P)."""
    n = max(int(round(length / _DS)), 1)
    steps = rng.normal(0.0, np.sqrt(2 * _DS / persistence), n)
    theta = heading + np.cumsum(steps) - steps[0]
    seg = _DS * np.stack([np.cos(theta), np.sin(theta)], axis=1)  # (n, 2)
    return np.vstack([np.asarray(start, float)[None], np.asarray(start, float) + np.cumsum(seg, axis=0)])


def _bead_profile(n: int, bead_r: float, period: float, rng) -> tuple[np.ndarray, list]:
    """Beads every ``period`` px along an (n,)-point branch: (tube weight (n,), bead point indices).

    The tube fades out under each bead sphere (radius ``bead_r``) so the two do not add up twice.
    """
    s = np.arange(n) * _DS
    centres = np.arange(rng.uniform(0.3, 0.9) * period, s[-1] - 0.3 * period, period)
    idx = sorted({int(round(c / _DS)) for c in centres})
    bump = np.zeros(n)
    for i in idx:
        bump = np.maximum(bump, np.exp(-0.5 * ((s - s[i]) / (0.5 * bead_r)) ** 2))
    return 1 - bump, idx


def _flex_modes(rng, p: SimParams) -> dict:
    ang_u, ang_n = rng.uniform(0, 2 * np.pi, _NMODES), rng.uniform(0, 2 * np.pi, _NMODES)
    return {"u": np.stack([np.cos(ang_u), np.sin(ang_u)], 1), "n": np.stack([np.cos(ang_n), np.sin(ang_n)], 1),
            "k": 2 * np.pi / rng.uniform(30, 90, _NMODES), "phase": rng.uniform(0, 2 * np.pi, _NMODES),
            "speed": rng.normal(0, p.wiggle_speed, _NMODES), "amp": p.wiggle}


def _lognormal(rng, mean: float, sd: float, lo: float) -> float:
    if sd <= 0:
        return max(mean, lo)
    s2 = np.log1p((sd / mean) ** 2)
    return max(float(rng.lognormal(np.log(mean) - s2 / 2, np.sqrt(s2))), lo)


def _new_object(rng, p: SimParams, oid: int, center) -> _Obj:
    """A fresh WLC object (maybe branched, maybe beaded), centred on ``center`` (frame coordinates)."""
    length = _lognormal(rng, p.length_mean, p.length_sd, p.min_length)
    persistence = _lognormal(rng, p.persistence_mean, p.persistence_sd, 2.0)
    n_side = int(rng.integers(1, p.max_branches + 1)) if rng.random() < p.branch_prob else 0
    shares = rng.dirichlet(np.full(n_side + 1, 2.0)) if n_side else np.ones(1)
    r0 = max(rng.normal(p.width_mean, p.width_sd), 1.0) / 2
    # a side branch reaches at least two tube widths out, or it would be a bump rather than a Y junction
    shares = np.maximum(shares * length, max(p.min_length, 4 * r0))
    branches = [_wlc(rng, shares[0], persistence, (0.0, 0.0), rng.uniform(0, 2 * np.pi))]
    attach = [None]
    for share in shares[1:]:
        pb = int(rng.integers(len(branches)))
        pts = branches[pb]
        m = max(3, int(np.ceil(4 * r0)))  # two tube widths from either end: a real Y junction, not a bend
        if len(pts) < 2 * m + 2:
            continue
        i = int(rng.integers(m, len(pts) - m))
        tangent = pts[i + 1] - pts[i - 1]
        heading = np.arctan2(tangent[1], tangent[0]) + rng.choice([-1, 1]) * rng.uniform(0.6, 1.7)
        branches.append(_wlc(rng, share, persistence, pts[i], heading))
        attach.append((pb, i))
    centroid = np.concatenate(branches).mean(axis=0)
    branches = [b - centroid for b in branches]
    beaded = rng.random() < p.bead_prob and p.bead_amplitude > 0
    period = max(rng.normal(p.bead_period, 0.15 * p.bead_period), 3.0) if beaded else None
    tube, beads = [], []
    for b, pts in enumerate(branches):
        if beaded and len(pts) * _DS > period:
            r, idx = _bead_profile(len(pts), r0 * (1 + p.bead_amplitude), period, rng)
            beads += [(b, i) for i in idx if not (b > 0 and i == 0)]
        else:
            r = np.ones(len(pts))
        tube.append(r)
    return _Obj(oid, branches, tube, attach, beads, r0, persistence,
                _lognormal(rng, p.brightness, p.brightness_sd * p.brightness, 0.0), period, 0, [],
                np.asarray(center, float), 0.0, rng.normal(0, p.speed, 2), float(rng.normal(0, p.rotation)),
                _flex_modes(rng, p))


def _to_frame(obj_pts: np.ndarray, modes: dict, age: float, center, angle: float) -> np.ndarray:
    """Object coordinates (N, 2) -> frame coordinates: flex (zero at age 0), rotate, translate."""
    proj = obj_pts @ (np.asarray(modes["n"]).T * np.asarray(modes["k"]))  # (N, K)
    phase = proj + np.asarray(modes["phase"])
    wave = np.sin(phase + np.asarray(modes["speed"]) * age) - np.sin(phase)  # (N, K)
    pts = obj_pts + modes["amp"] * wave @ np.asarray(modes["u"])  # (N, 2)
    c, s = np.cos(angle), np.sin(angle)
    return pts @ np.array([[c, s], [-s, c]]) + np.asarray(center)


def _frame_points(obj: _Obj, t: int) -> list:
    return [_to_frame(b, obj.modes, t - obj.birth, obj.center, obj.angle) for b in obj.branches]


# ---------------------------------------------------------------------------------- fission and fusion
def _child(rng, p, parent_objs, oid, t, branches, tube, attach, beads, vel) -> _Obj:
    """A new object born at frame ``t`` from frame-coordinate ``branches`` (its reference pose)."""
    centroid = np.concatenate(branches).mean(axis=0)
    w = np.array([sum(len(b) for b in o.branches) for o in parent_objs], float)
    mean = lambda key: float(np.average([getattr(o, key) for o in parent_objs], weights=w))  # noqa: E731
    periods = [o.bead_period for o in parent_objs if o.bead_period]
    return _Obj(oid, [b - centroid for b in branches], tube, attach, beads, mean("r0"), mean("persistence"),
                mean("brightness"), float(np.mean(periods)) if periods and beads else None, t,
                [o.id for o in parent_objs], centroid, 0.0, np.asarray(vel, float),
                float(np.mean([o.omega for o in parent_objs])), _flex_modes(rng, p))


def _fission(rng, p, obj: _Obj, t: int, next_id: int, events: list) -> list:
    """Split an unbranched object at a random interior point; returns the two children (or [])."""
    pts = _frame_points(obj, t)[0]
    n, lo = len(pts), int(np.ceil(p.min_length / _DS))
    if n - 2 * lo < 3:
        return []
    k = int(rng.integers(lo + 1, n - lo - 1))
    tangent = pts[k + 1] - pts[k - 1]
    tangent /= np.linalg.norm(tangent) + 1e-9
    kids = []
    for j, (sl, sign) in enumerate([(slice(0, k - 1), -1), (slice(k + 2, n), 1)]):  # 2 px gap at the cut
        beads = [(0, i - sl.start) for b, i in obj.beads if sl.start <= i < sl.stop]
        kids.append(_child(rng, p, [obj], next_id + j, t, [pts[sl]], [obj.tube[0][sl]], [None], beads,
                           obj.vel + sign * 0.25 * tangent))
    events.append({"frame": t, "type": "fission", "mode": "split", "parents": [obj.id],
                   "children": [c.id for c in kids], "xy": pts[k].round(3).tolist()})
    return kids


def _fuse(rng, p, a: _Obj, b: _Obj, pts: dict, t: int, next_id: int, events: list):
    """Join unbranched ``a`` (by one of its ends) to ``b`` if they touch; returns the child or None.

    ``pts`` maps object id -> its branches in frame coordinates at ``t``.
    """
    pa, pb = pts[a.id][0], pts[b.id]
    for end in (0, -1):
        tip = pa[end]
        d = [np.hypot(*(q - tip).T) for q in pb]
        j = int(np.argmin([x.min() for x in d]))
        i = int(np.argmin(d[j]))
        if d[j][i] > p.fusion_distance or rng.random() >= p.fusion_prob:
            continue
        chain, r_a = (pa[::-1], a.tube[0][::-1]) if end == 0 else (pa, a.tube[0])
        beads_a = [len(pa) - 1 - k if end == 0 else k for _, k in a.beads]  # indices in ``chain``
        n_b = len(pb[j])
        if len(b.branches) == 1 and i in (0, n_b - 1):  # end-to-end: one longer chain
            tail, r_t = (pb[0], b.tube[0]) if i == 0 else (pb[0][::-1], b.tube[0][::-1])
            beads = [(0, k) for k in beads_a] + [(0, len(chain) + (k if i == 0 else n_b - 1 - k))
                                                  for _, k in b.beads]
            kid = _child(rng, p, [a, b], next_id, t, [np.vstack([chain, tail])], [np.concatenate([r_a, r_t])],
                         [None], beads, (a.vel + b.vel) / 2)
            mode = "end-to-end"
        elif 2 <= i <= n_b - 3:  # tip-to-side: ``a`` becomes a new branch of ``b`` (a Y junction)
            new = np.vstack([pb[j][i], chain[::-1]])
            r_new = np.concatenate([[b.tube[j][i]], r_a[::-1]])
            beads = list(b.beads) + [(len(pb), len(chain) - k) for k in beads_a]
            kid = _child(rng, p, [b, a], next_id, t, pb + [new], b.tube + [r_new], b.attach + [(j, i)],
                         beads, b.vel)
            mode = "tip-to-side"
        else:
            continue
        events.append({"frame": t, "type": "fusion", "mode": mode, "parents": kid.parents,
                       "children": [kid.id], "xy": pb[j][i].round(3).tolist()})
        return kid
    return None


def _events(rng, p: SimParams, alive: list, t: int, next_id: int, events: list) -> tuple[list, int]:
    """Fission then fusion at frame ``t``; every object takes part in at most one event per frame."""
    out, busy = [], set()
    for obj in alive:
        if len(obj.branches) == 1 and p.fission_rate > 0 and rng.random() < p.fission_rate:
            kids = _fission(rng, p, obj, t, next_id, events)
            if kids:
                obj.death, next_id = t - 1, next_id + 2
                out += kids
                busy.add(obj.id)
                continue
        out.append(obj)
    alive, out = out, []
    if p.fusion_prob > 0:
        pts = {o.id: _frame_points(o, t) for o in alive}
        box = {k: (np.concatenate(v).min(0) - p.fusion_distance, np.concatenate(v).max(0) + p.fusion_distance)
               for k, v in pts.items()}
        for a in alive:
            if a.id in busy or len(a.branches) != 1 or a.birth == t:
                continue
            ends = pts[a.id][0][[0, -1]]
            for b in alive:
                lo, hi = box[b.id]
                if b is a or b.id in busy or b.birth == t or not ((ends >= lo) & (ends <= hi)).all(1).any():
                    continue
                kid = _fuse(rng, p, a, b, pts, t, next_id, events)
                if kid is not None:
                    a.death = b.death = t - 1
                    busy |= {a.id, b.id}
                    out.append(kid)
                    next_id += 1
                    break
    return [o for o in alive if o.death is None] + out, next_id


# ----------------------------------------------------------------------------------------------- render
@functools.lru_cache(maxsize=512)
def _kernel(radius: float, sphere: bool) -> np.ndarray:
    """Anti-aliased (8x8 sub-samples) disk of ``radius`` (value 1), or the projected thickness of a sphere
    (``2 sqrt(r^2 - rho^2)``) when ``sphere``: (K, K) float32, K = 2 ceil(r) + 3."""
    half = int(np.ceil(radius)) + 1
    sub = (np.arange(8) + 0.5) / 8 - 0.5
    g = np.arange(-half, half + 1)
    yy = (g[:, None, None, None] + sub[None, None, :, None]) ** 2
    xx = (g[None, :, None, None] + sub[None, None, None, :]) ** 2
    rho2 = yy + xx  # (K, K, 8, 8)
    inside = 2 * np.sqrt(np.maximum(radius ** 2 - rho2, 0)) if sphere else (rho2 <= radius ** 2)
    kern = inside.mean(axis=(2, 3))
    if kern.sum() == 0:
        kern[half, half] = 1.0
    return kern.astype(np.float32)


def _samples(obj: _Obj, pts: list, weight: float, amplitude: float) -> tuple:
    """What to draw for one object: (disks, spheres), each (xy (M, 2), radius (M,), weight (M,)).

    Disks of radius r0 every ``_RENDER_DS`` px along each branch (a chain of uniform disks has the line
    integral ``2 sqrt(r0^2 - d^2)`` of a cylinder), weighted by the tube weight; one sphere per bead.
    Normalised so that a straight unbeaded tube peaks at ``weight`` before the PSF.
    """
    xy, tw = [], []
    for q, tube in zip(pts, obj.tube):
        if len(q) < 2:
            continue
        s = _arc(q)
        u = np.arange(0, s[-1] + 1e-9, _RENDER_DS)
        xy.append(np.stack([np.interp(u, s, q[:, 0]), np.interp(u, s, q[:, 1])], 1))
        tw.append(np.interp(u, s, tube))
    norm = weight / (2 * obj.r0)
    tw = np.concatenate(tw) if tw else np.zeros(0)
    disks = (np.concatenate(xy) if xy else np.zeros((0, 2)), np.full(tw.size, obj.r0), tw * norm * _RENDER_DS)
    bxy = np.array([pts[b][i] for b, i in obj.beads]).reshape(-1, 2)
    spheres = (bxy, np.full(len(bxy), obj.r0 * (1 + amplitude)), np.full(len(bxy), norm))
    return disks, spheres


def _splat(out: np.ndarray, pad: int, xy: np.ndarray, r: np.ndarray, w: np.ndarray, sphere: bool) -> None:
    """Add disks/spheres into the padded canvas ``out`` (Hc, Hc): bilinear splats per radius bin (weights
    interpolate linearly between the two nearest bins), one convolution per occupied bin."""
    hc = out.shape[0]
    x, y = xy[:, 0] + pad, xy[:, 1] + pad
    keep = (x >= 0) & (y >= 0) & (x < hc - 1) & (y < hc - 1)
    x, y, r, w = x[keep], y[keep], r[keep], w[keep]
    if not x.size:
        return
    x0, y0, rb = np.floor(x).astype(int), np.floor(y).astype(int), r / _RBIN
    b0 = np.floor(rb).astype(int)
    fx, fy, fb = x - x0, y - y0, rb - b0
    bmin = int(b0.min())
    b0 -= bmin
    nb = int(b0.max()) + 2
    idx, wt = [], []
    for db, wb in ((0, 1 - fb), (1, fb)):
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                idx.append((b0 + db) * hc * hc + (y0 + dy) * hc + x0 + dx)
                wt.append(w * wb * wy * wx)
    dens = np.bincount(np.concatenate(idx), np.concatenate(wt), minlength=nb * hc * hc).reshape(nb, hc, hc)
    for b in np.flatnonzero(dens.reshape(nb, -1).any(axis=1)):
        k = _kernel(round((bmin + int(b)) * _RBIN, 4), sphere)
        out += cv2.filter2D(dens[b].astype(np.float32), -1, k, borderType=cv2.BORDER_CONSTANT)


def _render(parts: list, size: int, sigma: float) -> np.ndarray:
    """Draw ``[(disks, spheres), ...]`` from :func:`_samples`, then blur by the PSF: (size, size) float32."""
    rmax = max([float(a[1].max()) for part in parts for a in part if a[1].size] + [1.0])
    pad = int(np.ceil(rmax + 4 * sigma)) + 2
    out = np.zeros((size + 2 * pad,) * 2, np.float32)
    for kind in (0, 1):
        arrays = [part[kind] for part in parts if part[kind][1].size]
        if arrays:
            _splat(out, pad, *(np.concatenate([a[i] for a in arrays]) for i in range(3)), sphere=bool(kind))
    out = cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)  # the PSF, once for all
    return out[pad:pad + size, pad:pad + size]


def _haze(rng, p: SimParams) -> tuple:
    """Autofluorescence as a few separable Gaussian blobs (so shifting it with the stage is exact)."""
    n = 6
    margin = p.size * 0.3
    return (rng.uniform(-margin, p.size + margin, (n, 2)), rng.uniform(0.1 * p.size, 0.3 * p.size, n),
            rng.uniform(0.2, 1.0, n) * p.autofluorescence)


def _haze_at(haze, size: int, shift) -> np.ndarray:
    centres, sig, amp = haze
    g = np.arange(size, dtype=np.float64)
    gx = np.exp(-0.5 * ((g[None] - centres[:, :1] - shift[0]) / sig[:, None]) ** 2)  # (n, W)
    gy = np.exp(-0.5 * ((g[None] - centres[:, 1:] - shift[1]) / sig[:, None]) ** 2)  # (n, H)
    return ((gy * amp[:, None]).T @ gx).astype(np.float32)  # (H, W)


def _static_background(rng, p: SimParams) -> np.ndarray:
    """Background photons with a linear illumination gradient in a random direction: (H, W) float32."""
    phi = rng.uniform(0, 2 * np.pi)
    g = np.arange(p.size) / max(p.size - 1, 1) - 0.5
    ramp = np.cos(phi) * g[None, :] + np.sin(phi) * g[:, None]
    return (p.background * (1 + p.gradient * ramp)).astype(np.float32)


def _camera(rng, photons: np.ndarray, p: SimParams, columns: np.ndarray) -> np.ndarray:
    """Photons (H, W) -> uint16 counts: Poisson, gain, read noise, column pattern, offset."""
    counts = rng.poisson(np.maximum(photons, 0)).astype(np.float32) if p.shot_noise else photons
    adu = counts * p.gain + p.offset + columns[None, :]
    if p.read_noise > 0:
        adu = adu + rng.normal(0, p.read_noise, photons.shape).astype(np.float32)
    return np.clip(np.rint(adu), 0, 65535).astype(np.uint16)


# ------------------------------------------------------------------------------------------------ video
def _initial_objects(rng, p: SimParams) -> list:
    n = int(rng.poisson(p.density * p.size * p.size / 1e4))
    margin = 0.1 * p.size
    return [_new_object(rng, p, i, rng.uniform(-margin, p.size + margin, 2)) for i in range(n)]


def _move(rng, p: SimParams, objs: list) -> None:
    for o in objs:
        o.center = o.center + o.vel + (rng.normal(0, p.jitter, 2) if p.jitter > 0 else 0)
        o.angle += o.omega


def simulate_video(params: SimParams | None = None, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Simulate one time-lapse.

    Returns:
        frames: ``(T, H, W)`` uint16 camera counts (``T = params.frames``, ``H = W = params.size``).
        truth: JSON-ready dict of the ground truth (see the module docstring; units: pixels).
    """
    p = params or SimParams()
    rng = np.random.default_rng(seed)
    drift_dir = rng.uniform(0, 2 * np.pi)
    drift = p.stage_drift * np.array([np.cos(drift_dir), np.sin(drift_dir)])
    background, haze = _static_background(rng, p), _haze(rng, p)
    columns = rng.normal(0, p.column_noise, p.size).astype(np.float32) if p.column_noise > 0 else \
        np.zeros(p.size, np.float32)
    alive = _initial_objects(rng, p)
    everyone, events, next_id = list(alive), [], len(alive)
    frames = np.empty((p.frames, p.size, p.size), np.uint16)
    for t in range(p.frames):
        if t > 0:
            _move(rng, p, alive)
            before = {o.id for o in alive}
            alive, next_id = _events(rng, p, alive, t, next_id, events)
            everyone += [o for o in alive if o.id not in before]
        shift, bleach = drift * t, float(np.exp(-p.bleach_rate * t))
        parts = [_samples(o, [q + shift for q in _frame_points(o, t)], o.brightness, p.bead_amplitude)
                 for o in alive]
        for o in alive:
            o.track.append([t, *o.center.round(6).tolist(), round(o.angle, 8)])
        signal = _render(parts, p.size, p.psf_sigma)
        photons = background + bleach * (signal + _haze_at(haze, p.size, shift))
        frames[t] = _camera(rng, photons, p, columns)
    for o in alive:
        o.death = p.frames - 1
    return frames, _truth(p, seed, everyone, events, drift)


# ------------------------------------------------------------------------------------------------ truth
def _r(a, nd=3):
    return np.round(np.asarray(a, float), nd).tolist()


def _arc(q: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.hypot(*np.diff(q, axis=0).T))])


def _object_truth(o: _Obj, drift: np.ndarray) -> dict:
    shift = drift * o.birth
    pts = [q + shift for q in _to_frame_list(o)]
    length = float(sum(_arc(q)[-1] for q in o.branches))
    bp = [pts[a[0]][a[1]] for a in o.attach if a is not None]
    beads = [{"branch": b, "index": i, "s_px": round(float(_arc(o.branches[b])[i]), 3)} for b, i in o.beads]
    return {
        "id": o.id, "first_frame": o.birth, "last_frame": o.death, "parents": o.parents,
        "length_px": round(length, 3), "width_px": round(2 * o.r0, 3), "persistence_px": round(o.persistence, 3),
        "brightness": round(o.brightness, 3), "n_branches": len(o.branches),
        "branch_points": {"count": len(bp), "xy": _r(bp)},
        "beads": {"count": len(o.beads), "period_px": None if o.bead_period is None else round(o.bead_period, 3),
                  "amplitude": None, "radius_px": None, "positions": beads, "xy": _r([pts[b][i] for b, i in o.beads])},
        "skeleton_px": [_r(q) for q in pts],
        "motion": {"reference": [_r(q, 6) for q in o.branches], "attach": [list(a) if a else None for a in o.attach],
                   "tube_weight": [_r(r) for r in o.tube], "track": o.track,
                   "flex": {k: (np.asarray(v).tolist() if k != "amp" else v) for k, v in o.modes.items()}},
    }


def _to_frame_list(o: _Obj) -> list:
    # the pose at birth: first track entry
    _, cx, cy, ang = o.track[0]
    return [_to_frame(b, o.modes, 0, (cx, cy), ang) for b in o.branches]


def _truth(p: SimParams, seed: int, objs: list, events: list, drift: np.ndarray) -> dict:
    objects = [_object_truth(o, drift) for o in sorted(objs, key=lambda o: o.id)]
    for ob in objects:
        if ob["beads"]["count"]:
            ob["beads"]["amplitude"] = p.bead_amplitude
            ob["beads"]["radius_px"] = round(ob["width_px"] / 2 * (1 + p.bead_amplitude), 3)
    return {
        "format": TRUTH_FORMAT, "seed": int(seed), "shape": [p.frames, p.size, p.size], "dtype": "uint16",
        "params": to_dict(p),
        "video": {"bleach_rate": p.bleach_rate, "stage_drift_per_frame": _r(drift, 6),
                  "stage_offset_px": _r(drift[None] * np.arange(p.frames)[:, None], 6),
                  "psf_sigma": p.psf_sigma, "gain": p.gain, "offset": p.offset, "read_noise": p.read_noise,
                  "background": p.background, "gradient": p.gradient, "autofluorescence": p.autofluorescence},
        "objects": objects, "events": events,
        "counts": {"objects_frame0": sum(o["first_frame"] == 0 for o in objects), "objects_total": len(objects),
                   "fission": sum(e["type"] == "fission" for e in events),
                   "fusion": sum(e["type"] == "fusion" for e in events)},
    }


def skeleton_at(truth: dict, obj: dict | int, frame: int) -> list[np.ndarray]:
    """The rendered skeleton of one object at ``frame``: one ``(N, 2)`` (x, y) array per branch (px).

    ``obj`` is an entry of ``truth["objects"]`` or its id. Raises ValueError when the object does not
    exist at that frame. Includes the object's motion, flexing and the stage drift.
    """
    if isinstance(obj, int):
        obj = next(o for o in truth["objects"] if o["id"] == obj)
    if not obj["first_frame"] <= frame <= obj["last_frame"]:
        raise ValueError(f"object {obj['id']} exists in frames {obj['first_frame']}..{obj['last_frame']}, "
                         f"not {frame}")
    m = obj["motion"]
    _, cx, cy, ang = next(tr for tr in m["track"] if tr[0] == frame)
    shift = np.asarray(truth["video"]["stage_offset_px"][frame])
    return [_to_frame(np.asarray(b), m["flex"], frame - obj["first_frame"], (cx, cy), ang) + shift
            for b in m["reference"]]


# ------------------------------------------------------------------------------------------------ masks
def _resampled(q: np.ndarray) -> np.ndarray:
    """A skeleton polyline (N, 2) resampled every ``_RENDER_DS`` px: the centres of the disks that draw it."""
    s = _arc(q)
    u = np.arange(0, s[-1] + 1e-9, _RENDER_DS)
    return np.stack([np.interp(u, s, q[:, 0]), np.interp(u, s, q[:, 1])], 1)


def _stamp(labels: np.ndarray, xy: np.ndarray, radius: float, value: int) -> None:
    """Set ``value`` at every pixel of ``labels`` (H, W) whose centre lies within ``radius`` of a point of
    ``xy`` (M, 2) (x, y): the union of the disks (or bead spheres) the renderer draws, before the PSF."""
    if not len(xy):
        return
    reach = int(np.ceil(radius)) + 1
    off = np.arange(-reach, reach + 1)
    cx = np.rint(xy[:, :1]).astype(int) + off[None, :]  # (M, K) candidate columns
    cy = np.rint(xy[:, 1:]).astype(int) + off[None, :]  # (M, K) candidate rows
    inside = ((cx[:, None, :] - xy[:, 0, None, None]) ** 2 + (cy[:, :, None] - xy[:, 1, None, None]) ** 2
              <= radius ** 2)  # (M, K rows, K cols)
    rows = np.broadcast_to(cy[:, :, None], inside.shape)[inside]
    cols = np.broadcast_to(cx[:, None, :], inside.shape)[inside]
    keep = (rows >= 0) & (cols >= 0) & (rows < labels.shape[0]) & (cols < labels.shape[1])
    labels[rows[keep], cols[keep]] = value


def label_masks(truth: dict) -> np.ndarray:
    """Instance masks of a simulated video from its ground truth: (T, H, W) uint16, the value at a pixel is
    ``id + 1`` of the object there (``truth["objects"]``), 0 the background.

    An object's pixels are those whose centre lies inside the tube it was drawn as, before the PSF blur: within
    ``width_px / 2`` of its skeleton at that frame (:func:`skeleton_at`), or within a bead's ``radius_px`` of a
    bead centre. Where two objects overlap, the one with the higher id is kept. ``labels > 0`` is the binary
    mask."""
    t_count, h, w = truth["shape"]
    labels = np.zeros((t_count, h, w), np.uint16)
    for ob in sorted(truth["objects"], key=lambda o: o["id"]):
        for t in range(ob["first_frame"], ob["last_frame"] + 1):
            branches = skeleton_at(truth, ob, t)
            disks = [_resampled(q) for q in branches if len(q) >= 2]
            _stamp(labels[t], np.concatenate(disks) if disks else np.zeros((0, 2)), ob["width_px"] / 2, ob["id"] + 1)
            beads = np.array([branches[b["branch"]][b["index"]] for b in ob["beads"]["positions"]]).reshape(-1, 2)
            if len(beads):
                _stamp(labels[t], beads, ob["beads"]["radius_px"], ob["id"] + 1)
    return labels


def save_masks(labels: np.ndarray, tif_path) -> Path:
    """Write instance masks (T, H, W) uint16 as a TIFF stack with the frames' pixel size."""
    import tifffile

    tif_path = Path(tif_path)
    tif_path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(tif_path, labels, photometric="minisblack", metadata={"axes": "TYX"},
                     resolution=(1e4 / PIXEL_SIZE_UM, 1e4 / PIXEL_SIZE_UM), resolutionunit="CENTIMETER")
    return tif_path


# ---------------------------------------------------------------------------------------------- dataset
def save_video(frames: np.ndarray, truth: dict, tif_path) -> Path:
    """Write ``frames`` (T, H, W) uint16 as a TIFF stack and ``truth`` as JSON beside it (same stem)."""
    import tifffile

    tif_path = Path(tif_path)
    tif_path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(tif_path, frames, photometric="minisblack", metadata={"axes": "TYX"},
                     resolution=(1e4 / PIXEL_SIZE_UM, 1e4 / PIXEL_SIZE_UM), resolutionunit="CENTIMETER")
    tif_path.with_suffix(".json").write_text(json.dumps(truth, separators=(",", ":")))
    return tif_path


def _video_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _dataset_params(videos: int, frames: int, size: int, params: SimParams | None) -> SimParams:
    if not isinstance(videos, int) or videos < 1:
        raise ConfigError(f"videos: {videos!r} must be at least 1")
    try:
        return dataclasses.replace(params or SimParams(), frames=frames, size=size)
    except ConfigError as e:
        raise ConfigError(f"{e} (simulate --frames/--size)") from None


def simulate_dataset(out_dir, videos: int = 20, frames: int = 30, size: int = 256, seed: int = 0,
                     params: SimParams | None = None, progress: bool = True, masks: bool = False) -> Path:
    """Write ``video_000.tif`` + ``video_000.json`` ... and ``simulation.json`` into ``out_dir``; with ``masks``
    also ``masks/video_000.tif`` ... (:func:`label_masks`; the folder is marked as masks, so reading
    ``out_dir`` as movies, e.g. ``mitogan preprocess OUT``, leaves it out).

    ``frames`` and ``size`` override those fields of ``params``. Returns ``out_dir`` as a Path.
    """
    from tqdm.auto import tqdm

    p = _dataset_params(videos, frames, size, params)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in tqdm(range(videos), desc="simulate", unit="video", disable=not progress):
        vseed = _video_seed(seed, i)
        frames_i, truth = simulate_video(p, vseed)
        save_video(frames_i, truth, out / f"video_{i:03d}.tif")
        entries.append({"tif": f"video_{i:03d}.tif", "truth": f"video_{i:03d}.json", "seed": vseed,
                        "frames": p.frames, **truth["counts"]})
        if masks:
            save_masks(label_masks(truth), out / MASKS_DIR / f"video_{i:03d}.tif")
            entries[-1]["masks"] = f"{MASKS_DIR}/video_{i:03d}.tif"
    if masks:
        from mitogan.fsutil import write_marker

        write_marker(out / MASKS_DIR, "masks", {"labels": "object id + 1 (0: background)", "dtype": "uint16"})
    meta = {"format": "mitogan-sim-dataset/1", "seed": int(seed), "videos": videos, "frames": p.frames,
            "size": p.size, "pixel_size_um": PIXEL_SIZE_UM, "frame_interval_s": FRAME_INTERVAL_S,
            "params": to_dict(p), "video_seeds": "SeedSequence([seed, index]).generate_state(1)[0]",
            "items": entries}
    (out / "simulation.json").write_text(json.dumps(meta, indent=1))
    return out


def default_dataset(videos: int = 20, frames: int = 30, size: int = 256, seed: int = 0,
                    params: SimParams | None = None, progress: bool = True) -> Path:
    """The built-in dataset: simulated once per node into ``<cache root>/sim-<hash>`` (``fsutil.cache_root``:
    ``$MITOGAN_CACHE_DIR`` or ``~/.cache/mitogan``) and reused. Through ``fsutil.cached_dir``: built in a
    temporary folder under a lock and renamed into place complete, with a checksum of every file beside it
    (``sim-<hash>.sha256``); a damaged or partial folder is warned about, discarded and simulated again."""
    p = _dataset_params(videos, frames, size, params)
    key = json.dumps({"format": TRUTH_FORMAT, "videos": videos, "seed": seed, "params": to_dict(p)},
                     sort_keys=True)
    final = cache_root() / f"sim-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def build(tmp: Path) -> None:
        simulate_dataset(tmp, videos=videos, frames=p.frames, size=p.size, seed=seed, params=p, progress=progress)

    return cached_dir(final, build, _check_dataset, label="simulated dataset")


def _check_dataset(path: Path) -> Path:
    """``path`` when it holds the complete dataset its ``simulation.json`` describes (else an error)."""
    meta = json.loads((path / "simulation.json").read_text())
    missing = [name for item in meta["items"] for name in (item["tif"], item["truth"]) if not (path / name).is_file()]
    if missing or len(meta["items"]) != meta["videos"]:
        raise InputError(path, f"incomplete simulated dataset (missing {missing[:3]})")
    return path
