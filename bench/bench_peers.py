"""Side by side with the peers: MitoGAN against the generators a user would otherwise run, on the same real tiles,
the same wall-clock budget each, scored by one function (`mitogan evaluate`).

    python bench/bench_peers.py --budget-min 20                  # the CPU peers (issue 20 suggests 20 min each)
    python bench/bench_peers.py --budget-min 20 --device cuda    # also lightweight-gan and stylegan2-pytorch

On a GPU machine with no package index (the lent device machine): install the peers' wheels into one
site folder, then train there and score anywhere (scoring is CPU work):

    python bench/bench_peers.py --device cuda --stage train --peer-python python3 --parallel \
        --peers lightweight-gan,stylegan2,dcgan-story,fastgan --work WORK --budget-min 2
    python bench/bench_peers.py --stage score --work WORK --out bench/results/peers-gpu --peers ...

Every peer trains on the training split of one tiles file (``mitogan preprocess`` of --data with the story's
preprocessing: normalise only, 32 px tiles of half-scale frames; ``mitogan.metrics.protocol.split_real``, twin
videos kept together) and is scored against the held-out split of the same file:

    ddpm            denoising-diffusion-pytorch 2.3.4 (Unet + GaussianDiffusion, DDIM sampling) in its own venv
                    (bench/peers/setup.sh), trained for the budget by bench/peers/ddpm_driver.py
    dcgan-story     `mitogan train` of the README real-data story's best DCGAN (bench/peers/dcgan-story.yaml)
    dcgan-fine      the same with the generator's fine-detail knobs (noise inputs, clipped output, resize
                    upsampling: model.g_noise, model.g_output, model.g_upsample)
    fastgan         `mitogan train` with the fastgan family's defaults (32 px like the others)
    search-fewshot  `mitogan search --space fewshot --time-budget`: trials start until the budget less one
                    trial's expected time is spent, so the last one ends within it; its best exported
    lightweight-gan, stylegan2   (--device cuda only) their own CLIs; they assert a CUDA GPU at import

The `mitogan train` peers are stopped by SIGTERM when the budget is spent (they save a checkpoint and exit) and
exported with --allow-incomplete. Results: --out/peers.json, peers.md (the table) and grid_<peer>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEERS_DIR = ROOT / "bench" / "peers"
MITOGAN = [sys.executable, "-m", "mitogan"]
CPU_PEERS = ("ddpm", "dcgan-story", "dcgan-fine", "fastgan", "search-fewshot")
CUDA_PEERS = ("lightweight-gan", "stylegan2")
LABELS = {"ddpm": "denoising-diffusion-pytorch 2.3.4 (diffusion)",
          "dcgan-story": "MitoGAN `train`, the story's DCGAN",
          "dcgan-fine": "MitoGAN `train`, the story's DCGAN with the fine-detail knobs",
          "fastgan": "MitoGAN `train`, fastgan defaults",
          "search-fewshot": "MitoGAN `search --space fewshot`, its best",
          "lightweight-gan": "lightweight-gan 1.2.1 (FastGAN)",
          "stylegan2": "stylegan2-pytorch 1.9.0"}


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


@dataclass
class Args:
    budget_min: float = 20.0  # training wall clock per peer, minutes (the search: its whole run)
    n: int = 1000  # generated tiles per peer, all scored
    device: str = "cpu"  # cpu: the CPU peers; cuda: also lightweight-gan and stylegan2-pytorch
    peers: list = field(default_factory=lambda: list(CPU_PEERS))
    data: Path = ROOT.parent / "shared" / "data"  # the real movies
    out: Path = ROOT / "bench" / "results" / "peers"  # peers.json, peers.md, grids (committed)
    work: Path = ROOT / "runs" / "bench-peers"  # tiles, runs, samples, evaluations (not committed)
    threads: int = 1  # torch threads of every single-run peer (the search: --search-concurrent 1-thread trials)
    ddpm_dim: int = 32  # Unet base width
    ddpm_sampling_steps: int = 50  # DDIM steps of 1000
    # minutes per fewshot trial here (warm trials, quiet 2 cores: 24 in 13.8 min): the search's --time-budget is
    # the budget less this, so the trial running when it is spent ends within the budget
    search_trial_min: float = 2.5
    search_concurrent: int = 1  # fewshot trials at once (each on one thread)
    search_set: list = field(default_factory=list)  # KEY=VALUE changes to the fewshot space's fixed keys
    stage: str = "all"  # all; train (train and generate, records in --work); score (score what train left)
    peer_python: str | None = None  # run the venv-less peers with this interpreter (their wheels installed)
    parallel: bool = False  # train the peers at the same time (one GPU shared), not one after another


def parse_args(argv=None) -> Args:
    d = Args()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget-min", type=float, default=d.budget_min, help="training wall clock per peer (min)")
    p.add_argument("-n", "--n", type=int, default=d.n, help="generated tiles per peer")
    p.add_argument("--device", default=d.device, help="cpu, or cuda to add the GPU-only peers")
    p.add_argument("--peers", default=None, help=f"comma list (default: {','.join(CPU_PEERS)}, + the GPU ones "
                                                "with --device cuda)")
    p.add_argument("--data", type=Path, default=d.data, help="real movies (default: ../shared/data)")
    p.add_argument("--out", type=Path, default=d.out, help="results folder")
    p.add_argument("--work", type=Path, default=d.work, help="scratch folder (tiles, runs, samples)")
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads per single-run peer")
    p.add_argument("--ddpm-dim", type=int, default=d.ddpm_dim, help="diffusion Unet base width")
    p.add_argument("--ddpm-sampling-steps", type=int, default=d.ddpm_sampling_steps, help="DDIM sampling steps")
    p.add_argument("--stage", default=d.stage, choices=("all", "train", "score"),
                   help="train: train and generate only (records in --work); score: score what train left")
    p.add_argument("--peer-python", default=None,
                   help="interpreter that already has the GPU peers installed (no venv is made)")
    p.add_argument("--parallel", action="store_true", help="train the peers at the same time")
    p.add_argument("--search-trial-min", type=float, default=d.search_trial_min,
                   help="expected minutes per fewshot trial (the search's --time-budget is the budget less this)")
    p.add_argument("--search-concurrent", type=int, default=d.search_concurrent,
                   help="fewshot trials at once, each on one thread (default 1: one at a time)")
    p.add_argument("--search-set", action="append", default=[], metavar="KEY=VALUE",
                   help="change a fixed key of the fewshot space for the search, e.g. train.steps=1200 (repeatable)")
    ns = p.parse_args(argv)
    a = Args(**{k: v for k, v in vars(ns).items() if k != "peers"})
    a.peers = _peers(ns.peers, a.device, scoring_only=a.stage == "score")
    _check(a)
    return a


def _peers(text, device: str, scoring_only: bool = False) -> list:
    if device not in ("cpu", "cuda"):
        raise UsageError(f"--device: give cpu or cuda, not {device!r}")
    if text is None:
        return list(CPU_PEERS) + (list(CUDA_PEERS) if device == "cuda" else [])
    peers = [t.strip() for t in text.split(",") if t.strip()]
    for name in peers:
        if name not in CPU_PEERS + CUDA_PEERS:
            raise UsageError(f"--peers: unknown peer {name!r} (known: {', '.join(CPU_PEERS + CUDA_PEERS)})")
        if name in CUDA_PEERS and device != "cuda" and not scoring_only:
            raise UsageError(f"--peers: {name} asserts a CUDA GPU at import; run it with --device cuda")
    return peers


def _check(a: Args) -> None:
    for name, value, low in (("--budget-min", a.budget_min, 0.1), ("--n", a.n, 100), ("--threads", a.threads, 1),
                             ("--ddpm-dim", a.ddpm_dim, 8), ("--ddpm-sampling-steps", a.ddpm_sampling_steps, 1),
                             ("--search-trial-min", a.search_trial_min, 0.1),
                             ("--search-concurrent", a.search_concurrent, 1)):
        if not value >= low:  # also refuses NaN
            raise UsageError(f"{name}: give at least {low}, not {value}")
    if not a.peers:
        raise UsageError("--peers: name at least one peer")
    for item in a.search_set:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"--search-set {item!r}: give KEY=VALUE, e.g. train.steps=1200")


def require_cuda(device: str) -> None:
    """--device cuda on a machine without a CUDA GPU stops before anything is installed or trained."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU visible here (lightweight-gan and stylegan2-pytorch need one)")


