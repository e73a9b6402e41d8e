"""What surviving a kill costs: driver kills + ``mitogan search --resume``, and a lost worker node.

    python bench/bench_resume.py [--kills 2] [--trials 3] [--skip-worker]

Real processes only (the search CLI, its local Ray or the two-node stand-in of cluster/local_cluster.py),
on the tiny space of tests/search/resilience.py (3 trials x 60 generator steps, a checkpoint every 10).

(a) "driver": a search runs once uninterrupted (the baseline), then again while its driver and local Ray
    are SIGKILLed by PID ``--kills`` times, each kill followed by ``--resume``; (b) "worker": a search on a
    head + 2 workers loses one worker node (every process of it, SIGKILL) mid-trial.
Each kill comes a random 0..``--jitter`` s after a trial reported a checkpoint, i.e. anywhere in a
checkpoint interval. Reported per scenario: kills survived, trials rerun from scratch (target 0), finished trials that trained
again (target 0), generator steps lost per kill (target <= one checkpoint interval, 10 steps), and the
resume overhead (driver: total wall time of the interrupted search minus the uninterrupted one, and the
time from starting ``--resume`` to the first new result). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.search.resilience import (CHECKPOINT_EVERY, SPACE, check_completed, finished, kill_pids, kill_tree,  # noqa: E402
                                     new_search_args, restarts, rows, run, snapshot, start, wait_for)


def _env(tmp: Path) -> dict:
    return {**os.environ, "TMPDIR": str(tmp), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "MITOGAN_CACHE_DIR": os.environ.get("MITOGAN_CACHE_DIR") or str(tmp / "cache")}


def _running_with_checkpoints(storage, name, since: dict):
    """A trial (not finished) that trained two checkpoint intervals in this attempt of the search."""
    for tid, t in rows(storage, name).items():
        if t and not finished(t) and len(t) > since.get(tid, 0) and \
                t[-1]["step"] - restarts(t)[-1:][0] >= 2 * CHECKPOINT_EVERY:
            return True
    return False


def driver(args, root: Path, env: dict) -> dict:
    space = root / "tiny.yaml"
    space.write_text(SPACE)
    storage = str(root / "runs")
    t0 = time.monotonic()
    out = run(new_search_args(space, storage, "baseline", trials=args.trials), env)
    assert out.returncode == 0, out.stderr[-2000:]
    baseline = time.monotonic() - t0

    t0 = time.monotonic()
    proc = start(new_search_args(space, storage, "killed", trials=args.trials), env)
    to_first = []
    for k in range(args.kills):
        before = {tid: len(r) for tid, r in rows(storage, "killed").items()}
        if k:
            t_resume = time.monotonic()
            wait_for(lambda: any(len(r) > before.get(tid, 0) for tid, r in rows(storage, "killed").items()), 600,
                     proc, "a result after the resume")
            to_first.append(time.monotonic() - t_resume)
        wait_for(lambda: _running_with_checkpoints(storage, "killed", before), 600, proc, "a checkpointed trial")
        time.sleep(random.uniform(0, args.jitter))  # not right after a report: anywhere in a checkpoint interval
        kill_tree(proc)
        at_kill = snapshot(rows(storage, "killed"))
        resume = ["--resume", "killed", "--storage", storage, "-q"]
        if k + 1 < args.kills:
            proc = start(resume, env)
            continue
        out = run(resume, env)
        assert out.returncode == 0, out.stderr[-2000:]
    total = time.monotonic() - t0
    m = check_completed(rows(storage, "killed"), at_kill, trials=args.trials)
    return {"scenario": f"driver SIGKILL x{args.kills} + --resume (local storage)", "kills": args.kills,
            "scratch": m["rerun_from_scratch"], "again": m["finished_ran_again"], "lost": m["steps_lost"],
            "baseline_s": baseline, "total_s": total,
            "to_first_s": to_first}


def worker(args, root: Path, env: dict) -> dict:
    from cluster.local_cluster import LocalCluster, descendants

    space = root / "tiny.yaml"
    space.write_text(SPACE)
    storage = str(root / "runs")
    os.environ.update({k: env[k] for k in ("TMPDIR", "WANDB_MODE", "WANDB_SILENT", "MITOGAN_CACHE_DIR")})
    croot = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    try:
        with LocalCluster(workers=2, head_cpus=0, worker_cpus=1, root=croot) as cluster:
            t0 = time.monotonic()
            proc = start(new_search_args(space, storage, "worker", trials=args.trials,
                                         extra=["--address", cluster.address]), cluster.env)

            def victim():
                nodes = {n: {p.pid} | descendants([p.pid]) for n, p, _ in cluster._procs if n.startswith("worker")}
                for t in rows(storage, "worker").values():
                    if t and not finished(t) and t[-1]["step"] >= 2 * CHECKPOINT_EVERY:
                        for pids in nodes.values():
                            if t[-1].get("pid") in pids:
                                return pids
                return None

            pids = wait_for(victim, 600, proc, "a checkpointed trial on a worker")
            time.sleep(random.uniform(0, args.jitter))
            at_kill = snapshot(rows(storage, "worker"))
            kill_pids(pids)
            _, err = proc.communicate(timeout=900)
            assert proc.returncode == 0, err[-2000:]
            total = time.monotonic() - t0
    finally:
        shutil.rmtree(croot, ignore_errors=True)
    m = check_completed(rows(storage, "worker"), at_kill, trials=args.trials)
    return {"scenario": "worker node SIGKILL (2-node stand-in)", "kills": 1, "scratch": m["rerun_from_scratch"],
            "again": m["finished_ran_again"], "lost": m["steps_lost"], "baseline_s": None, "total_s": total,
            "to_first_s": []}


def _table(rows_: list[dict]) -> str:
    lines = ["| scenario | kills survived | trials rerun from scratch | finished trials trained again | "
             "generator steps lost per kill (checkpoint every 10) | resume overhead |",
             "|---|---|---|---|---|---|"]
    for r in rows_:
        if r["baseline_s"] is not None:
            first = ", ".join(f"{s:.0f}" for s in r["to_first_s"])
            overhead = (f"{r['total_s'] - r['baseline_s']:+.0f} s wall vs uninterrupted ({r['baseline_s']:.0f} s)"
                        + (f"; {first} s from --resume to its first result" if first else ""))
        else:
            overhead = f"search took {r['total_s']:.0f} s in all"
        lines.append(f"| {r['scenario']} | {r['kills']} | {r['scratch']} | {r['again']} | "
                     f"{', '.join(map(str, r['lost'])) or '-'} (max {max(r['lost'], default=0)}) | {overhead} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=2, help="driver kills, each followed by --resume")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--skip-worker", action="store_true", help="only the driver scenario")
    p.add_argument("--jitter", type=float, default=3.0,
                   help="a random 0..JITTER s delay before each kill (a checkpoint interval is ~1-3 s here)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill delays")
    args = p.parse_args(argv)
    random.seed(args.seed)
    root = Path(tempfile.mkdtemp(prefix="mbr", dir="/tmp"))
    env = _env(root)
    try:
        (root / "d").mkdir()
        results = [driver(args, root / "d", env)]
        if not args.skip_worker:
            (root / "w").mkdir()
            results.append(worker(args, root / "w", env))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
