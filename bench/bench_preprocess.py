"""Preprocessing throughput: frames/s of each step and of the full pipeline, and the cache hit cost.

    python bench/bench_preprocess.py            # 256×256 and 512×512, ~1 minute on 2 idle cores
    python bench/bench_preprocess.py --quick    # fewer frames and repeats, ~30 s

Frames are synthetic mitochondria-like uint16 images (smooth tubes + offset + noise), so the numbers do not
depend on any data folder. Every number is the median of ``--repeats`` runs. Targets (ratios measured in
the same run): the full pipeline with NLM reaches >= 0.85x the throughput of OpenCV NLM alone over the same
frames, and a cache hit is >= 50x faster than recomputing. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np


def synthetic_video(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint16: random thick curves, blurred, offset 100, Poisson-ish noise, slow decay."""
    rng = np.random.default_rng(seed)
    base = np.zeros((size, size), np.float32)
    for _ in range(size // 8):
        pts = np.cumsum(rng.normal(0, size / 40, (12, 2)), axis=0) + rng.uniform(0, size, 2)
        cv2.polylines(base, [pts.astype(np.int32)], False, 1.0, thickness=max(2, size // 100))
    base = cv2.GaussianBlur(base, (0, 0), 1.5) * 800
    frames = [100 + base * np.exp(-0.01 * t) for t in range(n)]
    frames = [f + rng.normal(0, 1, f.shape) * np.sqrt(f) for f in frames]
    return np.clip(np.stack(frames), 0, 65535).astype(np.uint16)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_table(video: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds per run over all frames of ``video`` for each step on its own."""
    from mitogan import preprocess as pp

    unit = pp.normalize_percentile(video)  # per-frame steps take [0, 1] floats
    u8 = (unit * 255 + 0.5).astype(np.uint8)
    return {
        "quality (SNR)": median_time(lambda: pp.quality_report(video), repeats),
        "bleach (ratio)": median_time(lambda: pp.correct_bleaching(video), repeats),
        "drift (phase corr.)": median_time(lambda: pp.correct_drift(video), repeats),
        "normalize (video)": median_time(lambda: pp.normalize_percentile(video), repeats),
        "NLM alone (cv2, uint8)": median_time(lambda: [cv2.fastNlMeansDenoising(f, None, 10, 7, 21) for f in u8],
                                              repeats),
        "denoise_nlm (h=10, 7/21)": median_time(lambda: [pp.denoise_nlm(f) for f in unit], repeats),
        "laplace (3, 0.5)": median_time(lambda: [pp.enhance_laplace(f) for f in unit], repeats),
        "otsu (masked)": median_time(lambda: [pp.otsu(f, "masked") for f in unit], repeats),
        "tile (64, skip empty)": median_time(lambda: pp.tile_frames(unit, 64, min_foreground=0.02), repeats),
    }


def pipeline_configs():
    from mitogan.config import PreprocessConfig, from_flat

    steps = ("bleach", "drift", "normalize", "denoise", "laplace", "otsu")
    every = {f"{s}.enabled": True for s in steps}
    return {
        "pipeline, all steps": from_flat(PreprocessConfig, every),
        "pipeline, all but NLM": from_flat(PreprocessConfig, {**every, "denoise.enabled": False}),
    }


def pipeline_table(videos, u8_frames, repeats: int) -> dict[str, float]:
    """The pipelines, and NLM alone over the same frames, measured interleaved: this machine is shared, so
    alternating runs lets load from elsewhere hit the numbers of a ratio alike."""
    from mitogan.preprocess import Pipeline

    runs = {"NLM alone, same frames (interleaved)": lambda: [cv2.fastNlMeansDenoising(f, None, 10, 7, 21)
                                                             for f in u8_frames]}
    for name, cfg in pipeline_configs().items():
        runs[name] = lambda cfg=cfg: Pipeline(cfg).run(videos, progress=False, cache=False)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(median_time(fn, 1))
    return {name: statistics.median(t) for name, t in times.items()}


def cache_table(videos, repeats: int) -> dict[str, float]:
    """Recompute (cold) vs cache hit (a fresh Pipeline, as another process) for the full pipeline."""
    from mitogan.preprocess import Pipeline

    cfg = pipeline_configs()["pipeline, all steps"]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MITOGAN_CACHE_DIR"] = tmp
        first = Pipeline(cfg)
        t = time.perf_counter()
        first.run(videos, progress=False, cache=True)  # compute + write
        miss = time.perf_counter() - t
        hit = median_time(lambda: Pipeline(cfg).run(videos, progress=False, cache=True), repeats)
    return {"cache miss (compute + save)": miss, "cache hit (hash + load)": hit}


def bench_size(size: int, n_frames: int, repeats: int) -> tuple[list[tuple[str, float]], dict]:
    from mitogan import preprocess as pp
    from mitogan.frames import Video

    video = synthetic_video(n_frames, size)
    videos = [Video(v, f"synthetic_{size}_{i}.tif") for i, v in enumerate(np.array_split(video, 2))]
    u8 = (pp.normalize_percentile(video) * 255 + 0.5).astype(np.uint8)  # NLM's input inside the pipeline
    rows = {**step_table(video, repeats), **pipeline_table(videos, u8, repeats), **cache_table(videos, repeats)}
    fps = [(name, n_frames / sec) for name, sec in rows.items()]
    ratios = {
        "pipeline (all steps) / NLM alone": rows["NLM alone, same frames (interleaved)"]
        / rows["pipeline, all steps"],
        "cache hit speed-up vs recompute": rows["pipeline, all steps"] / rows["cache hit (hash + load)"],
    }
    return fps, ratios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames and repeats (~30 s)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per measurement (median)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    sizes = {256: 16 if args.quick else 40, 512: 6 if args.quick else 12}
    results = {size: bench_size(size, n, repeats) for size, n in sizes.items()}
    print(f"\nOpenCV {cv2.__version__}, cv2 threads {cv2.getNumThreads()}, {os.cpu_count()} CPUs; "
          f"median of {repeats} runs; frames per video: {sizes}\n")
    print("| frames/s | " + " | ".join(f"{s}×{s}" for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for k, (name, _) in enumerate(results[next(iter(sizes))][0]):
        print(f"| {name} | " + " | ".join(f"{results[s][0][k][1]:,.1f}" for s in sizes) + " |")
    for name in results[next(iter(sizes))][1]:
        print(f"| **{name}** | " + " | ".join(f"**{results[s][1][name]:.2f}×**" for s in sizes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
