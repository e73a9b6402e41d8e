"""The built-in metrics, registered by name. Importing this module fills ``registry.METRICS``.

All of them compare generated tiles with the HELD-OUT real split in the deterministic fluorescence
feature space (``features.py``), except memorisation, which compares them with the TRAINING split in
pixel space. Names ending in ``_fluo`` live in that feature space.
"""

from __future__ import annotations

import functools

import numpy as np

from mitogan.metrics import distances as D
from mitogan.metrics.reference import fidelity_distance
from mitogan.metrics.registry import MetricContext, register_metric

__all__ = ["fidelity", "kid_fluo", "prdc_fluo", "vendi", "memorisation", "authenticity", "structure",
           "feature_contributions", "correlation_level",
           "MAX_COPY_QUERIES", "DIVERSITY_PARTS"]

MAX_COPY_QUERIES = 1000  # generated tiles the copy test looks at (a seeded subset of bigger sets)
# a generator is flagged as copying at this authenticity_gap (and a significant excess): 0.05 catches a
# generator that replays its training tiles one time in ten, which new real data never reaches (docs/metrics.md)
COPYING_GAP = 0.05
DIVERSITY_PARTS = ("features", "layout", "correlation")  # the diversity gap's parts: diversity_gap_<part>


@register_metric
def fidelity(ctx: MetricContext):
    """Fréchet distance to the held-out real tiles (``fd_fluo``), and the same on the dataset's own scale:
    fidelity = log(FD / d0) / log(d1 / d0), where d0 is the FD of a disjoint real split and d1 the FD of
    pure noise at the same sample size: 0 = as close as other real data of the same dataset, 1 = noise,
    below 0 = closer than that, above 1 = further than noise."""
    n = min(ctx.n_fake, len(ctx.ref.f_train))
    d0, d1 = ctx.ref.calibration(n, ctx.seed)
    fd = fidelity_distance(ctx.ref.space, ctx.ref.z_heldout, ctx.fake_raw, n, ctx.seed)
    score = float(np.log(max(fd, 1e-12) / d0) / np.log(d1 / d0))
    return ({"fd_fluo": fd, "fidelity": score, "fd_real_split": d0, "fd_noise": d1},
            {"n_real": ctx.n_real, "n_fake": ctx.n_fake, "n_matched": n})


@register_metric
def kid_fluo(ctx: MetricContext):
    """KID (unbiased MMD², cubic kernel) over subsets of min(1000, n_real, n_fake); its spread from a
    bootstrap of both sets (with replacement), which stays honest when n is small."""
    r, f = ctx.ref.z_heldout, ctx.fake_z
    mean, _, m = D.kid(r, f, 1000, 20, ctx.seed)
    rng = np.random.default_rng(ctx.seed + 11)
    boot = [D.kid(r[rng.integers(0, len(r), len(r))], f[rng.integers(0, len(f), len(f))], m, 1, ctx.seed + b)[0]
            for b in range(ctx.bootstrap)]
    return ({"kid_fluo": mean, "kid_fluo_std": float(np.std(boot))},
            {"n_real": ctx.n_real, "n_fake": ctx.n_fake, "subset_size": m, "bootstrap": ctx.bootstrap})


@register_metric
def prdc_fluo(ctx: MetricContext):
    """Precision, recall, density, coverage (k-NN manifolds) against the held-out real tiles."""
    vals = D.prdc(ctx.ref.z_heldout, ctx.fake_z, k=ctx.k)
    return {f"{key}_fluo": v for key, v in vals.items()}, {"n_real": ctx.n_real, "n_fake": ctx.n_fake, "k": ctx.k}


