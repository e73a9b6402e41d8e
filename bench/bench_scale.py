"""How the search's own cost grows with the number of trials, against two bare peers running the same trials.

    python bench/bench_scale.py [--trials 50 200] [--arms mitogan,mitogan-nowandb,ray,optuna] [--out DIR]
    python bench/bench_scale.py --searchers 1000      # suggestion latency of the two Optuna searchers alone
    python bench/bench_scale.py --wandb-logger 50     # what the W&B logger costs Ray's result loop
    python bench/bench_scale.py --trials 50 --arms mitogan --tracemalloc 1   # what the driver's heap gains

Arms, each in its own process (that process is "the driver"), on the cheapest trials the code allows
(a tiny space: 32 px, widths 8, 20 generator steps, one evaluation, no C2ST; built-in data, 2 videos):

    mitogan          ``run_search`` (Ray Tune + MitoGAN's Optuna searcher + ASHA + stopper), W&B offline
    mitogan-nowandb  the same without W&B
    mitogan-cold     ``mitogan`` with every trial in a fresh worker process (``--cold-trials``; before warm trials)
    mitogan-random   ``mitogan`` with Optuna's random sampler (constant cost per suggestion, unlike TPE's)
    ray              plain Ray Tune: ``ray.tune.search.optuna.OptunaSearch`` (TPE, same define-by-run space)
                     + ``ASHAScheduler``, the same trainable (``search.trainable.make_trainable``)
    optuna           a plain Optuna loop (TPE + SuccessiveHalvingPruner, one trial at a time: the trainer's
                     plots are not thread-safe) calling the same training function in-process
                     (``mitogan.train.train`` with the in-training evaluator)

Measured: wall time; the driver's CPU seconds per ended trial in windows of ended trials (flat = the driver's
cost does not grow with the search); the driver's RSS and its growth per trial (slope over the second
half); the peak RSS of the whole process tree (driver + Ray's processes + trial workers); files per trial
in the output folder (links included: W&B links each run to its service's log); "wrap-up", the seconds from the last trial's end to the driver's return (report,
export, W&B flush). Writes ``scale.json``, ``scale.png`` (driver CPU per trial by window) and ``scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARMS = ("mitogan", "mitogan-nowandb", "mitogan-cold", "mitogan-random", "ray", "optuna")
STEPS = 20
FIXED = {"preprocess.tile.size": 32, "preprocess.tile.scale": 0.5, "model.arch": "dcgan", "model.g_width": 8,
         "model.d_width": 8, "model.latent_dim": 16, "train.batch_size": 16, "train.threads": 1,
         "train.steps": STEPS, "train.report_every": 10, "train.eval_every": STEPS, "train.sample_every": STEPS,
         "train.checkpoint_every": STEPS, "train.eval_samples": 64, "train.judge_samples": 0}
PARAMS = """
  - {name: loss.kind, type: categorical, choices: [bce, hinge, wgan_gp]}
  - {name: loss.gp_lambda, type: float, low: 1.0, high: 20.0, log: true, when: {loss.kind: wgan_gp}}
  - {name: init.scheme, type: categorical, choices: [dcgan_normal, xavier_uniform, orthogonal]}
  - {name: optim.lr_g, type: float, low: 5.0e-5, high: 1.0e-3, log: true}
  - {name: optim.lr_d, type: float, low: 5.0e-5, high: 1.0e-3, log: true}
  - {name: augment.p, type: float, low: 0.3, high: 1.0}
