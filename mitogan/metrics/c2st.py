"""Classifier two-sample test (C2ST; Lopez-Paz & Oquab, ICLR 2017): how well a small CNN tells two sets of
tiles apart on tiles it did not train on. An independent judge of the feature-space metrics: it learns its
own features, so it sees what the hand-made ones are built to ignore (where things are, texture, repeats).

Accuracy 0.5 = the CNN cannot tell the sets apart; 1 = it always can. On mixed real data two real splits are
not 0.5 (other videos, other fields, other microscopes), so the registered metric reports its BASELINE
beside it: the training split vs the held-out split, same CNN, same budget, same sample size. It cannot see
copying: copies of training tiles are real tiles to a classifier and score the baseline (docs/c2st.md).

The protocol, all of it reported, because the number depends on it (a longer budget separates more):
  - balanced: n = min(len(a), len(b), max_per_side) tiles of each side per fold (the larger side is drawn
    afresh for every fold); stratified k-fold; accuracy on the held-out fold, mean and sd over the folds
  - the CNN: tiles above 64 px are area-resized to 64 px; 64 px tiles are pixel-unshuffled to (4, 32, 32)
    (every pixel kept, 32 px cost); three stride-2 3x3 convs (16, 32, 64 channels) with BatchNorm and
    LeakyReLU, global average pool, one linear logit; Adam (lr 2e-3, cosine decay to 0), binary
    cross-entropy; BatchNorm statistics recomputed on the training tiles at the end
  - augmentation: a random flip and 90° rotation per tile (the 8 symmetries of a square)
  - budget: ``batches`` batches of ``batch_size`` tiles, but at most ``max_epochs`` passes over a fold's
    training tiles (a small set is not trained for hundreds of epochs)
  - deterministic for a seed: ``torch.manual_seed`` plus a local ``torch.Generator``, one torch thread (``torch_threads``)
"""

from __future__ import annotations

import math
import time

import numpy as np

from mitogan.errors import InputError
from mitogan.metrics.registry import MetricContext, register_metric

__all__ = ["c2st_accuracy", "c2st", "calibrated_gap", "C2ST_BUDGET", "MIN_PER_SIDE"]

# The default budget (docs/c2st.md: chosen so `mitogan evaluate` of 600 real vs 5000 generated 64 px tiles,
# C2ST and its baseline included, stays well under 45 s on 2 shared cores).
C2ST_BUDGET = {"folds": 3, "batches": 300, "batch_size": 64, "max_epochs": 40, "max_per_side": 1000}
MIN_PER_SIDE = 10  # fewer tiles than this per side and a fold's accuracy is noise
_MAX_INPUT = 64  # px; larger tiles are area-resized to this
_WIDTHS = (16, 32, 64)
_LR = 2e-3
_CACHE_KEY = "c2st_baseline"  # Reference._cal key prefix: the baseline, once per (n, seed, budget)
_BASELINE_VERSION = 1  # part of a cached baseline's name: bump when the CNN, its training or its scoring changes


def _check(a: np.ndarray, b: np.ndarray, names: tuple[str, str], folds: int) -> None:
    for name, x in zip(names, (a, b)):
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != x.shape[3]:
            raise InputError(name, f"images must have shape (N, 1, S, S), got {x.shape}")
        if len(x) < max(MIN_PER_SIDE, 2 * folds):
            raise InputError(name, f"has {len(x)} images; the classifier two-sample test needs at least "
                                   f"{max(MIN_PER_SIDE, 2 * folds)} per side (supply more images)")
        if x.shape[-1] < 16:
            raise InputError(name, f"images are {x.shape[-1]} px; the classifier test needs at least 16 px")
    if a.shape[-1] != b.shape[-1]:
        raise InputError(names[1], f"images are {b.shape[-1]} px but {names[0]} are {a.shape[-1]} px; "
                                   f"compare tiles of one size")


def _net(size: int, widths: tuple[int, ...] = _WIDTHS):
    """The 3-layer CNN for (B, 1, size, size) input (size <= 64) -> (B,) logits; ``widths``: its channels."""
    import torch.nn as nn

    unshuffle = 2 if size >= 64 else 1  # (B, 1, 64, 64) -> (B, 4, 32, 32): all pixels, a 32 px net's cost
    layers, c = ([nn.PixelUnshuffle(2)] if unshuffle > 1 else []), unshuffle ** 2
    for w in widths:  # each halves the grid: 32 -> 16 -> 8 -> 4
        layers += [nn.Conv2d(c, w, 3, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2)]
        c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1), nn.Flatten(0))


