"""The classifier two-sample test (``mitogan.metrics.c2st``) on real and simulated tiles: accuracy ± sd over
folds, per seed, for the training split (the baseline), damaged copies of it and exact copies of it, all
against the held-out split, through the registered metric (as ``evaluate`` runs it). docs/c2st.md has the table.

    python bench/bench_c2st.py [--data ../shared/data | --data sim] [--size 64] [--seeds 0 1 2]
        [--batches 300] [--max-epochs 40] [--evaluate]

--evaluate also times ``evaluate`` (every metric) of 600 simulated real vs 5,000 generated 64 px tiles.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _tiles(data: str, size: int):
    from mitogan.metrics.proof import videos_to_tiles

    if data == "sim":
        from mitogan.simulate import SimParams, simulate_video

        return videos_to_tiles([simulate_video(SimParams(size=128, frames=12), s)[0] for s in range(20)], size)
    from mitogan.io import read_inputs
    from mitogan.preprocess import quality_report

    videos = read_inputs(data)
    frames = [np.delete(v.frames, quality_report(v)["flagged"], axis=0) for v in videos]
    return videos_to_tiles([f for f in frames if len(f)], size)


def _sets(ts, seed: int = 0) -> tuple:
    """The Reference (split as ``evaluate`` splits) and the sets compared with its held-out tiles."""
    from mitogan.metrics.proof import damage
    from mitogan.metrics.protocol import split_real
    from mitogan.metrics.reference import Reference

    sp = split_real(np.asarray(ts.source), np.asarray(ts.frame), 0.25, seed)
    ref = Reference.build(ts.tiles, ts.source, ts.frame, split=sp, seed=seed)
    train = ts.tiles[sp.train]
    frames = np.asarray(ts.source, np.int64)[sp.train] * 1_000_003 + np.asarray(ts.frame)[sp.train]
    return ref, {"blur σ=1": damage(train, "blur", 1.0), "noise 10 %": damage(train, "noise", 0.1, seed=1),
                 "collapse to 2 frames": damage(train, "collapse", 2, seed=2, frames=frames),
                 "copies of training tiles (a copier: drawn with replacement)":
                     train[np.random.default_rng(3).integers(0, len(train), len(train))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="a folder of movies, or 'sim' for the simulator")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--batches", type=int, default=None, help="override the default budget's batches")
    ap.add_argument("--max-epochs", type=float, default=None, help="override the default budget's epoch cap")
    ap.add_argument("--evaluate", action="store_true", help="also time evaluate() of 600 vs 5000 64 px tiles")
    a = ap.parse_args()
    from mitogan.metrics import c2st as C
    from mitogan.metrics.registry import MetricContext

    C.C2ST_BUDGET.update({k: v for k, v in (("batches", a.batches), ("max_epochs", a.max_epochs)) if v is not None})
    ts = _tiles(a.data, a.size)
    ref, sets = _sets(ts)
    print(f"{a.data}: {len(ts)} tiles of {a.size} px, {len(ref.train)} training / {len(ref.heldout)} held-out; "
          f"budget {C.C2ST_BUDGET}", flush=True)
    rows: dict[str, list] = {}
    budget = {k: v for k, v in C.C2ST_BUDGET.items() if k != "max_per_side"}
    n = min(len(ref.train), len(ref.heldout), C.C2ST_BUDGET["max_per_side"])  # every set here has len(train) tiles
    for seed in a.seeds:
        t = time.process_time()
        base = C._baseline(ref, n, seed, budget)  # what the first c2st call of a reference computes, then caches
        rows.setdefault("training split (the baseline)", []).append(
            (base["accuracy"], base["accuracy_sd"], base["seconds"], time.process_time() - t, None))
        for name, fake in sets.items():
            t = time.process_time()
            v, s = C.c2st(MetricContext(ref, fake, seed=seed))
            rows.setdefault(name, []).append((v["c2st_accuracy"], v["c2st_accuracy_sd"], s["seconds"],
                                              time.process_time() - t, v["c2st_gap"]))
            print(seed, name, {k: round(x, 3) for k, x in v.items()}, s, flush=True)
    print(f"\n| set vs held-out real ({len(ref.heldout)} tiles) | " + " | ".join(f"seed {s}" for s in a.seeds)
          + " | c2st_gap (mean) | s/call (wall) | CPU s/call |\n|---|" + "---:|" * (len(a.seeds) + 3))
    for name, r in rows.items():
        gap = "–" if r[0][4] is None else f"{np.mean([x[4] for x in r]):.2f}"
        print(f"| {name} | " + " | ".join(f"{x[0]:.3f} ± {x[1]:.3f}" for x in r)
              + f" | {gap} | {np.mean([x[2] for x in r]):.1f} | {np.mean([x[3] for x in r]):.1f} |")
    if a.evaluate:
        _time_evaluate()


def _time_evaluate() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_metrics", Path(__file__).with_name("bench_metrics.py"))
    bm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bm)
    from mitogan.metrics import evaluate
    from mitogan.metrics.proof import damage

    real, fake = bm._sim(600, 0), damage(bm._sim(5000, 1000).tiles, "blur", 0.5)
    t, cpu = time.perf_counter(), time.process_time()
    r = evaluate(real, fake)
    s = r["sample_sizes"]["c2st"]
    print(f"\nevaluate, 600 real vs 5000 generated 64 px: {time.perf_counter() - t:.1f} s wall, "
          f"{time.process_time() - cpu:.1f} s CPU (c2st {s['seconds']:.1f} s + its baseline "
          f"{s['baseline_seconds']:.1f} s wall; {s['n_per_side']} a side, {s['batches']} batches a fold)")
    t, cpu = time.perf_counter(), time.process_time()
    evaluate(real, fake, metrics=[m for m in r["sample_sizes"] if m != "c2st"])
    print(f"evaluate without c2st: {time.perf_counter() - t:.1f} s wall, {time.process_time() - cpu:.1f} s CPU")


if __name__ == "__main__":
    main()