def search_budget_s(budget_min: float, trial_min: float) -> int:
    """The fewshot search's --time-budget in seconds: the budget less one trial's expected time (no trial starts
    after it), at least one trial's time. The search is stopped at the budget itself, as every peer is: a trial
    still running then does not count."""
    return round(max(trial_min, budget_min - trial_min) * 60)


SEARCH_MAX_TRIALS = 10_000  # --trials of the fewshot search: the time budget ends it long before


# ---------------------------------------------------------------- running things


def _run(cmd, log: Path, timeout_s: float | None = None, env=None, clock_from: Path | None = None) -> dict:
    """Run ``cmd`` with output to ``log``; on timeout send SIGTERM (MitoGAN saves and stops) and wait for it.
    With ``clock_from``, the timeout counts from when that file appears (training starts), not from launch.
    Returns wall and child CPU seconds, the seconds before the clock started, exit status and whether the
    budget stopped it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    cpu0, t0 = _child_cpu(), time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        while clock_from is not None and not clock_from.exists() and proc.poll() is None:
            time.sleep(0.5)
        setup_s, stopped = time.monotonic() - t0, False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stopped = True
            proc.send_signal(signal.SIGTERM)  # the process only: MitoGAN's handler stops Ray's own processes
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:  # it did not stop: end its whole group
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {"wall_s": round(time.monotonic() - t0, 1), "cpu_s": round(_child_cpu() - cpu0, 1),
            "setup_s": round(setup_s, 1), "rc": proc.returncode, "stopped_at_budget": stopped}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for descendants only (Ray workers: partly)
    return r.ru_utime + r.ru_stime


def _checked(step: dict, what: str, ok=(0,)) -> dict:
    if step["rc"] not in ok:
        raise RuntimeError(f"{what} exited with status {step['rc']} (log in the work folder)")
    return step


def prepare_tiles(a: Args) -> tuple[Path, Path, dict]:
    """The one tiles file every peer uses, and its training split as .npy for the peers outside MitoGAN."""
    from mitogan.metrics.protocol import split_real
    from mitogan.tiles import load_tiles

    tiles_dir = a.work / "tiles"
    if not (tiles_dir / "tiles.npz").is_file():
        _checked(_run([*MITOGAN, "preprocess", a.data, "--config", PEERS_DIR / "dcgan-story.yaml", "--out",
                       tiles_dir, "-q"], a.work / "logs" / "preprocess.log"), "mitogan preprocess")
    ts = load_tiles(tiles_dir / "tiles.npz")
    # the split `mitogan train` (train.holdout 0.25) and `mitogan evaluate` (--holdout 0.25, --seed 0) make
    sp = split_real(ts.source, ts.frame, 0.25, 0, tiles=ts.tiles)
    train_npy = a.work / "train.npy"
    np.save(train_npy, np.asarray(ts.tiles, np.float32)[sp.train])
    np.save(a.work / "heldout.npy", np.asarray(ts.tiles, np.float32)[sp.heldout])  # for the real grid beside theirs
    return tiles_dir / "tiles.npz", train_npy, {**sp.describe(), "tile_px": int(ts.tiles.shape[-1])}


# ---------------------------------------------------------------- the peers: each returns (fake tiles path, record)


def peer_ddpm(a: Args, train_npy: Path) -> tuple[Path, dict]:
    venv_py = ROOT / "bench" / ".venv-ddpm" / "bin" / "python"
    if not venv_py.is_file():
        _checked(_run(["bash", PEERS_DIR / "setup.sh", "ddpm"], a.work / "logs" / "setup-ddpm.log"), "setup.sh")
    out = a.work / "ddpm"
    step = _checked(_run([venv_py, PEERS_DIR / "ddpm_driver.py", "--train", train_npy, "--out", out,
                          "--budget-s", a.budget_min * 60, "--n", a.n, "--dim", a.ddpm_dim,
                          "--sampling-steps", a.ddpm_sampling_steps, "--threads", a.threads],
                         a.work / "logs" / "ddpm.log"), "the diffusion driver")
    info = json.loads((out / "ddpm.json").read_text())
    return out / "samples.npy", {**step, "train_s": info["train_s"], "sample_s": info["sample_s"],
                                 "steps": info["steps"], "params": info["params"],
                                 "setting": f"Unet dim {a.ddpm_dim}, mults 1-2-4, batch 16, lr 1e-4, EMA; "
                                            f"{a.ddpm_sampling_steps} DDIM steps"}


def _train_export_synth(a: Args, name: str, tiles: Path, sets: list) -> tuple[Path, dict]:
    """`mitogan train` stopped at the budget, `export --allow-incomplete`, `synth -n N --format npy`."""
    run, logs = a.work / name, a.work / "logs"
    if run.exists():  # a fresh folder, so that the run writes in place and data.json marks the start
        import shutil

        shutil.rmtree(run)
    cmd = [*MITOGAN, "train", "--data", tiles, "--out", run, "-q",
           "--set", "train.steps=10000000", "--set", f"train.threads={a.threads}"]  # the budget stops it
    for s in sets:
        cmd += ["--set", s] if "=" in str(s) else ["--config", s]
    # the clock starts at data.json, written once the held-out reference is built, as training begins
    step = _checked(_run(cmd, logs / f"{name}-train.log", timeout_s=a.budget_min * 60, clock_from=run / "data.json"),
                    "mitogan train", ok=(0, 143))
    steps = _last_step(run / "metrics.jsonl")
    t0 = time.monotonic()
    _checked(_run([*MITOGAN, "export", run, "--out", a.work / f"{name}-bundle", "--overwrite", "--allow-incomplete",
                   "--allow-copying", "-q"], logs / f"{name}-export.log"), "mitogan export")
    fake = _synth(a, a.work / f"{name}-bundle", a.work / f"{name}-synth", logs / f"{name}-synth.log")
    return fake, {**step, "train_s": round(step["wall_s"] - step["setup_s"], 1),
                  "sample_s": round(time.monotonic() - t0, 1), "steps": steps}


def _synth(a: Args, bundle: Path, out: Path, log: Path) -> Path:
    # no --reference: no novelty filter, so every peer's samples are scored as they came out
    _checked(_run([*MITOGAN, "synth", bundle, "-n", a.n, "--format", "npy", "--out", out, "--overwrite", "-q"],
                  log), "mitogan synth")
    return out


def _last_step(metrics_jsonl: Path):
    steps = [json.loads(line).get("step") for line in metrics_jsonl.read_text().splitlines() if line.strip()]
    steps = [s for s in steps if isinstance(s, int)]
    return max(steps) if steps else None


def peer_dcgan_story(a: Args, tiles: Path) -> tuple[Path, dict]:
    fake, rec = _train_export_synth(a, "dcgan-story", tiles, [PEERS_DIR / "dcgan-story.yaml"])
    return fake, {**rec, "setting": "DCGAN 16/16 ch, hinge, SN-D, RMSprop; the story's best trial, 32 px"}


FINE_DETAIL = ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize"]


def peer_dcgan_fine(a: Args, tiles: Path) -> tuple[Path, dict]:
    fake, rec = _train_export_synth(a, "dcgan-fine", tiles, [PEERS_DIR / "dcgan-story.yaml", *FINE_DETAIL])
    return fake, {**rec, "setting": "the story's DCGAN with noise inputs, the clipped output and resize "
                                    "upsampling, 32 px"}


def peer_fastgan(a: Args, tiles: Path) -> tuple[Path, dict]:
    # the defaults, at the tile size of the shared tiles file (32 px tiles of half-scale frames)
    sets = ["model.arch=fastgan", "preprocess.tile.size=32", "preprocess.tile.scale=0.5"]
    fake, rec = _train_export_synth(a, "fastgan", tiles, sets)
    return fake, {**rec, "setting": "fastgan, every other key at its default (widths 32, batch 64), 32 px"}


def peer_search(a: Args, tiles: Path) -> tuple[Path, dict]:
    """The fewshot search on the raw movies (its preprocessing is part of what it searches), --search-concurrent
    trials at a time until its time budget is spent; stopped by SIGTERM (state saved) at the budget."""
    storage, budget_s = a.work / "search", search_budget_s(a.budget_min, a.search_trial_min)
    cmd = [*MITOGAN, "search", "--data", a.data, "--space", "fewshot", "--trials", SEARCH_MAX_TRIALS,
           "--time-budget", f"{budget_s}s", "--max-concurrent", a.search_concurrent, "--storage", storage,
           "--name", "fewshot", "--no-wandb", "--seed", 0, "-q", *[x for kv in a.search_set for x in ("--set", kv)]]
    if (storage / "fewshot").exists():
        import shutil

        shutil.rmtree(storage / "fewshot")
    # stopped at the budget (SIGTERM: the search saves its state and exits 143) like every other peer; what finished
    # by then is what it has
    step = _checked(_run(cmd, a.work / "logs" / "search.log", timeout_s=a.budget_min * 60), "mitogan search",
                    ok=(0, 143))
    best = storage / "fewshot" / "best"
    if not (best / "config.json").is_file():  # stopped early, or the export refused: the best finished trial
        _checked(_run([*MITOGAN, "export", storage / "fewshot", "--out", best, "--overwrite", "--allow-copying",
                       "-q"], a.work / "logs" / "search-export.log"), "mitogan export")
    t0 = time.monotonic()
    fake = _synth(a, best, a.work / "search-synth", a.work / "logs" / "search-synth.log")
    trial_cfg = json.loads((best / "config.json").read_text())
    # Ray's trial workers are not this process's children: their CPU time is not in getrusage, only the driver's
    step = {**step, "driver_cpu_s": step["cpu_s"], "cpu_s": None}
    launch = json.loads((storage / "fewshot" / "search.json").read_text())
    trials = launch.get("trials_ended", "?")
    return fake, {**step, "train_s": step["wall_s"], "sample_s": round(time.monotonic() - t0, 1), "trials": trials,
                  "setting": f"{trials} trials of up to {_search_steps(a)} steps (ASHA stops the worse earlier), "
                             f"{a.search_concurrent} at a time, --time-budget {budget_s}s; best: "
                             f"{_describe_best(trial_cfg)}"}


def _search_steps(a: Args) -> int:
    """train.steps of the fewshot search's trials: --search-set's, else the space's own."""
    import yaml

    given = dict(kv.split("=", 1) for kv in a.search_set)
    if "train.steps" in given:
        return int(given["train.steps"])
    return int(yaml.safe_load((ROOT / "search" / "spaces" / "fewshot.yaml").read_text())["fixed"]["train.steps"])


