"""From pixels to geometry: the structures of each tile, and how much of an attribution map falls on each.

Structures come from the morphology code of ``mitogan.metrics.morphology`` (the same mask, skeleton,
skan junction degrees, widths and bead peaks as the morphology features), per tile:

==================  ==============================================================================
skeleton            the centre line, 1 px either side
edge                the tubule boundary, 1 px either side of the mask's border (minus the skeleton)
background          more than 2 px outside the mask
branch_points       within 3 px of a junction (skan degree >= 3)
end_points          within 3 px of a skeleton end (degree 1)
beads               within 3 px of a bead: a bright blob on the mask (below)
thick / thin        mask pixels whose nearest skeleton pixel is wider / not wider than the split
high / low curv.    mask pixels whose nearest skeleton pixel bends more / not more than the split
==================  ==============================================================================

The thick/thin and curvature splits are medians over a reference set (``Splits.fit`` on the real tiles)
so that real and generated tiles are cut alike. Curvature of a skeleton pixel: the ratio of the smaller
to the larger eigenvalue of the covariance of the skeleton pixels within 3 px (0 on a straight line,
larger where the line bends); pixels near junctions are left out of both classes.

Beads: the morphology features' width-based bead detector (``bead_peaks``) misses pearls on a string
whose thin stretches fall below the threshold (each bead is then an object of its own; on simulated
beading its density is *lower* on beaded tiles, Cohen's d -0.6). Here a bead is a local maximum (5x5) of
the tile smoothed at sigma 1.5 px that is blob-shaped (both Hessian eigenvalues negative, the smaller in
magnitude at least ``_BLOB_RATIO`` of the larger: a tube's cross-section is a ridge, ratio ~0), on the
mask and not within 3 px of a junction. ``densities`` turns the structures into per-tile counts
(beads, junctions and ends per 10 px of skeleton) for the feature regression.

Saliency mass: ``enrichment[i, k] = (mass of |map| on structure k / its area) / (mass / area of tile i)``:
1 = the structure gets its share of attention, 2 = twice its share. Summaries: mean over the tiles where
the structure exists, with a percentile bootstrap 95 % interval over tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from mitogan.metrics.morphology import _PAD, segment, skan_degrees, tile_thresholds

__all__ = ["STRUCTURES", "DENSITY_NAMES", "Structures", "Splits", "structures", "enrichment", "summarise",
           "bootstrap_ci", "densities", "blob_peaks"]

STRUCTURES = ("skeleton", "edge", "background", "branch_points", "end_points", "beads", "thick", "thin",
              "high_curvature", "low_curvature")
_POINT_RADIUS = 3  # px around a junction, end or bead peak
_CURV_RADIUS = 3  # px: window of the curvature estimate
_BLOB_SIGMA = 1.5  # px: smoothing before the Hessian (the simulator's PSF sigma; beads are 4-10 px wide)
_BLOB_RATIO = 0.4  # smaller / larger Hessian eigenvalue of a blob (a disk: 1, a ridge: 0)
DENSITY_NAMES = ("beads_per_10px", "junctions_per_10px", "ends_per_10px")
_BOOT = 1000


def _disk(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _dilate(m: np.ndarray, r: int) -> np.ndarray:
    return cv2.dilate(m.view(np.uint8) if m.dtype == bool else m.astype(np.uint8), _disk(r)).astype(bool)


@dataclass
class Splits:
    """Thresholds shared by all tile sets: skeleton width (px) and curvature ratio, medians of a reference."""

    width: float
    curvature: float

    @classmethod
    def fit(cls, tiles: np.ndarray, threshold=None) -> "Splits":
        return structures(tiles, splits=None, threshold=threshold).splits

    @classmethod
    def of(cls, skel_width: np.ndarray, skel_curv: np.ndarray) -> "Splits":
        """The medians of the skeleton's width and curvature maps (0 / -1 off the skeleton)."""
        w, c = skel_width[skel_width > 0], skel_curv[skel_curv >= 0]
        return cls(float(np.median(w)) if w.size else 0.0, float(np.median(c)) if c.size else 0.0)


@dataclass
class Structures:
    """Per-tile structure masks (K, N, S, S) bool in ``STRUCTURES`` order, plus the skeleton's width and
    curvature maps (N, S, S) (0 / -1 off the skeleton) and the mask (N, S, S)."""

    masks: np.ndarray
    mask: np.ndarray
    skel_width: np.ndarray
    skel_curv: np.ndarray
    counts: np.ndarray | None = None  # (N, 3): beads, junction pixels, end pixels
    splits: Splits | None = None  # the thick/thin and curvature thresholds the classes were split by

    def __getitem__(self, name: str) -> np.ndarray:
        return self.masks[STRUCTURES.index(name)]


