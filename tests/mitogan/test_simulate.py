"""The simulator: determinism, file layout, and ground truth that matches what is drawn."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from mitogan.cli import main
from mitogan.errors import ConfigError
from mitogan.simulate import SimParams, default_dataset, simulate_dataset, simulate_video, skeleton_at

# everything still: no object motion, no fission/fusion (isolates one effect per test)
STILL = dict(speed=0.0, jitter=0.0, rotation=0.0, wiggle=0.0, fission_rate=0.0, fusion_prob=0.0, stage_drift=0.0)
SMALL = SimParams(size=64, frames=4)


def _sample(img, xy):
    """Bilinear intensity at (x, y) points."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    return ndimage.map_coordinates(img.astype(np.float64), [xy[:, 1], xy[:, 0]], order=1)


def _inside(pts, size, margin):
    pts = np.concatenate([np.asarray(p).reshape(-1, 2) for p in pts])
    return bool(((pts >= margin) & (pts <= size - 1 - margin)).all())


def test_same_seed_same_video_and_truth():
    f1, t1 = simulate_video(SMALL, seed=3)
    f2, t2 = simulate_video(SMALL, seed=3)
    np.testing.assert_array_equal(f1, f2)
    assert json.dumps(t1) == json.dumps(t2)


def test_different_seed_different_video():
    f1, _ = simulate_video(SMALL, seed=3)
    f2, _ = simulate_video(SMALL, seed=4)
    assert not np.array_equal(f1, f2)


def test_shape_dtype_and_camera_levels():
    p = SimParams(size=96, frames=5, offset=100.0)
    frames, truth = simulate_video(p, seed=0)
    assert frames.shape == (5, 96, 96) and frames.dtype == np.uint16
    assert truth["shape"] == [5, 96, 96]
    # the darkest pixels sit near the camera offset + background, the objects well above it
    assert 90 < np.percentile(frames, 1) < 100 + p.background * (1 + p.gradient)
    assert frames.max() > 100 + p.background + 100


def test_params_validated_with_field_name():
    with pytest.raises(ConfigError, match="bead_prob"):
        SimParams(bead_prob=2.0)
    with pytest.raises(ConfigError, match="size"):
        SimParams(size=8)


def test_skeleton_and_lengths_consistent_with_truth():
    frames, truth = simulate_video(SimParams(size=128, frames=6, branch_prob=0.5), seed=1)
    assert truth["objects"]
    for ob in truth["objects"]:
        skel = skeleton_at(truth, ob, ob["first_frame"])
        for a, b in zip(skel, ob["skeleton_px"]):
            np.testing.assert_allclose(a, b, atol=2e-3)
        # length_px is the summed polyline length of all branches (flexing is zero at birth)
        length = sum(np.hypot(*np.diff(np.asarray(b), axis=0).T).sum() for b in ob["skeleton_px"])
        assert ob["length_px"] == pytest.approx(length, rel=1e-3, abs=0.05)
        assert ob["branch_points"]["count"] == ob["n_branches"] - 1


