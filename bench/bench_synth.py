"""Synthetic-dataset throughput: ``mitogan synth`` to PNG files against the bare generator forward pass.

    python bench/bench_synth.py [--n 30000] [--width 32] [--repeats 3] [--quick] [--formats png,tar]

Both sides use the same bundle (a 64 px DCGAN generator), batches of 512 and the same latents; the
"bare" side only runs ``G(z)`` and keeps nothing. Runs alternate (bare, synth, bare, synth, ...) and
medians are reported, so the ratio compares like with like on this noisy shared machine; beside the wall
time, the process's CPU time (on a shared machine the fairer measure: both sides are CPU-bound).
Target: synth >= 0.92x bare throughput (PNG encoding and writing hidden behind generation).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def make_bundle(root: Path, width: int) -> Path:
    """A real bundle from a (2-step) training run of a 64 px DCGAN generator of the given width."""
    from mitogan.config import Config, from_flat
    from mitogan.export import export_bundle
    from mitogan.train import train

    cfg = from_flat(Config, {"model.g_width": width, "model.d_width": 8, "model.latent_dim": 64, "train.steps": 2,
                             "train.batch_size": 8, "train.report_every": 2, "train.checkpoint_every": 2})
    tiles = np.random.default_rng(0).uniform(-1, 1, (16, 1, 64, 64)).astype(np.float32)
    train(cfg, tiles, out_dir=root / "run")
    return export_bundle(root / "run" / "checkpoint.pt", root / "bundle")


def bare(bundle: Path, n: int, batch: int) -> tuple[float, float]:
    """(wall, CPU) seconds to generate n images with G(z) alone (same latents as synth)."""
    from mitogan.export import load_generator, sample_latents

    g = load_generator(bundle)
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for start in range(0, n, batch):
            z = torch.cat([sample_latents(g.config["latent_dim"], 64, 0, start + i) for i in range(0, batch, 64)])
            g(z[: min(batch, n - start)])
    return time.perf_counter() - t0, time.process_time() - c0


def synth(bundle: Path, n: int, batch: int, out: Path, fmt: str = "png") -> tuple[float, float]:
    from mitogan.synth import SynthOptions, synthesize

    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    synthesize(bundle, out, SynthOptions(n=n, batch_size=batch, format=fmt), progress=False)
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=30000)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="5,000 images, 2 repeats")
    ap.add_argument("--formats", default="png", help="comma-separated synth formats to time beside bare G(z), e.g. png,tar")
    args = ap.parse_args()
    if args.quick:
        args.n, args.repeats = 5000, 2
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        bundle = make_bundle(root, args.width)
        formats = args.formats.split(",")
        times = {"bare": [], **{f: [] for f in formats}}
        for _ in range(args.repeats):
            times["bare"].append(bare(bundle, args.n, args.batch))
            for f in formats:
                times[f].append(synth(bundle, args.n, args.batch, root / f, f))
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    print(f"\n{args.n} images of 64x64, generator width {args.width}, batch {args.batch}, "
          f"torch threads {torch.get_num_threads()}, median of {args.repeats}\n")
    print("| path | wall s | images/s | CPU s |\n|---|---:|---:|---:|")
    for k in times:
        print(f"| {'bare G(z)' if k == 'bare' else f'mitogan synth --format {k} + manifest'} | {wall[k]:.1f} | "
              f"{args.n / wall[k]:,.0f} | {cpu[k]:.1f} |")
    for f in formats:
        print(f"\nsynth --format {f} / bare throughput: **{wall['bare'] / wall[f]:.2f}x** wall, "
              f"{cpu['bare'] / cpu[f]:.2f}x CPU (target >= 0.92)")


if __name__ == "__main__":
    main()
