"""FastGAN against DCGAN: training steps per second on this CPU at 32 and 64 px, with parameter counts.

    python bench/bench_fastgan.py [--sizes 32,64] [--steps 40] [--batch 32] [--threads 1] [--repeats 2]

Each row is the real ``train()`` loop (D step with DiffAugment and, for fastgan, its reconstruction decoders;
G step; EMA) on random tiles, one report at the end; the best of ``--repeats`` runs is kept (the machine's
cores are shared). "per CPU-s" divides by the process's CPU time instead: with one thread it is what an
idle core would give, whatever else the machine runs. ``--models`` lists arch:g_width:d_width; the defaults pair each FastGAN with a DCGAN of
the same widths and with one of similar parameter count. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mitogan.config import Config, from_flat
from mitogan.models import build_discriminator, build_generator, count_params
from mitogan.train import train

MODELS = "dcgan:16:16,dcgan:32:32,fastgan:8:8,fastgan:16:16"


def _cfg(arch: str, gw: int, dw: int, size: int, args) -> Config:
    return from_flat(Config, {"model.arch": arch, "model.g_width": gw, "model.d_width": dw, "model.latent_dim": 32,
                              "preprocess.tile.size": size, "train.batch_size": args.batch,
                              "train.steps": args.steps, "train.report_every": args.steps,
                              "train.sample_every": args.steps, "train.n_samples": 16,
                              "train.threads": args.threads, "train.device": "cpu"})


def steps_per_s(cfg: Config, tiles: np.ndarray, repeats: int) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process), best of ``repeats``."""
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        train(cfg, tiles)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return cfg.train.steps / wall, cfg.train.steps / cpu


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="32,64")
    p.add_argument("--models", default=MODELS, help="comma-separated arch:g_width:d_width")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, {args.steps} steps per run, "
          f"best of {args.repeats}\n")
    print("| size | arch | widths G/D | params G / D | it/s (wall) | it/s (per CPU-s) |")
    print("|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        tiles = np.random.default_rng(0).uniform(-1, 1, (256, 1, size, size)).astype(np.float32)
        for spec in args.models.split(","):
            arch, gw, dw = spec.split(":")
            cfg = _cfg(arch, int(gw), int(dw), size, args)
            g, d = build_generator(cfg.model, size), build_discriminator(cfg.model, size)
            wall, cpu = steps_per_s(cfg, tiles, args.repeats)
            print(f"| {size} | {arch} | {gw}/{dw} | {count_params(g) / 1e3:.0f} k / {count_params(d) / 1e3:.0f} k "
                  f"| {wall:.1f} | {cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
