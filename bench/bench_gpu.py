"""GPU throughput of MitoGAN's training loop: steps/s, GPU memory and utilisation per precision and per packing.

    python bench/bench_gpu.py                       # the default plan (about 3 min on one GPU)
    python bench/bench_gpu.py --plan quick          # one case per question (about 1 min)
    python bench/bench_gpu.py --device cpu --plan quick --seconds 3    # the same code path on a CPU (a smoke)

Each case trains ``mitogan.train.train`` (the function every trial runs: D and G steps, DiffAugment, EMA,
reports every 50 steps; no run folder, no evaluation) on random tiles for ``--warmup`` + ``--seconds`` of wall
clock, in ``pack`` separate processes started together on the one GPU: what ``mitogan search
--gpus-per-trial 1/pack`` does, since Ray's fractional GPUs only schedule ``pack`` trials onto the same device
(each its own process and CUDA context; nothing is shared between them). Per case it reports the steps/s of
each process after the warm-up (median over processes) and their sum, each process's peak
``torch.cuda.max_memory_allocated``, and ``nvidia-smi``'s GPU utilisation and memory in use, sampled every
0.2 s while all processes were past their warm-up (median of the samples).

Writes --out/gpu.json, gpu.md (the table) and gpu.png (summed steps/s per packing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, arch, tile px, batch, widths, amp dtype or "fp32", channels_last, pack)
PLANS = {
    "default": [
        ("dcgan64-fp32", "dcgan", 64, 64, 32, "fp32", True, 1),
        ("dcgan64-bf16", "dcgan", 64, 64, 32, "bf16", True, 1),
        ("dcgan64-bf16-nchw", "dcgan", 64, 64, 32, "bf16", False, 1),
        ("dcgan64-fp16", "dcgan", 64, 64, 32, "fp16", True, 1),
        ("dcgan64-bf16-x2", "dcgan", 64, 64, 32, "bf16", True, 2),
        ("dcgan64-bf16-x4", "dcgan", 64, 64, 32, "bf16", True, 4),
        ("dcgan64-bf16-x8", "dcgan", 64, 64, 32, "bf16", True, 8),
        ("fastgan256-fp32", "fastgan", 256, 16, 32, "fp32", True, 1),
        ("fastgan256-bf16", "fastgan", 256, 16, 32, "bf16", True, 1),
        ("fastgan256-bf16-x4", "fastgan", 256, 16, 32, "bf16", True, 4),
    ],
    "quick": [
        ("dcgan64-fp32", "dcgan", 64, 64, 32, "fp32", True, 1),
        ("dcgan64-bf16", "dcgan", 64, 64, 32, "bf16", True, 1),
        ("dcgan64-bf16-x4", "dcgan", 64, 64, 32, "bf16", True, 4),
    ],
}
KEYS = ("name", "arch", "size", "batch", "width", "precision", "channels_last", "pack")


def worker(args) -> int:
    """One training process: train() for warm-up + measured seconds; prints one JSON line with its figures."""
    import numpy as np
    import torch

    from mitogan.config import Config, from_flat
    from mitogan.train import train

    c = json.loads(args.worker)
    flat = {"model.arch": c["arch"], "preprocess.tile.size": c["size"], "model.g_width": c["width"],
            "model.d_width": c["width"], "train.batch_size": c["batch"], "train.steps": 10_000_000,
            "train.report_every": 50, "train.sample_every": 10_000_000, "train.checkpoint_every": 10_000_000,
            "train.device": args.device, "train.amp": c["precision"] != "fp32",
            "train.amp_dtype": "fp16" if c["precision"] == "fp16" else "bf16",
            "train.channels_last": c["channels_last"], "train.seed": c.get("seed", 0)}
    if args.device == "cpu":
        flat["train.threads"] = 1
    cfg = from_flat(Config, flat)
    tiles = np.random.default_rng(0).uniform(-1, 1, (512, 1, c["size"], c["size"])).astype(np.float32)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    state = {"n": 0, "start": None, "end": None}  # steps seen; (step, time) at the window's ends
    t0 = time.perf_counter()

    def should_stop():  # called once per generator step; the queue is drained at the window's two ends
        state["n"] += 1
        if state["start"] is None and time.perf_counter() - t0 >= args.warmup:
            sync()
            state["start"] = (state["n"], time.perf_counter())
        if state["start"] is not None and time.perf_counter() - state["start"][1] >= args.seconds:
            sync()
            state["end"] = (state["n"], time.perf_counter())
            return True
        return False

    train(cfg, tiles, should_stop=should_stop)
    (n0, a), (n1, b) = state["start"], state["end"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None
    print(json.dumps({"steps_s": (n1 - n0) / (b - a), "peak_alloc_mib": peak, "steps": n1,
                      "measured_from": a, "measured_to": b}), flush=True)
    return 0


class SmiSampler(threading.Thread):
    """nvidia-smi's GPU utilisation (%) and memory used (MiB) every 0.2 s, with the time of each sample."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self._done = [], threading.Event()

    def run(self):
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._done.is_set():
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.split(",")
                self.samples.append((time.perf_counter(), float(out[0]), float(out[1])))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            self._done.wait(0.2)

    def finish(self):
        self._done.set()
        self.join(timeout=10)


