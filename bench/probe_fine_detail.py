"""Where in a generated tile the classifier finds its fine-detail tell: probes of runs made by bench_fine_detail.

    python bench/probe_fine_detail.py --runs fine-s0,fine-s1        # after bench/bench_fine_detail.py

Each probe is a C2ST (`mitogan.metrics.c2st.c2st_accuracy`, its default budget, seed 0) of the run's generated
tiles (its `-synth` folder in --work) against the held-out split, next to the same probe with the training split
in the generator's place (the baseline), on the same view of both sides:

    range         the fine detail (tile less its σ 1 px blur) only where the blurred tile is dark (< -0.8), mid
                  (-0.8 to -0.2) or bright (>= -0.2), zero elsewhere
    kind          tiles with a black floor (>= 1 % of pixels at -1: the clipped movies) or without (the noisy
                  backgrounds), whole and dark detail
    dihedral      the fine detail with every tile of both sides turned and flipped at random (orientation gone)
    masked        the fine detail after white noise of sd 0.01, 0.03, 0.1 on both sides (how faint the tell is)
    batch norm    whole tiles as exported (batch norm in eval mode) and drawn again with it in training mode,
                  batches of 32 (the run re-exported to --work/<run>-probe-bundle); no baseline

Writes --out/probes.md and probes.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench folder: its sibling script's helpers
from bench_fine_detail import blur, real_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RANGES = {"dark": (-9.0, -0.8), "mid": (-0.8, -0.2), "bright": (-0.2, 9.0)}
MASKS = (0.01, 0.03, 0.1)


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-fine", help="bench_fine_detail's --work")
    p.add_argument("--runs", default="fine-s0", help="comma-separated run names in --work (each with its -synth)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fine-detail-probes")
    a = p.parse_args(argv)
    a.runs = [r for r in a.runs.split(",") if r]
    if not a.runs:
        raise UsageError("--runs: name at least one run of --work, e.g. fine-s0")
    if not (a.work / "tiles" / "tiles.npz").is_file():
        raise UsageError(f"--work {a.work}: no tiles/tiles.npz (run bench/bench_fine_detail.py first)")
    for r in a.runs:
        if not (a.work / f"{r}-synth" / "images.npy").is_file():
            raise UsageError(f"--runs {r}: no {a.work / (r + '-synth') / 'images.npy'} (score it with "
                             "bench/bench_fine_detail.py first)")
    return a


def detail(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(blur σ 1 px, the tile less it)."""
    b = blur(x)
    return b, (x - b).astype(np.float32)


def in_range(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    b, d = detail(x)
    return np.where((b >= lo) & (b < hi), d, 0.0).astype(np.float32)


def floored(x: np.ndarray) -> np.ndarray:
    """Per tile: at least 1 % of its pixels at the black floor."""
    return (x <= -0.999).reshape(len(x), -1).mean(axis=1) >= 0.01


def dihedral(x: np.ndarray, rng) -> np.ndarray:
    k, flip = rng.integers(4, size=len(x)), rng.integers(2, size=len(x)).astype(bool)
    out = np.stack([np.rot90(t, int(j), axes=(-2, -1)) for t, j in zip(x, k)])
    out[flip] = out[flip][..., ::-1]
    return np.ascontiguousarray(out)


def probes(fake: np.ndarray, train: np.ndarray, held: np.ndarray, extra=None) -> dict:
    """{probe: [generated vs held-out, training vs held-out]}; ``extra``: {probe: generated tiles} scored whole."""
    from mitogan.metrics.c2st import c2st_accuracy

    def pair(view, f=fake, t=train, h=held):
        h = view(h)  # the held-out side's view once, for both comparisons
        return [round(float(c2st_accuracy(view(s), h, seed=0)["accuracy"]), 3) for s in (f, t)]

    out = {f"range {n}": pair(lambda x, r=r: in_range(x, *r)) for n, r in RANGES.items()}
    for kind, want in (("floor", True), ("noisy", False)):
        f, t, h = (x[floored(x) == want] for x in (fake, train, held))
        if min(len(f), len(t), len(h)) >= 20:
            out[f"kind {kind}, whole"] = pair(lambda x: x, f, t, h)
            out[f"kind {kind}, dark detail"] = pair(lambda x: in_range(x, *RANGES["dark"]), f, t, h)
    rng = np.random.default_rng(0)
    out["dihedral, detail"] = pair(lambda x: detail(dihedral(x, rng))[1])
    for sd in MASKS:
        noise = np.random.default_rng(1)
        out[f"masked sd {sd}, detail"] = pair(lambda x, sd=sd: detail(
            (x + sd * noise.standard_normal(x.shape)).astype(np.float32))[1])
    for name, x in (extra or {}).items():
        out[name] = [round(float(c2st_accuracy(x, held, seed=0)["accuracy"]), 3), None]
    return out


def bn_train_tiles(work: Path, run: str, n: int) -> np.ndarray:
    """``n`` tiles of the run's exported generator with batch norm in training mode (batches of 32)."""
    import torch

    from mitogan.export import load_generator

    bundle = work / f"{run}-probe-bundle"
    if not (bundle / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "mitogan", "export", str(work / run), "--out", str(bundle),
                        "--overwrite", "--allow-incomplete", "--allow-copying", "-q"], check=True)
    g = load_generator(bundle)
    z = torch.randn(n, g.config["latent_dim"], generator=torch.Generator().manual_seed(0))
    g.train()
    with torch.no_grad():
        return torch.cat([g(z[i:i + 32]) for i in range(0, n, 32)]).numpy().astype(np.float32)


def table(rows: dict) -> str:
    first = next(iter(rows.values()))  # its probes name the rows, its baselines fill the last column
    lines = ["| probe (C2ST vs held-out ↓) | " + " | ".join(rows) + " | training in its place (baseline) |",
             "|" + "---|" * (len(rows) + 2)]
    for p in first:
        base = first[p][1]
        cells = [f"{r[p][0]:.3f}" if p in r else "" for r in rows.values()]
        lines.append(f"| {p} | " + " | ".join(cells) + f" | {'' if base is None else f'{base:.3f}'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
    except UsageError as e:
        print(f"probe_fine_detail: error: {e}", file=sys.stderr)
        return 2
    sp, train, held = real_split(a.work / "tiles" / "tiles.npz")
    rows = {}
    for r in a.runs:
        fake = np.load(a.work / f"{r}-synth" / "images.npy").astype(np.float32).reshape(-1, *train.shape[1:])
        extra = {"whole (batch norm in eval mode, as exported)": fake,
                 "whole, batch norm in training mode": bn_train_tiles(a.work, r, len(fake))}
        rows[r] = probes(fake, train, held, extra)
        print(f"probe_fine_detail: {r} {rows[r]}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "probes.json").write_text(json.dumps({"split": sp.describe(), "rows": rows}, indent=1) + "\n")
    (a.out / "probes.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