def _curvature(skel: np.ndarray, junction_zone: np.ndarray) -> np.ndarray:
    """Eigenvalue ratio of the local covariance of skeleton pixel coordinates (tall image; -1 off skeleton)."""
    k = (2 * _CURV_RADIUS + 1, 2 * _CURV_RADIUS + 1)
    s = skel.astype(np.float64)
    yy, xx = np.mgrid[:skel.shape[0], :skel.shape[1]].astype(np.float64)  # float64: the cancellation below
    box = lambda a: cv2.boxFilter(a, -1, k, normalize=False, borderType=cv2.BORDER_CONSTANT)  # noqa: E731
    n = np.maximum(box(s), 1)
    my, mx = box(s * yy) / n, box(s * xx) / n
    cyy, cxx, cxy = box(s * yy * yy) / n - my ** 2, box(s * xx * xx) / n - mx ** 2, box(s * yy * xx) / n - my * mx
    tr, det = cyy + cxx, cyy * cxx - cxy ** 2
    disc = np.sqrt(np.maximum(tr ** 2 / 4 - det, 0))
    lo, hi = tr / 2 - disc, tr / 2 + disc
    ratio = np.where(hi > 1e-9, np.maximum(lo, 0) / np.maximum(hi, 1e-9), 0.0)
    return np.where(skel & ~junction_zone, ratio, -1.0)


def blob_peaks(x: np.ndarray) -> np.ndarray:
    """Bright blob-shaped local maxima (see the module docstring): (H, W) float32 -> bool (any 2-D image,
    e.g. the tall image of padded tiles)."""
    g = cv2.GaussianBlur(x.astype(np.float32), (0, 0), _BLOB_SIGMA)
    dxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3)
    dyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3)
    dxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3)
    half, disc = (dxx + dyy) / 2, np.sqrt(np.maximum(((dxx - dyy) / 2) ** 2 + dxy ** 2, 0))
    big, small = half - disc, half + disc  # big <= small: the more negative one first
    blob = (small < 0) & (small <= _BLOB_RATIO * big)  # both negative, comparable
    return blob & (g >= cv2.dilate(g, np.ones((5, 5), np.uint8)))


