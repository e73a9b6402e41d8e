"""Forms of copying and collapse that the proof does not hold, scored by the primary objective.

    python bench/bench_unlisted.py [--data ../shared/data | --simulated] [--sweep]

The proof's parts (``proof.proof_parts``, seed 0) of the real data or of 20 simulated movies; the reference
built on them as in the proof; then ``realism_gap`` and its components for honest sets ("other" videos, "later"
frames, blur 1 px of "other") and for sets the proof's ladders do not contain: copies of training tiles made
dimmer, gamma-corrected, blurred, down- and up-sampled, turned by up to 15 degrees, elastically warped; mosaics
of four training quadrants; the brighter of two training tiles; 5 templates at random positions; one streak at
one place over honest tiles; 50 templates plus noise. Each of those should score worse than the honest sets.
Prints a markdown table (docs/metrics.md, "Forms not in the proof"). ``--sweep``: instead, copies altered by
each kind at several strengths (blur 0.5-2 px, half resolution, gamma 1.5, gain and offset, smooth warps of up to
1-3 px, blur plus noise), and crops of the training frames off the tile grid, with the copy test's parts and its
``copying`` flag, the one that makes ``export`` (and a search's own export) refuse a generator. ``--blends``: the
same columns for blends of training tiles (``blend_sets``: what a memorising generator draws between two of them).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def unlisted_sets(train: np.ndarray, other: np.ndarray, seed: int = 5) -> dict[str, np.ndarray]:
    """As many tiles as ``other`` for every unlisted form, from the TRAINING tiles (copies) or from ``other``."""
    import cv2
    from scipy import ndimage

    from mitogan.metrics.copying import turn_tiles
    from mitogan.metrics.proof import damage

    rng = np.random.default_rng(seed)
    n, s = len(other), other.shape[-1]
    x = train[rng.choice(len(train), n, replace=len(train) < n)].astype(np.float32)
    out = {"copy, 20 % dimmer": (x + 1) * 0.8 - 1,
           "copy, gamma 1.3": ((x + 1) / 2) ** 1.3 * 2 - 1,
           "copy, blurred 1 px": ndimage.gaussian_filter(x, (0, 0, 1, 1)),
           "copy, down- and up-sampled 2x": np.stack([cv2.resize(cv2.resize(t[0], (s // 2, s // 2), interpolation=cv2.INTER_AREA),
                                                                 (s, s), interpolation=cv2.INTER_LINEAR)[None] for t in x])}
    out["copy, turned by up to 15°"] = np.stack([turn_tiles(t[None], rng.uniform(-15, 15), centre=(s / 2, s / 2))[0]
                                                 for t in x])  # one draw per tile, in order, as before
    yy, xx = np.mgrid[:s, :s].astype(np.float32)

    def warp(t):  # a smooth random displacement of up to 2 px
        d = [ndimage.gaussian_filter(rng.standard_normal((s, s)), 6) for _ in range(2)]
        d = [v / (np.abs(v).max() + 1e-9) * 2.0 for v in d]
        return cv2.remap(t, (xx + d[1]).astype(np.float32), (yy + d[0]).astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)

    out["copy, elastically warped 2 px"] = np.stack([warp(t[0])[None] for t in x])
    h = s // 2
    q = train[rng.choice(len(train), (n, 4))][:, :, 0]
    mosaic = np.empty_like(x)
    mosaic[:, 0, :h, :h], mosaic[:, 0, :h, h:] = q[:, 0, :h, :h], q[:, 1, :h, h:]
    mosaic[:, 0, h:, :h], mosaic[:, 0, h:, h:] = q[:, 2, h:, :h], q[:, 3, h:, h:]
    out["mosaic of 4 training quadrants"] = mosaic
    out["brighter of two training tiles"] = np.maximum(x, train[rng.choice(len(train), n)])
    pick = other[rng.choice(n, 5, replace=False)][np.arange(n) % 5]
    moves = rng.integers(0, s, (n, 2))
    out["5 templates at random places + noise"] = (np.stack([np.roll(p, tuple(v), axis=(1, 2)) for p, v in zip(pick, moves)])
                                                  + 0.05 * rng.standard_normal(x.shape))
    streak = np.zeros((s, s), np.float32)
    cv2.line(streak, (s // 4, s // 4), (s // 2, s // 2), 1.0, 3)
    streak = ndimage.gaussian_filter(streak, 1.5)
    out["one streak at one place over honest tiles"] = 0.5 * other + 1.2 * streak[None, None] / streak.max() - 0.2
    out["50 templates + noise"] = damage(other, "templates", 50, seed=3)
    # after every other form, so that their draws stay as they were
    out["copy, rescaled by 0.75-1.33"] = np.stack([turn_tiles(t[None], 0.0, centre=(s / 2, s / 2), scale=float(np.exp(rng.uniform(-0.29, 0.29))))[0]
                                                  for t in x])
    return {k: np.clip(v, -1, 1).astype(np.float32) for k, v in out.items()}


def warp(x: np.ndarray, amplitude: float, rng, smooth: float = 16.0) -> np.ndarray:
    """Each tile (N, 1, S, S) moved by its own smooth random displacement field (Gaussian-filtered noise with
    sigma ``smooth`` px, scaled so that its largest displacement is ``amplitude`` px), bilinear, mirrored."""
    import cv2
    from scipy import ndimage

    s = x.shape[-1]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    out = []
    for t in x:
        dy, dx = (ndimage.gaussian_filter(rng.standard_normal((s, s)), smooth) for _ in range(2))
        peak = max(np.abs(dy).max(), np.abs(dx).max(), 1e-9)
        out.append(cv2.remap(t[0], xx + (amplitude * dx / peak).astype(np.float32),
                             yy + (amplitude * dy / peak).astype(np.float32), cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)[None])
    return np.stack(out)


def sweep_sets(train: np.ndarray, other: np.ndarray, n: int = 300, seed: int = 3) -> dict[str, np.ndarray]:
    """``n`` copies of training tiles (``proof.copy_set``), then each altered at several strengths."""
    import cv2
    from scipy import ndimage

    from mitogan.metrics.proof import copy_set

    rng = np.random.default_rng(seed)
    x = copy_set(train, "copy", other, n, seed=11)
    s = x.shape[-1]
    blur = lambda a, sd: ndimage.gaussian_filter(a, (0, 0, sd, sd))  # noqa: E731
    half = lambda t: cv2.resize(cv2.resize(t, (s // 2, s // 2), interpolation=cv2.INTER_AREA), (s, s),  # noqa: E731
                                interpolation=cv2.INTER_LINEAR)
    out = {"copy": x, "copy blurred σ = 0.5 px": blur(x, 0.5), "copy blurred σ = 1 px": blur(x, 1.0),
           "copy blurred σ = 2 px": blur(x, 2.0), "copy at half resolution, resized back": np.stack([half(t[0])[None] for t in x]),
           "copy, gamma 1.5": ((x + 1) / 2) ** 1.5 * 2 - 1, "copy, gain 0.7 and offset −0.1": x * 0.7 - 0.1,
           "copy warped ≤ 1 px": warp(x, 1.0, rng), "copy warped ≤ 2 px": warp(x, 2.0, rng),
           "copy warped ≤ 3 px": warp(x, 3.0, rng),
           "copy blurred σ = 1 px + 2 % noise": blur(x, 1.0) + 0.04 * rng.standard_normal(x.shape)}
    return {k: np.clip(v, -1, 1).astype(np.float32) for k, v in out.items()}


def blend_sets(ts, train_index: np.ndarray, n: int, seed: int = 7) -> dict[str, np.ndarray]:
    """``n`` blends of training tiles, what a memorising generator draws between two memorised images (a latent
    walk from one to the other): the mean of any two training tiles; the mean of two frames of one training
    field at the same place, 1-3 frames apart (a field that moves a little: one image, slightly doubled); a copy
    with another training tile laid over it at 30 %."""
    rng = np.random.default_rng(seed)
    train = ts.tiles[train_index]
    a, b = rng.integers(0, len(train), (2, n))
    where: dict = {}
    for i in train_index:
        where[(int(ts.source[i]), int(ts.frame[i]), int(ts.yx[i][0]), int(ts.yx[i][1]))] = i
    pairs = [(i, where[key]) for (src, fr, y, x), i in where.items() for d in (1, 2, 3)
             if (key := (src, fr + d, y, x)) in where]
    if not pairs:
        raise SystemExit("no training tile has a later frame of its own field: the movies are too short")
    pick = np.asarray(pairs)[rng.integers(0, len(pairs), n)]
    out = {"mean of two training tiles": (train[a] + train[b]) / 2,
           "mean of two frames of one training field, 1–3 frames apart": (ts.tiles[pick[:, 0]] + ts.tiles[pick[:, 1]]) / 2,
           "copy with another training tile over it at 30 %": 0.7 * train[a] + 0.3 * train[b]}
    return {k: np.clip(v, -1, 1).astype(np.float32) for k, v in out.items()}


def main(argv=None) -> None:
    from mitogan.metrics.evaluate import PRIMARY_COMPONENTS, _run_metrics, primary_value
    from mitogan.metrics.proof import PROOF_METRICS, damage, proof_parts
    from mitogan.metrics.protocol import RealSplit
    from mitogan.metrics.reference import Reference
    from mitogan.metrics.registry import MetricContext

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--simulated", action="store_true", help="20 simulated movies instead of --data")
    ap.add_argument("--sweep", action="store_true", help="copies altered at several strengths, with the copying flag")
    ap.add_argument("--blends", action="store_true", help="with --sweep's columns: blends of training tiles instead")
    args = ap.parse_args(argv)
    from bench_copying import _frame_crops, _tiles  # the same 20 simulated movies or real frames (quality-checked), 64 px

    ts = _tiles(None if args.simulated else args.data, 64)
    t0 = time.perf_counter()
    parts = proof_parts(ts, 0)
    split = RealSplit(parts["train"], parts["heldout"], "proof", np.zeros(len(ts), np.int64))
    ref = Reference.build(ts.tiles, ts.source, ts.frame, split=split, seed=0)
    other, train = ts.tiles[parts["other"]], ts.tiles[parts["train"]]
    print(f"{'simulated' if args.simulated else args.data}: parts {({k: len(v) for k, v in parts.items()})}\n")
    if args.sweep or args.blends:
        n = min(300, len(other))
        sets = {"other videos (honest)": other[:n], "later frames (honest)": ts.tiles[parts["later"]][:n]}
        if args.blends:
            sets.update(blend_sets(ts, parts["train"], n))
        else:
            sets.update(sweep_sets(train, other, n))
            # a generator that memorised whole training frames and draws them off the tile grid (bench_copying.py)
            sets.update({f"crops of training frames, offset {lo}–{hi} px": _frame_crops(ts, parts["train"], lo, hi, n)
                         for lo, hi in ((4, 12), (12, 24), (24, 40))})
        print(f"| set ({n} tiles each) | realism_gap | authenticity_gap | copy_share | whole-tile | partial | `copying` | fidelity |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, tiles in sets.items():
            v, _ = _run_metrics(MetricContext(ref, tiles, seed=0, _cache={}), PROOF_METRICS)
            print(f"| {name} | {primary_value(v):.3f} | {v['authenticity_gap']:.3f} | {v['copy_share']:.3f} | "
                  f"{v['whole_copy_share']:.3f} | {v['part_copy_share']:.3f} | {v['copying']:.0f} | {v['fidelity']:.3f} |",
                  flush=True)
        print(f"\n({time.perf_counter() - t0:.0f} s)")
        return
    sets = {"other videos (honest)": other, "later frames (honest)": ts.tiles[parts["later"]],
            "blur 1 px of other": damage(other, "blur", 1.0), **unlisted_sets(train, other)}
    print("| set | realism_gap ↓ | " + " | ".join(PRIMARY_COMPONENTS) + " |")
    print("|---|---:|" + "---:|" * len(PRIMARY_COMPONENTS))
    for name, tiles in sets.items():
        values, _ = _run_metrics(MetricContext(ref, tiles, seed=0, _cache={}), PROOF_METRICS)
        cells = " | ".join(f"{values[c]:.3f}" for c in PRIMARY_COMPONENTS)
        print(f"| {name} | {primary_value(values):.3f} | {cells} |", flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
