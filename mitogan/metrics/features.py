"""The feature space the search objective lives in: deterministic descriptors of fluorescence tiles.

    intensity   the tile's intensity distribution: quantiles, spread, skew, robust noise level
    scattering  a fixed wavelet scattering filter bank (``scattering.py``): scale, orientation, structure
    morphology  mask and skeleton geometry on a threshold decided on the REAL data and carried to every
                tile, real or generated (``morphology.py``)
    topology    Minkowski functionals (boundary length, Euler characteristic) of each tile's brightest 20 % and
                10 %: how its bright structure is arranged, which no intensity statistic or power spectrum holds

Nothing here is random, trained or downloaded: the same tiles give the same features on every machine.
``FeatureSpace`` standardises them robustly on the real reference set (median and MAD per feature, then a
signed log so that a feature 100 MADs off counts ~4.6, not 100: no single feature can dominate a
distance) and keeps the names so that a distance can be explained feature by feature.
"""

from __future__ import annotations

import numpy as np

from mitogan.metrics.blur import gaussian_blur

__all__ = ["INTENSITY_NAMES", "intensity_features", "TOPOLOGY_NAMES", "topology_features", "FEATURES_VERSION",
           "describe", "feature_names", "FeatureSpace", "robust_scale"]

FEATURES_VERSION = "fluo-v3"  # with scattering.SCATTER_VERSION, the real-feature cache key: bump on any change (v3: topology)
_QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
INTENSITY_NAMES = tuple(f"int_q{round(q * 100):02d}" for q in _QUANTILES) + (
    "int_std", "int_skew", "noise_sigma", "grad_mean", "grad_q95")


def intensity_features(tiles: np.ndarray) -> np.ndarray:
    """Intensity statistics of each tile: (N, 1, S, S) in [-1, 1] -> (N, len(INTENSITY_NAMES)) float64.

    noise_sigma is the robust (MAD) spread of the 4-neighbour Laplacian, a standard estimate of pixel
    noise that blur lowers and added noise raises; grad_* are central-difference gradient magnitudes.
    """
    x = np.asarray(tiles, np.float32)
    x = x.reshape(len(x), x.shape[-2], x.shape[-1])
    n = len(x)
    flat = x.reshape(n, -1)
    q = _quantiles(flat, _QUANTILES)  # (N, 7)
    mean, std = flat.mean(1, dtype=np.float64), flat.std(1, dtype=np.float64)
    dev = flat - mean[:, None].astype(np.float32)
    cube = (dev * dev * dev).mean(1, dtype=np.float64)  # not ``** 3``: float32 pow is 5x slower, same to 1e-7
    skew = np.where(std > 1e-6, cube / np.maximum(std, 1e-6) ** 3, 0.0)
    lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]).reshape(n, -1)
    med = _quantiles(lap, (0.5,)).astype(np.float32)  # exact: an element of lap; float32 keeps the next
    noise = 1.4826 * _quantiles(np.abs(lap - med), (0.5,))[:, 0] / np.sqrt(20)  # partition 4x faster than float64
    gy, gx = x[:, 2:, 1:-1] - x[:, :-2, 1:-1], x[:, 1:-1, 2:] - x[:, 1:-1, :-2]
    grad = np.sqrt(gx * gx + gy * gy).reshape(n, -1) / 2
    cols = [q, std[:, None], skew[:, None], noise[:, None], grad.mean(1, dtype=np.float64)[:, None],
            _quantiles(grad, (0.95,))]
    return np.concatenate(cols, 1).astype(np.float64)


_TOPOLOGY_SIGMA = 2.0  # px: the excursion sets are taken on the tile smoothed at about a tubule's half width
_TOPOLOGY_LEVELS = (0.8, 0.9)  # each tile's own quantiles: its brightest 20 % and 10 %
TOPOLOGY_NAMES = tuple(f"topo_{kind}_q{round(q * 100)}" for q in _TOPOLOGY_LEVELS for kind in ("perimeter", "euler"))


def topology_features(tiles: np.ndarray, levels=_TOPOLOGY_LEVELS) -> np.ndarray:
    """Minkowski functionals of each tile's bright excursion sets: (N, 1, S, S) -> (N, 2 len(levels)) float64
    (``TOPOLOGY_NAMES`` at the default ``levels``; ``structure.py`` cuts at more of them).

    The tile is smoothed (Gaussian, sigma 2 px) and cut at its own quantiles ``levels`` (80th, 90th); of each set
    {pixels brighter than that}, ``perimeter`` is its boundary length (4-neighbour edges) over the square root
    of its area, and ``euler`` its Euler characteristic (8-connected objects minus their holes; Gray 1971).
    The third functional, the area, is fixed by the quantile. Why these: a phase-scrambled or pixel-shuffled
    tile keeps its histogram (and, when phase-scrambled, its power spectrum), so no intensity statistic and no
    averaged wavelet energy can tell it from the original, but the shape of its bright set changes: tubes
    and networks are a few long connected pieces, the same pixels spread as a random field are many small
    blobs and holes (Minkowski functionals are the standard test of a random field for non-Gaussian
    structure: Mecke, Buchert & Wagner 1994). Cut at the tile's own quantiles they do not change with contrast
    or offset and little with gamma; smoothed at 2 px, pixel noise and blur of <= 1 px move them little.
    """
    x = np.asarray(tiles, np.float32)
    x = x.reshape(len(x), x.shape[-2], x.shape[-1])
    g = gaussian_blur(x, _TOPOLOGY_SIGMA)
    cut = _quantiles(g.reshape(len(g), -1), levels).astype(np.float32)  # (N, len(levels))
    cols = []
    for k in range(len(levels)):
        m = g > cut[:, k, None, None]
        edges = (m[:, 1:] != m[:, :-1]).sum((1, 2)) + (m[:, :, 1:] != m[:, :, :-1]).sum((1, 2))
        cols += [edges / np.sqrt(m.sum((1, 2)) + 1.0), _euler_number(m)]
    return np.stack(cols, 1).astype(np.float64)


