"""Seconds to explain 1,000 64x64 tiles (``mitogan explain``'s pipeline: three attribution methods with
their sanity checks, structures, geometry, feature regression, edits, report files), on the CPU with
``--threads`` torch threads (default 2), median of ``--repeats`` runs.

    python bench/bench_explain.py [--tiles 1000] [--generated 0] [--repeats 3] [--threads 2]

Prints wall seconds and CPU seconds (all threads of this process): on a shared machine the CPU time
compares runs better than the wall time.

The discriminator is the default config's (``mitogan.config.Config().model``) at 64 px with its initial
weights (the cost does not depend on the weights); tiles are simulated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def _tiles(n: int, seed: int) -> np.ndarray:
    from mitogan.explain.validate import simulated_tiles

    out, s = [], seed
    while sum(map(len, out)) < n:
        out.append(simulated_tiles({"bead_prob": 0.3, "branch_prob": 0.3}, videos=2, frames=8, frame_size=256,
                                   tile=64, seed=s))
        s += 1
    return np.concatenate(out)[:n]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=1000)
    ap.add_argument("--generated", type=int, default=0, help="generated tiles explained too (0: real only)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import torch

    from mitogan.config import Config
    from mitogan.explain.pipeline import explain_discriminator
    from mitogan.models import build_discriminator, init_weights

    torch.set_num_threads(a.threads)
    cfg = Config()
    d = build_discriminator(cfg.model, 64)
    init_weights(d, cfg.init.scheme, cfg.init.gain)
    real = _tiles(a.tiles, 0)
    fake = _tiles(a.generated, 100) if a.generated else None
    runs, cpu = [], []
    for _ in range(a.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t, c = time.perf_counter(), time.process_time()
            res = explain_discriminator(d, real, fake, tmp)
            runs.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    s = res["summary"]
    print(f"D: {sum(p.numel() for p in d.parameters()):,} parameters; {len(real)} real + {len(fake) if fake is not None else 0} "
          f"generated {real.shape[-1]} px tiles; torch threads {a.threads}")
    for c in s["sanity"]:
        print(f"  {c['method']:>22s}: {c['seconds']:.1f} s (maps + sanity check), passed={c['passed']}")
    print(f"explain: median {statistics.median(runs):.1f} s over {len(runs)} runs ({', '.join(f'{r:.1f}' for r in runs)}); "
          f"CPU {statistics.median(cpu):.1f} s (all threads; the machine's load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
