"""Per-image morphology features of mitochondria, from a noise-aware mask and its skeleton.

In the spirit of MiNA / MitoGraph / Nellie, but computed for a whole batch of tiles at once: tiles are
padded and stacked into one tall 2-D image, so labelling, skeletonising and the distance transform are a
handful of C calls instead of one per tile (5,000 tiles of 64x64 take a few seconds).

Thresholds (all in the tiles' [-1, 1] units):
- ``threshold=None``: a noise-aware rule per tile, ``max(otsu, background + NOISE_MARGIN * sigma)``.
  Otsu alone splits pure camera noise in half (27-50 "objects" in an empty 64 px tile); the margin keeps
  the threshold out of the background noise, so noise gives an empty mask and a tube keeps its Otsu mask;
- a float or an (N,) array: ``mask = tile > max(threshold, background + NOISE_MARGIN * sigma)``, or exactly
  ``tile > threshold`` with ``noise_floor=False``. Use ``dataset_threshold`` (the same rule on whole real
  frames, median over frames) and apply it to real and generated tiles alike; the floor keeps a frame of
  pure noise, which per-frame normalisation stretches over [-1, 1], empty under that shared threshold.
Background level and noise are measured on Otsu's lower class: ``background`` = its median, ``sigma`` =
the larger of its lower semi-deviation (pixels below the background: never signal, since mitochondria
are bright) and the Laplacian MAD estimate (which still sees noise on a few discrete levels, e.g. photon
counts of 0-3, where the histogram spread collapses). See docs/morphology-validation.md.

Junctions are counted as skan (>= 0.13) counts them: in the 8-connected pixel graph of the skeleton, edges
between pixels of degree >= 3 are reduced to their minimum spanning tree, and every pixel left with degree
>= 3 is a junction (end points: degree 1). Two junctions a few px apart stay two.

Conventions (documented fills, never NaN):
- objects and enclosed holes smaller than ``MIN_OBJECT_AREA`` pixels are dropped (filled): both are noise
  at this size; a constant tile has an empty mask;
- the tile border counts as background (widths near the edge are measured to the edge);
- a tile without objects gets 0 for every shape feature except ``tortuosity`` (1.0, a straight line);
  ``fg_mean`` and ``bg_mean`` fall back to the tile mean.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import minimum_spanning_tree
from skimage.morphology import skeletonize

from mitogan.preprocess import OTSU_BINS, otsu_histograms, otsu_level, otsu_thresholds

__all__ = ["FEATURE_NAMES", "morphology_features", "tile_thresholds", "group_thresholds",
           "dataset_threshold", "otsu_masks", "segment", "skan_degrees", "MIN_OBJECT_AREA", "NOISE_MARGIN"]

MIN_OBJECT_AREA = 4  # pixels; smaller specks are noise, not organelles
NOISE_MARGIN = 5.0  # threshold >= background + this many noise sigmas (chosen in docs/morphology-validation.md)
MORPH_CHUNK = 1024  # tiles per batch: the features depend on the batch boundaries by ~1e-4 (keep it fixed)
_PAD = 4  # zero rows/columns between stacked tiles: wider than every filter radius used below
_BEAD_RADIUS = 3  # a bead is the widest skeleton point within this radius ...
_BEAD_PROMINENCE = 1.3  # ... and this many times wider than the narrowest skeleton point nearby
_EIGHT = np.ones((3, 3), bool)
_OTSU_BINS = OTSU_BINS  # the one Otsu binning (mitogan.preprocess)
_FINE = 4  # fine histogram = _OTSU_BINS * _FINE bins, for the background quantiles
_LAP_SIGMA = 1.4826 / np.sqrt(20)  # MAD of the 4-neighbour Laplacian -> pixel noise sigma (white noise)

FEATURE_NAMES = (
    "n_objects",                # connected components of the mask (8-connected, >= MIN_OBJECT_AREA px)
    "area_fraction",            # mask pixels / tile pixels
    "skeleton_length",          # total skeleton length in px (diagonal steps count sqrt 2)
    "branch_len_mean",          # mean length of skeleton branches (skeleton cut at junctions), px
    "branch_len_median",        # median branch length, px
    "branch_points_per_object",  # junctions as skan counts them (see module docstring) per object
    "end_points_per_object",    # skeleton pixels of degree 1, per object
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
    "otsu_threshold",           # the tile's own Otsu threshold (whatever threshold made the mask)
)


def morphology_features(tiles: np.ndarray, chunk: int = MORPH_CHUNK, progress: bool = False,
                        threshold: float | np.ndarray | None = None, *, noise_floor: bool = True) -> np.ndarray:
    """Morphology features of each tile.

    Parameters
    ----------
    tiles : (N, 1, S, S) or (N, S, S) float array in [-1, 1]
    chunk : tiles processed per batch (bounds memory; results do not depend on it)
    progress : show a tqdm bar
    threshold : None -> the noise-aware rule per tile (``tile_thresholds``); a float or an (N,) array ->
        ``mask = tile > threshold`` in tile units (e.g. ``dataset_threshold`` of the real tiles)
    noise_floor : with a given threshold, never threshold a tile inside its own background noise:
        ``mask = tile > max(threshold, background + NOISE_MARGIN * sigma)``. A frame of pure noise that was
        stretched to [-1, 1] by per-frame normalisation is otherwise 86-98 % "foreground" under a
        threshold decided on frames with signal. False: exactly ``tile > threshold``.

    Returns
    -------
    (N, len(FEATURE_NAMES)) float64, finite.
    """
    x = _stack(tiles)
    thr = None if threshold is None else _per_tile_threshold(threshold, len(x))
    starts = range(0, x.shape[0], chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="morphology", unit="chunk")
    out = [_chunk_features(x[i:i + chunk], None if thr is None else thr[i:i + chunk], noise_floor)
           for i in starts]
    feats = np.concatenate(out) if out else np.zeros((0, len(FEATURE_NAMES)))
    return np.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)


def tile_thresholds(tiles: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """The noise-aware threshold of each tile on its own: (N, 1, S, S) or (N, S, S) -> (N,) float64.

    ``max(otsu, background + NOISE_MARGIN * sigma)``; a constant tile gets its value (empty mask).
    """
    x = _stack(tiles)
    out = [_noise_aware(x[i:i + chunk].reshape(len(x[i:i + chunk]), -1), _lap_mad(x[i:i + chunk]))[0]
           for i in range(0, len(x), chunk)]
    return np.concatenate(out) if out else np.zeros(0)


def group_thresholds(tiles: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The noise-aware threshold of each group of tiles, pixels pooled, carried to its tiles: (N,) float64.

    ``groups`` (N,) int labels, e.g. the frame each tile was cut from: the pooled pixels are then the
    whole frame (its grid), so each tile is thresholded as its frame is, empty background included.
    """
    inv, thr, _, _ = _group_rule(_stack(tiles), groups)
    return thr[inv]


