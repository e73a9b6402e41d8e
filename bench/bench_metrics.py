"""Seconds for ``evaluate`` with 600 real vs 5,000 generated 64x64 tiles, per stage, and for the
in-training evaluator per call (256 generated tiles). Median of ``--repeats`` runs.

    python bench/bench_metrics.py [--real 600] [--fake 5000] [--repeats 3]

Wall and CPU seconds (all threads of this process; on a shared machine CPU time compares runs better).
Real tiles: 10 simulated movies (4 tiles per 128 px frame, provenance kept, so the held-out split is by
whole movies as in a search); generated tiles: other simulated movies, blurred a little.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import tempfile
import time

import numpy as np


def _sim(n_tiles: int, seed0: int):
    from mitogan.metrics.proof import videos_to_tiles
    from mitogan.simulate import SimParams, simulate_video

    frames = -(-n_tiles // 40)  # 10 movies x frames x 4 tiles
    ts = videos_to_tiles([simulate_video(SimParams(size=128, frames=frames), seed0 + s)[0] for s in range(10)], 64)
    return ts.subset(np.arange(n_tiles))


def _median(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds (all threads of this process) of ``fn``."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, default=600)
    ap.add_argument("--fake", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from mitogan.metrics import InTrainingEvaluator, evaluate
    from mitogan.metrics.evaluate import DEFAULT_METRICS
    from mitogan.metrics.features import intensity_features
    from mitogan.metrics.morphology import morphology_features
    from mitogan.metrics.proof import damage
    from mitogan.metrics.scattering import scattering_features

    fresh = {"cache": False} if "cache" in inspect.signature(evaluate).parameters else {}
    real = _sim(a.real, 0)
    fake = damage(_sim(a.fake, 1000).tiles, "blur", 0.5)
    no_c2st = tuple(m for m in DEFAULT_METRICS if m != "c2st")
    rows = [("intensity features", lambda: intensity_features(fake)),
            ("scattering features", lambda: scattering_features(fake)),
            ("morphology features", lambda: morphology_features(fake, threshold=0.0)),
            ("evaluate (all metrics, real side included)", lambda: evaluate(real, fake, **fresh)),
            ("evaluate without the C2ST (real side included)", lambda: evaluate(real, fake, metrics=no_c2st, **fresh))]
    if "structure" in no_c2st:  # what the surrogate structure test adds, side by side
        rows.append(("evaluate without the C2ST and the structure test (real side included)",
                     lambda: evaluate(real, fake, metrics=tuple(m for m in no_c2st if m != "structure"), **fresh)))
    if "cache" in inspect.signature(evaluate).parameters:  # the real side from the cache: a second generator
        os.environ["MITOGAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-metrics-")
        evaluate(real, fake[:50], metrics=("vendi",))  # builds and keeps the real side
        rows.append(("evaluate without the C2ST, real side cached", lambda: evaluate(real, fake, metrics=no_c2st)))
        # the C2ST's baseline is kept beside the cached real side too: a second generator trains one CNN, not two
        rows.append(("evaluate (all metrics), real side and C2ST baseline cached", lambda: evaluate(real, fake)))
    print(f"| stage ({a.real} real, {a.fake} generated 64 px tiles) | seconds (median of {a.repeats}) | CPU s |")
    print("|---|---:|---:|")
    for name, fn in rows:
        print("| {} | {:.2f} | {:.2f} |".format(name, *_median(fn, a.repeats)), flush=True)
    t = time.perf_counter()
    ev = InTrainingEvaluator(real, n_fake=256, cache=False)
    setup = time.perf_counter() - t
    print(f"| in-training evaluator set-up (once per dataset, then cached) | {setup:.2f} | |")
    if "cache" in inspect.signature(evaluate).parameters:  # a search's next trial on the same data
        InTrainingEvaluator(real, n_fake=256)  # the first trial: builds and keeps the reference (and copy nulls)
        print("| in-training evaluator set-up, next trial (from the cache) | {:.2f} | {:.2f} |".format(
            *_median(lambda: InTrainingEvaluator(real, n_fake=256), 3)), flush=True)
    print("| in-training evaluator per call (256 generated) | {:.2f} | {:.2f} |".format(*_median(lambda: ev(fake[:256]), 5)))
    print(f"(load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
