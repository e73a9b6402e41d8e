import cv2
import numpy as np
import pytest

from mitogan.metrics.morphology import FEATURE_NAMES, morphology_features

F = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _tile(draw, s=64, blur=0.0):
    img = np.zeros((s, s), np.float32)
    draw(img)
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img / max(img.max(), 1e-6)
    return (img * 2 - 1)[None, None]


def test_straight_line_length_and_ends():
    # a 3 px wide horizontal line from x=10 to x=50: one object, skeleton ~ 41 px minus the thinning at
    # the ends, 2 end points, no branch points, straight (tortuosity 1), width ~3
    t = _tile(lambda im: cv2.line(im, (10, 32), (50, 32), 1.0, 3))
    f = morphology_features(t)[0]
    assert f[F["n_objects"]] == 1
    assert 36 <= f[F["skeleton_length"]] <= 43
    assert f[F["end_points_per_object"]] == 2
    assert f[F["branch_points_per_object"]] == 0
    assert f[F["tortuosity"]] == pytest.approx(1.0, abs=0.05)
    assert 4.0 <= f[F["width_mean"]] <= 5.5  # cv2 thickness 3 draws 5 px


def test_y_junction_has_one_branch_point_three_ends():
    def y(im):
        cv2.line(im, (32, 32), (32, 58), 1.0, 3)
        cv2.line(im, (32, 32), (10, 8), 1.0, 3)
        cv2.line(im, (32, 32), (54, 8), 1.0, 3)
    f = morphology_features(_tile(y))[0]
    assert f[F["n_objects"]] == 1
    assert f[F["branch_points_per_object"]] == 1
    assert f[F["end_points_per_object"]] == 3


def test_beaded_line_has_beads_plain_line_has_none():
    def beaded(im):
        cv2.line(im, (4, 32), (60, 32), 1.0, 3)
        for x in (12, 26, 40, 54):
            cv2.circle(im, (x, 32), 4, 1.0, -1)
    plain = morphology_features(_tile(lambda im: cv2.line(im, (4, 32), (60, 32), 1.0, 3)))[0]
    bead = morphology_features(_tile(beaded))[0]
    assert plain[F["bead_density"]] == 0
    beads = bead[F["bead_density"]] * bead[F["skeleton_length"]] / 10
    assert 3 <= round(beads) <= 5  # 4 beads drawn
    assert bead[F["width_std"]] > plain[F["width_std"]]


def test_empty_and_constant_tiles_are_finite_with_documented_fill():
    tiles = np.stack([np.full((1, 64, 64), v, np.float32) for v in (-1.0, 0.0, 1.0)])
    f = morphology_features(tiles)
    assert np.isfinite(f).all()
    assert (f[:, F["n_objects"]] == 0).all() and (f[:, F["tortuosity"]] == 1).all()
    assert f[2, F["int_mean"]] == 1.0


def test_chunking_does_not_change_results_and_sizes_work():
    rng = np.random.default_rng(0)
    x = np.clip(cv2.GaussianBlur(rng.normal(0, 1, (40, 128)).astype(np.float32), (0, 0), 2) * 3, -1, 1)
    tiles = np.stack([np.roll(x, i, 1)[:, :32] for i in range(40)])[:, None, :32]
    tiles = np.concatenate([tiles, tiles], axis=2)[:, :, :32, :32]  # (40, 1, 32, 32)
    a = morphology_features(tiles, chunk=7)
    b = morphology_features(tiles, chunk=1000)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)  # summation order only
    assert morphology_features(np.zeros((2, 1, 128, 128), np.float32) - 1).shape == (2, len(FEATURE_NAMES))


def test_simulator_truth_lengths_and_branches():
    sim = pytest.importorskip("mitogan.simulate")
    p = sim.SimParams(size=128, frames=1, shot_noise=False, read_noise=0.0, column_noise=0.0,
                      autofluorescence=0.0, gradient=0.0, density=1.5)
    lengths, measured, branches, junctions = [], [], [], []
    for seed in range(6):
        frames, truth = sim.simulate_video(p, seed)
        f = frame = frames[0].astype(np.float32)
        tile = ((frame - frame.min()) / (np.ptp(frame) + 1e-6) * 2 - 1)[None, None]
        f = morphology_features(tile)[0]
        objs = [o for o in truth["objects"] if o["first_frame"] == 0]
        lengths.append(sum(o["length_px"] for o in objs))
        measured.append(f[F["skeleton_length"]])
        branches.append(sum(o["branch_points"]["count"] for o in objs))
        junctions.append(f[F["branch_points_per_object"]] * f[F["n_objects"]])
    # total skeleton length tracks the truth (objects may leave the frame or touch: loose bounds)
    assert np.corrcoef(lengths, measured)[0, 1] > 0.7
    ratio = np.sum(measured) / np.sum(lengths)
    assert 0.3 < ratio < 1.3  # measured 0.47: objects run off the 128 px frame and get clipped
    assert np.sum(junctions) >= 0.5 * np.sum(branches)
