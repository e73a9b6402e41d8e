"""Which tiles does the copy test flag? Whole-tile and partial copies against honest and damaged data.

    python bench/bench_copying.py [--data ../shared/data | --simulated] [--size 64] [--n 300]

The proof's parts (``proof.proof_parts``: train / other videos / later frames) of the real data or of 20
simulated movies; ``CopyIndex`` and ``PatchIndex`` built on the training part with its time-block groups;
then, for each set, the share of tiles each test flags (below its null's 5 % quantile), their union, and the
null's own union rate (``copy_null_share``). Prints a markdown table (docs/metrics.md, "Partial copies"), then
one of copies turned by ``--turns`` degrees and rescaled by ``--scales``, flagged with and without the second
(turned and rescaled) stage of ``CopyIndex`` ("Turned and rescaled copies"), then one of crops of the TRAINING
frames at offsets from the tile grid (``--offsets``: a generator that memorised whole frames and draws them at any
position; the frames rebuilt from 2 x 2 blocks of adjacent training tiles, ``TileSet.yx``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

COPY_SETS = ("copy", "copy_noise=0.01", "copy_noise=0.05", "copy_shift=2", "copy_turn=30", "copy_turn=90",
             "copy_part=0.75", "copy_part=0.6",
             "copy_part=0.5", "copy_mix=0.1")
DAMAGE_SETS = (("blur", 1.0), ("gamma", 1.5), ("shuffle", 0), ("phase", 1.0), ("templates", 5))


def _tiles(data: str | None, size: int):
    from mitogan.metrics.proof import videos_to_tiles

    if data is None:
        from mitogan.simulate import SimParams, simulate_video

        return videos_to_tiles([simulate_video(SimParams(size=128, frames=12), s)[0] for s in range(20)], size)
    from mitogan.io import read_inputs
    from mitogan.preprocess import quality_report

    frames = [np.delete(v.frames, quality_report(v)["flagged"], axis=0) for v in read_inputs(data)]
    return videos_to_tiles([f for f in frames if len(f)], size)


def main(argv=None) -> None:
    from mitogan.metrics.copying import CopyIndex, PatchIndex, merge_twins
    from mitogan.metrics.proof import copy_set, damage, proof_parts
    from mitogan.metrics.protocol import _time_blocks

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--simulated", action="store_true", help="20 simulated movies instead of --data")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--n", type=int, default=300, help="tiles per set")
    ap.add_argument("--turns", default="3,5,8,12,20,30,45",
                    help="angles (degrees) of the turned-copy table: training tiles turned about their centre, "
                         "flagged with and without the turned stage ('' = no table)")
    ap.add_argument("--scales", default="0.7,0.8,0.9,1.1,1.25,1.4",
                    help="magnifications of the same table: training tiles rescaled about their centre, the border "
                         "mirrored in where they shrink ('' = none)")
    ap.add_argument("--offsets", default="0-0,1-4,4-12,12-24,24-40,32-32",
                    help="ranges of offsets (px, lo-hi, drawn per tile and axis) of the frame-crop table ('' = none)")
    args = ap.parse_args(argv)
    ts = _tiles(None if args.simulated else args.data, args.size)
    parts = proof_parts(ts, 0)
    train = ts.tiles[parts["train"]]
    src, fr = merge_twins(ts.tiles, np.asarray(ts.source, np.int64), np.asarray(ts.frame, np.int64))
    t_src, t_fr = src[parts["train"]], fr[parts["train"]]
    groups = t_src * 1000 + _time_blocks(t_src, t_fr, 4)
    t0 = time.perf_counter()
    whole, part = CopyIndex(train), PatchIndex(train, groups)
    d_null, r_null = whole.null(groups, train), part.null()
    built = time.perf_counter() - t0
    thr_d, thr_r = np.quantile(d_null, 0.05), np.quantile(r_null, 0.05)
    q0 = float(((d_null < thr_d) | (r_null < thr_r)).mean())
    other, later = ts.tiles[parts["other"]], ts.tiles[parts["later"]]
    sets = {"other videos (honest)": other, "later frames (honest)": later}
    sets.update({c: copy_set(train, c, other, args.n, seed=7) for c in COPY_SETS})
    sets.update({f"{k}={lv} of other": damage(other, k, lv) for k, lv in DAMAGE_SETS})
    print(f"{'simulated' if args.simulated else args.data}, {args.size} px: train {len(train)} tiles "
          f"({len(np.unique(groups))} groups), indexes and nulls built in {built:.1f} s; null union rate {q0:.3f}\n")
    print("| set | whole-tile | partial | union | ms per tile |\n|---|---:|---:|---:|---:|")
    for name, x in sets.items():
        x = x[: args.n]
        t = time.perf_counter()
        dw, rp = whole.distances(x)[0], part.ratios(x)
        ms = 1000 * (time.perf_counter() - t) / len(x)
        w, p = dw < thr_d, rp < thr_r
        print(f"| {name} | {w.mean():.3f} | {p.mean():.3f} | {(w | p).mean():.3f} | {ms:.1f} |")
    if args.turns or args.scales:
        _transform_table(train, groups, whole, part, thr_r, args, [float(a) for a in args.turns.split(",") if a],
                    [float(z) for z in args.scales.split(",") if z], sets)
    if args.offsets:
        print("\n| set | whole-tile | partial | union |\n|---|---:|---:|---:|")
        ranges = [tuple(int(v) for v in r.split("-")) for r in args.offsets.split(",") if r]
        rows = {k: v for k, v in sets.items() if "honest" in k}
        rows.update({f"crops of training frames, offset {lo}-{hi} px": _frame_crops(ts, parts["train"], lo, hi, args.n)
                     for lo, hi in ranges})
        for name, x in rows.items():
            w, p = whole.distances(x)[0] < thr_d, part.ratios(x) < thr_r
            print(f"| {name} | {w.mean():.3f} | {p.mean():.3f} | {(w | p).mean():.3f} |", flush=True)


def _frame_crops(ts, train_index: np.ndarray, lo: int, hi: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` tiles cut from training frames at an offset of ``lo``..``hi`` px (each axis, drawn per tile) from a tile
    of the grid: a 2 x 2 block of adjacent training tiles of one frame (``TileSet.yx``), cut at (dy, dx)."""
    s = ts.tiles.shape[-1]
    frames: dict = {}
    for i in train_index:
        frames.setdefault((int(ts.source[i]), int(ts.frame[i])), {})[tuple(int(v) for v in ts.yx[i])] = ts.tiles[i, 0]
    blocks = [(cells, (y, x)) for cells in frames.values() for (y, x) in cells
              if all((y + dy, x + dx) in cells for dy in (0, s) for dx in (0, s))]
    if not blocks:
        raise SystemExit("no 2 x 2 block of adjacent training tiles: frames too small for the frame-crop table")
    rng = np.random.default_rng(seed)
    out = []
    for b in rng.integers(0, len(blocks), n):
        cells, (y, x) = blocks[b]
        canvas = np.block([[cells[(y, x)], cells[(y, x + s)]], [cells[(y + s, x)], cells[(y + s, x + s)]]])
        dy, dx = rng.integers(lo, hi + 1, 2)
        out.append(canvas[dy:dy + s, dx:dx + s][None])
    return np.asarray(out, np.float32)


