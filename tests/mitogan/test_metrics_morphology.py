"""Morphology features: drawn shapes, the noise-aware thresholds, skan's junctions, the simulator's truth.

Tolerances come from the measurements in docs/morphology-validation.md (bench/validate_morphology.py);
each assertion says what was measured.
"""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from mitogan.metrics.morphology import (FEATURE_NAMES, MIN_OBJECT_AREA, dataset_threshold, group_thresholds,
                                        morphology_features, otsu_masks, segment, skan_degrees, tile_thresholds)
from mitogan.metrics.proof import frames_to_tiles

F = {n: i for i, n in enumerate(FEATURE_NAMES)}


def _tile(draw, s=64, blur=0.0):
    img = np.zeros((s, s), np.float32)
    draw(img)
    if blur:
        img = cv2.GaussianBlur(img, (0, 0), blur)
    img = img / max(img.max(), 1e-6)
    return (img * 2 - 1)[None, None]


def _count(f, name):
    """Per-object feature back to a count per tile."""
    return np.round(f[..., F[name]] * f[..., F["n_objects"]]).astype(int)


# ------------------------------------------------------------------------------------------ drawn shapes
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


@pytest.mark.parametrize("thick", [1, 3])
def test_two_junctions_3px_apart_count_as_two(thick):
    # two side branches leave a line 3 px apart (up and up for 1 px lines, up and down for 3 px ones):
    # skan sees two junctions; the old junction clusters (<= 3 px merge) saw one
    def two(im):
        cv2.line(im, (8, 40), (56, 40), 1.0, thick)
        cv2.line(im, (28, 10), (28, 40), 1.0, thick)
        if thick == 1:
            cv2.line(im, (31, 10), (31, 40), 1.0, thick)
        else:
            cv2.line(im, (31, 40), (31, 62), 1.0, thick)
    f = morphology_features(_tile(two))[0]
    assert f[F["n_objects"]] == 1
    assert _count(f, "branch_points_per_object") == 2
    assert _count(f, "end_points_per_object") == 4


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
    for thr in (None, 0.5, -0.5):
        f = morphology_features(tiles, threshold=thr)
        assert np.isfinite(f).all()
        assert (f[:, F["n_objects"]] == 0).all() and (f[:, F["tortuosity"]] == 1).all()
        assert f[2, F["int_mean"]] == 1.0


def test_chunking_does_not_change_results_and_sizes_work():
    rng = np.random.default_rng(0)
    x = np.clip(cv2.GaussianBlur(rng.normal(0, 1, (40, 128)).astype(np.float32), (0, 0), 2) * 3, -1, 1)
    tiles = np.stack([np.roll(x, i, 1)[:, :32] for i in range(40)])[:, None, :32]
    tiles = np.concatenate([tiles, tiles], axis=2)[:, :, :32, :32]  # (40, 1, 32, 32)
    for thr in (None, -0.2, np.linspace(-0.5, 0.5, 40)):
        a = morphology_features(tiles, chunk=7, threshold=thr)
        b = morphology_features(tiles, chunk=1000, threshold=thr)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)  # summation order only
    assert morphology_features(np.zeros((2, 1, 128, 128), np.float32) - 1).shape == (2, len(FEATURE_NAMES))


# ------------------------------------------------------------------------------------------ thresholds
def _noise_frame(kind: str, seed: int = 0) -> np.ndarray:
    """A 256 px frame of pure camera noise on an offset (raw counts, like the deep-events crops)."""
    rng = np.random.default_rng(seed)
    shape = (256, 256)
    if kind == "gauss":
        return 100 + 5 * rng.normal(size=shape)
    if kind == "blurred":  # spatially correlated noise: the histogram rule must catch it, the Laplacian cannot
        return 100 + 5 * ndimage.gaussian_filter(rng.normal(size=shape), 1.0)
    return 75.0 + rng.poisson(float(kind.removeprefix("poisson")), shape)


@pytest.mark.parametrize("kind", ["gauss", "poisson1", "poisson4", "poisson30", "blurred"])
def test_noise_tile_gets_empty_mask(kind):
    # pure noise, normalised per frame as the pipeline does: plain Otsu finds 5-83 objects covering
    # 20-49 % of each 64 px tile; the noise-aware rule (per tile, or per frame carried to the tiles)
    # finds nothing (measured 0 objects in 48 tiles for every noise kind)
    tiles = frames_to_tiles(_noise_frame(kind)[None], 64)  # (16, 1, 64, 64)
    otsu = morphology_features(tiles, threshold=otsu_masks(tiles[:, 0])[1], noise_floor=False)
    assert otsu[:, F["area_fraction"]].mean() > 0.15  # the problem being fixed
    for f in (morphology_features(tiles), morphology_features(tiles, threshold=group_thresholds(tiles, [0] * 16))):
        assert f[:, F["area_fraction"]].max() < 0.01
        assert f[:, F["n_objects"]].sum() <= 1