def dataset_threshold(tiles: np.ndarray, groups: np.ndarray | None = None) -> float:
    """One noise-aware threshold (tile units) for a set of REAL tiles, to apply to real and generated tiles.

    The rule of ``tile_thresholds`` is applied to the pixels of each group pooled (``groups`` (N,) int,
    e.g. the frame of each tile; None = all tiles pooled), and the groups are combined by the median over
    the groups whose foreground stands out of their noise (Otsu above the noise floor); when no group
    does, the median over all groups. Frames of pure noise thus do not drag the threshold up.
    """
    x = _stack(tiles)
    if len(x) == 0:
        raise ValueError("tiles: dataset_threshold needs at least one tile")
    _, thr, otsu, floor = _group_rule(x, np.zeros(len(x), np.int64) if groups is None else groups)
    signal = otsu > floor
    return float(np.median(thr[signal] if signal.any() else thr))


def otsu_masks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain per-tile Otsu threshold (``preprocess.otsu_thresholds``), vectorised over the batch (no noise margin).

    ``x`` (N, S, S) float32 -> (mask (N, S, S) bool, threshold (N,) float). Constant tiles: empty mask.
    """
    n = x.shape[0]
    flat = x.reshape(n, -1)
    thr = otsu_thresholds(flat)
    const = np.isnan(thr)
    mask = flat > np.where(const, np.inf, thr)[:, None]
    return mask.reshape(x.shape), np.where(const, flat.min(1), thr)


# ------------------------------------------------------------------------------------------ thresholds
def _stack(tiles) -> np.ndarray:
    """(N, 1, S, S) or (N, S, S) -> (N, S, S) float32."""
    x = np.asarray(tiles, dtype=np.float32)
    return x.reshape(x.shape[0], x.shape[-2], x.shape[-1])


def _per_tile_threshold(threshold, n: int) -> np.ndarray:
    """A float or (N,) array -> (N,) float64; NaN or a wrong length is an error naming the argument."""
    thr = np.asarray(threshold, np.float64)
    thr = np.full(n, float(thr)) if thr.ndim == 0 else thr.ravel()
    if thr.shape != (n,):
        raise ValueError(f"threshold: expected a float or {n} values (one per tile), got shape {thr.shape}")
    if np.isnan(thr).any():
        raise ValueError("threshold: NaN values")
    return thr


def _hist_quantile(hist: np.ndarray, rank: np.ndarray, lo, span) -> np.ndarray:
    """Value below which ``rank`` (R,) pixels of each row lie, pixels spread evenly within a bin."""
    bins = hist.shape[1]
    cum = np.cumsum(hist, 1)
    j = np.minimum((cum <= rank[:, None]).sum(1), bins - 1)
    rows = np.arange(len(rank))
    below = np.where(j > 0, cum[rows, j - 1], 0)
    frac = np.clip((rank - below) / np.maximum(hist[rows, j], 1), 0, 1)
    return lo + (j + frac) / bins * span


def _laplacian(x: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian inside each tile: (N, S, S) -> (N, S-2, S-2), x's dtype."""
    return 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]