def _as_input(x: np.ndarray):
    """(N, 1, S, S) float in [-1, 1] -> float32 tensor, area-resized to ``_MAX_INPUT`` px if larger."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return F.interpolate(t, size=(_MAX_INPUT, _MAX_INPUT), mode="area") if t.shape[-1] > _MAX_INPUT else t


def _augment(x, gen):
    """A random element of the dihedral group per tile: flip or not, then rotate by 0/90/180/270°."""
    import torch

    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    k = torch.randint(4, (len(x),), generator=gen)
    for r in (1, 2, 3):  # per tile, not per batch: a whole batch turned at once biases BatchNorm's statistics
        x[k == r] = torch.rot90(x[k == r], r, (2, 3))
    return x


def _precise_batchnorm(net, x_fit) -> None:
    """Replace BatchNorm's running statistics (a momentum average over a net that kept changing) by the
    exact statistics of the final net over the training tiles: without this the eval-mode logits of a
    briefly trained net shifted enough to put every test tile in one class (accuracy 0.5 exactly)."""
    import torch

    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad():
        for i in range(0, len(x_fit), 256):
            net(x_fit[i:i + 256])


def train_classifier(x_fit, y_fit, batches: int, batch_size: int, gen, widths: tuple[int, ...] = _WIDTHS,
                     balanced: bool = False):
    """A fresh CNN (``_net``) trained to tell label 1 from label 0 in ``(x_fit, y_fit)``, in eval mode.

    ``batches`` batches of ``batch_size`` tiles, each turned by a random element of the dihedral group, Adam
    with a cosine decay to 0 (at a constant rate some folds ended on a bad step), then BatchNorm's statistics
    recomputed over ``x_fit`` (``_precise_batchnorm``). Batches are drawn from all of ``x_fit`` at random, or,
    with ``balanced``, half from each label (for sets of unequal size: the logit then estimates the log
    density ratio of the two sides without the prior's offset). Torch's RNG and ``gen`` drive everything."""
    import torch
    import torch.nn.functional as F

    net = _net(x_fit.shape[-1], widths)
    opt = torch.optim.Adam(net.parameters(), lr=_LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / batches)))
    sides = [torch.nonzero(y_fit == v).flatten() for v in (1.0, 0.0)] if balanced else None
    net.train()
    for _ in range(batches):
        if balanced:
            idx = torch.cat([s[torch.randint(len(s), (batch_size // 2,), generator=gen)] for s in sides])
        else:
            idx = torch.randint(len(x_fit), (batch_size,), generator=gen)
        xb = _augment(x_fit[idx], gen)  # (B, 1, S, S)
        loss = F.binary_cross_entropy_with_logits(net(xb), y_fit[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    _precise_batchnorm(net, x_fit)
    net.eval()
    return net


def logits_of(net, x):
    """The eval-mode logits of ``net`` for (N, 1, S, S) tensor ``x``, in batches of 512."""
    import torch

    with torch.no_grad():
        return torch.cat([net(x[i:i + 512]) for i in range(0, len(x), 512)])


def _fit_and_score(x_fit, y_fit, x_test, y_test, batches: int, batch_size: int, gen,
                   widths: tuple[int, ...] = _WIDTHS) -> tuple[float, float]:
    """Train a fresh CNN on (x_fit, y_fit) for ``batches`` batches; (accuracy, information) on (x_test, y_test).

    information = 1 - the held-out binary cross-entropy in bits: 0 at chance, 1 when every held-out tile is
    told apart with certainty. It keeps ranking where the accuracy has saturated at 1 (a set told apart
    with more confidence is further from real), and goes below 0 when the CNN is confidently wrong."""
    import torch.nn.functional as F

    logits = logits_of(train_classifier(x_fit, y_fit, batches, batch_size, gen, widths), x_test)
    bits = float(F.binary_cross_entropy_with_logits(logits, y_test)) / math.log(2)
    return float(((logits > 0) == (y_test > 0.5)).float().mean()), 1.0 - bits


def _fold_indices(m: int, n: int, folds: int, fold: int, rng, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fit, test) indices of one side for ``fold``: n of its m tiles (the fixed permutation when m == n,
    a fresh draw when the side is larger), the fold-th of ``folds`` parts held out."""
    idx = fixed if m == n else rng.choice(m, n, replace=False)
    parts = np.array_split(idx, folds)
    return np.concatenate(parts[:fold] + parts[fold + 1:]), parts[fold]


def _fold(x_a, x_b, idx, batches: int, batch_size: int, gen, widths: tuple[int, ...]) -> tuple[float, float]:
    """One fold: ``idx`` = [(fit, test) of a, (fit, test) of b]; labels a = 0, b = 1."""
    import torch

    (fa, ta), (fb, tb) = idx
    y = lambda i, j: torch.cat([torch.zeros(len(i)), torch.ones(len(j))])  # noqa: E731
    return _fit_and_score(torch.cat([x_a[fa], x_b[fb]]), y(fa, fb), torch.cat([x_a[ta], x_b[tb]]), y(ta, tb),
                          batches, batch_size, gen, widths)


def c2st_accuracy(a: np.ndarray, b: np.ndarray, *, seed: int = 0, folds: int = C2ST_BUDGET["folds"],
                  batches: int = C2ST_BUDGET["batches"], batch_size: int = C2ST_BUDGET["batch_size"],
                  max_epochs: float = C2ST_BUDGET["max_epochs"], max_per_side: int = C2ST_BUDGET["max_per_side"],
                  names: tuple[str, str] = ("first set", "second set"), widths: tuple[int, ...] = _WIDTHS) -> dict:
    """Held-out accuracy of a small CNN trained to tell tiles of ``a`` from tiles of ``b`` (k-fold, balanced).

    Parameters
    ----------
    a, b : (N, 1, S, S) and (M, 1, S, S) float in [-1, 1], same S >= 16, at least ``MIN_PER_SIDE`` tiles each
    seed : subsamples, folds, initialisation and batches: same seed, same numbers (same torch version)
    folds : k of the stratified k-fold
    batches, batch_size, max_epochs : the training budget per fold: ``batches`` batches of ``batch_size``,
        but at most ``max_epochs`` passes over the fold's training tiles
    max_per_side : at most this many tiles of each side per fold (balanced: both sides use the same n)
    widths : the CNN's channels per layer (the default is the protocol's; another is a different judge)

    Returns
    -------
    {"accuracy": mean over folds, "accuracy_sd": sd over folds, "information", "information_sd" (held-out
     1 - cross-entropy in bits: ``_fit_and_score``), "folds", "batches" (per fold, after the
     epoch cap), "batch_size", "n_a", "n_b" (set sizes), "n_per_side" (per fold), "seconds"}

    Examples
    --------
    >>> r = c2st_accuracy(real_tiles, blurred_tiles, seed=0)  # doctest: +SKIP
    >>> r["accuracy"] > 0.8  # doctest: +SKIP
    """
    import torch

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    _check(a, b, names, folds)
    t0 = time.perf_counter()
    n = int(min(len(a), len(b), max_per_side))
    n_fit = 2 * (n - math.ceil(n / folds))  # the smallest training fold, both sides
    used = int(max(1, min(batches, math.ceil(max_epochs * n_fit / batch_size))))
    rng = np.random.default_rng(seed)
    fixed = [rng.permutation(len(x))[:n] for x in (a, b)]
    from mitogan.metrics.torch_threads import one_torch_thread

    # one torch thread: on 2 shared cores two threads ran these small convs 2-10x slower
    with one_torch_thread(), torch.random.fork_rng(devices=[]):  # the caller's global torch RNG is left as it was
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        x_a, x_b = _as_input(a), _as_input(b)
        scores = [_fold(x_a, x_b, [_fold_indices(len(x), n, folds, f, rng, fx) for x, fx in zip((a, b), fixed)],
                        used, batch_size, gen, tuple(widths)) for f in range(folds)]
    accs, info = np.array(scores).T
    sd = lambda v: float(np.std(v, ddof=1)) if folds > 1 else 0.0  # noqa: E731
    return {"accuracy": float(np.mean(accs)), "accuracy_sd": sd(accs), "information": float(np.mean(info)),
            "information_sd": sd(info),
            "folds": folds, "batches": used, "batch_size": batch_size, "n_a": len(a), "n_b": len(b),
            "n_per_side": n, "seconds": time.perf_counter() - t0}


def calibrated_gap(accuracy: float, baseline: float) -> float:
    """(accuracy - baseline) / (1 - baseline), clipped to [0, 1]: 0 = no easier to tell from held-out real
    tiles than the training split is, 1 = always told apart. The clip at 0 because falling below the
    baseline is chance, not extra realism; the denominator is floored at 0.02 so a baseline near 1 (data so
    mixed that its own splits separate) cannot blow it up."""
    return float(np.clip((accuracy - baseline) / max(1.0 - baseline, 0.02), 0.0, 1.0))


def _baseline(ref, n: int, seed: int, budget: dict) -> dict:
    """C2ST of the training split vs the held-out split at ``n`` per side, once per Reference; for a reference
    read from the cache (``Reference.cached``: every search trial, ``mitogan evaluate``) it is kept beside its
    entry like the copy nulls, so the next finished trial on the same data trains one CNN, not two. The entry's
    name holds what the numbers depend on (n, seed, budget, the CNN's version, torch's: same seed, same numbers);
    ``"cached": True`` marks a baseline read back (its ``seconds`` are those it took when it was computed)."""
    key = (_CACHE_KEY, n, seed, tuple(sorted(budget.items())))
    if key in ref._cal:
        return ref._cal[key]

    def compute() -> dict:
        return c2st_accuracy(ref.heldout, ref.train, seed=seed, **{**budget, "max_per_side": n},
                             names=("held-out real tiles", "training real tiles"))

    if ref.cache_file is None:
        ref._cal[key] = compute()
        return ref._cal[key]
    import hashlib
    import json

    import torch

    from mitogan.fsutil import cached_file

    tag = hashlib.sha256(repr((_BASELINE_VERSION, n, seed, sorted(budget.items()), _WIDTHS, _LR, _MAX_INPUT,
                               torch.__version__)).encode()).hexdigest()[:16]
    stem = ref.cache_file.stem.removeprefix("reference-")
    path = ref.cache_file.with_name(f"c2st-baseline-{stem}-{tag}.json")

    def load(p) -> dict:
        value = json.loads(p.read_text())
        if not isinstance(value, dict) or not isinstance(value.get("accuracy"), float):
            raise ValueError("not a C2ST baseline")  # a damaged entry: warned about and recomputed
        return {**value, "cached": True}

    ref._cal[key] = cached_file(path, compute, lambda v, f: f.write(json.dumps(v).encode()), load,
                                label="C2ST baseline")
    return ref._cal[key]


@register_metric(features=False)
def c2st(ctx: MetricContext):
    """Classifier two-sample test: a small CNN's k-fold accuracy at telling generated from HELD-OUT real
    tiles (``c2st_accuracy``; 0.5 = indistinguishable), its baseline (the TRAINING split vs the held-out
    split, same CNN, budget and n), c2st_gap = (accuracy - baseline) / (1 - baseline) clipped to [0, 1], and
    c2st_information (held-out 1 - cross-entropy in bits), which still ranks where the accuracy saturates at 1.
    Values are None when a side has fewer than ``MIN_PER_SIDE`` tiles."""
    ref, budget = ctx.ref, dict(C2ST_BUDGET)
    n = min(ctx.n_fake, len(ref.train), ctx.n_real, budget.pop("max_per_side"))
    keys = ("c2st_accuracy", "c2st_accuracy_sd", "c2st_baseline", "c2st_baseline_sd", "c2st_gap",
            "c2st_information", "c2st_information_baseline")
    if n < MIN_PER_SIDE:
        return dict.fromkeys(keys), {"n_per_side": n, "skipped": f"fewer than {MIN_PER_SIDE} tiles on a side"}
    base = _baseline(ref, n, ctx.seed, budget)
    r = c2st_accuracy(ref.heldout, ctx.fake_tiles, seed=ctx.seed, **budget, max_per_side=n,
                      names=("held-out real tiles", "generated tiles"))
    values = dict(zip(keys, (r["accuracy"], r["accuracy_sd"], base["accuracy"], base["accuracy_sd"],
                             calibrated_gap(r["accuracy"], base["accuracy"]), r["information"],
                             base.get("information"))))
    return values, {"n_heldout": ctx.n_real, "n_fake": ctx.n_fake, "n_train": len(ref.train), "n_per_side": n,
                    "folds": r["folds"], "batches": r["batches"], "batch_size": r["batch_size"],
                    "max_epochs": budget["max_epochs"], "seconds": r["seconds"], "baseline_seconds": base["seconds"],
                    "baseline_cached": bool(base.get("cached", False))}
