"""Parameter recovery of ``mitogan fit-sim`` on simulated targets with known parameters.

For each target (spread over the fitted ranges) a dataset is simulated, then fitted with ``mitogan fit-sim``
(the real command: Ray Tune, Optuna, ASHA) from a few seeds. Per parameter: the relative (or, for
probabilities, absolute) error of every fit, whether it is within the tolerance written in
docs/simulation-fit.md before this was run, and whether the parameter is identifiable (recovered in at least
2 of 3 fits).

    python bench/bench_simfit_recovery.py --out runs/bench-recovery [--trials 48] [--seeds 0 1] [--targets ...]

Prints the markdown table and writes it with the raw numbers to OUT/recovery.md and OUT/recovery.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mitogan.simfit.space import FIT_SPACE

# docs/simulation-fit.md, "Tolerances, written down before measuring"
TOLERANCE = {**{k: 0.15 for k in ("width_mean", "density", "psf_sigma", "read_noise", "brightness", "background")},
             **{k: 0.25 for k in ("length_mean", "persistence_mean", "bead_amplitude", "autofluorescence")},
             **{k: 0.30 for k in ("speed", "jitter", "wiggle", "fission_rate", "bleach_rate", "stage_drift")},
             **{k: 0.15 for k in ("branch_prob", "bead_prob")}}
ABSOLUTE = {"branch_prob", "bead_prob"}
IDENTIFIABLE_SHARE = 2 / 3

TARGETS = {
    "default": {},
    "thick-dense-noisy": dict(density=6.0, length_mean=90.0, width_mean=10.0, persistence_mean=50.0, branch_prob=0.6,
                              bead_prob=0.1, bead_amplitude=0.4, psf_sigma=2.5, brightness=120.0, background=40.0,
                              autofluorescence=40.0, read_noise=6.0, speed=0.4, jitter=0.3, wiggle=1.5,
                              fission_rate=0.03, bleach_rate=0.03, stage_drift=0.4),
    "thin-sparse-sharp": dict(density=1.5, length_mean=35.0, width_mean=4.0, persistence_mean=12.0, branch_prob=0.1,
                              bead_prob=0.7, bead_amplitude=1.0, psf_sigma=1.0, brightness=800.0, background=10.0,
                              autofluorescence=5.0, read_noise=2.5, speed=0.05, jitter=0.05, wiggle=0.3,
                              fission_rate=0.005, bleach_rate=0.003, stage_drift=0.05),
}


def truth_of(name: str) -> dict:
    """The fitted parameters' true values of target ``name`` (defaults where the target does not say)."""
    from mitogan.simulate import SimParams

    base = SimParams()
    return {p.name: float(TARGETS[name].get(p.name, getattr(base, p.name))) for p in FIT_SPACE}


def make_target(name: str, folder: Path, index: int) -> Path:
    from mitogan.simfit.space import to_params
    from mitogan.simulate import simulate_dataset

    if not (folder / "simulation.json").is_file():
        simulate_dataset(folder, videos=16, frames=10, size=256, seed=100 + index,
                         params=to_params(TARGETS[name]), progress=False)
    return folder


def fit(data: Path, out: Path, trials: int, seed: int, extra: list[str]) -> dict:
    """Run ``mitogan fit-sim`` (a fresh process, as a user would) unless ``out`` already holds a finished fit."""
    status = out / "fit.json"
    if not (status.is_file() and json.loads(status.read_text()).get("status") == "finished"):
        cmd = [sys.executable, "-m", "mitogan", "fit-sim", str(data), "--out", str(out), "--trials", str(trials),
               "--seed", str(seed), "--no-wandb", "-q", *extra]
        if out.exists():
            cmd.append("--resume")
        subprocess.run(cmd, check=True)
    return json.loads(status.read_text())


def error(name: str, fitted: float, true: float) -> float:
    return abs(fitted - true) if name in ABSOLUTE else abs(fitted / true - 1)