@pytest.mark.parametrize("amplitude", [1.0, 0.3])
def test_tube_on_noise_is_still_segmented(amplitude):
    # a blurred 3 px tube, peak 1.0 or 0.3 over Gaussian noise of sd 0.03 (SNR 33 and 10), in a tile
    rng = np.random.default_rng(1)
    img = np.zeros((64, 64), np.float32)
    cv2.line(img, (8, 20), (56, 44), 1.0, 3)
    img = cv2.GaussianBlur(img, (0, 0), 1.0) * amplitude / cv2.GaussianBlur(img, (0, 0), 1.0).max()
    tile = np.clip(img + 0.03 * rng.normal(size=img.shape) - 0.8, -1, 1).astype(np.float32)[None, None]
    f = morphology_features(tile)[0]
    assert f[F["n_objects"]] == 1
    assert 45 <= f[F["skeleton_length"]] <= 62  # 54 px; 8-connected steps add up to 8 % on a slope
    # threshold in the tube's lower part: at SNR 10 the noise floor (5 sigma) is at half its height
    assert tile_thresholds(tile)[0] < -0.8 + 0.6 * amplitude


def test_threshold_argument_forms_and_errors():
    t = _tile(lambda im: cv2.circle(im, (32, 32), 10, 1.0, -1), blur=2)  # smooth blob, no noise
    n = 3
    tiles = np.repeat(t, n, 0)
    a = morphology_features(tiles, threshold=0.0, noise_floor=False)
    b = morphology_features(tiles, threshold=np.zeros(n), noise_floor=False)
    np.testing.assert_array_equal(a, b)
    # without the noise floor the mask is exactly tile > threshold (one blob, far above MIN_OBJECT_AREA)
    assert a[0, F["area_fraction"]] == pytest.approx((t > 0.0).mean())
    assert (t > 0.0).sum() > MIN_OBJECT_AREA
    with pytest.raises(ValueError, match="threshold"):
        morphology_features(tiles, threshold=np.zeros(n + 1))
    with pytest.raises(ValueError, match="threshold"):
        morphology_features(tiles, threshold=np.nan)
    with pytest.raises(ValueError, match="groups"):
        dataset_threshold(tiles, groups=[0, 1])


def _frame_mask(x: np.ndarray, thr: float) -> np.ndarray:
    """Whole-frame mask of a (1, S, S) image: > thr, objects under MIN_OBJECT_AREA dropped."""
    lab, n = ndimage.label(x[0] > thr, np.ones((3, 3)))
    return np.isin(lab, np.flatnonzero(np.bincount(lab.ravel())[1:] >= MIN_OBJECT_AREA) + 1)


def test_dataset_threshold_keeps_empty_background_empty():
    sim = pytest.importorskip("mitogan.simulate")
    # three sparse simulated frames with camera noise and haze, and one frame of pure noise; each frame is
    # normalised on its own (0.5 / 99.8 %) and cut into 16 tiles, as real data is
    frames = [sim.simulate_video(sim.SimParams(size=256, frames=1, density=1.0), s)[0][0] for s in range(3)]
    frames.append(_noise_frame("gauss", 3))
    tiles = np.concatenate([frames_to_tiles(f[None], 64) for f in frames])  # (64, 1, 64, 64)
    groups = np.repeat(np.arange(4), 16)
    thr = dataset_threshold(tiles, groups)
    f = morphology_features(tiles, threshold=thr)
    background = []
    for g, frame in enumerate(frames):  # tiles whose part of the whole-frame mask is empty
        x = frames_to_tiles(frame[None], 256)[:, 0]
        mask = _frame_mask(x, group_thresholds(x[:, None], [0])[0])
        empty = ~mask.reshape(4, 64, 4, 64).any((1, 3)).ravel()
        background += list(np.flatnonzero(empty) + 16 * g)
    assert len(background) >= 24  # measured 48: the noise frame's 16 tiles and 32 of the sparse frames
    assert f[background, F["n_objects"]].sum() == 0
    assert f[groups < 3, F["n_objects"]].sum() >= 15  # the objects are still found (measured 23)
    # the noise floor is what keeps the noise frame empty: stretched to [-1, 1] by its own percentiles,
    # its noise sits above a threshold decided on frames with signal
    plain = morphology_features(tiles[groups == 3], threshold=thr, noise_floor=False)
    assert plain[:, F["area_fraction"]].mean() > 0.5


