"""Importance resampling of a trained generator's samples: does it bring them nearer held-out real tiles?

    python bench/bench_resample.py --runs fine-s0,fine-s1          # runs of bench_fine_detail.py (--work)

Likelihood-free importance weighting (Grover et al., NeurIPS 2019; the rejection form: Azadi et al., ICLR 2019):
draw K x N candidates from the exported generator, train a small CNN to tell the *training* split from the
candidates, and read its logit as a density ratio, w = p_train(x) / p_gen(x) = exp(logit) (balanced batches).
Draw N candidates without replacement with probability ∝ w^alpha (logits clipped to ±5): alpha = 0 is the
generator as it is, 1 the full correction. The CNN is cross-fitted (two halves of the candidates: each half is
weighted by a CNN that never saw it), so a candidate is not preferred for having been fitted. The held-out split
is used only to judge, never to weight.

Judged as bench_fine_detail.py judges (C2ST against the training and the held-out split, the dark detail against
held-out, 2 CNN seeds), plus the same C2ST with a CNN of twice the width (a judge other than the weighting CNN's
architecture), and the in-training evaluator's primary, copy share and diversity gap on the selected tiles, and
their mean pairwise correlation (a resampler that prefers one template would raise it).

Writes --out/resample.json and resample.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_fine_detail as fine  # noqa: E402  (the runs, the split and the judge of that bench)

CAP = 5.0  # |logit| clip: a weight at most e^5 ≈ 150 times another's


def judged_parser(doc: str, out: str, n_help: str) -> argparse.ArgumentParser:
    """The options every bench that judges samples of bench_fine_detail.py's runs takes (--work, --runs, --n, --out
    under bench/results, --no-baseline)."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-fine")
    p.add_argument("--runs", default="fine-s0,fine-s1", help="finished runs in --work (bench_fine_detail.py)")
    p.add_argument("--n", type=int, default=1000, help=n_help)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / out)
    p.add_argument("--no-baseline", action="store_true", help="skip the real baseline row (another process has it)")
    return p


def numbers(text: str) -> list[float]:
    """'1,0.8' -> [1.0, 0.8]; [] when any part is not a number (the caller's check then names the option)."""
    try:
        return [float(x) for x in text.split(",") if x]
    except ValueError:
        return []


def parse_args(argv=None) -> argparse.Namespace:
    p = judged_parser(__doc__, "resample", "tiles kept")
    p.add_argument("--k", type=int, default=6, help="candidates per kept tile")
    p.add_argument("--alphas", default="0,0.5,1")
    p.add_argument("--batches", type=int, default=600, help="the weighting CNN's training batches (per half)")
    a = p.parse_args(argv)
    a.runs, a.alphas = [r for r in a.runs.split(",") if r], numbers(a.alphas)
    return a


def usage_error(a) -> str | None:
    """One line naming the option out of range, or None."""
    if not a.runs:
        return "--runs: name at least one run"
    if not a.alphas or not all(0 <= x <= 10 for x in a.alphas):
        return "--alphas: give exponents from 0 (as drawn) to 10, comma-separated (e.g. 0,0.5,1)"
    for flag, value, low in (("--n", a.n, 50), ("--k", a.k, 1), ("--batches", a.batches, 1)):
        if value < low:
            return f"{flag} {value}: give at least {low}"
    return None


def candidates(a, name: str) -> np.ndarray:
    """K x N tiles of a run (bench_fine_detail's export and synth, latent seed 7, kept in <name>-synth-k<K>)."""
    return fine.samples(a, name, n=a.n * a.k, tag=f"-k{a.k}", seed=7).astype(np.float32)


def ratio_logits(cand: np.ndarray, train: np.ndarray, batches: int, seed: int = 0) -> np.ndarray:
    """Per candidate, the logit of a CNN (the C2ST's, ``c2st.train_classifier``) trained on training tiles (1) vs
    the *other* half of the candidates (0) in balanced batches of 32 + 32: log p_train / p_gen up to a constant."""
    import torch

    from mitogan.metrics import c2st

    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(cand))
    halves = (perm[: len(perm) // 2], perm[len(perm) // 2:])
    out = np.zeros(len(cand), np.float32)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    real = c2st._as_input(train)
    for h in (0, 1):
        fake = c2st._as_input(cand[halves[1 - h]])
        y = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))])
        net = c2st.train_classifier(torch.cat([real, fake]), y, batches, 64, gen, balanced=True)
        out[halves[h]] = c2st.logits_of(net, c2st._as_input(cand[halves[h]])).numpy()
    return out


def pick(logits: np.ndarray, n: int, alpha: float, seed: int = 0) -> np.ndarray:
    w = np.exp(alpha * np.clip(logits, -CAP, CAP))
    return np.random.default_rng(seed).choice(len(logits), n, replace=False, p=w / w.sum())


def wide_judge(fake, held, seeds=(0, 1)) -> list:
    """The C2ST against held-out with a CNN of twice the width (another architecture than the weighting one)."""
    from mitogan.metrics import c2st

    wide = tuple(2 * w for w in c2st._WIDTHS)
    acc = [c2st.c2st_accuracy(fake, held, seed=s, widths=wide)["accuracy"] for s in seeds]
    return [round(float(np.mean(acc)), 3), round(float(np.std(acc)), 3)]


