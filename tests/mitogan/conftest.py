"""Fixtures of the core tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    """24 tiles of 32 px: bright blobs on a dark background, like mitochondria in [-1, 1]."""
    rng = np.random.default_rng(0)
    x = np.full((24, 1, 32, 32), -1.0, np.float32)
    for t in x:
        for _ in range(3):
            y, xx = rng.integers(4, 28, 2)
            t[0, y - 2:y + 2, xx - 4:xx + 4] = rng.uniform(0.3, 1.0)
    return x