def _tall_structures(x: np.ndarray, thr: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """Structure masks on the tall image of padded tiles (see ``morphology.segment``)."""
    n, s, _ = x.shape
    t = s + 2 * _PAD
    labels, _, skel = segment(x, thr)
    mask = labels > 0
    edt = cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    width = np.where(skel, 2 * edt - 1, 0).astype(np.float32)
    deg = skan_degrees(skel)
    junction = skel & (deg >= 3)
    skel_band = _dilate(skel, 1)
    out = {"skeleton": skel_band,
           "edge": (_dilate(mask, 1) & ~cv2.erode(mask.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
           & ~skel_band,
           "background": ~_dilate(mask, 2),
           "branch_points": _dilate(junction, _POINT_RADIUS),
           "end_points": _dilate(skel & (deg == 1), _POINT_RADIUS)}
    tall = np.zeros((n, t, t), np.float32)
    tall[:, _PAD:-_PAD, _PAD:-_PAD] = x
    beads = blob_peaks(tall.reshape(n * t, t)) & mask & ~out["branch_points"]
    out["beads"] = _dilate(beads, _POINT_RADIUS)
    per_tile = lambda m: m.reshape(n, -1).sum(1)  # noqa: E731
    counts = np.stack([per_tile(beads), per_tile(junction), per_tile(skel & (deg == 1))], 1).astype(np.float64)
    curv = _curvature(skel, _dilate(junction, 2))
    return out, mask, width, curv, counts


def structures(tiles: np.ndarray, splits: Splits | None = None, threshold=None, chunk: int = 512) -> Structures:
    """The structures of each tile: (N, 1, S, S) or (N, S, S) in [-1, 1] -> ``Structures``.

    ``threshold``: as ``morphology_features`` (None: each tile's noise-aware threshold); ``splits``: the
    thick/thin and curvature thresholds (None: this set's own medians).
    """
    x = np.asarray(tiles, np.float32).reshape(len(tiles), tiles.shape[-2], tiles.shape[-1])
    thr = tile_thresholds(x) if threshold is None else np.broadcast_to(np.asarray(threshold, np.float64), len(x))
    parts = [_chunk(x[i:i + chunk], thr[i:i + chunk]) for i in range(0, len(x), chunk)]
    masks = np.concatenate([p[0] for p in parts], axis=1)
    mask, sw, sc, counts = (np.concatenate([p[j] for p in parts]) for j in (1, 2, 3, 4))
    res = Structures(masks, mask, sw, sc, counts, splits if splits is not None else Splits.of(sw, sc))
    _split_classes(res, res.splits)
    return res


def _chunk(x: np.ndarray, thr: np.ndarray):
    n, s, _ = x.shape
    t = s + 2 * _PAD
    tall, mask, width, curv, counts = _tall_structures(x, thr)
    crop = lambda a: a.reshape(n, t, t)[:, _PAD:-_PAD, _PAD:-_PAD]  # noqa: E731
    masks = np.zeros((len(STRUCTURES), n, s, s), bool)
    for name, m in tall.items():
        masks[STRUCTURES.index(name)] = crop(m)
    return masks, crop(mask), crop(width), crop(curv), counts


def densities(st: Structures) -> np.ndarray:
    """Per-tile counts of beads, junction pixels and end pixels per 10 px of skeleton: (N, 3) in
    ``DENSITY_NAMES`` order (0 for a tile without skeleton)."""
    length = (st.skel_width > 0).reshape(len(st.mask), -1).sum(1).astype(np.float64)
    return np.where(length[:, None] > 0, 10 * st.counts / np.maximum(length, 1)[:, None], 0.0)


def _nearest_skeleton(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tile, the row/column of the nearest skeleton pixel of every pixel: (N, S, S) each."""
    n, s, _ = skel.shape
    iy, ix = np.zeros((n, s, s), np.int64), np.zeros((n, s, s), np.int64)
    for i in range(n):  # per tile: a tall-image transform would reach across tiles
        if skel[i].any():
            _, (iy[i], ix[i]) = ndimage.distance_transform_edt(~skel[i], return_indices=True)
    return iy, ix


def _split_classes(res: Structures, splits: Splits) -> None:
    skel = res.skel_width > 0
    iy, ix = _nearest_skeleton(skel)
    tile = np.arange(len(skel))[:, None, None]
    near_w, near_c = res.skel_width[tile, iy, ix], res.skel_curv[tile, iy, ix]
    has = res.mask & skel.any(axis=(1, 2))[:, None, None]
    res.masks[STRUCTURES.index("thick")] = has & (near_w > splits.width)
    res.masks[STRUCTURES.index("thin")] = has & (near_w > 0) & (near_w <= splits.width)
    res.masks[STRUCTURES.index("high_curvature")] = has & (near_c > splits.curvature)
    res.masks[STRUCTURES.index("low_curvature")] = has & (near_c >= 0) & (near_c <= splits.curvature)


def enrichment(maps: np.ndarray, st: Structures) -> tuple[np.ndarray, np.ndarray]:
    """Area-normalised saliency mass of each structure in each tile.

    ``maps`` (N, S, S) (its absolute value is used) -> (enrichment (N, K) float64, NaN where the structure
    is absent or the map is zero; area fraction (N, K)).
    """
    a = np.abs(np.asarray(maps, np.float64))
    n = len(a)
    total = a.reshape(n, -1).sum(1)
    px = a[0].size
    m = st.masks.reshape(len(STRUCTURES), n, -1)
    area = m.sum(2).T.astype(np.float64)  # (N, K)
    mass = np.einsum("knp,np->nk", m.astype(np.float64), a.reshape(n, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        e = (mass / area) / (total / px)[:, None]
    e[(area == 0) | (total[:, None] <= 0)] = np.nan
    return e, area / px


def bootstrap_ci(values: np.ndarray, n_boot: int = _BOOT, seed: int = 0, stat=np.mean) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of ``stat`` over the finite values (NaN, NaN when fewer than 2)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, v.size, (n_boot, v.size))
    boots = stat(v[idx], axis=1)
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def summarise(enrich: np.ndarray, area: np.ndarray) -> list[dict]:
    """One row per structure, ranked by mean enrichment: ``structure, n_tiles, area_fraction, enrichment,
    ci_low, ci_high``."""
    rows = []
    for k, name in enumerate(STRUCTURES):
        v = enrich[:, k]
        ok = np.isfinite(v)
        lo, hi = bootstrap_ci(v, seed=k)
        rows.append({"structure": name, "n_tiles": int(ok.sum()),
                     "area_fraction": float(np.mean(area[ok, k])) if ok.any() else 0.0,
                     "enrichment": float(np.mean(v[ok])) if ok.any() else float("nan"), "ci_low": lo, "ci_high": hi})
    return sorted(rows, key=lambda r: -r["enrichment"] if np.isfinite(r["enrichment"]) else np.inf)