# ------------------------------------------------------------------------------------------ skan
def _skan():
    return pytest.importorskip("skan")


@pytest.mark.slow
def test_skan_degrees_equal_skans_pixel_by_pixel():
    skan = _skan()
    # random blurred blobs of every shape, skeletonised in one batch: each pixel's degree (hence every
    # junction and end point) equals skan's on that tile alone (measured: all 2,552 real tiles equal too)
    rng = np.random.default_rng(3)
    x = ndimage.gaussian_filter(rng.normal(size=(120, 64, 64)).astype(np.float32), (0, 1.5, 1.5))
    x = np.clip(x / x.std() * 0.5, -1, 1)
    _, _, skel = segment(x, np.full(len(x), 0.1))
    deg = skan_degrees(skel)
    t = skel.shape[1]
    for i in range(len(x)):
        s = skel[i * t:(i + 1) * t]
        if s.sum() < 2:
            continue
        sk = skan.Skeleton(s)
        rows, cols = sk.coordinates.T.astype(int)
        np.testing.assert_array_equal(deg[i * t:(i + 1) * t][rows, cols], sk.degrees)


def _skan_totals(skan, skel, width):
    sk = skan.Skeleton(np.where(skel, np.maximum(width, 1e-3), 0.0))
    table = skan.summarize(sk, separator="_")
    dist = table["branch_distance"].to_numpy()
    return {"length": dist.sum(), "width": (table["mean_pixel_value"].to_numpy() * dist).sum() / dist.sum(),
            "junctions": int((sk.degrees >= 3).sum()), "ends": int((sk.degrees == 1).sum())}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The inplace keyword")  # skan 0.13's summarize on pandas >= 3.1
def test_real_frames_agree_with_skan(shared_data):
    skan = _skan()
    from skimage.morphology import skeletonize

    from mitogan.io import read_inputs

    rows = []  # (raw camera frame?, ours, skan on our skeleton, skan on skimage's skeleton of the plain mask)
    for v in read_inputs(shared_data):
        for frame in v.frames[::4]:  # 99 of the 374 frames (the docs give the numbers on all of them)
            x = frames_to_tiles(frame[None], min(frame.shape))[:, 0]
            thr = tile_thresholds(x)
            labels, _, skel = segment(x, thr)
            mask = x[0] > thr[0]
            if skel.sum() < 2:
                continue  # pure-noise frames: nothing to compare
            f = morphology_features(x, threshold=thr)[0]
            ours = {"length": f[F["skeleton_length"]] - f[F["n_objects"]], "width": f[F["width_mean"]],
                    "junctions": _count(f, "branch_points_per_object"), "ends": _count(f, "end_points_per_object")}
            rows.append((frame.dtype != np.uint8, ours,  # raw camera counts vs processed 8-bit
                         _skan_totals(skan, skel, 2 * ndimage.distance_transform_edt(labels > 0) - 1),
                         _skan_totals(skan, skeletonize(mask), 2 * ndimage.distance_transform_edt(mask) - 1)))
    assert len(rows) >= 80

    def col(k, q, raw=None):
        return np.array([r[k][q] for r in rows if raw is None or r[0] == raw], float)

    # our skeleton: junctions and ends identical on every frame (measured: 353 of 353 frames); our length
    # is skan's edge sum + 1 px of pixel extent per object (minus the edges skan's junction trees drop:
    # r 1.0000, total 1.000); width: r 0.9975, ours/skan 0.978 (pixel mean vs skan's branch means
    # weighted by branch length)
    np.testing.assert_array_equal(col(1, "junctions"), col(2, "junctions"))
    np.testing.assert_array_equal(col(1, "ends"), col(2, "ends"))
    assert np.corrcoef(col(1, "length"), col(2, "length"))[0, 1] > 0.9999
    assert abs(col(1, "length").sum() / col(2, "length").sum() - 1) < 0.005
    assert np.corrcoef(col(1, "width"), col(2, "width"))[0, 1] > 0.995
    assert 0.96 < col(1, "width").sum() / col(2, "width").sum() < 0.99
    # skan on skimage's skeleton of the plain mask (specks and pinholes kept). Processed 8-bit data:
    # measured r 0.9997 / 0.988 / 0.9992 and ours:skan 0.995 / 0.974 / 0.987 for length, junctions, ends
    for q, r_min, lo, hi in (("length", 0.999, 0.98, 1.01), ("junctions", 0.97, 0.94, 1.0), ("ends", 0.995, 0.96, 1.0)):
        a, b = col(1, q, raw=False), col(3, q, raw=False)
        assert np.corrcoef(a, b)[0, 1] > r_min, q
        assert lo < a.sum() / b.sum() <= hi, q
    # raw camera frames: shot-noise pinholes in the plain mask triple skan's junctions (ours:skan 0.28)
    assert col(1, "junctions", raw=True).sum() < 0.5 * col(3, "junctions", raw=True).sum()