"""
SIM = {"videos": 2, "frames": 8}
CONCURRENT = 2


def space_file(folder: Path) -> Path:
    lines = ["name: scale", "fixed:"] + [f"  {k}: {v}" for k, v in FIXED.items()] + ["params:", PARAMS.strip("\n")]
    path = folder / "scale.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- in the arm's process (driver)
class Sampler(threading.Thread):
    """Every ``period`` s: (seconds, driver CPU s, driver RSS MB, trials ended) into ``self.rows``."""

    def __init__(self, ended, period: float = 0.5):
        super().__init__(daemon=True)
        self.ended, self.period, self.rows, self.t0 = ended, period, [], time.monotonic()
        self.stop = threading.Event()

    def sample(self) -> None:
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        self.rows.append((time.monotonic() - self.t0, time.process_time(), rss, self.ended()))

    def run(self) -> None:
        while not self.stop.wait(self.period):
            self.sample()
            self.trace()

    def trace(self) -> None:
        """With ``--tracemalloc``: what the driver's Python heap gained between the middle and the last
        trial's end, by line (top 25, to stderr: the arm's log)."""
        import tracemalloc

        if not tracemalloc.is_tracing() or self.rows[-1][3] < getattr(self, "next_at", 0):
            return
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if getattr(self, "first", None) is None:
            self.first, self.first_n, self.next_at = snap, self.rows[-1][3], self.total
            return
        grown = self.rows[-1][3] - self.first_n
        print(f"tracemalloc: {grown} trials ended between the snapshots; top growth by line:", file=sys.stderr)
        for stat in snap.compare_to(self.first, "lineno")[:25]:
            print(f"  {stat}", file=sys.stderr)
        sys.stderr.flush()
        self.next_at = float("inf")


class JournalCount:
    """Trials an Optuna journal file says have ended (COMPLETE, PRUNED or FAIL), read incrementally."""

    def __init__(self, path: Path):
        self.path, self.offset, self.n = path, 0, 0

    def __call__(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:
            return self.n
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        for line in chunk[:end].splitlines():
            if b'"op_code":6' in line and any(s in line for s in (b'"state":1', b'"state":2', b'"state":3')):
                self.n += 1
        return self.n


def _videos():
    from mitogan.io import read_inputs
    from mitogan.simulate import default_dataset

    return read_inputs([default_dataset(**SIM, progress=False)])


def arm_mitogan(n: int, out: Path, wandb: bool, counter: dict, warm: bool = True, sampler: str = "tpe") -> float:
    from search.run import SearchOptions, run_search

    counter["fn"] = JournalCount(out / "scale" / "optuna.log")
    run_search(SearchOptions(space=str(space_file(out)), trials=n, max_concurrent=CONCURRENT, storage=str(out),
                             name="scale", sim_videos=SIM["videos"], sim_frames=SIM["frames"], grace_steps=10,
                             wandb=wandb, progress=False, reuse_actors=warm, sampler=sampler))
    return time.monotonic()


def arm_ray(n: int, out: Path, counter: dict) -> float:
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from search.space import load_space
    from search.trainable import make_trainable

    space = load_space(space_file(out))
    ended = {"n": 0}

    class Count(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            ended["n"] += 1

        def on_trial_error(self, iteration, trials, trial, **info):
            ended["n"] += 1

    counter["fn"] = lambda: ended["n"]
    videos = _videos()
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    searcher = OptunaSearch(space=space.define, metric="primary", mode="min",
                            sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    tuner = tune.Tuner(
        make_trainable(videos=videos, fixed=space.fixed, cpus=1, gpus=0),
        tune_config=tune.TuneConfig(metric="primary", mode="min", num_samples=n,
                                    search_alg=ConcurrencyLimiter(searcher, max_concurrent=CONCURRENT),
                                    scheduler=ASHAScheduler(time_attr="step", max_t=STEPS + 1, grace_period=10,
                                                            reduction_factor=3)),
        run_config=tune.RunConfig(name="scale", storage_path=str(out), verbose=0, callbacks=[Count()]))
    tuner.fit()
    done = time.monotonic()
    ray.shutdown()
    return done


def arm_optuna(n: int, out: Path, counter: dict) -> float:
    import optuna

    from mitogan.config import Config, from_flat
    from mitogan.metrics import InTrainingEvaluator
    from mitogan.metrics.protocol import training_tiles
    from mitogan.preprocess import Pipeline
    from mitogan.train import train
    from search.space import load_space

    space, videos = load_space(space_file(out)), _videos()
    optuna.logging.set_verbosity(optuna.logging.ERROR)

    def objective(trial) -> float:
        space.define(trial)
        cfg = from_flat(Config, {**space.fixed, **trial.params})
        tiles = Pipeline(cfg.preprocess).run(videos, progress=False)
        evaluator = InTrainingEvaluator(tiles, holdout=cfg.train.holdout)
        state = {"primary": None, "prune": False}

        def on_report(report) -> None:
            if report.get("primary") is not None:
                state["primary"] = float(report["primary"])
                trial.report(state["primary"], int(report["step"]))
                state["prune"] = trial.should_prune()

        train(cfg, training_tiles(tiles, cfg.train.holdout), out_dir=out / f"trial_{trial.number}",
              on_report=on_report, should_stop=lambda: state["prune"], evaluate=evaluator)
        if state["prune"]:
            raise optuna.TrialPruned()
        return state["primary"] if state["primary"] is not None else 1e9

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=10, reduction_factor=3),
                                storage=optuna.storages.JournalStorage(
                                    optuna.storages.journal.JournalFileBackend(str(out / "optuna.log"))))
    counter["fn"] = lambda: sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    study.optimize(objective, n_trials=n)
    return time.monotonic()


def run_arm(arm: str, n: int, out: Path, events: Path) -> None:
    """One arm in this process; writes its samples and timings to ``events`` (JSON)."""
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    counter: dict = {"fn": lambda: 0}
    sampler = Sampler(lambda: counter["fn"]())
    if os.environ.get("BENCH_TRACEMALLOC"):  # --tracemalloc: snapshots at half and all of the trials ended
        import tracemalloc

        tracemalloc.start(int(os.environ["BENCH_TRACEMALLOC"]))
        sampler.next_at, sampler.total = n // 2, n
    t0 = time.monotonic()
    sampler.start()
    if arm.startswith("mitogan"):
        done = arm_mitogan(n, out, arm != "mitogan-nowandb", counter, warm=arm != "mitogan-cold",
                           sampler="random" if arm == "mitogan-random" else "tpe")
    elif arm == "ray":
        done = arm_ray(n, out, counter)
    else:
        done = arm_optuna(n, out, counter)
    sampler.stop.set()
    sampler.sample()
    rows = sampler.rows
    last_end = next((r[0] for r in rows if r[3] >= n), rows[-1][0])
    events.write_text(json.dumps({"arm": arm, "trials": n, "wall": done - t0, "rows": rows,
                                  "wrap_up": max(0.0, (done - sampler.t0) - last_end)}))


# --------------------------------------------------------------------------------------- the parent
def _tree_rss(pid: int) -> float:
    """RSS in MB of ``pid`` and every process below it."""
    from cluster.local_cluster import descendants

    total = 0
    for p in {pid} | descendants([pid]):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure(arm: str, n: int, root: Path) -> dict:
    out = root / f"{arm}-{n}"
    out.mkdir(parents=True, exist_ok=True)
    events = root / f"{arm}-{n}.json"
    # a short TMPDIR of its own: Ray's socket paths must stay short, and W&B leaves folders there
    env = {**os.environ, "WANDB_DIR": str(out), "TMPDIR": tempfile.mkdtemp(prefix="bs", dir="/tmp"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, __file__, "--_arm", arm, "--trials", str(n), "--dir", str(out),
                             "--events", str(events)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(root / f"{arm}-{n}.log", "wb"))
    peak, loads = 0.0, []
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        loads.append(os.getloadavg()[0])  # a shared machine: the load the arm ran under
        time.sleep(1.0)
    if proc.returncode:
        raise SystemExit(f"arm {arm} ({n} trials) failed: see {root / f'{arm}-{n}.log'}")
    res = json.loads(events.read_text())
    res["tree_peak_mb"] = peak
    events.write_text(json.dumps(res))
    files = sum(len(f) for _, _, f in os.walk(out))
    load = sorted(loads) or [os.getloadavg()[0]]
    return {**summarise(res, peak, files), **state_and_files(out, n),
            "load_avg_1min": [round(load[0], 1), round(load[len(load) // 2], 1), round(load[-1], 1)]}


def state_and_files(out: Path, n: int) -> dict:
    """Ray's experiment state (its newest file: re-encoded and rewritten on every save) in KB per trial, and
    the files per trial by kind: inside the trial folders (by name, trial ids dropped) and the rest."""
    import re
    from collections import Counter

    states = sorted(out.rglob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    kinds: Counter = Counter()
    for path in out.rglob("*"):
        if path.is_file():
            rel = path.relative_to(out).as_posix()
            m = re.search(r"(?:^|/)trial_[^/]+/(.*)$", rel)
            kind = "(W&B offline runs)" if "/wandb/" in f"/{rel}" else "(elsewhere)"
            kinds[re.sub(r"\d+", "N", m.group(1)) if m else kind] += 1
    return {"state_kb_per_trial": round(states[-1].stat().st_size / 1024 / n, 1) if states else None,
            "files_by_kind_per_trial": {k: round(v / n, 2) for k, v in kinds.most_common()}}


def summarise(res: dict, tree_peak: float, files: int) -> dict:
    import numpy as np

    rows, n = np.array(res["rows"]), res["trials"]
    t, cpu, rss, ended = rows.T
    window = max(10, n // 4)
    per_window = []
    # driver CPU per trial between trial ends: the first window starts at the first trial's end (start-up,
    # Ray and data before it are not per-trial costs), so it holds window - 1 trials
    for k in range(window, n + 1, window):
        lo = max(1, k - window)
        i0, i1 = np.searchsorted(ended, lo), min(np.searchsorted(ended, k), len(cpu) - 1)
        per_window.append(float((cpu[i1] - cpu[i0]) / (k - lo)))
    # memory growth while trials run: the second half of the trial ends, before the wrap-up (report, export)
    half = (ended >= n / 2) & (np.arange(len(ended)) <= np.searchsorted(ended, n))
    slope = float(np.polyfit(ended[half], rss[half], 1)[0]) if half.sum() > 3 and np.ptp(ended[half]) > 0 else None
    return {"arm": res["arm"], "trials": n, "wall_s": round(res["wall"], 1), "window": window,
            "driver_cpu_per_trial": [round(v, 3) for v in per_window], "driver_cpu_s": round(float(cpu[-1]), 1),
            "driver_rss_mb": [round(float(rss[0]), 0), round(float(rss.max()), 0)],
            "driver_mb_per_trial": None if slope is None else round(slope, 3),
            "tree_peak_mb": round(tree_peak, 0), "files_per_trial": round(files / n, 1),
            "wrap_up_s": round(res["wrap_up"], 1), "load_avg_1min_end": round(os.getloadavg()[0], 1)}


def searcher_latency(n: int) -> dict:
    """Seconds per ``suggest`` of MitoGAN's searcher and of Ray's OptunaSearch over ``n`` trials with made-up
    results (no training): the searchers alone, same space, same TPE settings, same results. The two advance
    in lockstep (trial i of one, then trial i of the other, in alternating order), so a load that comes
    and goes on a shared machine hits both alike."""
    import statistics

    import numpy as np
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from search.searcher import OptunaAskTell, sampler_spec
    from search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    space = load_space(space_file(Path(tempfile.mkdtemp(prefix="bench-scale-"))))
    searchers = {"mitogan": OptunaAskTell(space.define, metric="primary", mode="min", study_name="lat",
                                          sampler=sampler_spec("tpe", 0, n_startup_trials=5)),
                 "ray": OptunaSearch(space=space.define, metric="primary", mode="min",
                                     sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))}
    lat: dict[str, list[float]] = {name: [] for name in searchers}
    values = np.random.default_rng(0).uniform(size=n)
    for i in range(n):
        for name in (sorted(searchers) if i % 2 else sorted(searchers, reverse=True)):
            s = searchers[name]
            t = time.perf_counter()
            s.suggest(f"t{i}")
            lat[name].append(time.perf_counter() - t)
            s.on_trial_complete(f"t{i}", {"primary": float(values[i]), "step": STEPS, "stop_reason": "",
                                          "finished": 1, "training_iteration": 2})
    out = {}
    for name, ms in lat.items():
        tail = ms[-min(100, n):]
        out[name] = {"median_ms_last100": round(statistics.median(tail) * 1e3, 1),
                     "median_ms_first100": round(statistics.median(ms[:100]) * 1e3, 1)}
        print(f"{name}: {out[name]}", flush=True)
    out["ratio_last100"] = round(out["mitogan"]["median_ms_last100"] / out["ray"]["median_ms_last100"], 2)
    out["ratio_of_paired_last100"] = round(statistics.median(
        a / b for a, b in zip(lat["mitogan"][-min(100, n):], lat["ray"][-min(100, n):])), 2)
    out["load_avg_1min_end"] = round(os.getloadavg()[0], 1)
    return out


def wandb_logger_cost(n: int) -> dict:
    """The W&B logger alone, fed what Ray would feed it for ``n`` trials (3 results each, a 256 px sample grid
    on each, then the trial's end): seconds the callbacks hold the driver's thread (Ray's result loop waits
    that long), and the seconds ``on_experiment_end`` then needs to finish the runs. Offline W&B."""
    from dataclasses import dataclass, field

    import numpy as np

    import mitogan.metrics  # noqa: F401  (imported by a search's driver long before; not W&B's cost)
    import search.report  # noqa: F401
    from mitogan.viz import save_image_grid
    from search.wandb_log import WandbSearchLogger

    @dataclass
    class Trial:  # what the logger reads of ray.tune.experiment.Trial
        trial_id: str
        config: dict
        local_path: str
        path: str | None = None
        last_result: dict = field(default_factory=dict)
        status: str = "TERMINATED"

    root = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))
    os.environ.update(WANDB_MODE="offline", TMPDIR=str(root))
    grid = np.random.default_rng(0).uniform(-1, 1, (64, 1, 32, 32)).astype(np.float32)
    logger = WandbSearchLogger(search_name="lat", space_name="scale", fixed={}, wandb_dir=root)
    trials, held = [], []
    for i in range(n):
        t = Trial(f"t{i:04d}", {"loss.kind": "hinge", "optim.lr_g": 1e-4 * (1 + i % 7)}, str(root / f"trial_{i}"))
        trials.append(t)
        save_image_grid(grid, Path(t.local_path) / "samples" / "step_000020.png")
        c0 = time.perf_counter()
        for step in (10, 20, 20):
            r = {"step": step, "primary": 0.5, "fidelity": 0.3, "diversity_gap": 0.1, "loss_d": 1.0, "loss_g": 2.0,
                 "samples_png": "samples/step_000020.png" if step == 20 else None, "finished": int(step == 20)}
            t.last_result = r
            logger.on_trial_result(0, trials, t, r)
        logger.on_trial_complete(0, trials, t)
        held.append(time.perf_counter() - c0)
    t0 = time.perf_counter()
    logger.on_experiment_end(trials)
    end = time.perf_counter() - t0
    out = {"trials": n, "held_ms_per_trial_median": round(float(np.median(held)) * 1e3, 1),
           "held_ms_p90": round(float(np.percentile(held, 90)) * 1e3, 1), "held_ms_max": round(max(held) * 1e3, 1),
           "held_s_total": round(float(np.sum(held)), 2), "experiment_end_s": round(end, 2),
           "cpu_s": round(time.process_time(), 2)}
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out), flush=True)
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for r in results:
        if r["arm"] == "optuna":
            continue  # its "driver" trains the trials too: not a driver's cost
        xs = [r["window"] * (i + 1) for i in range(len(r["driver_cpu_per_trial"]))]
        ax.plot(xs, r["driver_cpu_per_trial"], marker="o", label=f"{r['arm']} ({r['trials']} trials)")
    ax.set_xlabel("trials ended")
    ax.set_ylabel("driver CPU s per trial (window)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: list[dict]) -> str:
    head = ("| arm | trials | wall s | driver CPU s/trial by window | driver RSS MB (start→max) | MB/trial | "
            "tree peak MB | state KB/trial | files/trial | wrap-up s | load avg (min/median/max) | code |\n"
            "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|---|\n")

    def row(r: dict) -> str:
        name = r["arm"] + (" (trains in-process)" if r["arm"] == "optuna" else "")
        load = "/".join(f"{v:g}" for v in r["load_avg_1min"]) if r.get("load_avg_1min") else \
            f"{r.get('load_avg_1min_end', '?')} (end)"
        return (f"| {name} | {r['trials']} | {r['wall_s']} | {', '.join(f'{v:.2f}' for v in r['driver_cpu_per_trial'])} | "
                f"{r['driver_rss_mb'][0]:.0f}→{r['driver_rss_mb'][1]:.0f} | {r['driver_mb_per_trial']} | "
                f"{r['tree_peak_mb']:.0f} | {r.get('state_kb_per_trial') or '–'} | {r['files_per_trial']} | "
                f"{r['wrap_up_s']} | {load} | {r.get('code', '?')} |\n")

    return head + "".join(row(r) for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale"))
    ap.add_argument("--searchers", type=int, default=0, help="only the searchers' suggestion latency, N trials")
    ap.add_argument("--wandb-logger", type=int, default=0, help="only the W&B logger's cost, N synthetic trials")
    ap.add_argument("--resummarise", action="store_true", help="recompute OUT/scale.* from the raw samples kept there")
    ap.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                    help="trace the driver's Python allocations (slows it); growth by line in OUT/../ARM-N.log")
    ap.add_argument("--_arm")
    ap.add_argument("--dir")
    ap.add_argument("--events")
    a = ap.parse_args()
    if a._arm:
        return run_arm(a._arm, a.trials[0], Path(a.dir), Path(a.events))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.wandb_logger:
        return wandb_logger_cost(a.wandb_logger)
    if a.resummarise:
        old = json.loads((out / "scale.json").read_text())
        results = [summarise(json.loads((out / f"{r['arm']}-{r['trials']}.events.json").read_text()),
                             r["tree_peak_mb"], round(r["files_per_trial"] * r["trials"])) for r in old]
        for r, o in zip(results, old):  # what the raw samples do not hold: kept from the first summary
            r.update({k: o[k] for k in ("load_avg_1min_end", "load_avg_1min", "state_kb_per_trial",
                                        "files_by_kind_per_trial", "code") if k in o})
        return finish(results, out)
    if a.searchers:
        res = searcher_latency(a.searchers)
        (out / f"searchers-{a.searchers}.json").write_text(json.dumps(res, indent=1))
        return
    if a.tracemalloc:
        os.environ["BENCH_TRACEMALLOC"] = str(a.tracemalloc)
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    print(f"arms' folders and logs: {work}", flush=True)
    runs = [(arm, n) for n in a.trials for arm in a.arms.split(",")]
    old = json.loads((out / "scale.json").read_text()) if (out / "scale.json").is_file() else []
    results = [r for r in old if (r["arm"], r["trials"]) not in runs]  # earlier arms kept, these replaced
    for n in a.trials:
        for arm in a.arms.split(","):
            r = {**measure(arm, n, work), "code": _code()}
            shutil.copy2(work / f"{arm}-{n}.json", out / f"{arm}-{n}.events.json")  # raw samples: re-summarise
            results.append(r)
            print(json.dumps(r), flush=True)
            (out / "scale.json").write_text(json.dumps(results, indent=1))
    finish(results, out)


def _code() -> str:
    """The commit the arms ran (with "+changes" when the checkout differed from it)."""
    if os.environ.get("BENCH_CODE_LABEL"):  # a copy of another commit's tree (no git there): what it is
        return os.environ["BENCH_CODE_LABEL"]

    def git(*args) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+changes" if git("status", "--porcelain", "search", "mitogan") else "")


def finish(results: list[dict], out: Path) -> None:
    (out / "scale.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "scale.png")
    (out / "scale.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
