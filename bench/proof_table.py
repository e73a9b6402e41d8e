"""The tables of docs/metrics.md: the objective on every damage ladder and the cross-ladder rules.

    python bench/proof_table.py [--seeds 5] [--shared ../shared/data]

Simulated data (20 movies; "second_source" = movies from other simulator settings, another "microscope"),
sparse simulated movies (24; 3 seeds, as their test) and the shared real data (quality-checked as preprocessing does). Also a stress case the rules do not
require: one shared collection as the data and the other collection (another lab setup, cell line,
stain and file format) as the "second source". Prints mean ± sd over the seeds of the metric.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def _qc_tiles(path: Path):
    from mitogan.io import read_inputs
    from mitogan.metrics.proof import videos_to_tiles
    from mitogan.preprocess import quality_report

    frames = [np.delete(v.frames, quality_report(v)["flagged"], axis=0) for v in read_inputs(path)]
    return videos_to_tiles([f for f in frames if len(f)], 64)


def _table(title: str, ts, seconds: dict, seeds) -> None:
    from mitogan.metrics.proof import proof_scores, rule_violations

    t = time.perf_counter()
    r = proof_scores(ts, seconds, seeds=seeds)
    print(f"\n### {title}\n\nparts (tiles): {r['parts']}; {time.perf_counter() - t:.0f} s\n")
    print("| set | realism_gap ↓ (mean ± sd) | fidelity | diversity_gap (of it: correlation) | authenticity_gap | "
          "structure_gap |\n|---|---:|---:|---:|---:|---:|")
    for name in r["scores"][seeds[0]]:
        v = np.array([r["scores"][s][name] for s in seeds])
        c = r["components"][seeds[0]][name]
        print(f"| {name} | {v.mean():.3f} ± {v.std():.3f} | {c['fidelity']:.3f} | {c['diversity_gap']:.3f} ({c['diversity_gap_correlation']:.3f}) | "
              f"{c['authenticity_gap']:.3f} | {c['structure_gap']:.3f} |")
    broken = {s: rule_violations(r["scores"][s], tuple(seconds)) for s in seeds}
    n_bad = sum(len(b) for b in broken.values())
    print(f"\nrules broken over {len(seeds)} seeds: {n_bad}" + ("" if not n_bad else f": {broken[seeds[0]]}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    a = ap.parse_args()
    from mitogan.metrics.proof import videos_to_tiles
    from mitogan.simulate import SimParams, simulate_video

    seeds = tuple(range(a.seeds))
    sim = videos_to_tiles([simulate_video(SimParams(size=128, frames=12), s)[0] for s in range(20)], 64)
    other = SimParams(size=128, frames=12, density=5, width_mean=5, psf_sigma=2.0, brightness=150, branch_prob=0.5)
    second = videos_to_tiles([simulate_video(other, 100 + s)[0] for s in range(6)], 64).tiles
    _table("Simulator", sim, {"second_source": second}, seeds)
    sparse = SimParams(size=128, frames=12, density=0.8, width_mean=5, length_mean=25)  # as the sparse proof test
    _table("Sparse simulated movies", videos_to_tiles([simulate_video(sparse, s)[0] for s in range(24)], 64), {},
           seeds[:3])
    if a.shared.is_dir():
        _table("Shared real data (all of ../shared/data)", _qc_tiles(a.shared), {}, seeds)
        ats, deep = _qc_tiles(a.shared / "ats"), _qc_tiles(a.shared / "deep-events")
        _table("Stress: ATS GIFs as the data, deep-events as the second source", ats, {"second_source": deep.tiles},
               seeds)
        _table("Stress: deep-events as the data, ATS GIFs as the second source", deep, {"second_source": ats.tiles},
               seeds)


if __name__ == "__main__":
    main()
