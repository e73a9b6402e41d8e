"""The built-in metrics, registered by name. Importing this module fills ``registry.METRICS``."""

from __future__ import annotations

import numpy as np

from mitogan.metrics import distances as D
from mitogan.metrics.registry import MetricContext, register_metric

__all__ = ["kid_morph", "kid_enc", "fd_morph", "fd_enc", "prdc_enc", "prdc_morph", "vendi", "memorisation"]


def _kid(ctx: MetricContext, kind: str):
    r, f = ctx.features(kind)
    mean, std, m = D.kid(r, f, ctx.kid_subset, ctx.kid_subsets, ctx.seed)
    return ({f"kid_{kind}": mean, f"kid_{kind}_std": std},
            {"n_real": ctx.n_real, "n_fake": ctx.n_fake, "subset_size": m, "n_subsets": ctx.kid_subsets})


def _fd(ctx: MetricContext, kind: str):
    r, f = ctx.features(kind)
    return {f"fd_{kind}": D.frechet_distance(r, f)}, {"n_real": ctx.n_real, "n_fake": ctx.n_fake}


def _prdc(ctx: MetricContext, kind: str):
    r, f = ctx.features(kind)
    vals = D.prdc(r, f, k=ctx.k)
    return {f"{key}_{kind}": v for key, v in vals.items()}, {"n_real": ctx.n_real, "n_fake": ctx.n_fake,
                                                            "k": ctx.k}


@register_metric
def kid_morph(ctx):
    """KID on standardised morphology features (lower is better)."""
    return _kid(ctx, "morph")


@register_metric
def kid_enc(ctx):
    """KID on standardised random-conv image features (lower is better)."""
    return _kid(ctx, "enc")


@register_metric
def fd_morph(ctx):
    """Fréchet distance on standardised morphology features (lower is better)."""
    return _fd(ctx, "morph")


@register_metric
def fd_enc(ctx):
    """Fréchet distance on standardised random-conv image features (lower is better)."""
    return _fd(ctx, "enc")


@register_metric
def prdc_enc(ctx):
    """Precision, recall, density, coverage on image features (higher is better)."""
    return _prdc(ctx, "enc")


@register_metric
def prdc_morph(ctx):
    """Precision, recall, density, coverage on morphology features (higher is better)."""
    return _prdc(ctx, "morph")


@register_metric
def vendi(ctx):
    """Effective number of unique images (Vendi, cosine kernel on standardised image features) of the
    generated set and of a real set of the same size m = min(n_real, n_fake); ratio = fake / real.
    Features are whitened on the real set first (99% of its variance), so k distinct images score ~k."""
    r, f = D.whiten(*ctx.features("enc"))
    m = min(len(r), len(f))
    rng = np.random.default_rng(ctx.seed)
    vf = D.vendi_score(f[np.sort(rng.choice(len(f), m, replace=False))])
    vr = D.vendi_score(r[np.sort(rng.choice(len(r), m, replace=False))])
    return ({"vendi_fake": vf, "vendi_real": vr, "vendi_ratio": vf / vr},
            {"n_real": ctx.n_real, "n_fake": ctx.n_fake, "subset_size": m})


def holdout_split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train index, held-out index) split of n real tiles; at least one tile on each side."""
    order = np.random.default_rng(seed + 7919).permutation(n)
    h = int(np.clip(round(n * share), 1, n - 1))
    return np.sort(order[h:]), np.sort(order[:h])


@register_metric
def memorisation(ctx):
    """Pixel-space (RMS) distance of each generated tile to its nearest real training tile, against the
    same distance for held-out real tiles. memorisation_ratio = median fake / median held-out (< 1:
    closer to the training set than new real data is); copy_fraction = share of fakes nearer than the
    5th percentile of held-out distances (about 0.05 for an honest generator)."""
    real, fake = ctx.real.get("pixels"), ctx.fake_raw("pixels")
    if len(real) < 2:
        from mitogan.errors import ConfigError

        raise ConfigError(f"memorisation needs at least 2 real images (a train and a held-out one), got {len(real)}")
    tr, ho = holdout_split(len(real), ctx.holdout, ctx.seed)
    d_ho, _ = D.nearest_distances(real[ho], real[tr])
    d_fake, _ = D.nearest_distances(fake, real[tr])
    q05 = np.quantile(d_ho, 0.05)
    med_ho = float(np.median(d_ho))
    return ({"nn_dist_median": float(np.median(d_fake)), "holdout_nn_dist_median": med_ho,
             "memorisation_ratio": float(np.median(d_fake)) / max(med_ho, 1e-12),
             "copy_fraction": float((d_fake < q05).mean())},
            {"n_real": ctx.n_real, "n_train": len(tr), "n_holdout": len(ho), "n_fake": ctx.n_fake})
