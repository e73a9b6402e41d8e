"""Seconds for ``evaluate`` with 600 real vs 5,000 generated 64x64 tiles on this CPU, per stage.

    python bench/bench_metrics.py [--real 600] [--fake 5000] [--size 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _tiles(n: int, s: int, seed: int) -> np.ndarray:
    """Blurred random blobs in [-1, 1] (tubule-like density of objects): (n, 1, s, s) float32."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.normal(size=(n, 1, s, s)).astype(np.float32), (0, 0, 1.5, 1.5))
    return np.clip(x / x.std() * 0.5, -1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=int, default=600)
    ap.add_argument("--fake", type=int, default=5000)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    from mitogan.metrics import InTrainingEvaluator, evaluate
    from mitogan.metrics.encoder import encode
    from mitogan.metrics.morphology import morphology_features

    real, fake = _tiles(a.real, a.size, 0), _tiles(a.fake, a.size, 1)
    t = time.perf_counter()
    morphology_features(fake)
    print(f"morphology features, {a.fake} tiles: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    encode(fake)
    print(f"random-conv encoder, {a.fake} tiles: {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    r = evaluate(real, fake)
    print(f"evaluate, {a.real} real vs {a.fake} generated: {time.perf_counter() - t:.1f} s "
          f"(primary {r['primary']['value']:.3f})")
    t = time.perf_counter()
    ev = InTrainingEvaluator(real, n_fake=256, cache=False)
    t1 = time.perf_counter()
    ev(fake[:256])
    print(f"in-training: setup {t1 - t:.1f} s, per call (256 generated) {time.perf_counter() - t1:.1f} s")


if __name__ == "__main__":
    main()
