"""The copy test's cost side by side with an earlier revision's: the in-training evaluator per call and the
copy test's second stage alone, the two ``copying.py`` alternating in one process (the machines are noisy).

    python bench/bench_copying_ab.py [--base HEAD] [--repeats 7] [--threads 2]

``--base``: a git revision whose ``mitogan/metrics/copying.py`` is loaded beside the working tree's. Both
evaluators score the same 256 generated tiles (the simulator's, blurred by 0.5 px) against the same real
simulated set (600 tiles); the earlier revision's ``CopyIndex`` and ``PatchIndex`` replace the copy indexes of one of them (their
nulls stay the working tree's), so the primary and the copy share printed should agree. Prints medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _module_at(revision: str):
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:mitogan/metrics/copying.py"],
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp(prefix="copying-ab")) / "copying_base.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("copying_base", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_metrics import _sim

    from mitogan.metrics import InTrainingEvaluator
    from mitogan.metrics.proof import damage

    torch.set_num_threads(args.threads)
    base = _module_at(args.base)
    real = _sim(600, 0)
    fake = np.asarray(damage(_sim(512, 1000).tiles, "blur", 0.5)[:256], np.float32)
    evaluators = {"base": InTrainingEvaluator(real, n_fake=256, cache=False),
                  "tree": InTrainingEvaluator(real, n_fake=256, cache=False)}
    ref = evaluators["base"].reference
    ref._copies = base.CopyIndex(ref.train)
    if hasattr(base, "PatchIndex"):  # the partial-copy index too, around the working tree's null (its state)
        tree_parts = evaluators["tree"].reference.part_copies
        pick = ref.part_copy_tiles
        ref._part_copies = base.PatchIndex(ref.train[pick], ref.copy_groups[pick], state=tree_parts.state())
    calls, stages, out = {k: [] for k in evaluators}, {k: [] for k in evaluators}, {}
    for ev in evaluators.values():
        ev(fake)
    for _ in range(args.repeats):
        for name, ev in evaluators.items():
            t = time.perf_counter()
            out[name] = ev(fake)
            calls[name].append(time.perf_counter() - t)
            t = time.perf_counter()
            ev.reference.copies._rotated_match(fake, None)
            stages[name].append(time.perf_counter() - t)
    n = len(evaluators["tree"].reference.train)
    print(f"{args.base} vs working tree, {args.threads} threads, medians of {args.repeats}, alternating:")
    print(f"  in-training evaluator per call (256 generated): {np.median(calls['base']):.3f} -> "
          f"{np.median(calls['tree']):.3f} s")
    print(f"  second stage alone (256 queries, {n} training tiles): {np.median(stages['base']):.3f} -> "
          f"{np.median(stages['tree']):.3f} s")
    print("  primary", {k: round(v["primary"], 4) for k, v in out.items()},
          "copy share", {k: round(v.get("copy_share", float("nan")), 4) for k, v in out.items()})


if __name__ == "__main__":
    main()
