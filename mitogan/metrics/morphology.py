"""Per-image morphology features of mitochondria, from the Otsu mask and its skeleton.

In the spirit of MiNA / MitoGraph / Nellie, but computed for a whole batch of tiles at once: tiles are
padded and stacked into one tall 2-D image, so labelling, skeletonising and the distance transform are a
handful of C calls instead of one per tile (5,000 tiles of 64x64 take a few seconds).

Conventions (documented fills, never NaN):
- the mask is ``tile > otsu(tile)`` per tile, objects smaller than ``MIN_OBJECT_AREA`` pixels are dropped;
  a constant tile has an empty mask;
- the tile border counts as background (widths near the edge are measured to the edge);
- a tile without objects gets 0 for every shape feature except ``tortuosity`` (1.0, a straight line);
  ``fg_mean`` and ``bg_mean`` fall back to the tile mean.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

__all__ = ["FEATURE_NAMES", "morphology_features", "otsu_masks", "MIN_OBJECT_AREA"]

MIN_OBJECT_AREA = 4  # pixels; smaller specks are noise, not organelles
_PAD = 4  # zero rows/columns between stacked tiles: wider than every filter radius used below
_BEAD_RADIUS = 3  # a bead is the widest skeleton point within this radius ...
_BEAD_PROMINENCE = 1.3  # ... and this many times wider than the narrowest skeleton point nearby
_EIGHT = np.ones((3, 3), bool)

FEATURE_NAMES = (
    "n_objects",                # connected components of the mask (8-connected, >= MIN_OBJECT_AREA px)
    "area_fraction",            # mask pixels / tile pixels
    "skeleton_length",          # total skeleton length in px (diagonal steps count sqrt 2)
    "branch_len_mean",          # mean length of skeleton branches (skeleton cut at junctions), px
    "branch_len_median",        # median branch length, px
    "branch_points_per_object",  # junction clusters (>= 3 skeleton neighbours) per object
    "end_points_per_object",    # skeleton pixels with one neighbour, per object
    "width_mean",               # tubule width on the skeleton, 2 * distance transform - 1, px
    "width_std",                # spread of that width
    "tortuosity",               # branch length / end-to-end distance (length-weighted mean, >= 1)
    "solidity",                 # object area / convex hull area (area-weighted mean)
    "eccentricity",             # of the object's second-moment ellipse (area-weighted mean)
    "bead_density",             # prominent width maxima along the skeleton per 10 px of skeleton
    "skel_intensity_cv",        # std / mean of intensity along the skeleton (beads are bright)
    "int_mean",                 # tile intensity mean, in the tile's [-1, 1] units
    "int_std",                  # tile intensity standard deviation
    "int_skew",                 # skewness of the tile intensities
    "fg_mean",                  # mean intensity inside the mask
    "bg_mean",                  # mean intensity outside the mask
    "bg_std",                   # standard deviation outside the mask (noise level)
    "lap_std",                  # std of the 3x3 Laplacian (sharpness / high-frequency energy)
    "otsu_threshold",           # the Otsu threshold itself
)


def morphology_features(tiles: np.ndarray, chunk: int = 1024, progress: bool = False) -> np.ndarray:
    """Morphology features of each tile.

    Parameters
    ----------
    tiles : (N, 1, S, S) or (N, S, S) float array in [-1, 1]
    chunk : tiles processed per batch (bounds memory; results do not depend on it)
    progress : show a tqdm bar

    Returns
    -------
    (N, len(FEATURE_NAMES)) float64, finite.
    """
    x = np.asarray(tiles, dtype=np.float32)
    x = x.reshape(x.shape[0], x.shape[-2], x.shape[-1])  # (N, S, S)
    starts = range(0, x.shape[0], chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="morphology", unit="chunk")
    out = [_chunk_features(x[i:i + chunk]) for i in starts]
    feats = np.concatenate(out) if out else np.zeros((0, len(FEATURE_NAMES)))
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)


def otsu_masks(x: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile Otsu threshold, vectorised over the batch.

    ``x`` (N, S, S) float32 -> (mask (N, S, S) bool, threshold (N,) float). Constant tiles: empty mask.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    lo, hi = flat.min(1), flat.max(1)
    span = np.where(hi - lo > 1e-6, hi - lo, 1.0)
    q = np.minimum(((flat - lo[:, None]) / span[:, None] * bins).astype(np.int64), bins - 1)  # (N, P)
    hist = np.bincount((q + np.arange(n)[:, None] * bins).ravel(), minlength=n * bins).reshape(n, bins)
    w0 = np.cumsum(hist, 1).astype(np.float64)  # pixels at or below each level
    m0 = np.cumsum(hist * np.arange(bins), 1)
    total, mtot = w0[:, -1:], m0[:, -1:]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = w0 * w1 * (m0 / w0 - (mtot - m0) / w1) ** 2  # between-class variance
    between = np.nan_to_num(between, nan=-1.0, posinf=-1.0)
    level = between.argmax(1)  # (N,)
    mask = q > level[:, None]
    mask[(hi - lo) <= 1e-6] = False
    thr = np.where(hi - lo > 1e-6, lo + (level + 1) / bins * span, lo)
    return mask.reshape(x.shape), thr


def _chunk_features(x: np.ndarray) -> np.ndarray:
    """(n, S, S) float32 -> (n, F) float64. Works on one tall stacked image of the padded tiles."""
    n, s, _ = x.shape
    mask, thr = otsu_masks(x)
    t = s + 2 * _PAD
    big = np.zeros((n, t, t), bool)
    big[:, _PAD:-_PAD, _PAD:-_PAD] = mask
    big = big.reshape(n * t, t)  # (n*t, t): tiles one under the other, separated by zeros
    labels, n_lab = _drop_small(big)
    big = labels > 0
    skel = skeletonize(big)
    edt = ndimage.distance_transform_edt(big)
    inten = np.zeros((n, t, t), np.float32)
    inten[:, _PAD:-_PAD, _PAD:-_PAD] = (x + 1.0) / 2.0  # [0, 1] so the coefficient of variation is defined
    f = {}
    f.update(_object_features(labels, n_lab, n, t))
    f.update(_skeleton_features(skel, edt, inten.reshape(n * t, t), f["n_objects"], n, t))
    f.update(_intensity_features(x, big.reshape(n, t, t)[:, _PAD:-_PAD, _PAD:-_PAD], thr))
    f["area_fraction"] = big.reshape(n, -1).sum(1) / float(s * s)
    return np.stack([np.asarray(f[k], np.float64) for k in FEATURE_NAMES], axis=1)


def _per_tile(values, tile_idx, n):
    """Sum ``values`` into tiles: (n,) float64."""
    return np.bincount(tile_idx, weights=values, minlength=n)[:n]


def _label_tiles(labels: np.ndarray, n_lab: int, t: int) -> np.ndarray:
    """Tile index of each label (index 0 = background, mapped to tile 0): (n_lab + 1,) int."""
    flat = labels.ravel()
    idx = np.flatnonzero(flat)
    tile = np.zeros(n_lab + 1, np.int64)
    tile[flat[idx]] = idx // (t * t)
    return tile


def _drop_small(big: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected objects and drop those under MIN_OBJECT_AREA px; labels renumbered 1..n_lab."""
    labels, n_lab = ndimage.label(big, _EIGHT)
    area = np.bincount(labels.ravel(), minlength=n_lab + 1)
    keep = area >= MIN_OBJECT_AREA
    keep[0] = False
    remap = np.where(keep, np.cumsum(keep), 0)
    return remap[labels], int(keep.sum())