def run_case(case: tuple, args) -> dict:
    """``pack`` worker processes started together; their figures and nvidia-smi's over the common window."""
    c = dict(zip(KEYS, case))
    smi = SmiSampler() if args.device == "cuda" else None
    if smi:
        smi.start()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", json.dumps({**c, "seed": i}), "--device",
                               args.device, "--seconds", str(args.seconds), "--warmup", str(args.warmup)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i in range(c["pack"])]
    outs = [p.communicate() for p in procs]
    if smi:
        smi.finish()
    per, errors = [], []
    for p, (out, err) in zip(procs, outs):
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            errors.append((err.strip().splitlines() or ["no output"])[-1])
        else:
            per.append(json.loads(lines[-1]))
    rec = {**c, "processes_ok": len(per), "errors": errors}
    if per:
        rates = [r["steps_s"] for r in per]
        rec.update(steps_s_median=statistics.median(rates), steps_s_sum=sum(rates),
                   images_s_sum=sum(rates) * c["batch"],
                   peak_alloc_mib_max=max((r["peak_alloc_mib"] or 0) for r in per) or None)
        lo = max(r["measured_from"] for r in per if r["measured_from"])
        hi = min(r["measured_to"] for r in per if r["measured_to"])
        window = [s for s in (smi.samples if smi else []) if lo <= s[0] <= hi]
        if window:
            rec.update(gpu_util_median=statistics.median(s[1] for s in window),
                       gpu_mem_used_mib_median=statistics.median(s[2] for s in window), smi_samples=len(window))
    return rec


def render(results: list, conditions: dict) -> str:
    head = ("| case | arch, px, batch | precision | layout | processes | steps/s each (median) | steps/s together | "
            "images/s together | peak alloc MiB (per process) | GPU util % | GPU mem used MiB |\n"
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for r in results:
        f = lambda k, nd=1: "–" if r.get(k) is None else f"{r[k]:,.{nd}f}"  # noqa: E731
        rows.append(f"| {r['name']} | {r['arch']}, {r['size']}, {r['batch']} | {r['precision']} | "
                    f"{'channels-last' if r['channels_last'] else 'NCHW'} | {r['processes_ok']}/{r['pack']} | "
                    f"{f('steps_s_median')} | {f('steps_s_sum')} | {f('images_s_sum', 0)} | "
                    f"{f('peak_alloc_mib_max', 0)} | {f('gpu_util_median', 0)} | {f('gpu_mem_used_mib_median', 0)} |")
    foot = (f"\n{conditions['device_name']}; torch {conditions['torch']}; {conditions['warmup']:g} s warm-up then "
            f"{conditions['seconds']:g} s measured per case; {conditions['date']}.")
    return "\n".join([head, *rows]) + "\n" + foot + "\n"


def plot(results: list, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for arch in sorted({r["arch"] for r in results}):
        pts = sorted((r["pack"], r["steps_s_sum"]) for r in results if r["arch"] == arch and r.get("steps_s_sum")
                     and r["precision"] == "bf16" and r["channels_last"])
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{arch} (bf16)")
    ax.set_xlabel("trials packed on one GPU (processes)")
    ax.set_ylabel("generator steps/s, all trials together")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", default="default", choices=sorted(PLANS), help="which cases to run")
    p.add_argument("--cases", default=None, help="comma list of case names from the plan (default: all)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cuda, or cpu for a smoke run")
    p.add_argument("--seconds", type=float, default=12.0, help="measured seconds per case, after the warm-up")
    p.add_argument("--warmup", type=float, default=6.0, help="seconds of training before measuring")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu", help="results folder")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: --device cuda: no CUDA GPU visible here (use --device cpu for a smoke run)", file=sys.stderr)
        return 2
    cases = PLANS[args.plan]
    if args.cases:
        want = set(args.cases.split(","))
        unknown = want - {c[0] for c in cases}
        if unknown:
            print(f"bench_gpu: --cases: not in plan {args.plan}: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c[0] in want]
    conditions = {"device_name": torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU",
                  "torch": torch.__version__, "seconds": args.seconds, "warmup": args.warmup,
                  "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        rec = run_case(case, args)
        results.append(rec)
        print(f"bench_gpu: {json.dumps(rec)}", flush=True)
        (args.out / "gpu.json").write_text(json.dumps({"conditions": conditions, "cases": results}, indent=1) + "\n")
    (args.out / "gpu.md").write_text(render(results, conditions))
    plot(results, args.out / "gpu.png")
    print(render(results, conditions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
