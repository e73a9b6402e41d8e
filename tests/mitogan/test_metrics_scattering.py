"""Scattering features against a stored fixture computed by the scatter-v3 code before its speed-ups."""

from pathlib import Path

import numpy as np
import pytest

from mitogan.metrics.scattering import SCATTER_VERSION, scattering_features, scattering_names

FIXTURE = Path(__file__).parent / "data" / "scattering_v3.npz"


@pytest.mark.parametrize("size", [32, 64, 128])
def test_scattering_equals_the_stored_scatter_v3_features(size):
    # the fixture holds uint8 tiles (blurred segments and blobs, uniform noise, black, mid-grey) and their
    # features from the plain batch-of-256, complex-by-real, hypot code: every feature agrees to 1e-6, so
    # the speed-ups need no SCATTER_VERSION bump (bump it and regenerate the fixture when features change)
    data = np.load(FIXTURE)
    assert str(data["version"]) == SCATTER_VERSION
    tiles = data[f"tiles_s{size}"].astype(np.float32) / np.float32(127.5) - 1
    want = data[f"features_s{size}"]
    got = scattering_features(tiles)
    assert got.shape == (len(tiles), len(scattering_names(size)))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_scattering_leaves_the_torch_thread_count_as_it_was():
    import torch

    before = torch.get_num_threads()
    scattering_features(np.zeros((2, 1, 32, 32), np.float32))
    assert torch.get_num_threads() == before