@pytest.mark.slow
def test_real_frames_with_empty_mask_stay_empty(shared_data):
    from mitogan.io import read_inputs

    tiles, groups = [], []
    for v in read_inputs(shared_data):
        for frame in v.frames:
            t = frames_to_tiles(frame[None], 64)
            tiles.append(t)
            groups += [len(tiles)] * len(t)
    tiles, groups = np.concatenate(tiles), np.array(groups)
    per_frame = morphology_features(tiles, threshold=group_thresholds(tiles, groups))
    n_frame = np.bincount(groups, per_frame[:, F["n_objects"]])
    empty = n_frame[groups] == 0  # tiles of frames whose whole-frame mask is empty (the noise crops)
    assert empty.sum() >= 100  # 336 tiles measured (21 frames)
    thr = dataset_threshold(tiles, groups)
    for f in (morphology_features(tiles[empty]), morphology_features(tiles[empty], threshold=thr)):
        assert f[:, F["n_objects"]].sum() == 0  # per-tile Otsu found 14-16 objects per tile here
    assert morphology_features(tiles[~empty], threshold=thr)[:, F["n_objects"]].mean() > 2  # measured 3.7


# ------------------------------------------------------------------------------------------ simulator
def _sim_params(sim, i):
    """Low-noise renders that vary density, width, branching and beading from render to render."""
    return sim.SimParams(size=256, frames=1, shot_noise=False, read_noise=0.5, column_noise=0.0,
                         autofluorescence=0.0, gradient=0.0, density=(1.5, 2.5, 3.5)[i % 3],
                         width_mean=(4.0, 6.0, 8.0, 10.0)[i % 4], branch_prob=(0.1, 0.4, 0.7)[i % 3],
                         bead_prob=(0.0, 0.3, 0.6, 0.9)[(i // 2) % 4], min_length=10.0)


def _inside(xy, size):
    xy = np.asarray(xy, float).reshape(-1, 2)
    return (xy >= 0).all(1) & (xy <= size - 1).all(1)


def _truth(sim, truth, size):
    """Frame-0 truth inside the field of view: skeleton length, length-weighted width, branch points."""
    length = width = junctions = 0.0
    for o in truth["objects"]:
        if o["first_frame"] != 0:
            continue
        obj = sum(float(np.hypot(*np.diff(b, axis=0).T)[_inside(b[:-1], size) & _inside(b[1:], size)].sum())
                  for b in sim.skeleton_at(truth, o, 0))
        length, width = length + obj, width + obj * o["width_px"]
        junctions += _inside(o["branch_points"]["xy"], size).sum()
    return length, width / max(length, 1e-9), junctions


@pytest.mark.slow
def test_simulator_truth_lengths_widths_junctions():
    sim = pytest.importorskip("mitogan.simulate")
    measured, truth = [], []
    for i in range(48):
        frames, tr = sim.simulate_video(_sim_params(sim, i), i)
        x = frames_to_tiles(frames[:1], 256)
        f = morphology_features(x)[0]
        measured.append((f[F["skeleton_length"]], f[F["width_mean"]], _count(f, "branch_points_per_object")))
        truth.append(_truth(sim, tr, 256))
    m, t = np.array(measured, float), np.array(truth, float)
    r = [np.corrcoef(m[:, k], t[:, k])[0, 1] for k in range(3)]
    ratio = m.sum(0) / t.sum(0)
    # measured on these 48 renders: length r 0.878, total 0.737 (skeletons stop ~ a radius short of each
    # tip); width r 0.950, 0.891 (2 EDT - 1 of the blurred, thresholded tube vs the drawn diameter);
    # junctions r 0.54, 1.43 (crossing objects and spurs add junctions the truth does not have)
    assert r[0] > 0.8 and 0.65 < ratio[0] < 0.85
    assert r[1] > 0.9 and 0.8 < ratio[1] < 0.97
    assert r[2] > 0.3 and 1.0 < ratio[2] < 2.0
