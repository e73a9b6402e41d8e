"""Would a per-family calibrated fidelity fix phase scrambling? (issue 19; docs/metrics.md, "Per-family fidelity")

    python bench/proof_families.py [--datasets sim sparse shared] [--seeds 5] [--draws 200]

For every proof set (``proof.proof_scores``' sets, the same parts and damage) the Fréchet distance to the
held-out part is computed on each feature family alone (intensity, scattering, morphology, topology) and put on
that family's own scale with the machinery of ``builtin.fidelity``: 0 = a disjoint real split (the training
part, subsampled to the same n, mean over ``--draws`` draws), 1 = uniform noise at the same n. Then candidate
combinations of the four family gaps replace ``fidelity`` in the primary (diversity and authenticity gaps as
the metric computes them) and every rule of ``pair_orders`` is checked on every seed:

    all   today's fidelity: one Fréchet distance over all features (the reference row)
    mean  the mean of the four family gaps (each family weighs the same, whatever its number of features)
    geo   1 - geometric mean of (1 - gap): a mean that leans towards the worst family
    p4    power mean (p = 4) of the positive parts, plus the mean of the negative parts: leans further
    max   the worst family ("realistic in every respect")

Prints, per dataset, the family gaps of seed 0 and, per combination, the primary of the sets the phase rules
compare, and the rules broken over all seeds. Offline study: nothing here changes the objective.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

FAMILIES = {"intensity": (), "scattering": ("scat_",), "morphology": ("morph_",), "topology": ("topo_",)}
SHOW = ("other", "later", "blur=0.5", "blur=1.0", "gamma=1.5", "noise=0.1", "collapse=0.5", "phase=1.0", "shuffle=0")


def _columns(names: list[str]) -> dict[str, np.ndarray]:
    """Column indices of every family (intensity: whatever no other family claims) and of all features."""
    tagged = {f: [i for i, n in enumerate(names) if p and n.startswith(p)] for f, p in FAMILIES.items()}
    claimed = {i for cols in tagged.values() for i in cols}
    tagged["intensity"] = [i for i in range(len(names)) if i not in claimed]
    return {**{f: np.array(c) for f, c in tagged.items()}, "all": np.arange(len(names))}


def _mean_fd(zh, z, n, seed, cols, draws) -> dict[str, float]:
    """Mean Fréchet distance per family between ``zh`` and seeded n-row subsets of ``z`` (as ``fidelity_distance``)."""
    from mitogan.metrics import distances as D

    rng = np.random.default_rng(seed)
    subs = [z] if len(z) <= n else [z[rng.choice(len(z), n, replace=False)] for _ in range(draws)]
    return {f: float(np.mean([D.frechet_distance(zh[:, c], s[:, c]) for s in subs])) for f, c in cols.items()}


def family_gaps(ref, raw: dict, seeds, draws: int) -> dict:
    """{(seed, set): {family: calibrated gap}} for the proof sets' raw features ``raw`` ({set: (N, F)})."""
    from mitogan.metrics import distances as D
    from mitogan.metrics.features import describe

    cols, zh, zt = _columns(ref.names), ref.z_heldout, ref.space(ref.f_train)
    cal, out = {}, {}
    for s in seeds:
        for name, f in raw.items():
            n = min(len(f), len(zt))
            if n not in cal:
                d0 = _mean_fd(zh, zt, n, s, cols, draws)
                noise = np.random.default_rng(s + 1).uniform(-1, 1, (n, 1, ref.size, ref.size)).astype(np.float32)
                zn = ref.space(describe(noise, ref.threshold))
                cal[n] = {k: (max(d0[k], 1e-9), max(D.frechet_distance(zh[:, c], zn[:, c]), d0[k] * 1.001, 1e-9))
                          for k, c in cols.items()}
            fd = _mean_fd(zh, ref.space(f), n, s, cols, draws)
            out[(s, name)] = {k: float(np.log(max(fd[k], 1e-12) / d0) / np.log(d1 / d0)) for k, (d0, d1) in cal[n].items()}
        cal.clear()  # the calibration is per seed, as in the metric
    return out


def combine(g: dict, how: str) -> float:
    v = np.array([g[f] for f in FAMILIES])
    neg = np.clip(v, None, 0).mean()
    return {"all": lambda: g["all"], "mean": v.mean, "max": v.max,
            "geo": lambda: 1 - np.exp(np.log(1 - np.minimum(v, 0.999)).mean()),
            "p4": lambda: (np.clip(v, 0, None) ** 4).mean() ** 0.25 + neg}[how]()


