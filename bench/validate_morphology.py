"""Validate the morphology features against skan and the simulator's ground truth; time them.

    python bench/validate_morphology.py [--data ../shared/data] [--renders 48] [--no-timing]

Prints the tables of docs/morphology-validation.md. Needs skan (``pip install -e .[dev]``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from mitogan.metrics import morphology as M

F = {n: i for i, n in enumerate(M.FEATURE_NAMES)}


def frame_tile(frame: np.ndarray) -> np.ndarray:
    """One square frame (H, H) any dtype -> (1, H, H) float32 in [-1, 1], 0.5 / 99.8 % as frames_to_tiles."""
    from mitogan.metrics.proof import frames_to_tiles

    return frames_to_tiles(np.asarray(frame)[None], min(frame.shape))[:, 0]


def ours(x: np.ndarray, thr: float) -> dict:
    """Our whole-image totals for one (1, S, S) image at ``thr``."""
    f = M.morphology_features(x, threshold=thr)[0]
    n = f[F["n_objects"]]
    return {"length": f[F["skeleton_length"]], "length_edges": f[F["skeleton_length"]] - n,  # - 1 px/object
            "width": f[F["width_mean"]], "objects": n,
            "junctions": round(f[F["branch_points_per_object"]] * n), "ends": round(f[F["end_points_per_object"]] * n),
            "beads": f[F["bead_density"]] * f[F["skeleton_length"]] / 10}


def skan_totals(skel: np.ndarray, width: np.ndarray) -> dict | None:
    """skan's totals for a skeleton image: length (sum of branch distances), length-weighted mean width
    (``summarize`` of the width image on the skeleton), junctions (degree >= 3), ends (degree 1)."""
    from skan import Skeleton, summarize

    if skel.sum() < 2:
        return None
    sk = Skeleton(np.where(skel, np.maximum(width, 1e-3), 0.0))
    table = summarize(sk, separator="_")
    dist = table["branch_distance"].to_numpy()
    return {"length": dist.sum(), "width": (table["mean_pixel_value"].to_numpy() * dist).sum() / max(dist.sum(), 1e-9),
            "junctions": int((sk.degrees >= 3).sum()), "ends": int((sk.degrees == 1).sum())}


def compare_real(data) -> list[dict]:
    """Per frame of the real data: our totals, skan on our skeleton, skan on skimage's skeleton of the mask."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    from mitogan.io import read_inputs

    rows = []
    for v in read_inputs(data):
        for k, frame in enumerate(v.frames):
            x = frame_tile(frame)
            thr = float(M.tile_thresholds(x)[0])  # the frame is one group: its own threshold
            labels, _, skel = M.segment(x, np.array([thr]))
            edt = ndimage.distance_transform_edt(labels > 0)
            mask = x[0] > thr  # skan-style: the plain mask, no small-object removal, no padding
            rows.append({"source": str(v.source), "frame": k, "raw": frame.dtype != np.uint8, "ours": ours(x, thr),
                         "skan_same": skan_totals(skel, 2 * edt - 1),
                         "skan_mask": skan_totals(skeletonize(mask), 2 * ndimage.distance_transform_edt(mask) - 1)})
    return rows


