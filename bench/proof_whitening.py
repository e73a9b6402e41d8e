"""Would a decorrelated feature space fix phase scrambling? (issue 19; docs/metrics.md, "Decorrelated fidelity")

    python bench/proof_whitening.py [--datasets sim sparse shared] [--variants base white floor] [--seeds 1]

The Fréchet distance sums over features, so a damage that moves a cluster of redundant features (blur: ~20
noise and sharpness features that all measure high-frequency content) counts once per feature, while phase
scrambling moves the four topology features. Here ``fidelity`` (and its calibration, d0 and d1) is computed on
the robust features after a linear map fitted on the held-out reference:

    base   today's space (the reference row)
    white  whitened by the Ledoit-Wolf covariance of the held-out features: every independent direction of real
           variation counts once, whatever the number of features along it
    floor  the same with the covariance's eigenvalues raised to their mean: redundant clusters shrink, but no
           direction in which real tiles hardly vary is amplified

and every rule of ``pair_orders`` is checked with the full primary (diversity and authenticity gaps as the metric
computes them). Offline study: the module's functions are swapped in this process only; nothing here changes the
objective.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

SHOW = ("other", "later", "blur=0.5", "blur=1.0", "gamma=1.5", "noise=0.1", "collapse=0.5", "phase=1.0", "shuffle=0",
        "blur=4.0", "noise=1.0")


def _use(variant: str) -> None:
    """Swap ``fidelity_distance`` and ``Reference.calibration`` for versions on the mapped features."""
    from sklearn.covariance import LedoitWolf

    import mitogan.metrics.builtin as B
    import mitogan.metrics.reference as R
    from mitogan.metrics import distances as D
    from mitogan.metrics.features import describe

    maps: dict = {}

    def mapped(refz: np.ndarray):
        if id(refz) not in maps:
            w, v = np.linalg.eigh(LedoitWolf().fit(refz).covariance_)
            if variant == "floor":
                w = np.maximum(w, w.mean())
            mu, m = refz.mean(0), v @ np.diag(w ** -0.5) @ v.T
            maps[id(refz)] = (lambda z: (z - mu) @ m), refz  # keep refz alive: its id is the key
        return maps[id(refz)][0]

    def fidelity_distance(space, ref, raw, n, seed, draws=R.CALIBRATION_DRAWS):
        f = mapped(ref)
        rng, z, r = np.random.default_rng(seed), f(space(raw)), f(ref)
        if len(z) <= n:
            return D.frechet_distance(r, z)
        return float(np.mean([D.frechet_distance(r, z[rng.choice(len(z), n, replace=False)]) for _ in range(draws)]))

    def calibration(self, n, seed=None):
        n, seed = int(min(n, len(self.f_train))), self.seed if seed is None else seed
        if (n, seed) not in self._cal:
            d0 = fidelity_distance(self.space, self.z_heldout, self.f_train, n, seed)
            noise = np.random.default_rng(seed + 1).uniform(-1, 1, (n, 1, self.size, self.size)).astype(np.float32)
            f = mapped(self.z_heldout)
            d1 = D.frechet_distance(f(self.z_heldout), f(self.space(describe(noise, self.threshold))))
            self._cal[(n, seed)] = (max(d0, 1e-9), max(d1, d0 * 1.001, 1e-9))
        return self._cal[(n, seed)]

    R.fidelity_distance = B.fidelity_distance = fidelity_distance
    R.Reference.calibration = calibration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["sim", "sparse", "shared"], choices=["sim", "sparse", "shared"])
    ap.add_argument("--variants", nargs="+", default=["base", "white", "floor"], choices=["base", "white", "floor"])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    a = ap.parse_args()
    if len(a.variants) > 1:  # one variant per process: the swap is for the whole process
        for v in a.variants:
            import subprocess

            subprocess.run([sys.executable, __file__, "--datasets", *a.datasets, "--variants", v, "--seeds",
                            str(a.seeds), "--shared", str(a.shared)], check=True)
        return
    from proof_families import _dataset

    from mitogan.metrics.proof import proof_scores, rule_violations

    if a.variants[0] != "base":
        _use(a.variants[0])
    for name in a.datasets:
        t = time.perf_counter()
        ts, seconds = _dataset(name, a.shared)
        res = proof_scores(ts, seconds, seeds=tuple(range(a.seeds)))
        broken = sorted({v for s in res["scores"] for v in rule_violations(res["scores"][s], tuple(seconds))})
        mean = lambda k: np.mean([res["scores"][s][k] for s in res["scores"]])  # noqa: E731
        print(f"| {name} | {a.variants[0]} | " + " | ".join(f"{mean(k):.3f}" for k in SHOW)
              + f" | {len(broken)} | {time.perf_counter() - t:.0f} s |", flush=True)
        for line in broken:
            print(f"|   | | {line} |")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
