"""Tabulate the "Feeding the GAN" searches of docs/simulation-fit.md: held-out realism_gap against the share of
fitted-simulator tiles (train.sim_share).

The searches it reads (run them first; `nice -n 5` on a shared machine):

    F=bench/results/simshare/fitted.yaml   # the 60-trial fit of ../shared/data
    COMMON="--data ../shared/data --max-concurrent 1 --scheduler none --no-wandb --storage runs/simshare"
    # A: one fixed few-shot config, the seed and the share sampled (random sampler: a spread of shares)
    mitogan search $COMMON --space bench/spaces/simshare.yaml --sampler random --sim-config $F --trials 8 --name armA
    # B: the same seeds (same sampler seed: train.seed is drawn first), share fixed at 0: real only
    mitogan search $COMMON --space bench/spaces/simshare.yaml --sampler random --sim-config $F \\
        --set train.sim_share=0 --trials 6 --name armB
    # C: the whole fewshot space with the share searched beside everything else (TPE)
    mitogan search $COMMON --space fewshot --sim-config $F --trials 8 --name armC

    # D: the baseline's seeds again, share fixed at 0.5
    mitogan search $COMMON --space bench/spaces/simshare.yaml --sampler random --sim-config $F \\
        --set train.sim_share=0.5 --trials 6 --name armD

    python bench/bench_simshare.py --baseline runs/simshare/armB --with-sim runs/simshare/armA runs/simshare/armD \\
        --space runs/simshare/armC

Prints, per search, one row per finished trial (seed, share, the final held-out realism_gap the search
ranks by, the mean of the last two evaluations, the C2ST accuracy of the finished generator), the paired
differences against the baseline on equal seeds, the Spearman correlation of share and realism_gap, and for
the whole-space search Optuna's importance of every searched parameter.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from search.trials import expand


def trials(search: Path) -> list[dict]:
    """Finished trials of a search folder: params, the final and last-two-mean realism_gap, C2ST."""
    rows = []
    for t in sorted(search.glob("trial_*")):
        if not (t / "result.json").exists():
            continue  # not started yet
        results = [expand(json.loads(line)) for line in (t / "result.json").read_text().splitlines() if line.strip()]
        gaps = [r["primary"] for r in results if r.get("fidelity") is not None]  # the evaluated reports
        last = extra = results[-1] if results else {}
        params = json.loads((t / "params.json").read_text())
        if not gaps or (last.get("step", 0) < params["train.steps"] and not last.get("stop_reason")):
            continue  # still running
        rows.append({"trial": t.name, "seed": params.get("train.seed", 0), "share": params.get("train.sim_share", 0.0),
                     "gap": gaps[-1], "gap2": float(np.mean(gaps[-2:])), "swing": abs(gaps[-1] - gaps[-2]), "c2st": extra.get("c2st_accuracy"),
                     "stop": last.get("stop_reason"), "params": params})
    return rows


def spearman(x, y) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1]) if len(x) > 2 and len(set(x)) > 1 else float("nan")


def table(name: str, rows: list[dict]) -> None:
    print(f"\n{name}: {len(rows)} finished trials")
    if not rows:
        return
    print("| trial | seed | sim_share | realism_gap (final) | mean of last two | C2ST |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in sorted(rows, key=lambda r: r["share"]):
        c2st = f"{r['c2st']:.3f}" if r["c2st"] is not None else "–"
        print(f"| {r['trial']} | {r['seed']} | {r['share']:.2f} | {r['gap']:.3f} | {r['gap2']:.3f} | {c2st} |")
    gaps = [r["gap"] for r in rows]
    best = min(rows, key=lambda r: r["gap"])
    print(f"mean {np.mean(gaps):.3f} ± {np.std(gaps, ddof=1) if len(gaps) > 1 else 0:.3f} (sd); best "
          f"{best['gap']:.3f} at share {best['share']:.2f}; Spearman(share, gap) "
          f"{spearman([r['share'] for r in rows], gaps):.2f}; mean of the last two evaluations "
          f"{np.mean([r['gap2'] for r in rows]):.3f}; |last − one before| mean {np.mean([r['swing'] for r in rows]):.3f}, "
          f"max {max(r['swing'] for r in rows):.3f}")


def paired(a: list[dict], b: list[dict]) -> None:
    by_seed = {r["seed"]: r for r in b}
    pairs = [(r, by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    if not pairs:
        return
    print("\npaired on seed (with simulator tiles − real only):")
    for ra, rb in sorted(pairs, key=lambda p: p[0]["share"]):
        print(f"  seed {ra['seed']}: share {ra['share']:.2f}: {ra['gap']:.3f} − {rb['gap']:.3f} = "
              f"{ra['gap'] - rb['gap']:+.3f} (last two: {ra['gap2'] - rb['gap2']:+.3f})")
    d = [ra["gap"] - rb["gap"] for ra, rb in pairs]
    d2 = [ra["gap2"] - rb["gap2"] for ra, rb in pairs]
    print(f"  mean difference {np.mean(d):+.3f} (last two: {np.mean(d2):+.3f}) over {len(d)} seeds")


def importance(search: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(search / "optuna.log")))
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    print(f"\nOptuna importance in {search.name} ({len(done)} complete trials, PED-ANOVA default evaluator):")
    for name, value in optuna.importance.get_param_importances(study).items():
        print(f"  {name}: {value:.3f}")


def main(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, required=True, help="search with train.sim_share=0 (B)")
    p.add_argument("--with-sim", type=Path, nargs="+", default=[],
                   help="searches with simulator tiles on the baseline's seeds (A: share searched; D: fixed)")
    p.add_argument("--space", type=Path, default=None, help="a search of a whole space with the share in it (C)")
    args = p.parse_args(argv)
    base = trials(args.baseline)
    table(args.baseline.name, base)
    for search in args.with_sim:
        rows = trials(search)
        table(search.name, rows)
        paired(rows, base)
    if args.space is not None:
        table(args.space.name, trials(args.space))
        importance(args.space)


if __name__ == "__main__":
    main(sys.argv[1:])
