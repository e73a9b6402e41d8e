"""Search benchmarks: (a) the cost of running a trial under Ray Tune, (b) what early stopping saves.

    python bench/bench_search.py overhead [--steps 1200] [--repeats 2]
    python bench/bench_search.py efficiency [--trials 12]

(a) One trial of the smoke configuration (no sampled choices left) run two ways, alternating, medians:
    "direct" = preprocess (cached) + the in-training evaluator + ``train()`` in this process;
    "tune"   = ``run_search`` with one trial: Ray start-up, Optuna, the trainable, checkpoints reported to
               Ray, W&B offline logging, the HTML report and the export of the best generator.
    Target: tune / direct <= 1.10 for a trial of >= 60 s.
(b) The same seeded trials (Optuna's RandomSampler, so both arms train identical configurations) on the
    smoke space, with early stopping (ASHA + the non-convergence stopper) and without. Reports compute
    spent (sum of generator steps over trials) and the best final primary metric of each arm.
    Target: >= 2.5x less compute, best metric within 5% of the search without stopping. Also: the Spearman
    correlation between each trial's primary at ASHA's first rung and at its last step (the arm without
    stopping), i.e. how well the objective early in training predicts it at the end.
Both run on the built-in simulated data (a smaller dataset by default, to keep preprocessing out of it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ONE_POINT = """
name: bench-one-trial
fixed:
{fixed}
params:
  - {{name: loss.kind, type: categorical, choices: [hinge]}}
"""


def _smoke_fixed(steps: int) -> dict:
    from search.space import load_space

    fixed = dict(load_space("smoke").fixed)
    fixed["train.steps"] = steps
    return fixed


def overhead(args) -> None:
    from mitogan.config import Config, from_flat
    from mitogan.io import read_inputs
    from mitogan.metrics import InTrainingEvaluator
    from mitogan.metrics.protocol import training_tiles
    from mitogan.preprocess import Pipeline
    from mitogan.simulate import default_dataset
    from mitogan.train import train
    from search.report import collect_trials
    from search.run import SearchOptions, run_search

    fixed = _smoke_fixed(args.steps)
    cfg = from_flat(Config, {**fixed, "loss.kind": "hinge"})
    root = Path(tempfile.mkdtemp(prefix="bench-search-"))
    space = root / "one.yaml"
    space.write_text(ONE_POINT.format(fixed="\n".join(f"  {k}: {v}" for k, v in fixed.items())))
    videos = read_inputs([default_dataset(videos=args.videos, frames=args.frames)])
    Pipeline(cfg.preprocess).run(videos, progress=False)  # warm the tiles cache for both sides
    times: dict[str, list[float]] = {"direct": [], "tune": [], "trial": []}
    for r in range(args.repeats):
        t0 = time.perf_counter()
        tiles = Pipeline(cfg.preprocess).run(videos, progress=False)
        evaluator = InTrainingEvaluator(tiles, holdout=cfg.train.holdout)  # as the trainable does
        train(cfg, training_tiles(tiles, cfg.train.holdout), out_dir=root / f"direct{r}", evaluate=evaluator)
        times["direct"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        d = run_search(SearchOptions(space=str(space), trials=1, asha=False, stop_nonconvergent=False,
                                     storage=str(root / "runs"), name=f"tune{r}", sim_videos=args.videos,
                                     sim_frames=args.frames, progress=False))
        times["tune"].append(time.perf_counter() - t0)
        (trial,) = collect_trials(d)
        assert trial.step == args.steps, f"the Tune trial ran {trial.step} steps, not {args.steps}"
        times["trial"].append(trial.last["time_total_s"])  # Ray's clock: the trainable, start to end
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\none smoke trial ({args.steps} steps, 32 px DCGAN width 16, 1 thread), median of {args.repeats}\n")
    print("| path | seconds |\n|---|---:|")
    print(f"| `train()` directly (+ preprocess cache hit + evaluator) | {med['direct']:.1f} |")
    print(f"| the trial inside Ray (trainable start to end: cache hit, evaluator, W&B, train, reports) | {med['trial']:.1f} |")
    print(f"| `mitogan search` with 1 trial (+ Ray start, Optuna, report, export) | {med['tune']:.1f} |")
    print(f"\ntrial under Tune / direct: **{med['trial'] / med['direct']:.3f}x** (target <= 1.10); whole search "
          f"command / direct: {med['tune'] / med['direct']:.3f}x; runs: {json.dumps(times)}")


def efficiency(args) -> None:
    from search.report import collect_trials
    from search.run import SearchOptions, run_search

    root = Path(tempfile.mkdtemp(prefix="bench-eff-"))
    arms = {}
    for name, stop in (("with early stopping", True), ("without", False)):
        t0 = time.perf_counter()
        d = run_search(SearchOptions(space="smoke", trials=args.trials, sampler="random", seed=args.seed,
                                     asha=stop, stop_nonconvergent=stop, storage=str(root), name=name.replace(" ", "-"),
                                     wandb=False, sim_videos=args.videos, sim_frames=args.frames, progress=False))
        wall = time.perf_counter() - t0
        trials = collect_trials(d)
        finished = [t.primary for t in trials if t.status == "finished" and t.primary is not None]
        arms[name] = {"steps": sum(t.step for t in trials), "best": min(finished) if finished else float("nan"),
                      "wall": wall, "stopped": sum(t.status == "stopped" for t in trials), "n": len(trials),
                      "trials": trials}
    a, b = arms["with early stopping"], arms["without"]
    print(f"\nsmoke space, {args.trials} trials, RandomSampler(seed={args.seed}): identical configurations in both arms\n")
    print("| search | trials stopped early | compute (generator steps) | wall (s) | best primary ↓ |\n|---|---:|---:|---:|---:|")
    for name, r in arms.items():
        print(f"| {name} | {r['stopped']}/{r['n']} | {r['steps']:,} | {r['wall']:.0f} | {r['best']:.4f} |")
    print(f"\ncompute saved: **{b['steps'] / max(a['steps'], 1):.2f}x** (target >= 2.5); best primary with stopping is "
          f"{100 * (a['best'] - b['best']) / b['best']:+.1f}% vs without (target within 5%), "
          f"{a['best'] - b['best']:+.4f} in absolute terms")
    rho, n = rung_correlation(b["trials"])
    print(f"\nASHA's signal: Spearman correlation between each trial's primary at the first rung (a quarter of "
          f"the steps) and at its last step, trials that ran to the end without stopping: **{rho:.2f}** (n={n})")


def rung_correlation(trials) -> tuple[float, int]:
    """Spearman rho of (primary at the first result at or after a quarter of the steps, final primary)."""
    from scipy.stats import spearmanr

    pairs = []
    for t in trials:
        rows = [r for r in t.results if r.get("primary") is not None and r.get("step")]
        if t.status != "finished" or not rows:
            continue
        rung = next(r for r in rows if r["step"] >= rows[-1]["step"] // 4)
        pairs.append((rung["primary"], rows[-1]["primary"]))
    if len(pairs) < 3:
        return float("nan"), len(pairs)
    return float(spearmanr(*zip(*pairs)).statistic), len(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", choices=["overhead", "efficiency"])
    ap.add_argument("--steps", type=int, default=1200, help="(overhead) steps of the trial")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--trials", type=int, default=12, help="(efficiency) trials per arm")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--videos", type=int, default=8, help="simulated videos (of 30 frames, 256 px)")
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args()
    overhead(args) if args.which == "overhead" else efficiency(args)


if __name__ == "__main__":
    main()