def _object_features(labels: np.ndarray, n_lab: int, n: int, t: int) -> dict:
    """Counts, area-weighted eccentricity (from moments) and solidity (from convex hulls) per tile."""
    tile = _label_tiles(labels, n_lab, t)[1:]
    idx = np.flatnonzero(labels)
    lab = labels.ravel()[idx] - 1
    r, c = (idx // t).astype(np.float64), (idx % t).astype(np.float64)
    area = np.bincount(lab, minlength=n_lab).astype(np.float64)
    safe = np.maximum(area, 1)
    mr, mc = np.bincount(lab, r, n_lab) / safe, np.bincount(lab, c, n_lab) / safe
    # second central moments; + 1/12 is the variance of a unit pixel, so a single pixel is round
    a = np.bincount(lab, r * r, n_lab) / safe - mr ** 2 + 1 / 12
    b = np.bincount(lab, c * c, n_lab) / safe - mc ** 2 + 1 / 12
    cc = np.bincount(lab, r * c, n_lab) / safe - mr * mc
    root = np.sqrt(((a - b) / 2) ** 2 + cc ** 2)
    l1, l2 = (a + b) / 2 + root, np.maximum((a + b) / 2 - root, 0)
    ecc = np.sqrt(np.clip(1 - l2 / np.maximum(l1, 1e-12), 0, 1))
    n_obj = np.bincount(tile, minlength=n)[:n].astype(np.float64)
    tot = np.maximum(_per_tile(area, tile, n), 1)
    return {"n_objects": n_obj, "eccentricity": _per_tile(area * ecc, tile, n) / tot,
            "solidity": _solidity((labels > 0).reshape(n, t, t))}


def _solidity(masks: np.ndarray) -> np.ndarray:
    """Area-weighted solidity per tile from OpenCV contours: (n, t, t) bool -> (n,).

    Contour polygons run through pixel centres, so both areas are grown by half a pixel
    (A + P/2 + 1): a straight one-pixel line then has solidity 1, not 0/0.
    """
    out = np.zeros(masks.shape[0])
    for i, m in enumerate(masks.astype(np.uint8)):
        if not m.any():
            continue
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        num = den = 0.0
        for cnt in contours:
            hull = cv2.convexHull(cnt)
            area = cv2.contourArea(cnt) + cv2.arcLength(cnt, True) / 2 + 1
            hull_area = cv2.contourArea(hull) + cv2.arcLength(hull, True) / 2 + 1
            num += area * min(area / hull_area, 1.0)
            den += area
        out[i] = num / den
    return out


def _neighbours(sk: np.ndarray) -> np.ndarray:
    """Number of 8-neighbours of each pixel that are in ``sk``: same shape, uint8."""
    k = np.ones((3, 3), np.float32)
    k[1, 1] = 0
    return cv2.filter2D(sk.astype(np.uint8), -1, k, borderType=cv2.BORDER_CONSTANT)


def _edge_lengths(sk: np.ndarray) -> np.ndarray:
    """Length of the skeleton edges, booked on the upper/left pixel of each edge: float64 image.

    A diagonal step counts sqrt 2, but only where no orthogonal path joins the two pixels, so an
    L-shaped corner is not counted twice.
    """
    e = np.zeros(sk.shape)
    e[:, :-1] += sk[:, :-1] & sk[:, 1:]
    e[:-1] += sk[:-1] & sk[1:]
    d1 = sk[:-1, :-1] & sk[1:, 1:] & ~sk[:-1, 1:] & ~sk[1:, :-1]
    d2 = sk[:-1, 1:] & sk[1:, :-1] & ~sk[:-1, :-1] & ~sk[1:, 1:]
    e[:-1, :-1] += np.sqrt(2) * d1
    e[:-1, 1:] += np.sqrt(2) * d2
    return e


def _skeleton_features(skel, edt, inten, n_obj, n: int, t: int) -> dict:
    """Length, branches, junctions, end points, width, tortuosity, beads and skeleton intensity."""
    pix_tile = np.arange(skel.size) // (t * t)  # tile of each pixel of the tall image
    sk = skel.ravel()
    nb = _neighbours(skel)
    junc = skel & (nb >= 3)
    jl, n_j = ndimage.label(junc, _EIGHT)
    n_junc = np.bincount(_label_tiles(jl, n_j, t)[1:], minlength=n)[:n]
    n_end = np.bincount(pix_tile[(skel & (nb == 1)).ravel()], minlength=n)[:n]
    per_obj = np.maximum(n_obj, 1)
    length = _per_tile(_edge_lengths(skel).ravel(), pix_tile, n) + n_obj
    width = (2 * edt - 1).ravel()[sk]
    st = pix_tile[sk]
    cnt = np.maximum(np.bincount(st, minlength=n)[:n], 1)
    w_mean = _per_tile(width, st, n) / cnt
    w_var = np.maximum(_per_tile(width ** 2, st, n) / cnt - w_mean ** 2, 0)
    iv = inten.ravel()[sk]
    i_mean = _per_tile(iv, st, n) / cnt
    i_std = np.sqrt(np.maximum(_per_tile(iv ** 2, st, n) / cnt - i_mean ** 2, 0))
    f = {"skeleton_length": length, "branch_points_per_object": n_junc / per_obj,
         "end_points_per_object": n_end / per_obj, "width_mean": w_mean, "width_std": np.sqrt(w_var),
         "skel_intensity_cv": np.where(i_mean > 1e-6, i_std / np.maximum(i_mean, 1e-6), 0.0)}
    f.update(_branch_features(skel & ~junc, n, t))
    beads = _bead_count(skel, 2 * edt - 1, n, t)
    f["bead_density"] = 10 * beads / np.maximum(length, 1)
    return f


def _branch_features(seg: np.ndarray, n: int, t: int) -> dict:
    """Branches = skeleton cut at junction pixels. Mean/median length and length-weighted tortuosity."""
    lab, n_seg = ndimage.label(seg, _EIGHT)
    tile = _label_tiles(lab, n_seg, t)[1:]
    e = _edge_lengths(seg).ravel()
    flat = lab.ravel()
    has = np.flatnonzero(flat)
    seg_len = np.bincount(flat[has] - 1, weights=e[has], minlength=n_seg) + 1  # + 1: pixel extent
    # tortuosity: branch length over the distance between its two end pixels (+1, same convention)
    ends = np.flatnonzero((seg & (_neighbours(seg) == 1)).ravel())
    order = np.argsort(flat[ends], kind="stable")
    ends = ends[order]
    lab_e, first, count = np.unique(flat[ends], return_index=True, return_counts=True)
    two = count == 2
    p, q = ends[first[two]], ends[first[two] + 1]
    chord = np.hypot(p // t - q // t, p % t - q % t) + 1
    seg_i = lab_e[two] - 1
    tort = np.maximum(seg_len[seg_i] / chord, 1.0)
    ok = seg_len[seg_i] >= 5  # shorter branches are all pixelation
    wl = seg_len[seg_i][ok]
    num = _per_tile(wl * tort[ok], tile[seg_i][ok], n)
    den = _per_tile(wl, tile[seg_i][ok], n)
    n_per = np.bincount(tile, minlength=n)[:n]
    return {"branch_len_mean": _per_tile(seg_len, tile, n) / np.maximum(n_per, 1),
            "branch_len_median": _grouped_median(seg_len, tile, n),
            "tortuosity": np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)}


def _grouped_median(values: np.ndarray, group: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` within each group 0..n-1 (0 for an empty group), without a Python loop."""
    out = np.zeros(n)
    if values.size == 0:
        return out
    order = np.lexsort((values, group))
    v, g = values[order], group[order]
    counts = np.bincount(g, minlength=n)[:n]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    has = counts > 0
    lo = start[has] + (counts[has] - 1) // 2
    hi = start[has] + counts[has] // 2
    out[has] = (v[lo] + v[hi]) / 2
    return out


def _bead_count(skel: np.ndarray, width: np.ndarray, n: int, t: int) -> np.ndarray:
    """Beads per tile: skeleton points that are the widest within _BEAD_RADIUS and clearly wider
    (x _BEAD_PROMINENCE) than the narrowest skeleton point a little further out (a swelling between
    thinner stretches). Plateaus count once (peak pixels are clustered)."""
    wmax = ndimage.maximum_filter(np.where(skel, width, -np.inf), size=2 * _BEAD_RADIUS + 1)
    wmin = ndimage.minimum_filter(np.where(skel, width, np.inf), size=2 * _BEAD_RADIUS + 5)
    peaks = skel & (width >= wmax) & (width >= _BEAD_PROMINENCE * wmin) & (width >= 2.0)
    pl, n_p = ndimage.label(peaks, _EIGHT)
    return np.bincount(_label_tiles(pl, n_p, t)[1:], minlength=n)[:n].astype(np.float64)


def _intensity_features(x: np.ndarray, mask: np.ndarray, thr: np.ndarray) -> dict:
    """Whole-tile, foreground and background intensity statistics and Laplacian sharpness."""
    n = x.shape[0]
    flat = x.reshape(n, -1).astype(np.float64)
    m = mask.reshape(n, -1)
    mean, std = flat.mean(1), flat.std(1)
    skew = np.where(std > 1e-6, ((flat - mean[:, None]) ** 3).mean(1) / np.maximum(std, 1e-6) ** 3, 0.0)
    nf, nb = m.sum(1), (~m).sum(1)
    fg = np.where(nf > 0, (flat * m).sum(1) / np.maximum(nf, 1), mean)
    bg = np.where(nb > 0, (flat * ~m).sum(1) / np.maximum(nb, 1), mean)
    bg_var = np.where(nb > 0, (flat ** 2 * ~m).sum(1) / np.maximum(nb, 1) - bg ** 2, 0.0)
    lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    return {"int_mean": mean, "int_std": std, "int_skew": skew, "fg_mean": fg, "bg_mean": bg,
            "bg_std": np.sqrt(np.maximum(bg_var, 0)), "lap_std": lap.reshape(n, -1).std(1),
            "otsu_threshold": thr}