def _lap_abs(x: np.ndarray, lap: np.ndarray | None = None) -> np.ndarray:
    """|4-neighbour Laplacian| inside each tile: (N, S, S) -> (N, (S-2)^2) float32 (``lap``: it, computed already)."""
    return np.abs(_laplacian(x) if lap is None else lap).reshape(len(x), -1)


def _lap_mad(x: np.ndarray, lap: np.ndarray | None = None) -> np.ndarray:
    """Median |Laplacian| per tile (noise is zero-centred, so this is its MAD): (N,) float64."""
    return np.median(_lap_abs(x, lap), 1).astype(np.float64) if x.shape[-1] > 2 else np.zeros(len(x))


def _group_rule(x: np.ndarray, groups) -> tuple:
    """The rule on each group's pooled pixels: (N, S, S), (N,) labels -> (inverse (N,), thr, otsu, floor)."""
    groups = np.asarray(groups).ravel()
    if groups.shape != (len(x),):
        raise ValueError(f"groups: expected {len(x)} labels (one per tile), got shape {groups.shape}")
    ids, inv = np.unique(groups, return_inverse=True)
    lap = _lap_abs(x)  # (N, (S-2)^2)
    out = np.zeros((3, len(ids)))
    for g in range(len(ids)):  # one row per group: groups may hold different numbers of tiles
        member = inv == g
        lap_mad = np.median(lap[member]) if lap.shape[1] else 0.0
        out[:, g] = [a[0] for a in _noise_aware(x[member].reshape(1, -1), np.array([lap_mad]))]
    return (inv, *out)