def _describe_best(bundle_cfg: dict) -> str:
    """One line on the search's best trial from its bundle's config.json (flat dotted trial config)."""
    t = bundle_cfg.get("trial_config", {})
    return (f"{t.get('model.arch', '?')} {t.get('model.g_width', '?')}/{t.get('model.d_width', '?')} ch, "
            f"{t.get('loss.kind', '?')}, denoise {'on' if t.get('preprocess.denoise.enabled') else 'off'}, "
            f"step {bundle_cfg.get('step', '?')}")


# ---------------------------------------------------------------- GPU-only peers (ready, not run on this CPU machine)


CLI_SAVE_EVERY = 25  # steps between the GPU peers' checkpoints: the budget's end keeps the last one
_CLI_MAIN = {"lightweight-gan": "lightweight_gan.cli", "stylegan2": "stylegan2_pytorch.cli"}


def _cuda_cli(a: Args, name: str) -> tuple[list, dict]:
    """The peer's CLI as a command, and the environment it needs. With --peer-python: that interpreter runs the
    CLI's entry point (the wheels are installed beside it); else the peer's own venv, made by setup.sh."""
    if a.peer_python:
        entry = f"import sys; sys.argv[0] = {name!r}; from {_CLI_MAIN[name]} import main; main()"
        # stylegan2-pytorch imports aim (an experiment tracker, a large install) at the top, and uses it only with
        # --log; a module that refuses to log stands in for it (bench/peers/stubs/aim.py)
        return [a.peer_python, "-c", entry], {"PYTHONPATH": os.pathsep.join(
            [str(PEERS_DIR / "stubs"), os.environ.get("PYTHONPATH", "")])}
    venv = ROOT / "bench" / f".venv-{name}"
    if not (venv / "bin" / "python").is_file():
        _checked(_run(["bash", PEERS_DIR / "setup.sh", name, "--device", "cuda"], a.work / "logs" / f"setup-{name}.log"),
                 "setup.sh")
    return [venv / "bin" / ("lightweight_gan" if name == "lightweight-gan" else "stylegan2_pytorch")], {}


