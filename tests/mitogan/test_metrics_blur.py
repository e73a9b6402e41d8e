"""``metrics.blur.gaussian_blur``: SciPy's Gaussian filter (mirrored border, 4 sigma kernel), faster on tiles."""

import numpy as np
import pytest
from scipy import ndimage

from mitogan.metrics.blur import MIN_SIDE, gaussian_blur


@pytest.mark.parametrize("shape", [(6, 1, 64, 64), (5, 64, 48), (3, 1, 100, 64), (4, 1, 16, 16), (2, 1, 32, 64)])
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 4.0, 13.0])
def test_it_computes_what_scipy_computes(shape, sigma):
    # OpenCV's path (both sides >= MIN_SIDE, a kernel narrower than the image) and SciPy's (the rest); a 13 px
    # sigma reaches 52 px, past the border of a 48 px side: mirrored more than once
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    want = ndimage.gaussian_filter(x, (0,) * (x.ndim - 2) + (sigma, sigma), mode="reflect")
    got = gaussian_blur(x, sigma)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_views_impulses_and_no_blur():
    x = np.zeros((3, 1, 64, 64), np.float32)
    x[0, 0, 0, 0] = x[1, 0, 32, 20] = 1.0
    x[2, 0] = np.linspace(-1, 1, 64)[None, :]
    # a flipped (negatively strided) view blurs like its copy; an impulse keeps its mass at the border too
    # (mirrored, not lost) and a linear ramp stays linear away from the border
    np.testing.assert_array_equal(gaussian_blur(x[..., ::-1], 2.0), gaussian_blur(np.ascontiguousarray(x[..., ::-1]), 2.0))
    y = gaussian_blur(x, 2.0)
    assert abs(y[0].sum() - 1) < 1e-5 and abs(y[1].sum() - 1) < 1e-5 and y[1, 0, 32, 20] == y[1].max()
    np.testing.assert_allclose(y[2, 0, :, 10:-10], x[2, 0, :, 10:-10], atol=1e-6)
    assert gaussian_blur(x, 0.0) is not None and np.array_equal(gaussian_blur(x, 0.0), x)
    assert MIN_SIDE <= 64
