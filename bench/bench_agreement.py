"""Does the primary objective agree with an independent judge? Spearman correlation between ``realism_gap``
and the classifier two-sample test (C2ST) accuracy, and its held-out information (1 - cross-entropy in bits,
which keeps ranking where the accuracy saturates at 1), on real generators (issue 19, item 5):

    python bench/bench_agreement.py run    [--data ../shared/data] [--steps 4000] [--every 250]
    python bench/bench_agreement.py search RUNS/NAME [--data ../shared/data]

``run``: one DCGAN trained on the shared data's training split (the README's real-data settings), judged at
every ``--every`` steps on 512 EMA samples: primary (in-training evaluator) and C2ST against the held-out
tiles, the same samples for both. ``search``: every trial of a finished search, from its last checkpoint
(the trials ASHA stopped included: they are generators too). Prints a markdown table and the correlation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:  # undefined (a judge that saturates): nan, without SciPy's warning
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _tiles(data: Path, cfg):
    from mitogan.io import read_inputs
    from mitogan.preprocess import Pipeline

    return Pipeline(cfg.preprocess).run(read_inputs(data), progress=False)


def run(data: Path, steps: int, every: int, out: Path) -> None:
    from mitogan.config import Config, from_flat
    from mitogan.metrics import InTrainingEvaluator
    from mitogan.metrics.protocol import training_tiles
    from mitogan.train import train

    flat = {"preprocess.tile.size": 32, "preprocess.tile.scale": 0.5, "model.arch": "dcgan", "model.g_width": 16,
            "model.d_width": 16, "model.latent_dim": 32, "train.steps": steps, "train.batch_size": 32,
            "train.report_every": every, "train.eval_every": every, "train.sample_every": steps,
            "train.checkpoint_every": steps, "train.eval_samples": 512, "train.threads": 1, "loss.kind": "hinge"}
    cfg = from_flat(Config, flat)
    tiles = _tiles(data, cfg)
    ev = InTrainingEvaluator(tiles, n_fake=512, holdout=cfg.train.holdout)
    rows = []

    def evaluate(fake):
        t = time.perf_counter()
        values = ev(fake)
        values.update(ev.judge(fake))
        values["seconds"] = time.perf_counter() - t
        rows.append(values)
        return values

    steps_seen = []
    train(cfg, training_tiles(tiles, cfg.train.holdout), out_dir=out, evaluate=evaluate,
          on_report=lambda r: steps_seen.append(int(r["step"])) if "primary" in r else None)
    for r, s in zip(rows, steps_seen):
        r["step"] = s
    _print(rows, "step")
    (out / "agreement.json").write_text(json.dumps(rows, indent=1))


def search(folder: Path, data: Path) -> None:
    import torch

    from mitogan.config import Config, from_flat
    from mitogan.metrics import InTrainingEvaluator
    from mitogan.models import build_generator
    from mitogan.train import load_checkpoint

    rows, evaluators = [], {}
    for ckpt in _last_checkpoints(folder):
        c = load_checkpoint(ckpt)
        cfg = from_flat(Config, c["config"])
        key = json.dumps(c["config"].get("preprocess.tile.size")) + json.dumps(
            {k: v for k, v in c["config"].items() if k.startswith("preprocess.")}, sort_keys=True)
        if key not in evaluators:
            evaluators[key] = InTrainingEvaluator(_tiles(data, cfg), n_fake=512, holdout=cfg.train.holdout)
        ev = evaluators[key]
        g = build_generator(cfg.model, cfg.image_size)
        g.load_state_dict(c["EMA"])
        g.eval()
        z = torch.randn(512, cfg.model.latent_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            fake = g(z).float().numpy()
        if not np.isfinite(fake).all():
            continue
        values = ev(fake)
        values.update(ev.judge(fake))
        trial = ckpt.parent.name if not ckpt.parent.name.startswith("checkpoint_") else ckpt.parent.parent.name
        values.update(trial=trial.split("_")[1] if "_" in trial else trial,
                      step=int(c["step"]))
        rows.append(values)
        print(f"{values['trial']}: step {values['step']} primary {values['primary']:.3f} "
              f"c2st {values['c2st_accuracy']:.3f}", flush=True)
    _print(rows, "trial")
    (folder / "agreement.json").write_text(json.dumps(rows, indent=1))


def _last_checkpoints(folder: Path) -> list[Path]:
    """Each trial's newest checkpoint by training step: the trainer's own ``checkpoint.pt`` (a trial stopped early
    keeps it; its step is read from it) or one of Ray's ``checkpoint_N/checkpoint.pt`` (a finished trial keeps only
    those; the step is in the ``step.json`` beside each), whichever holds the later step. (File times would do
    until a copy or a restore touches a file.)"""
    from mitogan.train import load_checkpoint

    out = []
    for trial in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = []
        for ckpt in [trial / "checkpoint.pt", *trial.glob("checkpoint_*/checkpoint.pt")]:
            if not ckpt.is_file():
                continue
            meta = ckpt.parent / "step.json"
            if ckpt.parent != trial and meta.is_file():
                step = int(json.loads(meta.read_text()).get("step", -1))
            else:
                step = int(load_checkpoint(ckpt)["step"])
            found.append((step, str(ckpt)))
        if found:
            out.append(Path(max(found)[1]))
    return out


def _print(rows, key) -> None:
    print(f"\n| {key} | realism_gap | fidelity | diversity_gap | authenticity_gap | structure_gap | C2ST accuracy ± sd | "
          f"baseline | C2ST information (bits) | baseline |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    num = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        print(f"| {r.get(key)} | {r['primary']:.3f} | {r['fidelity']:.3f} | {r['diversity_gap']:.3f} | "
              f"{r.get('authenticity_gap', 0):.3f} | {r.get('structure_gap', 0):.3f} | "
              f"{r['c2st_accuracy']:.3f} ± {r['c2st_accuracy_sd']:.3f} | "
              f"{r['c2st_baseline']:.3f} | {num(r.get('c2st_information'))} | {num(r.get('c2st_information_baseline'))} |")
    if len(rows) >= 3:
        rho = _spearman([r["primary"] for r in rows], [r["c2st_accuracy"] for r in rows])
        print(f"\nSpearman(realism_gap, C2ST accuracy) over {len(rows)} generators: **{rho:.2f}**")
        if all(r.get("c2st_information") is not None for r in rows):
            rho = _spearman([r["primary"] for r in rows], [r["c2st_information"] for r in rows])
            print(f"Spearman(realism_gap, C2ST information) over {len(rows)} generators: **{rho:.2f}** "
                  f"(still ranks where the accuracy saturates at 1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--every", type=int, default=250)
    r.add_argument("--out", type=Path, default=ROOT / "runs" / "agreement-run")
    s = sub.add_parser("search")
    s.add_argument("folder", type=Path)
    s.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    a = ap.parse_args()
    if a.cmd == "run":
        a.out.mkdir(parents=True, exist_ok=True)
        run(a.data, a.steps, a.every, a.out)
    else:
        search(a.folder, a.data)


if __name__ == "__main__":
    main()