@register_metric
def vendi(ctx: MetricContext):
    """Effective number of distinct images (Vendi score, Gaussian kernel) of m generated tiles and of m HELD-OUT
    real tiles, m = min(n_fake, n_heldout, 1000), in two spaces; ratio = fake / real in each:

    features  the fluorescence feature space (what the tiles show, wherever it is);
    layout    the tiles themselves, blurred and averaged to 16 x 16, mean removed, on the real tiles' typical
              contrast (``copying.layout``): WHERE things are. A generator that draws the same structure at
              the same place in every tile, or k templates plus noise, looks diverse to the first and not to
              the second.

    Each kernel's bandwidth is the median nearest-neighbour distance among those real tiles, so two images count
    as one when they are closer than real images usually are to each other: k repeated, well separated images
    score ~k. Feature gap = max(0, 1 - ratio) (more diversity than real data earns nothing: noise is diverse).
    Layout gap = log(V_real / V_fake) / log(V_real), clipped to [0, 1], with V_real the lower of the held-out
    and the training split's layout Vendi (real sets differ in how many fields they hold): 0 = as varied as
    real data, 1 = one image repeated, log k / log V_real for k templates.
    A third view, the pixels themselves: ``pairwise_correlation``, the m generated tiles' mean pixel correlation
    between every two of them (``distances.mean_pairwise_correlation``: ~0 for real tiles of unrelated content; it
    rises however the tiles come to look alike: templates, a structure stamped at one place, a lattice of
    artefacts that every tile shares, which the blurred layout averages away). Its level is the higher of the
    held-out and the training split's (``pairwise_correlation_real``, ``pairwise_correlation_train``: a real set
    that holds few fields is alike too, and a generator is trained to be as alike as its training split);
    correlation gap = max(0, (c - level) / (1 - level)): the share of the way from real data to one image.
    diversity_gap = 1 - (1 - feature gap) (1 - layout gap) (1 - correlation gap): 0 = as diverse as real data in
    every view, -> 1 as the generator collapses in any."""
    from mitogan.metrics.copying import layout

    ref = ctx.ref
    m = min(ctx.n_fake, ctx.n_real, 1000)
    rng = np.random.default_rng(ctx.seed + 3)
    r_pick, f_pick = np.sort(rng.choice(ctx.n_real, m, replace=False)), np.sort(rng.choice(ctx.n_fake, m, replace=False))
    out = {}
    vf, vr, _ = _vendi_pair(ref.z_heldout[r_pick], ctx.fake_z[f_pick], out, "")
    gaps = [max(0.0, 1 - vf / vr), 0.0]
    lay_r, scale = layout(ref.heldout[r_pick])
    lay_r, lay_f = _non_empty(lay_r), _non_empty(layout(ctx.fake_tiles[f_pick], scale)[0])
    m_lay = min(len(lay_r), len(lay_f))
    if m_lay > ctx.k:
        vf, vr, tau = _vendi_pair(lay_r[:m_lay], lay_f[:m_lay], out, "_layout")
        # where things are depends on which fields a real set holds: the level real data reaches is the training
        # split's (another real set, same m and bandwidth) if lower than the held-out's own; the gap is on a log
        # scale from that level (0) to a single repeated image (1), so it grades collapse (k templates: log k)
        # without reading every smoother or less varied set as collapsed
        level = min(vr, _layout_level(ref, m_lay, tau, scale, ctx.seed))
        out["vendi_ratio_layout_real"] = level / vr
        gaps[1] = float(np.clip(np.log(level / max(vf, 1.0)) / np.log(max(level, 1.0 + 1e-9)), 0.0, 1.0))
    # how alike the tiles are, pixel by pixel (docs/metrics.md, "Proof": "How alike the tiles are")
    out["pairwise_correlation"] = D.mean_pairwise_correlation(ctx.fake_tiles[f_pick])
    out["pairwise_correlation_real"], out["pairwise_correlation_train"] = _correlation_levels(ref, r_pick, m, ctx.seed)
    level = correlation_level(out)
    gaps.append(float(np.clip((out["pairwise_correlation"] - level) / max(1 - level, 1e-9), 0.0, 1.0)))
    out.update({f"diversity_gap_{part}": gap for part, gap in zip(DIVERSITY_PARTS, gaps, strict=True)})
    out["diversity_gap"] = 1 - (1 - gaps[0]) * (1 - gaps[1]) * (1 - gaps[2])
    return out, {"n_fake": ctx.n_fake, "n_heldout": ctx.n_real, "subset_size": m, "layout_subset_size": m_lay}


def _vendi_pair(zr: np.ndarray, zf: np.ndarray, out: dict, suffix: str) -> tuple[float, float, float]:
    """Vendi of generated and real rows at the real rows' median nearest-neighbour distance; records
    ``vendi_{fake,real,ratio,bandwidth}{suffix}`` in ``out`` and returns (fake, real, bandwidth)."""
    tau = D.median_nn_distance(zr)
    vf, vr = D.vendi_score_rbf(zf, tau), D.vendi_score_rbf(zr, tau)
    out.update({f"vendi_fake{suffix}": vf, f"vendi_real{suffix}": vr, f"vendi_ratio{suffix}": vf / vr,
                f"vendi_bandwidth{suffix}": tau})
    return vf, vr, tau


def _non_empty(lay: np.ndarray) -> np.ndarray:
    """Layout rows of tiles that are not near-empty (a tenth of the real tiles' typical contrast): how many tiles
    are empty is a matter of fidelity, and "empty" would otherwise count once on each side."""
    return lay[np.linalg.norm(lay, axis=1) > 0.1]