def _noise_aware(v: np.ndarray, lap_mad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The noise-aware rule per row of pooled pixels ``v`` (R, P) float32 -> (threshold, otsu, floor), (R,).

    floor = background + NOISE_MARGIN * sigma, threshold = max(otsu, floor); constant rows get their value
    (an empty mask).
    """
    hist, lo, span, const = otsu_histograms(v, _OTSU_BINS * _FINE)
    level = otsu_level(hist.reshape(len(v), _OTSU_BINS, _FINE).sum(2))  # Otsu's binning, summed
    otsu = lo + (level + 1) / _OTSU_BINS * span
    n_low = np.cumsum(hist, 1)[np.arange(len(v)), (level + 1) * _FINE - 1]  # Otsu's lower class
    bg = _hist_quantile(hist, n_low / 2, lo, span)
    # lower semi-deviation of the lower class: twice the mean square over the half below its median
    dev = np.minimum(v - bg[:, None].astype(np.float32), 0)
    sigma = np.sqrt(2 * np.einsum("ij,ij->i", dev, dev, dtype=np.float64) / np.maximum(n_low, 1))
    sigma = np.maximum(sigma, _LAP_SIGMA * lap_mad)
    floor = bg + NOISE_MARGIN * sigma
    thr = np.where(const, lo, np.maximum(otsu, floor))
    return thr, np.where(const, lo, otsu), np.where(const, lo, floor)  # constant: nothing above lo


# ------------------------------------------------------------------------------------------ features
def _chunk_features(x: np.ndarray, thr: np.ndarray | None, noise_floor: bool = True) -> np.ndarray:
    """(n, S, S) float32, (n,) thresholds or None -> (n, F) float64, on one tall image of padded tiles."""
    n, s, _ = x.shape
    lap = _laplacian(x)  # (n, S-2, S-2): the noise estimate and the sharpness feature share it
    rule, otsu, floor = _noise_aware(x.reshape(n, -1), _lap_mad(x, lap))
    if thr is None:
        thr = rule
    elif noise_floor:
        thr = np.maximum(thr, floor)
    t = s + 2 * _PAD
    labels, n_lab, skel = segment(x, thr)
    big = labels > 0
    edt = cv2.distanceTransform(big.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # exact EDT
    f = {}
    f.update(_object_features(labels, n_lab, n, t))
    f.update(_skeleton_features(skel, edt, x, f["n_objects"], n, t))
    f.update(_intensity_features(x, big.reshape(n, t, t)[:, _PAD:-_PAD, _PAD:-_PAD], otsu, lap))
    f["area_fraction"] = big.reshape(n, -1).sum(1) / float(s * s)
    return np.stack([np.asarray(f[k], np.float64) for k in FEATURE_NAMES], axis=1)


def segment(x: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Mask, objects and skeleton of tiles stacked into one tall image (used by the features and the
    validation against skan, so both see the same skeleton).

    ``x`` (n, S, S) float32, ``thr`` (n,) -> (labels (n*t, t) int, n_labels, skeleton (n*t, t) bool),
    t = S + 2 * _PAD: tile i occupies rows i*t .. (i+1)*t - 1, its pixels offset by _PAD.
    """
    n, s, _ = x.shape
    t = s + 2 * _PAD
    big = np.zeros((n, t, t), bool)
    big[:, _PAD:-_PAD, _PAD:-_PAD] = x > np.asarray(thr, np.float64)[:, None, None]
    big = big.reshape(n * t, t)  # tiles one under the other, separated by zeros
    labels, n_lab = _drop_small(_fill_pinholes(big))
    return labels, n_lab, skeletonize(labels > 0)


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


def _fill_pinholes(big: np.ndarray) -> np.ndarray:
    """Fill holes under MIN_OBJECT_AREA px: shot noise punches them into dim tubes of raw frames, and each
    adds a loop and junctions to the skeleton (55 -> 13 junctions per 64 px tile of a raw deep-events
    frame; drawn and processed data unchanged). Holes are 4-connected (the dual of 8-connected objects);
    the padding joins all outside background, so only enclosed holes are filled."""
    # OpenCV's labelling: the same components as ndimage's (other numbers; only their areas matter), 1.4x faster
    n_holes, holes = cv2.connectedComponents((~big).view(np.uint8), connectivity=4)
    small = np.bincount(holes.ravel(), minlength=n_holes) < MIN_OBJECT_AREA
    small[0] = False  # label 0 is the mask itself
    return big | small[holes]


def _drop_small(big: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected objects and drop those under MIN_OBJECT_AREA px; labels renumbered 1..n_lab."""
    labels, n_lab = ndimage.label(big, _EIGHT)
    area = np.bincount(labels.ravel(), minlength=n_lab + 1)
    keep = area >= MIN_OBJECT_AREA
    keep[0] = False
    remap = np.where(keep, np.cumsum(keep), 0).astype(labels.dtype)  # int32 as ndimage's: half the memory traffic
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


def skan_degrees(skel: np.ndarray, nb: np.ndarray | None = None) -> np.ndarray:
    """Degree of each skeleton pixel in skan's graph (0 off the skeleton): 2-D bool -> same shape, int16.

    skan (``csr._mst_junctions``) joins 8-connected pixels, then replaces the edges among pixels of degree
    >= 3 by their minimum spanning tree (orthogonal steps 1, diagonal sqrt 2), so a blob of junction
    pixels becomes a tree; pixels still of degree >= 3 are its junctions. Same scipy MST, one call for
    the whole batch (tiles are disconnected, so the trees do not interact); equal-weight ties could in
    principle break differently from skan's per-image call, but every pixel agreed on all 2,552 real tiles.
    """
    nb = _neighbours(skel) if nb is None else nb
    deg = np.where(skel, nb, 0).astype(np.int16)
    hub = (skel & (nb >= 3)).ravel()
    idx = np.flatnonzero(hub)
    if idx.size < 2:
        return deg
    w = skel.shape[1]
    src, dst, wt = [], [], []
    for step, length in ((1, 1.0), (w, 1.0), (w - 1, np.sqrt(2)), (w + 1, np.sqrt(2))):  # forward half
        nbr = idx + step
        ok = (nbr < hub.size) & (np.abs(nbr % w - idx % w) <= 1)  # no wrap across rows
        ok[ok] = hub[nbr[ok]]
        src.append(idx[ok])
        dst.append(nbr[ok])
        wt.append(np.full(ok.sum(), length))
    src, dst, wt = (np.concatenate(a) for a in (src, dst, wt))
    if src.size == 0:
        return deg
    i, j = np.searchsorted(idx, src), np.searchsorted(idx, dst)  # node ids in raster order, as skan's
    m = idx.size
    graph = sparse.csr_matrix((np.r_[wt, wt], (np.r_[i, j], np.r_[j, i])), shape=(m, m))
    graph.sort_indices()
    tree = minimum_spanning_tree(graph).tocoo()
    a, b = tree.row.astype(np.int64), tree.col.astype(np.int64)  # int32 keys would overflow
    kept = np.isin(i * m + j, np.minimum(a, b) * m + np.maximum(a, b))
    lost = np.bincount(np.r_[i[~kept], j[~kept]], minlength=m)  # edges dropped at each hub pixel
    flat = deg.ravel()  # a view: writes go to deg
    flat[idx] -= lost.astype(np.int16)
    return deg


def _edge_lengths(sk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Skeleton pixels and the length of the edges booked on each: (flat index (K,), length (K,) float64).

    Each edge is booked on its upper/left pixel. A diagonal step counts sqrt 2, but only where no
    orthogonal path joins the two pixels, so an L-shaped corner is not counted twice. Works on the
    skeleton pixels only; ``sk`` must have an empty border (the padding), so no neighbour wraps.
    """
    f = sk.ravel()
    w = sk.shape[1]
    idx = np.flatnonzero(f)
    right, left, down = f[idx + 1], f[idx - 1], f[idx + w]
    diag = (f[idx + w + 1] & ~right & ~down).astype(np.float64) + (f[idx + w - 1] & ~left & ~down)
    return idx, right.astype(np.float64) + down + np.sqrt(2) * diag


def _skeleton_features(skel, edt, x, n_obj, n: int, t: int) -> dict:
    """Length, branches, junctions, end points, width, tortuosity, beads and skeleton intensity."""
    nb = _neighbours(skel)
    junc = skel & (nb >= 3)  # the junction region: branches are cut here
    idx, edges = _edge_lengths(skel)  # skeleton pixels (flat indices into the tall image)
    st = idx // (t * t)  # their tiles
    deg = skan_degrees(skel, nb).ravel()[idx]
    n_junc = np.bincount(st[deg >= 3], minlength=n)[:n]
    n_end = np.bincount(st[deg == 1], minlength=n)[:n]
    per_obj = np.maximum(n_obj, 1)
    length = _per_tile(edges, st, n) + n_obj
    width = 2 * edt.ravel()[idx].astype(np.float64) - 1
    cnt = np.maximum(np.bincount(st, minlength=n)[:n], 1)
    w_mean = _per_tile(width, st, n) / cnt
    w_var = np.maximum(_per_tile(width ** 2, st, n) / cnt - w_mean ** 2, 0)
    tile_px = idx - st * (t * t)  # the tile's pixels are offset by _PAD in the tall image
    iv = (x[st, tile_px // t - _PAD, tile_px % t - _PAD] + 1.0) / 2.0  # [0, 1]: the coefficient of variation is defined
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
    idx, e = _edge_lengths(seg)
    flat = lab.ravel()
    seg_len = np.bincount(flat[idx] - 1, weights=e, minlength=n_seg) + 1  # + 1: pixel extent
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
    width = width.astype(np.float32)
    # square max / min filters; OpenCV's are several times faster than ndimage's on the tall image
    wmax = cv2.dilate(np.where(skel, width, -np.inf).astype(np.float32), np.ones((2 * _BEAD_RADIUS + 1,) * 2))
    wmin = cv2.erode(np.where(skel, width, np.inf).astype(np.float32), np.ones((2 * _BEAD_RADIUS + 5,) * 2))
    with np.errstate(over="ignore"):  # far from the skeleton wmin is +inf (or FLT_MAX from OpenCV)
        peaks = skel & (width >= wmax) & (width >= _BEAD_PROMINENCE * wmin) & (width >= 2.0)
    pl, n_p = ndimage.label(peaks, _EIGHT)
    return np.bincount(_label_tiles(pl, n_p, t)[1:], minlength=n)[:n].astype(np.float64)


def _intensity_features(x: np.ndarray, mask: np.ndarray, thr: np.ndarray, lap: np.ndarray) -> dict:
    """Whole-tile, foreground and background intensity statistics and Laplacian sharpness."""
    n = x.shape[0]
    flat = x.reshape(n, -1).astype(np.float64)
    m = mask.reshape(n, -1).astype(np.float64)
    mean = flat.mean(1)
    d = flat - mean[:, None]  # centred: the background variance below needs no large cancellations
    d2 = d * d
    var = d2.mean(1)
    std = np.sqrt(var)
    skew = np.where(std > 1e-6, np.einsum("ij,ij->i", d2, d) / d.shape[1] / np.maximum(std, 1e-6) ** 3, 0.0)
    nf = m.sum(1)
    nb = d.shape[1] - nf
    fg_d = np.einsum("ij,ij->i", d, m)  # sum of centred values inside the mask (minus the outside sum)
    fg = np.where(nf > 0, mean + fg_d / np.maximum(nf, 1), mean)
    bg_d = -fg_d / np.maximum(nb, 1)  # mean centred value outside the mask
    bg = np.where(nb > 0, mean + bg_d, mean)
    bg_sq = (d2.sum(1) - np.einsum("ij,ij->i", d2, m)) / np.maximum(nb, 1)
    bg_var = np.where(nb > 0, bg_sq - bg_d ** 2, 0.0)
    return {"int_mean": mean, "int_std": std, "int_skew": skew, "fg_mean": fg, "bg_mean": bg,
            "bg_std": np.sqrt(np.maximum(bg_var, 0)), "lap_std": lap.reshape(n, -1).std(1),
            "otsu_threshold": thr}
