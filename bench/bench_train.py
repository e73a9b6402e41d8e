"""Training throughput per architecture at 64 px, and the overhead of ``train()`` over a bare loop.

    python bench/bench_train.py [--steps 60] [--size 64] [--width 32] [--batch 64] [--repeats 2]

Prints a markdown table. "bare" is a hand-written loop doing the same math as one ``train()`` step
(D step and G step through DiffAugment, BCE loss, Adam, EMA update) with no hooks; "train()" is the real
function with reports every 50 steps (grad norms, accumulators, EMA samples and diversity). The cost of
one checkpoint step (checkpoint file, sample grid, plots, metrics line) is timed on its own and amortised
over 500 steps, the default cadence, for the last column. Bare and train() runs alternate and the best of
``--repeats`` is kept, to damp noise from other processes (this machine's 2 cores are shared).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np
import torch

from mitogan import losses
from mitogan.augment import diff_augment
from mitogan.config import Config, from_flat
from mitogan.models import build_discriminator, build_generator, count_params, init_weights
from mitogan.train import train


def _cfg(arch: str, args) -> Config:
    return from_flat(Config, {"model.arch": arch, "preprocess.tile.size": args.size, "model.g_width": args.width,
                              "model.d_width": args.width, "train.batch_size": args.batch,
                              "train.steps": args.steps, "train.report_every": 50, "train.sample_every": 500,
                              "train.checkpoint_every": 500})


def bare_loop(cfg: Config, data: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` D+G steps of a hand-written loop of the same model (no hooks, no metrics)."""
    t0 = time.perf_counter()  # set-up included, as in train()
    torch.manual_seed(0)
    G = init_weights(build_generator(cfg.model, cfg.image_size), cfg.init.scheme, cfg.init.gain)
    D = init_weights(build_discriminator(cfg.model, cfg.image_size), cfg.init.scheme, cfg.init.gain)
    ema = copy.deepcopy(G).eval().requires_grad_(False)
    og = torch.optim.Adam(G.parameters(), cfg.optim.lr_g, betas=(cfg.optim.beta1, cfg.optim.beta2))
    od = torch.optim.Adam(D.parameters(), cfg.optim.lr_d, betas=(cfg.optim.beta1, cfg.optim.beta2))
    b, z_dim = cfg.train.batch_size, cfg.model.latent_dim
    for step in range(steps):
        real = data[torch.randint(len(data), (b,))]
        with torch.no_grad():
            fake = G(torch.randn(b, z_dim))
        loss = losses.d_loss("bce", D(diff_augment(real, cfg.augment)), D(diff_augment(fake, cfg.augment)))
        od.zero_grad(set_to_none=True)
        loss.backward()
        od.step()
        D.requires_grad_(False)
        loss = losses.g_loss("bce", D(diff_augment(G(torch.randn(b, z_dim)), cfg.augment)))
        og.zero_grad(set_to_none=True)
        loss.backward()
        og.step()
        D.requires_grad_(True)
        with torch.no_grad():
            d = min(cfg.train.ema_decay, (1.0 + step) / (10.0 + step))
            torch._foreach_lerp_(list(ema.parameters()), list(G.parameters()), 1.0 - d)
            for be, bg in zip(ema.buffers(), G.buffers()):
                be.copy_(bg)
    return time.perf_counter() - t0


def train_loop(cfg: Config, tiles: np.ndarray) -> float:
    """Seconds for ``train()`` without a run folder: the loop with its reports every 50 steps."""
    t0 = time.perf_counter()
    train(cfg, tiles)
    return time.perf_counter() - t0


def checkpoint_cost(cfg: Config, tiles: np.ndarray) -> float:
    """Seconds that one checkpoint step adds (checkpoint file, sample grid, plots, metrics line)."""
    with tempfile.TemporaryDirectory() as out:
        quiet = from_flat(Config, {"train.steps": 1, "train.report_every": 1}, base=cfg)
        t0 = time.perf_counter()
        train(quiet, tiles)  # a 1-step run without files ...
        t1 = time.perf_counter()
        train(quiet, tiles, out_dir=out)  # ... and with every file written once (imports already warm)
        t2 = time.perf_counter()
        train(quiet, tiles, out_dir=out)
        t3 = time.perf_counter()
    return max(0.0, min(t2 - t1, t3 - t2) - (t1 - t0))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60, help="steps per timed run")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--archs", default="dcgan,resnet")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    tiles = rng.uniform(-1, 1, (512, 1, args.size, args.size)).astype(np.float32)
    data = torch.from_numpy(tiles)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.size}px, widths {args.width}, "
          f"batch {args.batch}, {args.steps} steps per run, best of {args.repeats}\n")
    print("| arch | params G / D | bare loop it/s | train() it/s | loop overhead | one checkpoint step (s) "
          "| overhead, checkpoints every 500 |")
    print("|---|---|---|---|---|---|---|")
    for arch in args.archs.split(","):
        cfg = _cfg(arch, args)
        g, d = build_generator(cfg.model, args.size), build_discriminator(cfg.model, args.size)
        bare_loop(cfg, data, 2)  # warm-up: first-call allocations and kernel selection
        bare, full = [], []
        for _ in range(args.repeats):  # alternate, so both see the same background load
            bare.append(bare_loop(cfg, data, args.steps))
            full.append(train_loop(cfg, tiles))
        tb, tf = min(bare), min(full)
        ck = checkpoint_cost(cfg, tiles)
        loop = (tf - tb) / tb
        total = loop + ck / (500 * tb / args.steps)
        print(f"| {arch} | {count_params(g) / 1e6:.2f} M / {count_params(d) / 1e6:.2f} M | {args.steps / tb:.2f} "
              f"| {args.steps / tf:.2f} | {100 * loop:+.1f}% | {ck:.2f} | {100 * total:+.1f}% |", flush=True)


if __name__ == "__main__":
    main()
