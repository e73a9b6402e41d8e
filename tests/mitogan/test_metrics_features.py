"""The deterministic fluorescence feature space: scattering, intensity statistics, robust scaling."""

import cv2
import numpy as np

from mitogan.metrics.features import FeatureSpace, describe, feature_names, intensity_features, INTENSITY_NAMES
from mitogan.metrics.scattering import scattering_features, scattering_names


def _lines(n, s=64, seed=0, width=2):
    rng = np.random.default_rng(seed)
    out = np.full((n, s, s), -1.0, np.float32)
    for img in out:
        for _ in range(3):
            p = rng.integers(0, s, 4)
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), 0.8, width)
        img[:] = cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 0.03, (s, s))
    return np.clip(out, -1, 1)[:, None]


def test_scattering_is_deterministic_finite_and_named():
    x = _lines(5)
    a, b = scattering_features(x), scattering_features(x, batch=2)
    assert a.shape == (5, len(scattering_names(64))) and np.isfinite(a).all()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # batching does not change the result


def test_scattering_is_invariant_to_90_degree_rotation():
    # orientations 0/45/90/135 map onto each other under a 90 degree turn; everything is orientation-pooled
    x = _lines(4, seed=1)
    np.testing.assert_allclose(scattering_features(x), scattering_features(np.rot90(x, axes=(2, 3)).copy()),
                               rtol=5e-2, atol=1e-3)  # coarse scales are sampled every 2-4 px: the grid phase moves


def test_blur_removes_fine_scale_energy_and_tubes_are_anisotropic():
    names = scattering_names(64)
    x = _lines(6, seed=2)
    blurred = np.stack([cv2.GaussianBlur(t[0], (0, 0), 2.0) for t in x])[:, None]
    f, fb = scattering_features(x), scattering_features(blurred)
    j0 = names.index("scat_s1_j0")
    assert (fb[:, j0] < f[:, j0] - 0.5).all()  # log energy at the finest scale drops
    blobs = np.full((6, 1, 64, 64), -1.0, np.float32)
    for i, img in enumerate(blobs[:, 0]):
        cv2.circle(img, (20 + 4 * i, 30), 6, 0.8, -1)
        img[:] = cv2.GaussianBlur(img, (0, 0), 1.0)
    a = names.index("scat_aniso_j1")
    assert scattering_features(x)[:, a].mean() > scattering_features(blobs)[:, a].mean()


def test_intensity_noise_estimate_follows_added_noise():
    x = _lines(8, seed=3)
    noisy = np.clip(x + np.random.default_rng(0).normal(0, 0.2, x.shape), -1, 1).astype(np.float32)
    k = INTENSITY_NAMES.index("noise_sigma")
    assert (intensity_features(noisy)[:, k] > 2 * intensity_features(x)[:, k]).all()


def test_describe_has_one_named_column_per_feature_and_no_nan():
    x = np.concatenate([_lines(4), np.full((2, 1, 64, 64), -1, np.float32)])  # empty tiles too
    f = describe(x, threshold=0.0)
    assert f.shape == (6, len(feature_names(64))) and np.isfinite(f).all()


def test_robust_space_keeps_order_and_stops_one_feature_dominating():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 3))
    space = FeatureSpace(ref, ["a", "b", "c"])
    z = space(np.array([[100.0, 1.0, 0.0], [10.0, 1.0, 0.0]]))
    assert z[0, 0] > z[1, 0] > z[1, 1] > 0  # order kept
    assert z[0, 0] < 5  # 100 MADs away counts ~log(101), not 100


