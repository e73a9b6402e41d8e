"""Default vs fitted simulator against real movies, judged as `mitogan evaluate` judges generators.

    python bench/bench_simfit_real.py DATA... --fit runs/fit --out docs/img/simfit_real.png [--videos 32]

The real frames are read, quality-checked and cut into tiles as `mitogan evaluate` does; default and fitted
simulators each simulate ``--videos`` short videos (seeds no fit trial saw), cut the same way; ``evaluate``
(every registered metric: realism_gap with its components, the classifier two-sample test) compares each
with the same held-out real tiles. Prints a markdown table and writes a figure: real | fitted | default
frames, and the scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def simulated_tiles(params, videos: int, tile: int, seed: int):
    from mitogan.simfit.objective import Rung, frames_to_tileset, simulate_videos

    movies = simulate_videos(params, Rung(videos, 4, 192, 10**6), seed)
    return movies, frames_to_tileset(movies, tile).tiles


def judge(ref, tiles: np.ndarray, seed: int) -> dict:
    from mitogan.metrics.evaluate import evaluate

    r = evaluate(None, tiles, reference=ref, seed=seed)
    m = r["metrics"]
    return {"realism_gap": r["primary"]["value"], **r["primary"]["components"],
            **{k: m.get(k) for k in ("c2st_accuracy", "c2st_accuracy_sd", "c2st_baseline", "c2st_baseline_sd")},
            "n_fake": r["n_fake"], "n_heldout": r["protocol"].get("n_heldout")}


def figure(path: Path, rows: dict, scores: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mitogan.simfit.report import _crops

    n = 4
    fig, axes = plt.subplots(len(rows), n, figsize=(2.3 * n, 2.45 * len(rows)), squeeze=False)
    for r, (label, videos) in enumerate(rows.items()):
        for c, crop in enumerate(_crops(videos, n, 128)):
            axes[r, c].imshow(crop, cmap="gray", vmin=0, vmax=1)
        for ax in axes[r]:
            ax.axis("off")
        s = scores.get(label)
        extra = "" if s is None else (f": realism_gap {s['realism_gap']:.2f}, C2ST {s['c2st_accuracy']:.2f} "
                                       f"(real vs real {s['c2st_baseline']:.2f})")
        axes[r, 0].set_title(label + extra, loc="left", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--fit", type=Path, required=True, help="the folder `mitogan fit-sim --out` wrote")
    ap.add_argument("--out", type=Path, required=True, help="figure (PNG); the numbers go beside it as .json")
    ap.add_argument("--videos", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from mitogan.metrics.evaluate import real_reference
    from mitogan.simfit.data import read_fitted, read_movies
    from mitogan.simfit.objective import frames_to_tileset
    from mitogan.simulate import SimParams

    status = json.loads((args.fit / "fit.json").read_text())
    tile = int(status["options"]["tile"])
    videos, _ = read_movies(args.data, quiet=True)
    ref = real_reference(frames_to_tileset(videos, tile, [str(v.source) for v in videos]), seed=args.seed)
    rows, scores = {"real": videos}, {}
    for label, params in (("fitted simulator", read_fitted(args.fit / "fitted.yaml")), ("default simulator", SimParams())):
        start = time.perf_counter()
        movies, tiles = simulated_tiles(params, args.videos, tile, seed=10**7 + args.seed)
        rows[label], scores[label] = movies, judge(ref, tiles, args.seed)
        scores[label]["seconds"] = round(time.perf_counter() - start, 1)
        print(label, json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in scores[label].items()}),
              flush=True)
    figure(args.out, rows, scores)
    args.out.with_suffix(".json").write_text(json.dumps(scores, indent=1))
    print("| simulator | realism_gap | fidelity | diversity_gap | C2ST accuracy | C2ST real vs real |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, s in scores.items():
        print(f"| {label} | {s['realism_gap']:.3f} | {s['fidelity']:.3f} | {s['diversity_gap']:.3f} | "
              f"{s['c2st_accuracy']:.3f} ± {s['c2st_accuracy_sd']:.3f} | {s['c2st_baseline']:.3f} ± {s['c2st_baseline_sd']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
