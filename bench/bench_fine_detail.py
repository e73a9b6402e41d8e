"""The generator's fine detail, side by side: what a small CNN judge tells apart, with and without the knobs.

    python bench/bench_fine_detail.py                       # 6 generators x 2 seeds, 8,000 steps, 2 at a time
    python bench/bench_fine_detail.py --configs base,fine --seeds 0 --steps 3000   # a quick look

Every run is `mitogan train` of the README story's DCGAN (bench/peers/dcgan-story.yaml: 16/16 channels, hinge,
32 px tiles of half-scale frames of --data; --tile 64 for 64 px tiles, kept in --work/64px) for --steps steps
on one thread, with:

    base          the story's generator: transposed 4x4 convolutions, tanh output, no noise
    clip-resize   model.g_output=clip, model.g_upsample=resize
    noise-clip    model.g_noise=true, model.g_output=clip
    fine          all three: model.g_noise=true, model.g_output=clip, model.g_upsample=resize
    pixel         model.g_pixel_noise=true (noise on the image at a level drawn per pixel), clip, resize
    fine-pixel    all four
    fine-mbstd    fine, and the discriminator's minibatch standard deviation (model.d_mbstd=true)
    fine-psf      fine, and the image blurred by a learned point-spread function before its noise (model.g_psf)
    fine-bilinear fine with bilinear instead of nearest upsampling (model.g_upsample=bilinear)
    fine-dnone    fine with no normalisation in the discriminator (model.d_norm=none): spectral normalisation
                  bounds how far a faint, high-frequency difference can move D's output
    fine-wide     fine with twice the channels in both networks (model.g_width=32, model.d_width=32)
    fine-r1       fine with R1 (loss.r1_gamma=1) in place of the discriminator's spectral normalisation (StyleGAN2's
                  regulariser: it does not bound how far a faint difference can move D)
    fine-gain     fine with the augmentation's brightness and contrast jitter (which lifts a real tile's black floor)
                  replaced by augment.gain (intensity scaled about the black level)
    fine-spectral fine, and the spectral loss on the generator (loss.spectral=1; fine-spectral10: 10): its tiles'
                  spread of power over frequency rings against a real batch's
    fine-nocolor  fine without the augmentation's brightness/contrast jitter (augment.color=false): D sees every
                  black floor as it is; fine-noaug: no augmentation at all (augment.p=0)

Each exported generator draws --n tiles (`mitogan synth`), scored by the classifier two-sample test
(`mitogan.metrics.c2st.c2st_accuracy`, its default budget, seed 0 and on) against the training split it learned
from and the held-out split (`split_real(..., 0.25, 0)`, as `mitogan train` makes it), and against each split
after both sides are blurred (σ = 1 px: coarse structure only) or high-passed (the image less that blur: the fine
detail only), and the dark detail against the held-out split (the fine detail where the blurred tile is below -0.8,
zero elsewhere: the black level and its texture). Two baselines: two random halves of the training split (0.5 =
indistinguishable) and training vs held-out (the training split in the generator's place, for each view).
--judge-seeds N averages N C2ST seeds (the CNN's own spread, ±0.002–0.008 here; the generator's seed moves it by
up to 0.04, so compare over --seeds).
Also per set: the share of pixels at the exact black floor (-1), the share of tiles without it (the
noisy-background movies), the noise power of each kind of tile (log10 mean power above 0.5 cycles/px), and the
in-training copy share and primary at the last step. A run folder that has finished is scored as it is (--work
keeps them).

Writes --out/fine_detail.json, fine_detail.md (the table) and fine_detail.png (a real row and a row per
generator, each tile above its high-pass detail, x5).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MITOGAN = [sys.executable, "-m", "mitogan"]
STORY = ROOT / "bench" / "peers" / "dcgan-story.yaml"
DARK = -0.8  # the dark view: the fine detail where the blurred tile is in the bottom tenth of [-1, 1]
CONFIGS = {"base": [],
           "clip-resize": ["model.g_output=clip", "model.g_upsample=resize"],
           "noise-clip": ["model.g_noise=true", "model.g_output=clip"],
           "fine": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize"],
           "pixel": ["model.g_pixel_noise=true", "model.g_output=clip", "model.g_upsample=resize"],
           "fine-pixel": ["model.g_noise=true", "model.g_pixel_noise=true", "model.g_output=clip",
                          "model.g_upsample=resize"],
           "fine-mbstd": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize",
                          "model.d_mbstd=true"],
           "fine-psf": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "model.g_psf=true"],
           "fine-bilinear": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=bilinear"],
           "fine-dnone": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "model.d_norm=none"],
           "fine-wide": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "model.g_width=32",
                         "model.d_width=32"],
           "fine-r1": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "model.d_norm=none",
                       "loss.r1_gamma=1"],
           "fine-gain": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "augment.color=false",
                         "augment.gain=true"],
           "fine-spectral": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "loss.spectral=1"],
           "fine-spectral10": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize",
                               "loss.spectral=10"],
           "fine-nocolor": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "augment.color=false"],
           "fine-noaug": ["model.g_noise=true", "model.g_output=clip", "model.g_upsample=resize", "augment.p=0"]}


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "bench-fine")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fine-detail")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--n", type=int, default=1000, help="generated tiles per run")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (one thread each)")
    p.add_argument("--judge-seeds", type=int, default=1, help="C2ST seeds per score, averaged (the CNN's own "
                   "spread; a generator's seed spreads more: compare means over --seeds)")
    p.add_argument("--tile", type=int, default=32, help="tile size in px (32, the story's; others keep their "
                   "tiles and runs in --work/<N>px)")
    p.add_argument("--train-only", action="store_true", help="train the runs that are missing, score nothing")
    a = p.parse_args(argv)
    a.configs = [c for c in a.configs.split(",") if c]
    unknown = [c for c in a.configs if c not in CONFIGS]
    if unknown or not a.configs:
        raise UsageError(f"--configs: unknown {unknown[0] if unknown else ''!r}; give some of {', '.join(CONFIGS)}")
    try:
        a.seeds = [int(s) for s in a.seeds.split(",") if s]
    except ValueError:
        raise UsageError(f"--seeds {a.seeds!r}: give integers, e.g. 0,1") from None
    for flag, value, low in (("--seeds", len(a.seeds), 1), ("--steps", a.steps, 1), ("--n", a.n, 20),
                             ("--parallel", a.parallel, 1), ("--judge-seeds", a.judge_seeds, 1)):
        if value < low:
            raise UsageError(f"{flag}: needs {'a seed' if flag == '--seeds' else f'a value of {low} or more'}")
    if a.tile not in (16, 32, 64, 128, 256):
        raise UsageError(f"--tile {a.tile}: give a power of two from 16 to 256")
    if a.tile != 32:
        a.work = a.work / f"{a.tile}px"
    return a


def _finished(run: Path, steps: int) -> bool:
    log = run / "metrics.jsonl"
    if not (run / "checkpoint.pt").is_file() or not log.is_file():
        return False
    return any(json.loads(line).get("step") == steps and "primary" in line
               for line in log.read_text().splitlines() if line.strip())


def train_all(a, tiles: Path) -> None:
    todo = [(c, s) for c in a.configs for s in a.seeds if not _finished(a.work / f"{c}-s{s}", a.steps)]
    started: dict[str, subprocess.Popen] = {}
    for c, s in todo:
        while sum(p.poll() is None for p in started.values()) >= a.parallel:
            time.sleep(2)
        run = a.work / f"{c}-s{s}"
        cmd = [*MITOGAN, "train", "--data", tiles, "--out", run, "-q", "--config", STORY, "--set",
               f"train.steps={a.steps}", "--set", "train.eval_every=1000", "--set", "train.threads=1", "--set",
               f"train.seed={s}", "--set", f"preprocess.tile.size={a.tile}",
               *[x for kv in CONFIGS[c] for x in ("--set", kv)]]
        if run.exists():
            cmd += ["--resume"]
        print(f"bench_fine_detail: training {run.name}", flush=True)
        started[run.name] = subprocess.Popen([str(x) for x in cmd], stdout=subprocess.DEVNULL)
    failed = [name for name, p in started.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"bench_fine_detail: training {failed[0]} failed (its error is above)")


def samples(a, name: str, n: int | None = None, tag: str = "", seed: int = 0, synth_args=()) -> np.ndarray:
    """``n`` (default --n) tiles of run ``name``, exported and drawn once (kept in --work/<name>-synth<tag>);
    ``synth_args``: more options of `mitogan synth` (give each set of them its own ``tag``)."""
    run, bundle, synth = (a.work / f"{name}{x}" for x in ("", "-bundle", f"-synth{tag}"))
    if not (synth / "images.npy").is_file():
        for cmd in (["export", run, "--out", bundle, "--overwrite", "--allow-incomplete", "--allow-copying", "-q"],
                    ["synth", bundle, "-n", n or a.n, "--format", "npy", "--out", synth, "--overwrite", "-q",
                     "--seed", seed, *synth_args]):
            subprocess.run([str(x) for x in [*MITOGAN, *cmd]], check=True, stdout=subprocess.DEVNULL)
    return np.load(synth / "images.npy")


def main(argv=None) -> int:
    try:
        a = parse_args(argv)
    except UsageError as e:
        print(f"bench_fine_detail: {e}", file=sys.stderr)
        return 2
    a.work.mkdir(parents=True, exist_ok=True)
    tiles = a.work / "tiles" / "tiles.npz"
    if not tiles.is_file():
        subprocess.run([str(x) for x in [*MITOGAN, "preprocess", a.data, "--config", STORY, "--set",
                                          f"tile.size={a.tile}", "--out", tiles.parent, "-q"]], check=True)
    train_all(a, tiles)
    if a.train_only:
        return 0
    sp, train, held = real_split(tiles)

    half = np.random.default_rng(0).permutation(len(train))
    judge = range(a.judge_seeds)
    parts = ("vs_train", "blur_vs_train", "detail_vs_train", "dark_vs_train")  # as they are, blurred, detail, dark
    halves = score(train[half[: len(half) // 2]], train[half[len(half) // 2:]], what=parts, seeds=judge)
    base = score(train, held, what=parts, seeds=judge)  # the training split in the generator's place
    rows = {"real: training half vs half": halves,
            "real: training vs held-out": {"vs_held": base["vs_train"], "blur_vs_held": base["blur_vs_train"],
                                           "detail_vs_held": base["detail_vs_train"],
                                           "dark_vs_held": base["dark_vs_train"], "floor": floor(held),
                                           "floorless": floorless(held), "hf_power": hf_power(held)}}
    shown = {"real (training)": train}
    for c in a.configs:
        for s in a.seeds:
            name = f"{c}-s{s}"
            fake = samples(a, name)
            last = [json.loads(line) for line in (a.work / name / "metrics.jsonl").read_text().splitlines()
                    if '"primary"' in line][-1]
            rows[name] = {**score(fake, train, held, seeds=judge), "primary": round(last["primary"], 3),
                          "copy_share": round(last.get("copy_share", float("nan")), 3)}
            print(f"bench_fine_detail: {name} {rows[name]}", flush=True)
            shown.setdefault(c, fake)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "fine_detail.json").write_text(json.dumps({"steps": a.steps, "n": a.n, "split": sp.describe(),
                                                         "rows": rows}, indent=1) + "\n")
    (a.out / "fine_detail.md").write_text(table(rows))
    figure(shown, a.out / "fine_detail.png")
    print(table(rows))
    return 0


def real_split(tiles: Path):
    """(the split, training tiles, held-out tiles) of a tile file, split as `mitogan train` splits it."""
    from mitogan.metrics.protocol import split_real
    from mitogan.tiles import load_tiles

    ts = load_tiles(tiles)
    sp = split_real(ts.source, ts.frame, 0.25, 0, tiles=ts.tiles)
    real = np.asarray(ts.tiles, np.float32)
    return sp, real[sp.train], real[sp.heldout]


def blur(x: np.ndarray) -> np.ndarray:
    """(..., S, S) blurred by σ = 1 px (coarse structure only); ``x - blur(x)`` is the fine detail."""
    from mitogan.metrics.blur import gaussian_blur

    return gaussian_blur(x, 1.0)


def floor(x: np.ndarray) -> float:
    """Share of pixels at the exact black floor of clipped, normalised data."""
    return round(float((x <= -0.999).mean()), 3)


def _no_floor(x: np.ndarray) -> np.ndarray:
    """Per tile: (almost) no pixel at the black floor, < 1 %: the movies whose background is noisy, not clipped."""
    return (x <= -0.999).mean(axis=tuple(range(1, x.ndim))) < 0.01


def floorless(x: np.ndarray) -> float:
    """Share of tiles without the black floor (on the shared data a third of the training tiles)."""
    return round(float(_no_floor(x).mean()), 3)


def hf_power(x: np.ndarray) -> list:
    """[tiles without -1, tiles with it]: log10 of the mean power (|FFT|², each tile less its mean) at radial
    frequencies above 0.5 cycles/px, the camera noise a tile holds; None for an empty group."""
    t = x.reshape(len(x), x.shape[-2], x.shape[-1]).astype(np.float64)
    power = np.abs(np.fft.fft2(t - t.mean(axis=(1, 2), keepdims=True))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(t.shape[1]), np.fft.fftfreq(t.shape[2]), indexing="ij")
    band = np.hypot(fy, fx) > 0.5
    noisy = _no_floor(t)
    return [round(float(np.log10(power[m][:, band].mean())), 2) if m.any() else None for m in (noisy, ~noisy)]


def score(fake: np.ndarray, train: np.ndarray, held: np.ndarray | None = None,
          what=("vs_train", "vs_held", "blur_vs_train", "detail_vs_train", "blur_vs_held", "detail_vs_held",
                "dark_vs_held"),
          seeds=(0,), **budget) -> dict:
    """C2ST accuracy [mean, sd] of ``fake`` against the training (and held-out) tiles: as they are, both blurred,
    both reduced to their fine detail, both reduced to their dark detail (``DARK``). One seed: the sd over its
    folds; several: the mean and sd over the seeds.
    ``budget``: c2st_accuracy's keywords (its default budget without)."""
    from mitogan.metrics.c2st import c2st_accuracy

    def views(x):  # each view of a set, its blur made once: "" as it is, "blur_", "detail_" (the rest), "dark_"
        b = blur(x)
        return {"": x, "blur_": b, "detail_": x - b, "dark_": np.where(b < DARK, x - b, 0.0).astype(np.float32)}

    mine, theirs = views(fake), {"train": views(train), "held": None if held is None else views(held)}
    out = {}
    for key in what:
        view, _, against = key.rpartition("vs_")  # "blur_vs_held" → "blur_", "held"
        if theirs[against] is not None:
            runs = [c2st_accuracy(mine[view], theirs[against][view], seed=s, **budget) for s in seeds]
            acc = [r["accuracy"] for r in runs]
            sd = runs[0]["accuracy_sd"] if len(runs) == 1 else float(np.std(acc))
            out[key] = [round(float(np.mean(acc)), 3), round(sd, 3)]
    return {**out, "floor": floor(fake), "floorless": floorless(fake), "hf_power": hf_power(fake)}