def missing(a, tags=None) -> str | None:
    """One line naming what --work lacks (the tiles, or a run that was never trained and whose samples, the
    folders ``<run>-synth<tag>``, were not drawn either), or None when everything is there."""
    tags = [f"-k{a.k}"] if tags is None else tags
    tiles = a.work / "tiles" / "tiles.npz"
    if not tiles.is_file():
        return f"{tiles} not found: train the runs first (python bench/bench_fine_detail.py --train-only --work {a.work})"
    for name in a.runs:
        drawn = all((a.work / f"{name}-synth{t}" / "images.npy").is_file() for t in tags)
        if not (a.work / name / "metrics.jsonl").is_file() and not drawn:
            return (f"run {a.work / name} not found or never trained: train it with bench/bench_fine_detail.py "
                    f"--train-only --work {a.work} (runs are named <config>-s<seed>), or pass --runs")
    return None


def main(argv=None) -> int:
    a = parse_args(argv)
    if (why := usage_error(a) or missing(a)) is not None:
        print(f"bench_resample: {why}", file=sys.stderr)
        return 2
    train, held, ev, rows = judged_setup(a)
    for name in a.runs:
        cand = candidates(a, name)
        t = time.perf_counter()
        logits = ratio_logits(cand, train, a.batches)
        print(f"bench_resample: {name}: {len(cand)} candidates weighted in {time.perf_counter() - t:.0f} s; logit "
              f"mean {logits.mean():.2f} sd {logits.std():.2f}", flush=True)
        for alpha in a.alphas:
            row = judged_row(cand[pick(logits, a.n, alpha)], train, held, ev)
            rows[f"{name}, alpha {alpha:g}"] = row
            print(f"bench_resample: {name} alpha {alpha:g}: {row}", flush=True)
    write_tables(a.out, "resample", rows, {"n": a.n, "k": a.k, "batches": a.batches})
    return 0


COLUMNS = ("vs_train", "vs_held", "wide_vs_held", "dark_vs_held", "floorless", "primary", "copy_share",
           "diversity_gap", "pair_corr")


def judged_setup(a, seeds=(0, 1)) -> tuple:
    """(training tiles, held-out tiles, the in-training evaluator for --n tiles, the rows so far: the baseline row
    unless --no-baseline) of --work's tiles, split as `mitogan train` splits them; torch on one thread."""
    import torch

    from mitogan.metrics import InTrainingEvaluator
    from mitogan.tiles import load_tiles

    torch.set_num_threads(1)
    tiles = a.work / "tiles" / "tiles.npz"
    _, train, held = fine.real_split(tiles)
    ev = InTrainingEvaluator(load_tiles(tiles), n_fake=a.n, holdout=0.25)
    rows = {} if a.no_baseline else {"real: training vs held-out (the baseline)": baseline_row(train, held, seeds)}
    return train, held, ev, rows


def baseline_row(train: np.ndarray, held: np.ndarray, seeds=(0, 1)) -> dict:
    """The training split in a generator's place: what ``judged_row``'s columns read for real tiles."""
    from mitogan.metrics.distances import mean_pairwise_correlation

    base = fine.score(train, held, what=("vs_train", "dark_vs_train"), seeds=seeds)
    return {"vs_held": base["vs_train"], "dark_vs_held": base["dark_vs_train"], "floorless": fine.floorless(held),
            "wide_vs_held": wide_judge(train, held, seeds),
            "pair_corr": round(float(mean_pairwise_correlation(held[:500])), 3)}


def judged_row(fake: np.ndarray, train: np.ndarray, held: np.ndarray, ev, seeds=(0, 1)) -> dict:
    """``COLUMNS`` for a set of generated tiles: the C2ST against both splits (and with the wider CNN against
    held-out), the dark detail, the in-training evaluator's primary, copy share and diversity gap, and the
    tiles' mean pairwise correlation (a sampler that prefers one template raises it)."""
    from mitogan.metrics.distances import mean_pairwise_correlation

    row = fine.score(fake, train, held, what=("vs_train", "vs_held", "dark_vs_held"), seeds=seeds)
    row["wide_vs_held"] = wide_judge(fake, held, seeds)
    e = ev(fake)
    row.update({k: round(e[k], 3) for k in ("primary", "copy_share", "diversity_gap") if k in e})
    row["pair_corr"] = round(float(mean_pairwise_correlation(fake[:500])), 3)
    return row


def write_tables(out: Path, name: str, rows: dict, meta: dict) -> None:
    """``out/<name>.json`` (``meta`` and the rows) and ``out/<name>.md`` (a Markdown table of ``COLUMNS``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
    md = ["| set | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for key, row in rows.items():
        md.append(f"| {key} | " + " | ".join(
            "" if row.get(c) is None else (f"{row[c][0]:.3f} ± {row[c][1]:.3f}" if isinstance(row[c], list)
                                           else f"{row[c]}") for c in COLUMNS) + " |")
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    raise SystemExit(main())
