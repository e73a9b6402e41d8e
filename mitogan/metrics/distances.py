"""Distances between a real and a generated sample of feature vectors (rows = images).

All functions take float arrays (N, D) and return Python floats / dicts of floats. Randomness (KID
subsets) comes from an explicit ``seed``: same inputs, same seed, same numbers.
"""

from __future__ import annotations

import numpy as np

from mitogan.errors import ConfigError

__all__ = ["kid", "frechet_distance", "prdc", "vendi_score", "knn_radii",
           "nearest_distances", "vendi_score_rbf", "median_nn_distance", "mean_pairwise_correlation"]


def _cubic(a: np.ndarray, b: np.ndarray, d: int) -> np.ndarray:
    k = a @ b.T / d + 1
    return k * k * k  # much faster than k ** 3


def kid(real: np.ndarray, fake: np.ndarray, subset_size: int = 1000, n_subsets: int = 100,
        seed: int = 0) -> tuple[float, float, int]:
    """Kernel Inception Distance: unbiased MMD^2 with the cubic kernel (x.y / d + 1)^3.

    Averaged over ``n_subsets`` random subsets of ``m = min(subset_size, n_real, n_fake)`` rows each.
    Returns (mean, std over subsets, m). Needs at least 2 rows on each side.
    """
    m = min(subset_size, len(real), len(fake))
    if m < 2:
        raise ConfigError(f"KID needs at least 2 real and 2 generated images, got {len(real)} and {len(fake)}")
    d = real.shape[1]
    rng = np.random.default_rng(seed)
    vals = np.empty(n_subsets)
    for i in range(n_subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = _cubic(x, x, d), _cubic(y, y, d), _cubic(x, y, d)
        off = m * (m - 1)
        vals[i] = ((kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off
                   - 2 * kxy.mean())
    return float(vals.mean()), float(vals.std()), m


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two sets: |mu1-mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2).

    The matrix square root goes through the symmetric form S1^1/2 S2 S1^1/2 (eigendecompositions only),
    which stays real and stable for the rank-deficient covariances of a few hundred images.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ConfigError(f"Fréchet distance needs at least 2 real and 2 generated images, got "
                          f"{len(real)} and {len(fake)}")
    mu1, mu2 = real.mean(0), fake.mean(0)
    s1, s2 = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    ev, vec = np.linalg.eigh(s1)
    root1 = (vec * np.sqrt(np.clip(ev, 0, None))) @ vec.T
    mid = np.linalg.eigvalsh(root1 @ s2 @ root1)
    tr_cross = np.sqrt(np.clip(mid, 0, None)).sum()
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_cross, 0.0))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), clipped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def knn_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Distance from each row of ``x`` to its k-th nearest OTHER row: (N,) float64."""
    if len(x) <= k:
        raise ConfigError(f"k-NN metrics need more than k={k} images per set, got {len(x)} "
                          f"(lower metrics k or supply more images)")
    out = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _sq_dists(x[i:i + chunk], x)
        out[i:i + chunk] = np.sqrt(np.partition(d, k, axis=1)[:, k])  # column 0 is the point itself
    return out


def nearest_distances(query: np.ndarray, ref: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: (Euclidean distance to its nearest ``ref`` row, that row's index)."""
    dist, idx = np.empty(len(query)), np.empty(len(query), np.int64)
    for i in range(0, len(query), chunk):
        d = _sq_dists(query[i:i + chunk], ref)
        j = d.argmin(1)
        idx[i:i + chunk] = j
        dist[i:i + chunk] = np.sqrt(d[np.arange(len(j)), j])
    return dist, idx


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020), k-NN balls.

    precision: share of fakes inside some real ball; recall: share of reals inside some fake ball;
    density: mean number of real balls holding a fake / k; coverage: share of reals whose ball holds
    at least one fake (falls when the generator drops modes).
    """
    r_real, r_fake = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    inside_count = np.zeros(len(fake))
    covered = np.zeros(len(real), bool)
    recall_hit = np.zeros(len(real), bool)
    for i in range(0, len(fake), chunk):
        d = np.sqrt(_sq_dists(fake[i:i + chunk], real))  # (b, n_real)
        inside = d <= r_real[None, :]
        inside_count[i:i + chunk] = inside.sum(1)
        covered |= inside.any(0)
        recall_hit |= (d <= r_fake[i:i + chunk, None]).any(0)
    return {"precision": float((inside_count > 0).mean()), "recall": float(recall_hit.mean()),
            "density": float(inside_count.mean() / k), "coverage": float(covered.mean())}


def vendi_score(x: np.ndarray) -> float:
    """Vendi score (Friedman & Dieng 2023) with the cosine-similarity kernel (the ``vendi-score`` package's
    default, which it matches; the objective uses ``vendi_score_rbf``): the effective number of
    distinct rows, exp(entropy of the eigenvalues of K/n). n identical rows -> 1; n orthogonal rows -> n.

    Rows that are all zero are treated as one shared direction (so they count as one image).
    """
    if len(x) == 0:
        raise ConfigError("Vendi score needs at least one image")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    u = np.where(norms > 1e-12, x / np.maximum(norms, 1e-12), np.eye(1, x.shape[1]))
    small = u.T @ u if len(u) > u.shape[1] else u @ u.T  # same non-zero spectrum, smaller matrix
    ev = np.clip(np.linalg.eigvalsh(small / len(u)), 0, None)
    ev = ev[ev > 1e-12]
    return float(np.exp(-(ev * np.log(ev)).sum()))


def median_nn_distance(x: np.ndarray) -> float:
    """Median distance from each row to its nearest OTHER row (the typical spacing of a sample)."""
    d = _sq_dists(x, x)
    np.fill_diagonal(d, np.inf)
    return float(np.sqrt(np.median(d.min(1))))


def vendi_score_rbf(x: np.ndarray, bandwidth: float) -> float:
    """Vendi score with the Gaussian kernel exp(-|x - y|² / (2 bandwidth²)): the effective number of
    distinct rows at that resolution. k exact repeats count once; rows far apart (>> bandwidth) count
    one each, so n distinct rows score ~n."""
    if len(x) == 0:
        raise ConfigError("Vendi score needs at least one image")
    k = np.exp(-_sq_dists(x, x) / (2 * max(bandwidth, 1e-12) ** 2))
    ev = np.clip(np.linalg.eigvalsh(k / len(x)), 0, None)
    ev = ev[ev > 1e-12]
    return float(np.exp(-(ev * np.log(ev)).sum()))


def mean_pairwise_correlation(x: np.ndarray) -> float:
    """Mean Pearson correlation between every two different rows (e.g. tiles' pixels): ~0 for images of
    unrelated content, which sit anywhere; it rises as images come to look alike, whatever makes them alike (one
    template, a structure drawn at one place, a lattice of artefacts that every image shares). Rows with no
    variance count as uncorrelated."""
    a = np.asarray(x, np.float64).reshape(len(x), -1)
    if len(a) < 2:
        raise ConfigError("a pairwise correlation needs at least two images")
    a = a - a.mean(1, keepdims=True)
    norms = np.linalg.norm(a, axis=1)
    a = np.divide(a, norms[:, None], out=np.zeros_like(a), where=norms[:, None] > 0)
    total = a.sum(0)  # sum over i != j of <a_i, a_j> = |sum a|^2 - sum |a_i|^2, without the N x N matrix
    return float((total @ total - (a * a).sum()) / (len(a) * (len(a) - 1)))
