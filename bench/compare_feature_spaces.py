"""Which feature space should the objective live in? The same proof (ladders + cross-ladder rules, 5
metric seeds) with the objective computed on each candidate family of features and on their union.

    python bench/compare_feature_spaces.py [--seeds 5]

Each set's features are computed once (all families) and the candidates are column subsets of them, so
the comparison isolates the feature space: split, calibration and the objective's formula are the same.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

import mitogan.metrics.features as F

_FULL_DESCRIBE, _FULL_NAMES = F.describe, F.feature_names
_CACHE: dict = {}


def _use_columns(prefixes):
    """Make the metrics see only the features whose names start with ``prefixes`` (None = all)."""
    def names(size):
        return [n for n in _FULL_NAMES(size) if prefixes is None or n.startswith(prefixes)]

    def describe(tiles, threshold=None, progress=False):
        key = hashlib.sha1(np.ascontiguousarray(tiles).tobytes()).hexdigest() + str(threshold)
        if key not in _CACHE:
            _CACHE[key] = _FULL_DESCRIBE(tiles, threshold, progress)
        full = _FULL_NAMES(tiles.shape[-1])
        keep = [i for i, n in enumerate(full) if prefixes is None or n.startswith(prefixes)]
        return _CACHE[key][:, keep]

    import mitogan.metrics.reference as R

    F.describe, F.feature_names, R.describe, R.feature_names = describe, names, describe, names


CANDIDATES = {"intensity statistics": ("int_", "noise_", "grad_"), "wavelet scattering": ("scat_",),
              "morphology (dataset threshold)": ("morph_",), "intensity + scattering": ("int_", "noise_", "grad_", "scat_"),
              "all three (chosen)": None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    a = ap.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from proof_table import _qc_tiles
    from mitogan.metrics.proof import pair_orders, proof_scores, rule_violations, videos_to_tiles
    from mitogan.simulate import SimParams, simulate_video

    seeds = tuple(range(a.seeds))
    sim = videos_to_tiles([simulate_video(SimParams(size=128, frames=12), s)[0] for s in range(20)], 64)
    other = SimParams(size=128, frames=12, density=5, width_mean=5, psf_sigma=2.0, brightness=150, branch_prob=0.5)
    data = {"simulator": (sim, {"second_source": videos_to_tiles(
        [simulate_video(other, 100 + s)[0] for s in range(6)], 64).tiles})}
    if a.shared.is_dir():
        ats, deep = _qc_tiles(a.shared / "ats"), _qc_tiles(a.shared / "deep-events")
        data["shared real data"] = (_qc_tiles(a.shared), {})
        data["stress ATS→deep"] = (ats, {"second_source": deep.tiles})
        data["stress deep→ATS"] = (deep, {"second_source": ats.tiles})
    print("rules broken over all seeds / smallest margin of a required order (calibrated units)\n")
    print("| feature space | " + " | ".join(data) + " | worst spread (sd) |")
    print("|---|" + "---:|" * (len(data) + 1))
    for label, prefixes in CANDIDATES.items():
        _use_columns(prefixes)
        cells, worst = [], 0.0
        for ts, sec in data.values():
            r = proof_scores(ts, sec, seeds=seeds)
            broken = sum(len(rule_violations(r["scores"][s], tuple(sec))) for s in seeds)
            margin = min(r["scores"][s][b] - r["scores"][s][g] for s in seeds for g, b in pair_orders(tuple(sec)))
            cells.append(f"{broken}/{len(pair_orders(tuple(sec))) * len(seeds)} · {margin:+.3f}")
            for name in r["scores"][seeds[0]]:
                worst = max(worst, float(np.std([r["scores"][s][name] for s in seeds])))
        print(f"| {label} | " + " | ".join(cells) + f" | {worst:.4f} |", flush=True)


if __name__ == "__main__":
    main()