def table(rows: dict) -> str:
    def cell(key, v):
        if v is None:
            return ""
        if key == "hf_power":  # two log powers
            return " / ".join("–" if p is None else f"{p:.2f}" for p in v)
        return f"{v[0]:.3f} ± {v[1]:.3f}" if isinstance(v, list) else f"{v}"

    head = ["set", "C2ST vs training", "vs held-out", "blurred σ 1 px, vs training", "fine detail, vs training",
            "blurred, vs held-out", "fine detail, vs held-out", "dark detail, vs held-out", "pixels at -1",
            "tiles without -1", "noise power, tiles without / with -1", "copy share", "primary"]
    keys = ["vs_train", "vs_held", "blur_vs_train", "detail_vs_train", "blur_vs_held", "detail_vs_held",
            "dark_vs_held", "floor", "floorless", "hf_power", "copy_share", "primary"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([name, *(cell(k, r.get(k)) for k in keys)]) + " |" for name, r in rows.items()]
    return "\n".join(lines) + "\n"


def figure(shown: dict, path: Path, per_row: int = 10) -> None:
    """One block per set: 10 tiles above their fine detail (tile less its σ 1 px blur, x5); label at the left."""
    import cv2

    rng, blocks = np.random.default_rng(1), []
    for name, x in shown.items():
        t = x[rng.choice(len(x), per_row, replace=False), 0]
        detail = np.clip((t - blur(t)) * 5, -1, 1)
        rows = [np.concatenate([np.pad(v, 1, constant_values=1) for v in r], 1) for r in (t, detail)]
        block = ((np.concatenate(rows, 0) + 1) * 127.5).astype(np.uint8)
        block = cv2.resize(block, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
        label = np.full((block.shape[0], 150), 255, np.uint8)
        cv2.putText(label, name[:18], (4, block.shape[0] // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, 0, 1)
        blocks.append(np.concatenate([label, block], 1))
    cv2.imwrite(str(path), np.concatenate(blocks, 0))


if __name__ == "__main__":
    sys.exit(main())