def test_faster_scattering_gives_the_same_features_as_the_plain_formulas(monkeypatch):
    """The block-by-block periodisation and the hypot modulus are speed-ups only: against the plain
    formulas (a reshape-and-sum of the spectrum, complex abs) every feature agrees to 1e-6, at every size."""
    import torch

    from mitogan.metrics import scattering

    def plain_downsample(spec, d):
        m = spec.shape[-1] // d
        return spec if d == 1 else spec.reshape(*spec.shape[:-2], d, m, d, m).sum((-4, -2)) / d ** 2

    noise = np.random.default_rng(3).uniform(-1, 1, (6, 1, 64, 64)).astype(np.float32)
    sets = [_lines(6, 32, seed=3), _lines(6, 64, seed=4), noise, _lines(2, 128, seed=5)]
    fast = [scattering_features(x) for x in sets]
    monkeypatch.setattr(scattering, "_downsample", plain_downsample)
    monkeypatch.setattr(scattering, "_modulus", torch.abs)
    for x, f in zip(sets, fast):
        np.testing.assert_allclose(f, scattering_features(x), rtol=1e-6, atol=1e-6)


def test_intensity_statistics_equal_their_plain_float64_formulas():
    """skew (float32 cubes by multiplication) and the noise level (its median deviation found in float32)
    agree with the same statistics computed in float64 to 1e-6."""
    x = np.concatenate([_lines(8, seed=6), np.random.default_rng(6).uniform(-1, 1, (4, 1, 64, 64))]).astype(np.float32)
    f = intensity_features(x)
    flat = x.reshape(len(x), -1).astype(np.float64)
    d = flat - flat.mean(1, keepdims=True)
    skew = (d ** 3).mean(1) / flat.std(1) ** 3
    np.testing.assert_allclose(f[:, INTENSITY_NAMES.index("int_skew")], skew, rtol=1e-5, atol=1e-6)
    t = x[:, 0].astype(np.float64)
    lap = (4 * t[:, 1:-1, 1:-1] - t[:, :-2, 1:-1] - t[:, 2:, 1:-1] - t[:, 1:-1, :-2] - t[:, 1:-1, 2:]).reshape(len(x), -1)
    k = int(0.5 * (lap.shape[1] - 1) + 0.5)  # the nearest-rank median the features use
    med = np.partition(lap, k, 1)[:, k:k + 1]
    noise = 1.4826 * np.partition(np.abs(lap - med), k, 1)[:, k] / np.sqrt(20)
    np.testing.assert_allclose(f[:, INTENSITY_NAMES.index("noise_sigma")], noise, rtol=1e-6, atol=1e-7)


def test_topology_sees_structure_destroyed_and_ignores_contrast():
    from mitogan.metrics.features import TOPOLOGY_NAMES, topology_features

    x = _lines(6, seed=4)
    f = topology_features(x)
    assert f.shape == (6, len(TOPOLOGY_NAMES)) and np.isfinite(f).all()
    # contrast and offset move neither the tile's own quantiles' sets nor their shape
    np.testing.assert_allclose(topology_features(0.5 * x - 0.2), f, atol=1e-6)
    # the same pixels shuffled: the bright set falls apart into many small pieces (Euler number up, boundary up
    # on average: a smoothed shuffle has a few large blobs too)
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(t.ravel()).reshape(t.shape) for t in x])
    g = topology_features(shuffled)
    e, p = TOPOLOGY_NAMES.index("topo_euler_q90"), TOPOLOGY_NAMES.index("topo_perimeter_q90")
    assert (g[:, e] > f[:, e] + 3).all() and g[:, p].mean() > f[:, p].mean()
    assert (topology_features(np.full((2, 1, 64, 64), -1, np.float32)) == 0).all()  # empty tiles: no set, no shape


def test_describe_gives_the_same_numbers_on_any_number_of_threads():
    # more tiles than morphology's chunk, so the blocks and their order matter; per-tile thresholds sliced per block
    from mitogan.metrics.morphology import MORPH_CHUNK

    x = np.concatenate([_lines(MORPH_CHUNK // 2, seed=s) for s in range(3)])  # 1.5 chunks
    for thr in (0.0, None, np.linspace(-0.5, 0.5, len(x))):
        one = describe(x, thr, workers=1)
        assert one.shape == (len(x), len(feature_names(64)))
        for w in (2, 5):
            assert np.array_equal(describe(x, thr, workers=w), one)
    # a block is computed as on its own: the rows of the second block do not depend on the first
    assert np.array_equal(describe(x[MORPH_CHUNK:], 0.0, workers=2), describe(x, 0.0, workers=2)[MORPH_CHUNK:])