def _r(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def real_table(rows: list[dict]) -> None:
    ok = [r for r in rows if r["skan_same"] is not None and r["skan_mask"] is not None]
    raw = [r for r in ok if r["raw"]]  # raw camera counts (deep-events); the rest is processed 8-bit
    done = [r for r in ok if not r["raw"]]
    print(f"\nreal frames: {len(rows)}, with a skeleton: {len(ok)} ({len(done)} processed, {len(raw)} raw)")
    print("| quantity | skan, same skeleton: r / ours:skan / frames equal | skan, plain mask, processed: r / "
          "ours:skan | skan, plain mask, raw: r / ours:skan |")
    print("|---|---|---|---|")
    for q in ("length", "length_edges", "width", "junctions", "ends"):
        line = f"| {q} |"
        for sel, key in ((ok, "skan_same"), (done, "skan_mask"), (raw, "skan_mask")):
            a = [r["ours"][q] for r in sel]
            b = [r[key][q.replace("_edges", "")] for r in sel]
            eq = f" / {sum(abs(x - y) < 1e-6 for x, y in zip(a, b))} of {len(sel)}" if key == "skan_same" else ""
            line += f" {_r(a, b):.4f} / {np.sum(a) / np.sum(b):.3f}{eq} |"
        print(line)


def _inside(p: np.ndarray, size: int) -> np.ndarray:
    return (p[:, 0] >= 0) & (p[:, 0] <= size - 1) & (p[:, 1] >= 0) & (p[:, 1] <= size - 1)


def truth_totals(truth: dict, size: int) -> dict:
    """Ground truth of frame 0 inside the field of view: length, length-weighted width, branch points, beads."""
    from mitogan.simulate import skeleton_at

    length = width = junctions = beads = 0.0
    for o in truth["objects"]:
        if o["first_frame"] != 0:
            continue
        obj_len = 0.0
        for br in skeleton_at(truth, o, 0):
            seg_in = _inside(br[:-1], size) & _inside(br[1:], size)
            obj_len += float(np.hypot(*np.diff(br, axis=0).T)[seg_in].sum())
        length += obj_len
        width += obj_len * o["width_px"]
        for key, acc in (("branch_points", "j"), ("beads", "b")):
            xy = np.asarray(o[key]["xy"], float).reshape(-1, 2)
            n = int(_inside(xy, size).sum()) if len(xy) else 0
            junctions, beads = (junctions + n, beads) if acc == "j" else (junctions, beads + n)
    return {"length": length, "width": width / max(length, 1e-9), "junctions": junctions, "beads": beads}


def sim_params(i: int):
    """Low-noise renders that vary the quantities under test from render to render."""
    from mitogan.simulate import SimParams

    return SimParams(size=256, frames=1, shot_noise=False, read_noise=0.5, column_noise=0.0,
                     autofluorescence=0.0, gradient=0.0, density=(1.5, 2.5, 3.5)[i % 3],
                     width_mean=(4.0, 6.0, 8.0, 10.0)[i % 4], branch_prob=(0.1, 0.4, 0.7)[i % 3],
                     bead_prob=(0.0, 0.3, 0.6, 0.9)[(i // 2) % 4], min_length=10.0)


def compare_sim(n: int) -> list[dict]:
    from mitogan.simulate import simulate_video

    rows = []
    for i in range(n):
        frames, truth = simulate_video(sim_params(i), seed=i)
        x = frame_tile(frames[0])
        rows.append({"ours": ours(x, float(M.tile_thresholds(x)[0])), "truth": truth_totals(truth, 256)})
    return rows


def sim_table(rows: list[dict]) -> None:
    print(f"\nsimulator renders: {len(rows)} (256 px, low noise)")
    print("| quantity | r | total measured / truth | median per-render relative error |")
    print("|---|---|---|---|")
    for q in ("length", "width", "junctions", "beads"):
        a = np.array([r["ours"][q] for r in rows])
        b = np.array([r["truth"][q] for r in rows])
        rel = np.median(np.abs(a - b) / np.maximum(b, 1))
        print(f"| {q} | {_r(a, b):.3f} | {a.sum() / b.sum():.3f} | {rel:.3f} |")


def noise_frames(seed: int) -> dict:
    """Pure-noise 256 px frames on a camera offset (no signal at all), by noise model."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    shape = (256, 256)
    return {"Gaussian, sd 5 on 100": 100 + 5 * rng.normal(size=shape),
            "Poisson, mean 1 on 75": 75.0 + rng.poisson(1.0, shape),
            "Poisson, mean 4 on 75": 75.0 + rng.poisson(4.0, shape),
            "Poisson, mean 30 on 75": 75.0 + rng.poisson(30.0, shape),
            "Gaussian blurred 1 px (correlated)": 100 + 5 * ndimage.gaussian_filter(rng.normal(size=shape), 1.0)}


def noise_table(seeds: int = 3) -> None:
    """Objects and area per 64 px tile of pure-noise frames: plain Otsu per tile vs the noise-aware rules."""
    from mitogan.metrics.proof import frames_to_tiles

    print(f"\npure-noise frames ({seeds} seeds x 16 tiles of 64 px): objects per tile / area fraction")
    print("| noise | Otsu per tile | noise-aware per tile | frame threshold (group) |")
    print("|---|---|---|---|")
    for name in noise_frames(0):
        tiles = np.concatenate([frames_to_tiles(noise_frames(s)[name][None], 64) for s in range(seeds)])
        groups = np.repeat(np.arange(seeds), 16)
        cells = []
        for thr, floor in ((M.otsu_masks(tiles[:, 0])[1], False), (None, True),
                           (M.group_thresholds(tiles, groups), False)):
            f = M.morphology_features(tiles, threshold=thr, noise_floor=floor)
            cells.append(f"{f[:, F['n_objects']].mean():.2f} / {f[:, F['area_fraction']].mean():.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def real_tiles(data) -> tuple:
    """All real frames cut into 64 px tiles: (tiles, frame group (N,), source name per tile)."""
    from mitogan.io import read_inputs
    from mitogan.metrics.proof import frames_to_tiles

    tiles, groups, names = [], [], []
    for v in read_inputs(data):
        for frame in v.frames:
            t = frames_to_tiles(frame[None], 64)
            tiles.append(t)
            groups += [len(tiles)] * len(t)
            names += [str(v.source).split("data/")[-1]] * len(t)
    return np.concatenate(tiles), np.array(groups), np.array(names)


def real_threshold_table(data) -> None:
    """Objects and area per real tile, by source, under each way of deciding the threshold."""
    tiles, groups, names = real_tiles(data)
    dthr = M.dataset_threshold(tiles, groups)
    ways = {"Otsu per tile": (M.otsu_masks(tiles[:, 0])[1], False), "noise-aware per tile": (None, True),
            "frame (group)": (M.group_thresholds(tiles, groups), False),
            "dataset, plain": (dthr, False), "dataset + noise floor": (dthr, True)}
    feats = {k: M.morphology_features(tiles, threshold=t, noise_floor=fl) for k, (t, fl) in ways.items()}
    print(f"\nreal tiles: {len(tiles)}, dataset_threshold = {dthr:.3f}; objects per tile / area fraction")
    print("| source | tiles | " + " | ".join(ways) + " |")
    print("|---|---|" + "---|" * len(ways))
    for src in dict.fromkeys(names):
        m = names == src
        cells = [f"{f[m, F['n_objects']].mean():.1f} / {f[m, F['area_fraction']].mean():.3f}" for f in feats.values()]
        print(f"| {src} | {m.sum()} | " + " | ".join(cells) + " |")


def timing() -> None:
    """5,000 tiles of 64 px: blurred noise blobs (bench_metrics' tiles) and real tiles repeated."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    x = ndimage.gaussian_filter(rng.normal(size=(5000, 1, 64, 64)).astype(np.float32), (0, 0, 1.5, 1.5))
    blobs = np.clip(x / x.std() * 0.5, -1, 1)
    for name, thr in (("noise-aware rule", None), ("given threshold -0.4", -0.4)):
        t = time.perf_counter()
        M.morphology_features(blobs, threshold=thr)
        print(f"5,000 blob tiles, {name}: {time.perf_counter() - t:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--renders", type=int, default=48)
    ap.add_argument("--no-timing", action="store_true")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", module="skan")
    warnings.filterwarnings("ignore", message="The inplace keyword")
    if not a.no_timing:
        timing()
    noise_table()
    real_threshold_table(a.data)
    real_table(compare_real(a.data))
    sim_table(compare_sim(a.renders))


if __name__ == "__main__":
    main()