def test_beaded_tubes_are_brighter_at_recorded_beads():
    p = SimParams(size=192, frames=1, density=1.2, bead_prob=1.0, branch_prob=0.0, length_mean=90,
                  length_sd=10, bead_period=14.0, bead_amplitude=0.6, **STILL)
    frame, truth = simulate_video(p, seed=2)
    frame = frame[0].astype(float)
    at_beads, between, periods, peaks = [], [], [], []
    for ob in truth["objects"]:
        skel = np.asarray(ob["skeleton_px"][0])
        if not _inside([skel], 192, 8) or ob["beads"]["count"] < 4:
            continue
        assert ob["beads"]["period_px"] > 0
        s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(skel, axis=0).T))])
        bead_s = np.array([b["s_px"] for b in ob["beads"]["positions"]])
        mid_s = (bead_s[1:] + bead_s[:-1]) / 2
        interp = lambda u: np.stack([np.interp(u, s, skel[:, 0]), np.interp(u, s, skel[:, 1])], 1)  # noqa
        at_beads.append(_sample(frame, ob["beads"]["xy"]).mean())
        between.append(_sample(frame, interp(mid_s)).mean())
        # along the skeleton, the intensity peaks at each recorded bead, one period apart
        profile = _sample(frame, interp(np.arange(0, s[-1], 1.0)))  # 1 px steps
        half = ob["beads"]["period_px"] / 2
        for sj in bead_s:
            lo, hi = int(max(sj - half, 0)), int(min(sj + half, len(profile) - 1))
            peaks.append(lo + np.argmax(profile[lo:hi + 1]) - sj)
        periods.append((np.median(np.diff(bead_s)), ob["beads"]["period_px"]))
    assert len(at_beads) >= 2, "seed gave too few whole beaded objects"
    assert np.mean(at_beads) > 1.2 * np.mean(between)
    assert np.median(np.abs(peaks)) <= 2.0
    for spacing, recorded in periods:
        assert spacing == pytest.approx(recorded, abs=1.0)


def test_branch_points_are_skeleton_junctions():
    from skimage.morphology import skeletonize

    p = SimParams(size=192, frames=1, density=1.5, branch_prob=1.0, max_branches=2, bead_prob=0.0,
                  shot_noise=False, read_noise=0.0, column_noise=0.0, autofluorescence=0.0, gradient=0.0,
                  length_mean=110, brightness_sd=0.0, **STILL)
    found = []
    for seed in range(4):
        frame, truth = simulate_video(p, seed=seed)
        signal = frame[0].astype(float) - p.offset - p.background
        skel = skeletonize(signal > 0.4 * p.brightness)  # all objects equally bright: one threshold fits
        neighbours = ndimage.convolve(skel.astype(int), np.ones((3, 3), int), mode="constant") - 1
        junctions = np.argwhere(skel & (neighbours >= 3))[:, ::-1]  # (x, y)
        for ob in truth["objects"]:
            assert ob["branch_points"]["count"] == ob["n_branches"] - 1  # too short for a side branch: 0
            for (x, y), (parent_b, _) in zip(ob["branch_points"]["xy"], ob["motion"]["attach"][1:]):
                # each branch point lies on its parent's skeleton
                assert np.hypot(*(np.asarray(ob["skeleton_px"][parent_b]) - [x, y]).T).min() < 1e-2
                if 10 < x < 182 and 10 < y < 182 and len(junctions):
                    # a thick Y skeletonises with its junction within ~1-2 tube widths of the true one
                    found.append(float(np.hypot(*(junctions - [x, y]).T).min() / ob["width_px"]) < 2.0)
    # crossings of other objects can hide a junction now and then
    assert len(found) >= 4 and np.mean(found) >= 0.75, found


def test_bleaching_lowers_signal_over_time():
    p = SimParams(size=96, frames=8, bleach_rate=0.1, background=0.0, **STILL)
    frames, truth = simulate_video(p, seed=0)
    signal = frames.reshape(8, -1).astype(float).mean(1) - p.offset
    assert np.all(np.diff(signal) < 0)
    assert signal[-1] / signal[0] == pytest.approx(np.exp(-0.1 * 7), rel=0.1)
    assert truth["video"]["bleach_rate"] == 0.1


def test_stage_drift_moves_content_by_recorded_amount():
    p = SimParams(size=128, frames=11, density=4.0, bleach_rate=0.0, **{**STILL, "stage_drift": 0.8})
    frames, truth = simulate_video(p, seed=7)
    a, b = (cv2.GaussianBlur(f.astype(np.float32), (0, 0), 1) - cv2.GaussianBlur(f.astype(np.float32), (0, 0), 12)
            for f in (frames[0], frames[-1]))
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_32F))
    expected = truth["video"]["stage_offset_px"][-1]
    assert np.hypot(*expected) == pytest.approx(8.0, rel=1e-3)
    assert np.hypot(dx - expected[0], dy - expected[1]) < 0.5