def _transform_table(train, groups, whole, part, thr_r, args, angles, scales, sets) -> None:
    """Share flagged (whole-tile or partial) of training tiles turned by each angle and rescaled by each factor,
    without and with the second stage of ``CopyIndex`` (each index against its own null), and of the honest sets."""
    from mitogan.metrics.copying import CopyIndex, turn_tiles

    plain = CopyIndex(train, rotate=False)
    indexes = {"without": (plain, np.quantile(plain.null(groups, train), 0.05)),
               "with": (whole, np.quantile(whole.null(groups, train), 0.05))}
    x = train[np.random.default_rng(1).choice(len(train), min(args.n, len(train)), replace=False)]
    s = x.shape[-1]
    turned = {f"turned by {a:g}°": turn_tiles(x, a, centre=(s / 2, s / 2)) for a in angles}
    turned.update({f"rescaled by {z:g}": turn_tiles(x, 0.0, centre=(s / 2, s / 2), scale=z) for z in scales})
    if angles and scales:
        turned["rescaled by 1.3 and turned by 20°"] = turn_tiles(x, 20.0, centre=(s / 2, s / 2), scale=1.3)
    rows = {**turned, **{k: v for k, v in sets.items() if "honest" in k}}
    print("\n| set | flagged without the second stage | with it |\n|---|---:|---:|")
    for name, q in rows.items():
        q = q[: args.n]
        p = part.ratios(q) < thr_r
        cells = [((index.distances(q)[0] < thr) | p).mean() for index, thr in indexes.values()]
        print(f"| {name} | {cells[0]:.3f} | {cells[1]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