def _euler_number(m: np.ndarray) -> np.ndarray:
    """Euler characteristic (8-connectivity) of each mask (N, H, W) bool, from its 2 x 2 pixel quads (Gray 1971):
    (#quads with 1 set pixel - #with 3 - 2 #diagonal pairs) / 4, the mask padded with background."""
    p = np.pad(m, ((0, 0), (1, 1), (1, 1))).astype(np.int8)
    a, b, c, d = p[:, :-1, :-1], p[:, :-1, 1:], p[:, 1:, :-1], p[:, 1:, 1:]
    n = a + b + c + d
    diagonal = (n == 2) & (a == d)
    return ((n == 1).sum((1, 2)) - (n == 3).sum((1, 2)) - 2 * diagonal.sum((1, 2))) / 4


def _quantiles(a: np.ndarray, qs) -> np.ndarray:
    """Row-wise order-statistic quantiles (nearest rank) with one ``np.partition``: (N, len(qs)) float64.
    Several times faster than ``np.quantile`` on thousands of rows."""
    k = [min(a.shape[1] - 1, int(q * (a.shape[1] - 1) + 0.5)) for q in qs]
    return np.partition(a, k, axis=1)[:, k].astype(np.float64)


def feature_names(size: int) -> list[str]:
    """Names of the columns ``describe`` returns for tiles of ``size`` px."""
    from mitogan.metrics.morphology import FEATURE_NAMES
    from mitogan.metrics.scattering import scattering_names

    morph = [f"morph_{n}" for n in FEATURE_NAMES if not n.startswith(("int_", "otsu"))]
    return list(INTENSITY_NAMES) + scattering_names(size) + morph + list(TOPOLOGY_NAMES)


def describe(tiles: np.ndarray, threshold: float | np.ndarray | None = None, progress: bool = False,
             workers: int | None = None) -> np.ndarray:
    """All features of ``tiles`` (N, 1, S, S) in [-1, 1]: (N, len(feature_names(S))) float64, finite.

    ``threshold`` (tile units) is the mask threshold decided on the real data; None = per-tile rule.
    ``workers`` threads share the work (default: ``torch_threads.allowed()``, the process's torch threads, at
    most 4): each feature family of each block of ``MORPH_CHUNK`` tiles is a task, so the result is bit-identical
    to one thread (morphology's numbers depend on its chunk boundaries by ~1e-4; the other families' do not).
    The work is NumPy, OpenCV, SciPy and torch kernels that release the GIL: 1.45x on 2 cores.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mitogan.metrics.morphology import FEATURE_NAMES, MORPH_CHUNK, morphology_features
    from mitogan.metrics.scattering import scattering_features
    from mitogan.metrics.torch_threads import allowed

    x = np.asarray(tiles, np.float32)
    keep = [i for i, n in enumerate(FEATURE_NAMES) if not n.startswith(("int_", "otsu"))]
    starts = range(0, max(len(x), 1), MORPH_CHUNK)
    per_tile = threshold is not None and np.ndim(threshold) > 0

    def morph(i: int) -> np.ndarray:
        thr = {} if threshold is None else {"threshold": threshold[i:i + MORPH_CHUNK] if per_tile else threshold}
        return morphology_features(x[i:i + MORPH_CHUNK], **thr)[:, keep]

    def block(fn):
        return lambda i: fn(x[i:i + MORPH_CHUNK])

    families = (block(intensity_features), block(scattering_features), morph, block(topology_features))  # column order
    with ThreadPoolExecutor(min(len(starts) * len(families), workers or allowed())) as pool:
        futures = [pool.submit(fn, i) for i in starts for fn in families]
        if progress:
            from concurrent.futures import as_completed

            from tqdm import tqdm

            for _ in tqdm(as_completed(futures), total=len(futures), desc="features", unit="task"):
                pass
        parts = [f.result() for f in futures]
    k = len(families)
    rows = [np.concatenate(parts[j:j + k], 1) for j in range(0, len(parts), k)]
    return np.nan_to_num(np.concatenate(rows), nan=0.0, posinf=0.0, neginf=0.0)


def robust_scale(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, scale) per column of ``ref``: median and 1.4826 * MAD, with fallbacks so that a feature
    that is constant on most real tiles (e.g. 0 objects on sparse data) still gets a usable scale:
    MAD -> half the 10-90 % range -> std -> 1."""
    centre = np.median(ref, 0)
    scale = 1.4826 * np.median(np.abs(ref - centre), 0)
    lo, hi = np.quantile(ref, [0.1, 0.9], axis=0)
    for fallback in ((hi - lo) / 2.563, ref.std(0), np.ones(ref.shape[1])):  # 2.563: 10-90 % of N(0, 1)
        scale = np.where(scale > 1e-9, scale, fallback)
    return centre, np.maximum(scale, 1e-9)


class FeatureSpace:
    """Robust standardisation fitted on the real reference set: ``space(raw) -> (N, D)`` float64.

    z = (f - median) / MAD per feature, then sign(z) * log(1 + |z|): the order of values is kept and a
    wildly wrong feature saturates slowly instead of swamping all the others.
    """

    def __init__(self, ref_raw: np.ndarray, names: list[str]):
        self.centre, self.scale = robust_scale(np.asarray(ref_raw, np.float64))
        self.names = list(names)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        z = (np.asarray(raw, np.float64) - self.centre) / self.scale
        return np.sign(z) * np.log1p(np.abs(z))