def peer_cuda_cli(a: Args, name: str, train_npy: Path) -> tuple[Path, dict]:
    """lightweight-gan or stylegan2-pytorch through their CLIs: train on PNGs of the training split until the
    budget (SIGTERM; the last --save-every checkpoint is used), then generate one image per call."""
    exe, env = _cuda_cli(a, name)
    tiles = np.load(train_npy)
    px = int(tiles.shape[-1])
    pngs, res, models = write_pngs(tiles, a.work / f"{name}-data"), a.work / name, a.work / f"{name}-models"
    common = ["--name", "peers", "--results_dir", res, "--models_dir", models, "--image_size", px]
    grey = ["--greyscale"] if name == "lightweight-gan" else []
    step = _run([*exe, "--data", pngs, *common, *grey, "--batch_size", 32, "--save_every", CLI_SAVE_EVERY,
                 "--num_train_steps", 10_000_000], a.work / "logs" / f"{name}.log", timeout_s=a.budget_min * 60,
                env=env)
    t0 = time.monotonic()
    if name == "lightweight-gan":  # --num_image_tiles single images per call
        _checked(_run([*exe, "--generate", *common, *grey, "--num_image_tiles", a.n], a.work / "logs" / f"{name}-gen.log",
                      env=env), "lightweight_gan --generate")
    else:  # --num_generate calls of one --num_image_tiles x --num_image_tiles grid: 1 x 1
        _checked(_run([*exe, "--generate", *common, "--num_generate", a.n, "--num_image_tiles", 1],
                      a.work / "logs" / f"{name}-gen.log", env=env), "stylegan2_pytorch --generate")
    fake = a.work / f"{name}-samples.npy"
    # "generated-<time>...-ema.<ext>": the EMA generator's images of --generate, not the grids saved in training
    np.save(fake, read_generated(sorted(res.rglob("generated-*-ema.*")), px, a.n))
    return fake, {**step, "train_s": step["wall_s"], "sample_s": round(time.monotonic() - t0, 1),
                  "steps": _cli_steps(models), "save_every": CLI_SAVE_EVERY, "setting": f"CLI defaults, {px} px, batch 32"}