def correlation_level(values: dict) -> float:
    """The real data's level of ``pairwise_correlation`` in a ``vendi`` result (or a trial's results): the higher of
    the held-out and the training split's (the latter absent in results from before it was measured)."""
    return max(values["pairwise_correlation_real"], values.get("pairwise_correlation_train", 0.0))


def _correlation_levels(ref, r_pick: np.ndarray, m: int, seed: int) -> tuple[float, float]:
    """Mean pairwise pixel correlation of the m held-out tiles ``r_pick`` and of m tiles of the TRAINING split
    (seeded), cached on the reference: the same tiles at every in-training call."""
    key = ("pairwise_correlation_levels", m, seed)
    if key not in ref._cal:
        rng = np.random.default_rng(seed + 17)
        train = ref.train[np.sort(rng.choice(len(ref.train), min(len(ref.train), m), replace=False))]
        ref._cal[key] = (D.mean_pairwise_correlation(ref.heldout[r_pick]), D.mean_pairwise_correlation(train))
    return ref._cal[key]


def _layout_level(ref, m: int, tau: float, scale: float, seed: int) -> float:
    """Vendi of m layout vectors of the TRAINING split (non-empty tiles, seeded), cached on the reference."""
    from mitogan.metrics.copying import layout

    key = ("layout_level", m, round(tau, 9), round(scale, 9), seed)
    if key not in ref._cal:
        rng = np.random.default_rng(seed + 13)
        lay = layout(ref.train[np.sort(rng.choice(len(ref.train), min(len(ref.train), 3 * m), replace=False))], scale)[0]
        lay = _non_empty(lay)[:m]
        ref._cal[key] = D.vendi_score_rbf(lay, tau) if len(lay) >= m else float("inf")
    return ref._cal[key]


@register_metric(features=False)
def memorisation(ctx: MetricContext):
    """Pixel RMS distance of each generated tile to its nearest real TRAINING tile, against the same
    distance for the held-out real tiles. memorisation_ratio = median generated / median held-out (< 1:
    closer to the training set than new real data is); copy_fraction = share of generated tiles nearer
    than the 5th percentile of held-out distances (~0.05 for an honest generator). Held-out tiles that
    are exact copies of training tiles (a movie that repeats frames) are counted, not divided by."""
    px = lambda a: np.asarray(a, np.float64).reshape(len(a), -1) / np.sqrt(a[0].size)  # noqa: E731
    train = px(ctx.ref.train)
    d_ho, _ = D.nearest_distances(px(ctx.ref.heldout), train)
    d_fake, _ = D.nearest_distances(px(ctx.fake_tiles), train)
    same = d_ho <= 1e-6
    honest = d_ho[~same]
    out = {"nn_dist_median": float(np.median(d_fake)), "heldout_copies_of_train": int(same.sum())}
    if len(honest):
        med = float(np.median(honest))
        out.update(holdout_nn_dist_median=med, memorisation_ratio=float(np.median(d_fake)) / med,
                   copy_fraction=float((d_fake < np.quantile(honest, 0.05)).mean()))
    return out, {"n_train": len(train), "n_heldout": len(d_ho), "n_fake": ctx.n_fake}


COPY_BLOCKS = {"whole": 3, "part": 2}  # blocks of queries per copy test: tasks of their own (``_copy_pieces``)


def _copy_queries(ctx: MetricContext) -> tuple[tuple, np.ndarray]:
    """The cache key and the generated tiles the copy tests look at: all of them, or a seeded subset of
    ``MAX_COPY_QUERIES`` (the same for every seed when all are used)."""
    m = min(ctx.n_fake, MAX_COPY_QUERIES)
    key = ("copy_distances", None if m == ctx.n_fake else ctx.seed)
    if (key, "queries") not in ctx._cache:
        pick = np.sort(np.random.default_rng(ctx.seed + 5).choice(ctx.n_fake, m, replace=False))
        ctx._cache[key, "queries"] = ctx.fake_tiles[pick]
    return key, ctx._cache[key, "queries"]


def _copy_blocks(n: int) -> list[tuple[str, int, np.ndarray]]:
    """(test, block number, query rows) of every block of ``n`` queries (``COPY_BLOCKS``), in order."""
    return [(kind, i, rows) for kind, k in COPY_BLOCKS.items()
            for i, rows in enumerate(np.array_split(np.arange(n), min(k, n)))]