def _dataset(name: str, shared: Path):
    from mitogan.metrics.proof import videos_to_tiles
    from mitogan.simulate import SimParams, simulate_video

    if name == "sim":
        other = SimParams(size=128, frames=12, density=5, width_mean=5, psf_sigma=2.0, brightness=150, branch_prob=0.5)
        return (videos_to_tiles([simulate_video(SimParams(size=128, frames=12), s)[0] for s in range(20)], 64),
                {"second_source": videos_to_tiles([simulate_video(other, 100 + s)[0] for s in range(6)], 64).tiles})
    if name == "sparse":
        sp = SimParams(size=128, frames=12, density=0.8, width_mean=5, length_mean=25)
        return videos_to_tiles([simulate_video(sp, s)[0] for s in range(24)], 64), {}
    from proof_table import _qc_tiles

    return _qc_tiles(shared), {}


def study(name: str, shared: Path, seeds, draws: int) -> None:
    from mitogan.metrics.evaluate import _run_metrics
    from mitogan.metrics.proof import COPIES, copy_set, ladder_sets, pair_orders, proof_parts
    from mitogan.metrics.protocol import RealSplit
    from mitogan.metrics.reference import Reference
    from mitogan.metrics.registry import MetricContext

    t = time.perf_counter()
    ts, seconds = _dataset(name, shared)
    parts = proof_parts(ts, 0)  # exactly proof_scores' parts, damage and copies (split_seed 0)
    ref = Reference.build(ts.tiles, ts.source, ts.frame, seed=0,
                          split=RealSplit(parts["train"], parts["heldout"], "proof", np.zeros(len(ts), np.int64)))
    other = ts.tiles[parts["other"]]
    frames = np.asarray(ts.source, np.int64)[parts["other"]] * 1_000_003 + ts.frame[parts["other"]]
    sets = {"other": other, "later": ts.tiles[parts["later"]], **ladder_sets(other, frames, seed=0), **seconds}
    sets.update({c: copy_set(ts.tiles[parts["train"]], c, other, len(other), seed=7) for c in COPIES})
    raw, comp = {}, {s: {} for s in seeds}
    for key, tiles in sets.items():
        cache: dict = {}
        for s in seeds:
            comp[s][key] = _run_metrics(MetricContext(ref, tiles, seed=s, _cache=cache), ("fidelity", "vendi", "authenticity"))[0]
        raw[key] = cache["raw"]
    gaps = family_gaps(ref, raw, seeds, draws)
    print(f"\n### {name} (parts {({k: len(v) for k, v in parts.items()})}; {time.perf_counter() - t:.0f} s)\n")
    print("| set (seed 0) | " + " | ".join(FAMILIES) + " | all | diversity_gap |\n|---|" + "---:|" * (len(FAMILIES) + 2))
    for key in SHOW:
        g = gaps[(seeds[0], key)]
        print(f"| {key} | " + " | ".join(f"{g[f]:.3f}" for f in (*FAMILIES, "all")) + f" | {comp[seeds[0]][key]['diversity_gap']:.3f} |")
    pairs = pair_orders(tuple(seconds), True)
    print("\n| fidelity = | " + " | ".join(SHOW) + " | rules broken (all seeds) |\n|---|" + "---:|" * (len(SHOW) + 1))
    for how in ("all", "mean", "geo", "p4", "max"):
        score = {s: {k: _primary(combine(gaps[(s, k)], how), comp[s][k]) for k in sets} for s in seeds}
        broken = sorted({(a, b) for s in seeds for a, b in pairs if not score[s][a] < score[s][b]})
        mean = lambda k: np.mean([score[s][k] for s in seeds])  # noqa: E731
        print(f"| {how} | " + " | ".join(f"{mean(k):.3f}" for k in SHOW) + f" | {len(broken)}: "
              + ", ".join(f"{a} < {b}" for a, b in broken) + " |")


def _primary(fid: float, values: dict) -> float:
    from mitogan.metrics.evaluate import primary_value

    return primary_value({**values, "fidelity": fid})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["sim", "sparse", "shared"], choices=["sim", "sparse", "shared"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=200, help="subsamples per mean FD (the metric uses 1,000)")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    a = ap.parse_args()
    for name in a.datasets:
        if name != "shared" or a.shared.is_dir():
            study(name, a.shared, tuple(range(3 if name == "sparse" and a.seeds > 3 else a.seeds)), a.draws)


if __name__ == "__main__":
    main()