def _cli_steps(models: Path):
    """Steps at the last checkpoint: its number times --save_every (both CLIs name them model_<n>.pt)."""
    nums = [int(p.stem.split("_")[-1]) for p in models.rglob("model_*.pt") if p.stem.split("_")[-1].isdigit()]
    return max(nums) * CLI_SAVE_EVERY if nums else None


def write_pngs(tiles: np.ndarray, folder: Path) -> Path:
    """(N, 1, S, S) in [-1, 1] -> folder of 8-bit greyscale PNGs (what the image-folder CLIs read)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    u8 = np.clip(np.rint((tiles[:, 0] + 1) * 127.5), 0, 255).astype(np.uint8)  # (N, S, S)
    for i, img in enumerate(u8):
        Image.fromarray(img).save(folder / f"{i:06d}.png")
    return folder


def read_generated(files, size: int, n: int, pad: int = 2) -> np.ndarray:
    """Images (or torchvision grids with ``pad`` px borders) -> (<= n, 1, size, size) float32 in [-1, 1]."""
    from PIL import Image

    out = []
    for f in files:
        img = np.asarray(Image.open(f).convert("L"), np.float32) / 127.5 - 1  # (H, W)
        if img.shape == (size, size):  # one image (torchvision saves a batch of one without a border)
            out.append(img)
            continue
        step = size + pad
        for r in range(pad, img.shape[0] - size + 1, step):
            for c in range(pad, img.shape[1] - size + 1, step):
                out.append(img[r:r + size, c:c + size])
    return np.stack(out[:n])[:, None]


# ---------------------------------------------------------------- scoring, grid, table


def score(a: Args, name: str, tiles: Path, fake: Path) -> dict:
    """The one scoring of every peer: `mitogan evaluate` of the shared tiles file against the peer's tiles."""
    out = a.work / "eval" / name
    _checked(_run([*MITOGAN, "evaluate", tiles, fake, "--out", out, "--overwrite", "-q"],
                  a.work / "logs" / f"{name}-evaluate.log"), "mitogan evaluate")
    m = json.loads((out / "metrics.json").read_text())
    v = m["metrics"]
    keys = ("fidelity", "diversity_gap", "authenticity_gap", "copy_share", "memorisation_ratio", "c2st_accuracy",
            "c2st_accuracy_sd", "c2st_baseline", "c2st_baseline_sd")
    return {"realism_gap": m["primary"]["value"], **{k: v.get(k) for k in keys}, "n_fake": m["n_fake"],
            "n_heldout": m["protocol"]["n_heldout"], "n_train": m["protocol"]["n_train"]}