def _copy_pieces(ctx: MetricContext) -> list:
    """The copy tests' work as independent tasks: each block of queries' whole-tile distances (``CopyIndex``) and
    partial-copy ratios (``PatchIndex``), kept in ``ctx._cache``. Each query's numbers are its own, so they are
    the same however the queries are blocked (tested); ~0.8 and ~0.25 s on 256 tiles of 64 px, split so that two
    threads share them and the features evenly (``evaluate._run_metrics``)."""
    key, query = _copy_queries(ctx)
    ctx.ref.copy_null, ctx.ref.part_copies  # noqa: B018 (built here, once: not by two tasks at a time)

    def block(kind: str, i: int, rows: np.ndarray) -> None:
        if (key, kind, i) not in ctx._cache:
            tiles = query[rows]
            ctx._cache[key, kind, i] = (ctx.ref.copies.distances(tiles)[0] if kind == "whole"
                                        else ctx.ref.part_copies.ratios(tiles))

    return [functools.partial(block, kind, i, rows) for kind, i, rows in _copy_blocks(len(query))]


@register_metric(features=False, pieces=_copy_pieces)
def authenticity(ctx: MetricContext):
    """Data copying against the TRAINING split (``copying.py``): each generated tile's distance to its nearest
    training tile up to orientation, small shifts, any turn and a rescaling by up to 1.5, and its closest patch's
    distance to the training patches relative to how close new frames come there (partial copies), each against
    the training tiles' own values against other time blocks / videos (the nulls). copy_share = share below either null's 5 %
    quantile; authenticity_gap = max(0, (copy_share - q0) / (1 - q0)) with q0 the share of training tiles the same
    rule flags (``copy_null_share``), a component of the primary; ``copying`` (1/0) flags a generator whose copy
    share is both material (gap >= ``COPYING_GAP``) and significant (one-sided binomial test against q0, p < 0.001)."""
    from scipy.stats import binomtest

    from mitogan.metrics.copying import COPY_QUANTILE, copy_statistics

    for piece in _copy_pieces(ctx):  # done already where ``evaluate`` ran them as tasks
        piece()
    key, query = _copy_queries(ctx)
    m = len(query)
    d, r = (np.concatenate([ctx._cache[key, kind, i] for kind, i, _ in _copy_blocks(m) if kind == test])
            for test in COPY_BLOCKS)
    null = ctx.ref.copy_null
    parts = ctx.ref.part_copies
    out = copy_statistics(d, null, r, parts.null(), d_null_of_r=null[ctx.ref.part_copy_tiles] if len(null) else None)
    copies = int(round(out["copy_share"] * m)) if len(null) else 0
    q0 = min(max(out.get("copy_null_share", COPY_QUANTILE), COPY_QUANTILE), 0.5)
    p = float(binomtest(copies, m, q0, alternative="greater").pvalue) if len(null) else 1.0
    out.update(copy_pvalue=p, copy_nn_median=float(np.median(d)),
               copying=float(out["authenticity_gap"] >= COPYING_GAP and p < 1e-3))
    return out, {"n_fake": m, "n_train": len(ctx.ref.train), "n_null": int(len(null)), "quantile": COPY_QUANTILE}


@register_metric(features=False)
def structure(ctx: MetricContext):
    """Structure beyond the histogram and the power spectrum (``structure.py``): each tile's bright excursion
    sets against those of its own phase surrogates, scored against the held-out tiles' (Mann-Whitney AUC);
    structure_gap = max(0, (AUC - null) / (1 - null)), the null being the training split's AUC, a component of
    the primary: 0 = as structured as the training tiles, -> 1 as tiles become random fields with real statistics."""
    from mitogan.metrics.structure import MAX_STRUCTURE_TILES

    key = ("structure_scores", None if ctx.n_fake <= MAX_STRUCTURE_TILES else ctx.seed)  # all tiles: every seed alike
    if key not in ctx._cache:
        ctx._cache[key] = ctx.ref.structure.scores(ctx.fake_tiles, ctx.seed)
    out = ctx.ref.structure.gap_of_scores(ctx._cache[key])
    return out, {"n_fake": min(ctx.n_fake, MAX_STRUCTURE_TILES), "n_heldout": len(ctx.ref.structure.heldout)}


def feature_contributions(ctx: MetricContext, top: int = 8) -> list[dict]:
    """Which features make the generated set differ from the held-out real one: per feature, the 1-D
    Fréchet term (mean gap² + std gap², in robust units), as a share of their sum, largest first."""
    r, f = ctx.ref.z_heldout, ctx.fake_z
    term = (r.mean(0) - f.mean(0)) ** 2 + (r.std(0) - f.std(0)) ** 2
    share = term / max(term.sum(), 1e-12)
    raw_r, raw_f = np.median(ctx.ref.f_heldout, 0), np.median(ctx.fake_raw, 0)
    order = np.argsort(-share, kind="stable")[:top]
    return [{"feature": ctx.ref.names[i], "share": round(float(share[i]), 4), "real_median": float(raw_r[i]),
             "generated_median": float(raw_f[i])} for i in order]