def table(rows: list[dict]) -> str:
    """Per parameter: median error, recovered share, identifiable (markdown)."""
    lines = ["| parameter | tolerance | median error | worst | recovered | identifiable |", "|---|---:|---:|---:|---:|---|"]
    for p in FIT_SPACE:
        errs = np.array([r["errors"][p.name] for r in rows])
        ok = errs <= TOLERANCE[p.name]
        tol = f"±{TOLERANCE[p.name]:g}" if p.name in ABSOLUTE else f"±{100 * TOLERANCE[p.name]:.0f} %"
        fmt = (lambda e: f"{e:.2f}") if p.name in ABSOLUTE else (lambda e: f"{100 * e:.0f} %")
        ident = "**yes**" if ok.mean() >= IDENTIFIABLE_SHARE else "no"
        lines.append(f"| `{p.name}` | {tol} | {fmt(np.median(errs))} | {fmt(errs.max())} | {ok.sum()}/{len(ok)} | {ident} |")
    return "\n".join(lines)


def profile(name: str, data: Path, seeds=(1, 2)) -> list[dict]:
    """Local identifiability, Ray-free: the objective at the truth and with one parameter moved to the edges
    of its tolerance (others at the truth), at the middle rung, over ``seeds``. A parameter is locally
    identifiable when both moves raise the objective by more than twice the seed-to-seed sd at the truth."""
    from mitogan.simfit.data import read_movies
    from mitogan.simfit.objective import RUNGS, FitTarget, score
    from mitogan.simfit.space import to_params

    rung, truth = RUNGS[1], truth_of(name)
    target = FitTarget(read_movies([data], quiet=True)[0]).prepare([rung])
    at = lambda values: [score(to_params(values), target, rung, 500 + s)["objective"] for s in seeds]  # noqa: E731
    base = at(truth)
    noise = max(float(np.std(base, ddof=1)), 1e-3)
    rows = []
    for p in FIT_SPACE:
        tol = TOLERANCE[p.name]
        moves = (truth[p.name] - tol, truth[p.name] + tol) if p.name in ABSOLUTE else \
            (truth[p.name] * (1 - tol), truth[p.name] * (1 + tol))
        rise = [float(np.mean(at({**truth, p.name: min(max(v, p.lo), p.hi)})) - np.mean(base)) for v in moves]
        rows.append({"param": p.name, "rise_low": rise[0], "rise_high": rise[1], "noise_sd": noise,
                     "identifiable": min(rise) > 2 * noise})
        print(f"{p.name}: {rise[0]:+.3f} {rise[1]:+.3f} (noise sd {noise:.3f})", flush=True)
    return rows


def profile_table(rows: list[dict]) -> str:
    lines = ["| parameter | objective rise at -tolerance | at +tolerance | locally identifiable (> 2 sd) |",
             "|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| `{r['param']}` | {r['rise_low']:+.3f} | {r['rise_high']:+.3f} | "
                     f"{'**yes**' if r['identifiable'] else 'no'} |")
    return "\n".join(lines) + f"\n\n(seed-to-seed sd of the objective at the truth: {rows[0]['noise_sd']:.3f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--profile", metavar="TARGET", default=None,
                    help="only the local identifiability profile of this target (no fits)")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more fit-sim options")
    args = ap.parse_args()
    if args.profile:
        data = make_target(args.profile, args.out / f"target-{args.profile}", list(TARGETS).index(args.profile))
        md = profile_table(profile(args.profile, data))
        print(md)
        (args.out / f"profile-{args.profile}.md").write_text(md + "\n")
        return 0
    rows = []
    for i, name in enumerate(args.targets):
        data = make_target(name, args.out / f"target-{name}", list(TARGETS).index(name))
        truth = truth_of(name)
        for seed in args.seeds:
            start = time.perf_counter()
            st = fit(data, args.out / f"fit-{name}-s{seed}", args.trials, seed, args.extra)
            got = st["best"]["config"]
            rows.append({"target": name, "seed": seed, "truth": truth, "fitted": got, "seconds": st.get("seconds"),
                         "wall": time.perf_counter() - start, "final_check": st["final_check"],
                         "errors": {k: error(k, got[k], truth[k]) for k in truth}})
            print(f"{name} seed {seed}: objective {st['best']['objective']:.3f}, fit {st.get('seconds')} s", flush=True)
    md = table(rows)
    print(md)
    (args.out / "recovery.md").write_text(md + "\n")
    (args.out / "recovery.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