def test_fission_and_fusion_events_link_objects():
    p = SimParams(size=128, frames=12, fission_rate=0.2, fusion_prob=1.0, fusion_distance=6.0, density=5.0)
    _, truth = simulate_video(p, seed=0)
    objs = {o["id"]: o for o in truth["objects"]}
    kinds = {e["type"] for e in truth["events"]}
    assert kinds == {"fission", "fusion"}
    for e in truth["events"]:
        for pid in e["parents"]:
            assert objs[pid]["last_frame"] == e["frame"] - 1
        for cid in e["children"]:
            assert objs[cid]["first_frame"] == e["frame"] and objs[cid]["parents"] == e["parents"]
        if e["type"] == "fission":  # the two pieces keep the parent's length, less the 4 px gap
            total = sum(objs[c]["length_px"] for c in e["children"])
            assert total == pytest.approx(objs[e["parents"][0]]["length_px"] - 4, abs=1.5)
    assert truth["counts"]["fission"] + truth["counts"]["fusion"] == len(truth["events"])


def test_simulate_dataset_writes_stacks_truth_and_summary(tmp_path):
    out = simulate_dataset(tmp_path / "sim", videos=2, frames=3, size=48, seed=1, progress=False)
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["videos"] == 2 and meta["params"]["size"] == 48 and len(meta["items"]) == 2
    for item in meta["items"]:
        stack = tifffile.imread(out / item["tif"])
        assert stack.shape == (3, 48, 48) and stack.dtype == np.uint16
        truth = json.loads((out / item["truth"]).read_text())
        # each video can be rebuilt from its recorded seed
        frames, _ = simulate_video(SimParams(**meta["params"]), item["seed"])
        np.testing.assert_array_equal(frames, stack)
        assert truth["seed"] == item["seed"]


@pytest.mark.parametrize("kwargs, match", [({"videos": 0}, "videos"), ({"size": 16}, "size"),
                                           ({"frames": 0}, "frames")])
def test_simulate_dataset_rejects_bad_args(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        simulate_dataset(tmp_path, **{"videos": 1, "frames": 2, "size": 48, **kwargs}, progress=False)


def test_default_dataset_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MITOGAN_CACHE_DIR", str(tmp_path / "cache"))
    first = default_dataset(videos=1, frames=2, size=40, progress=False)
    assert first.parent == tmp_path / "cache" and first.name.startswith("sim-")
    stamp = (first / "video_000.tif").stat().st_mtime_ns
    assert default_dataset(videos=1, frames=2, size=40, progress=False) == first
    assert (first / "video_000.tif").stat().st_mtime_ns == stamp  # reused, not recomputed
    assert default_dataset(videos=1, frames=2, size=40, seed=1, progress=False) != first
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp")]


def test_cli_writes_files_and_preview(tmp_path, capsys):
    out, png = tmp_path / "sim", tmp_path / "preview.png"
    rc = main(["simulate", "--out", str(out), "--videos", "2", "--frames", "3", "--size", "48", "--seed", "0",
               "--set", "bead_prob=1", "--preview", str(png), "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [".mitogan.json", "masks", "simulation.json", "video_000.json",
                                                    "video_000.tif", "video_001.json", "video_001.tif"]
    assert json.loads((out / "simulation.json").read_text())["params"]["bead_prob"] == 1.0
    assert png.stat().st_size > 1000
    assert "wrote 2 videos" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--size", "8"], "size: 8 is below the minimum 32"),
    (["--videos", "0"], "videos: 0 must be at least 1"),
    (["--set", "no_such=1"], "no_such: unknown config key"),
    (["--set", "size=64"], "use --size instead"),
])
def test_cli_bad_args_give_one_clean_line(tmp_path, capsys, args, message):
    rc = main(["simulate", "--out", str(tmp_path / "o"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err