def save_grid(fake: Path, png: Path, k: int = 8) -> None:
    """k x k tiles drawn at random (seed 0; real tiles come in time order) as one small 8-bit PNG, 1 px gaps."""
    from PIL import Image

    x = np.load(fake / "images.npy" if fake.is_dir() else fake)  # a synth --format npy folder, or a .npy
    pick = np.sort(np.random.default_rng(0).choice(len(x), min(k * k, len(x)), replace=False))
    x = x.reshape(len(x), -1, *x.shape[-2:])[pick, 0]  # (k*k, S, S)
    s = x.shape[-1]
    grid = np.full((k * (s + 1) - 1, k * (s + 1) - 1), 255, np.uint8)
    for i, tile in enumerate(x):
        r, c = divmod(i, k)
        grid[r * (s + 1): r * (s + 1) + s, c * (s + 1): c * (s + 1) + s] = np.clip((tile + 1) * 127.5, 0, 255)
    png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(png, optimize=True)


def _fmt(x, nd=3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def render_table(results: dict) -> str:
    """The markdown table of peers.json's results: one row per peer, GPU-only peers not run say so."""
    head = ("| peer | setting | steps | train wall s / CPU s of the whole command | sample s | realism_gap ↓ | C2ST acc ↓ (± sd) | "
            "C2ST baseline | copy share | memorisation ratio |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    order = [*CPU_PEERS, *CUDA_PEERS]
    for name, r in sorted(results["peers"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        label = LABELS.get(name, name)
        if r.get("status") != "ok":
            rows.append(f"| {label} | {r.get('reason', r.get('status', ''))} | | | | | | | | |")
            continue
        s = r["scores"]
        rows.append(f"| {label} | {r['setting']} | {r.get('steps') or '–'} | {r['train_s']:.0f} / {_fmt(r['cpu_s'], 0)} | "
                    f"{r['sample_s']:.0f} | {_fmt(s['realism_gap'])} | {_fmt(s['c2st_accuracy'])} ± "
                    f"{_fmt(s['c2st_accuracy_sd'])} | {_fmt(s['c2st_baseline'])} ± {_fmt(s['c2st_baseline_sd'])} | "
                    f"{_fmt(s['copy_share'])} | {_fmt(s['memorisation_ratio'], 2)} |")
    c = results["conditions"]
    where = (f"On one {c['gpu']} (torch {c['torch']}), "
             f"{'all peers training at the same time' if c.get('parallel') else 'one peer at a time'}. "
             if c.get("gpu") else "")
    foot = (f"\n{where}Budget {c['budget_min']:g} min of training wall clock per peer ({c['threads']} torch thread(s); the "
            f"search: its whole run, {_search_how(c)}), {c['n']} generated tiles each, {c['tile_px']} px tiles; "
            f"scored by `mitogan evaluate` against {c['split']['n_heldout']} held-out real tiles (split by "
            f"{c['split']['split']}; {c['split']['n_train']} training tiles). Load average at the start "
            f"{c['load_start']}, at the end {c.get('load_end', '?')}; {c['date']}.")
    return "\n".join([head, *rows]) + "\n" + foot + "\n"


def _search_how(c: dict) -> str:
    """How the fewshot search ran, for the table's foot: trials at once, and the space's keys it changed."""
    k = int(c.get("search_concurrent", 1))
    how = "trials one at a time" if k == 1 else f"{k} one-thread trials at a time"
    return how + "".join(f", --set {kv}" for kv in c.get("search_set", []))


def train_peer(a: Args, name: str, tiles: Path, train_npy: Path) -> dict:
    """Train and generate one peer; a failing peer is recorded (with its error) and the bench goes on."""
    runners = {"ddpm": lambda: peer_ddpm(a, train_npy), "dcgan-story": lambda: peer_dcgan_story(a, tiles),
               "dcgan-fine": lambda: peer_dcgan_fine(a, tiles),
               "fastgan": lambda: peer_fastgan(a, tiles), "search-fewshot": lambda: peer_search(a, tiles),
               "lightweight-gan": lambda: peer_cuda_cli(a, "lightweight-gan", train_npy),
               "stylegan2": lambda: peer_cuda_cli(a, "stylegan2", train_npy)}
    try:
        fake, rec = runners[name]()
        return {"status": "trained", "fake": str(Path(fake).resolve().relative_to(a.work.resolve())), **rec}
    except Exception as e:  # noqa: BLE001 - one peer's failure is a result, not the end of the bench
        return {"status": "failed", "reason": f"failed: {type(e).__name__}: {e}"}


def score_peer(a: Args, name: str, tiles: Path, rec: dict) -> dict:
    """Score a trained peer's tiles and draw its grid."""
    if rec.get("status") != "trained":
        return rec
    if name in CUDA_PEERS and not rec.get("steps"):  # the CLIs save model_0 (the initial weights) at step 0
        return {**rec, "status": "failed", "reason": f"reached no checkpoint past step 0 in {rec['train_s']:.0f} s "
                f"(--save_every {rec.get('save_every', '?')}): its samples would come from untrained weights, so it is not scored"}
    try:
        fake = a.work / rec.pop("fake")
        rec["scores"] = score(a, name, tiles, fake)
        save_grid(fake, a.out / f"grid_{name}.png")
        return {**rec, "status": "ok"}
    except Exception as e:  # noqa: BLE001
        return {"status": "failed", "reason": f"failed scoring: {type(e).__name__}: {e}"}


def train_all(a: Args, tiles: Path, train_npy: Path) -> dict:
    """Every peer of --peers trained and generated, one after another or (--parallel) all at once."""
    def one(name):
        print(f"bench_peers: training {name} ({a.budget_min:g} min)", flush=True)
        rec = train_peer(a, name, tiles, train_npy)
        print(f"bench_peers: {name}: {json.dumps(rec, default=str)}", flush=True)
        return rec

    if a.parallel:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(a.peers)) as pool:
            return dict(zip(a.peers, pool.map(one, a.peers)))
    return {name: one(name) for name in a.peers}


def write_results(a: Args, results: dict) -> None:
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "peers.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (a.out / "peers.md").write_text(render_table(results))


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
        if a.stage != "score":
            require_cuda(a.device)
    except UsageError as e:
        print(f"bench_peers: {e}", file=sys.stderr)
        return 2
    a.work.mkdir(parents=True, exist_ok=True)
    trained_file = a.work / "trained.json"  # what the train stage leaves for the score stage
    if a.stage == "score":
        if not trained_file.is_file():
            print(f"bench_peers: --stage score: {trained_file} is missing: run --stage train first", file=sys.stderr)
            return 2
        trained = json.loads(trained_file.read_text())
        tiles, split, conditions = Path(trained["tiles"]), trained["split"], trained["conditions"]
        if not tiles.is_file():  # trained on another machine: the same tiles file lies in this --work
            tiles = a.work / "tiles" / "tiles.npz"
    else:
        tiles, train_npy, split = prepare_tiles(a)
        conditions = {**{k: str(v) if isinstance(v, Path) else v for k, v in asdict(a).items()},
                      "split": split, "tile_px": split["tile_px"], "load_start": _load(),
                      "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        if a.device == "cuda":
            import torch

            conditions["gpu"] = torch.cuda.get_device_name(0)
            conditions["torch"] = torch.__version__
        trained = {"tiles": str(tiles), "split": split, "conditions": conditions,
                   "peers": train_all(a, tiles, train_npy)}
        trained["conditions"]["load_end"] = _load()
        trained_file.write_text(json.dumps(trained, indent=1, default=str) + "\n")
        if a.stage == "train":
            return 0
    save_grid(a.work / "heldout.npy", a.out / "grid_real-heldout.png")
    results = {"conditions": conditions, "peers": _earlier_peers(a)}
    for name in a.peers:
        results["peers"][name] = score_peer(a, name, tiles, dict(trained["peers"].get(name, {"status": "not run"})))
        print(f"bench_peers: {name}: {json.dumps(results['peers'][name], default=str)}", flush=True)
        write_results(a, results)  # after every peer: a long run that is cut short keeps what it measured
    for name in CUDA_PEERS:
        if name not in a.peers:
            results["peers"][name] = {"status": "not run", "reason": "needs a CUDA GPU (asserts one at import): "
                                      "not run here; `--device cuda` runs it"}
    write_results(a, results)
    print((a.out / "peers.md").read_text())
    return 0


def _earlier_peers(a: Args) -> dict:
    """Results of the other peers from an earlier run into --out with the same budget and N: rerunning one peer
    (--peers NAME) keeps them; a different budget or N starts a fresh table."""
    f = a.out / "peers.json"
    if not f.is_file():
        return {}
    old = json.loads(f.read_text())
    same = all(old["conditions"].get(k) == getattr(a, k) for k in ("budget_min", "n", "threads"))
    return {k: v for k, v in old["peers"].items() if same and k not in a.peers and v.get("status") != "not run"}


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())  # 1, 5, 15 min: this machine is shared


if __name__ == "__main__":
    raise SystemExit(main())
