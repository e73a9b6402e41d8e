"""The truncation trick (`mitogan synth --truncation PSI`): does drawing nearer the latent prior's centre bring a
trained generator's samples nearer held-out real tiles, and what does it cost in diversity and copying?

    python bench/bench_truncation.py --runs fine-s0,fine-s1     # runs of bench_fine_detail.py (--work)
    python bench/bench_truncation.py --runs fine-s0 --psis 1 --chosen 0.8   # and the factor a search trial keeps

Every latent z_i is drawn as PSI x z_i (BigGAN's and StyleGAN's truncation, Brock et al. 2019, Karras et al. 2019,
in its scaling form), through `mitogan synth --truncation` itself, with one latent seed for every PSI: the rows
of a run are the same latents pulled in. Judged as bench_resample.py judges (its columns: the C2ST against the
training and the held-out split, a CNN of twice the width against held-out, the dark detail, the in-training
evaluator's primary, copy share and diversity gap, the mean pairwise correlation), over --judge-seeds CNN seeds.

Writes --out/truncation.json, truncation.md and truncation.png (per run and factor, the images of latents 0-9:
the same latents pulled in, row by row).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_fine_detail as fine  # noqa: E402  (the runs, the split, the sampling)
import bench_resample as resample  # noqa: E402  (the judged columns and the tables)


def parse_args(argv=None) -> argparse.Namespace:
    p = resample.judged_parser(__doc__, "truncation", "tiles drawn per factor")
    p.add_argument("--psis", default="1,0.9,0.8,0.7,0.6", help="truncation factors (1: as trained)")
    p.add_argument("--judge-seeds", type=int, default=3, help="C2ST seeds per score, averaged")
    p.add_argument("--chosen", type=float, default=None, metavar="FLOOR",
                   help="also the factor a finished search trial would keep for each run (mitogan.truncation: "
                        "1, 0.9, ... down to FLOOR, scored by judged_gap on the trial's judge latents), judged like "
                        "the rest on the bench's own latents; the choice and its value at every factor go into "
                        "truncation.json")
    a = p.parse_args(argv)
    a.runs, a.psis = [r for r in a.runs.split(",") if r], resample.numbers(a.psis)
    return a


def usage_error(a) -> str | None:
    if not a.runs:
        return "--runs: name at least one run"
    if not a.psis or not all(0 < p <= 1 for p in a.psis):
        return "--psis: give factors above 0 and at most 1, comma-separated (e.g. 1,0.8)"
    if a.n < 50:
        return f"--n {a.n}: draw at least 50 tiles (the judges' folds need them)"
    if a.judge_seeds < 1:
        return f"--judge-seeds {a.judge_seeds}: give at least 1"
    if a.chosen is not None and not 0.1 <= a.chosen <= 1:
        return f"--chosen {a.chosen}: give the smallest factor to try, from 0.1 to 1"
    return None


def tag(psi: float) -> str:
    return f"-psi{psi:g}"


def main(argv=None) -> int:
    a = parse_args(argv)
    tags = [tag(p) for p in a.psis] + (["-chosen"] if a.chosen is not None else [])  # the choice needs the run
    if (why := usage_error(a) or resample.missing(a, tags)) is not None:
        print(f"bench_truncation: {why}", file=sys.stderr)
        return 2
    seeds = tuple(range(a.judge_seeds))
    train, held, ev, rows = resample.judged_setup(a, seeds)
    shown, kept = {}, {}
    for name in a.runs:
        psis = list(a.psis)
        if a.chosen is not None:
            fine.samples(a, name, tag=tag(1.0), seed=7)  # exports the run's bundle
            kept[name] = choice = chosen(a, name)
            print(f"bench_truncation: {name}: a search trial keeps {choice}", flush=True)
            psis += [] if choice["truncation"] in psis else [choice["truncation"]]
        for psi in psis:
            x = fine.samples(a, name, tag=tag(psi), seed=7, synth_args=("--truncation", psi)).astype("float32")
            label = f"{name}, truncation {psi:g}" + (" (kept)" if kept.get(name, {}).get("truncation") == psi else "")
            rows[label] = row = resample.judged_row(x, train, held, ev, seeds)
            shown[f"{name} psi {psi:g}"] = x[:10]
            print(f"bench_truncation: {name} truncation {psi:g}: {row}", flush=True)
    resample.write_tables(a.out, "truncation", rows, {"n": a.n, "judge_seeds": a.judge_seeds, "runs": a.runs,
                                                     **({"kept": kept} if kept else {})})
    figure(shown, a.out / "truncation.png")
    return 0


def chosen(a, name: str) -> dict:
    """The factor a finished search trial of run ``name`` would keep (``search.trainable._judge``): the in-training
    evaluator as a trial builds it, the trial's 1,000 judge latents, its exported (EMA) generator."""
    from mitogan.config import load_config
    from mitogan.export import load_generator
    from mitogan.metrics import InTrainingEvaluator
    from mitogan.tiles import load_tiles
    from mitogan.truncation import choose_truncation, judge_latents

    cfg = load_config(a.work / name / "config.yaml")
    ev = InTrainingEvaluator(load_tiles(a.work / "tiles" / "tiles.npz"), holdout=cfg.train.holdout)
    z = judge_latents(1000, cfg.model.latent_dim, cfg.train.seed)
    return choose_truncation(ev, load_generator(a.work / f"{name}-bundle"), z, a.chosen)


def figure(shown: dict, path: Path) -> None:
    """One row per set of tiles (its label at the left), the tiles side by side, 3x enlarged."""
    import cv2
    import numpy as np

    rows = []
    for name, x in shown.items():
        strip = np.concatenate([np.pad(t[0], 1, constant_values=1) for t in x], 1)
        strip = cv2.resize(((strip + 1) * 127.5).astype(np.uint8), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        label = np.full((strip.shape[0], 150), 255, np.uint8)
        cv2.putText(label, name[:20], (4, strip.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1)
        rows.append(np.concatenate([label, strip], 1))
    width = max(r.shape[1] for r in rows)
    cv2.imwrite(str(path), np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=255)
                                           for r in rows], 0))


if __name__ == "__main__":
    raise SystemExit(main())
