"""The copy tests and the morphology features against a stored fixture (``data/copying_morphology_v2.npz``):
faster code must compute the same numbers.

The fixture holds uint8 tiles (simulated movies of 64 px for the copy tests, with rotated and shifted copies
among the queries; simulated 32 and 64 px tiles, uniform noise, black and mid-grey for the morphology) and what
the code gave for them. The morphology values are those of the code before issue 21's speed-ups (v1). The copy
values were made again on 2026-12-06 (v2), when the first stage's window products became one matrix product
per query with the candidate's mean taken off: that agrees with the same products in float64 to 3e-7 in distance,
where the einsum of v1 was up to 3.4e-3 off on near-flat patches (a dark background is -1 everywhere, and
float32 cancelled the large terms; ``test_metrics_copying.py`` checks this against float64 directly).
Regenerate it only when a feature or a null is meant to change (then bump ``FEATURES_VERSION`` /
``copying.COPY_NULL_VERSION``)."""

from pathlib import Path

import numpy as np
import pytest

from mitogan.metrics.copying import CopyIndex, PatchIndex
from mitogan.metrics.morphology import morphology_features

FIXTURE = Path(__file__).parent / "data" / "copying_morphology_v2.npz"


# The copy values are float32 matrix products, and OpenBLAS picks its kernel for the CPU it runs on
# (DYNAMIC_ARCH: AVX2 or AVX-512 add in another order). The fixture was made on an AVX2 machine; on an AVX-512 one
# the partial-copy null came out up to 3.3e-6 off (3.2e-5 relative) with the same code (2026-12-06; with
# OPENBLAS_CORETYPE=Haswell it matched to 1e-6). So the copy values are held to float32 products' reproducibility
# across CPUs, still far finer than the change that made fixture v2 (3.4e-3 in distance).
ACROSS_CPUS = dict(rtol=1e-4, atol=2e-5)


def _f32(u: np.ndarray) -> np.ndarray:
    return u.astype(np.float32) / np.float32(127.5) - 1


@pytest.fixture(scope="module")
def data():
    return np.load(FIXTURE)


def test_copy_nulls_distances_and_ratios_equal_the_stored_ones(data):
    # every distance and ratio to ACROSS_CPUS and the same nearest training tile: the whole-tile null, the generated
    # tiles' distances, the partial-copy null, its patch scales and the generated tiles' ratios
    # (the fixture predates the turned stage of the whole-tile index: the first stage alone must equal it, and
    # the turned stage may only bring a query nearer)
    train, groups, query = _f32(data["train_s64"]), data["groups_s64"], _f32(data["query_s64"])
    index = CopyIndex(train, rotate=False)
    np.testing.assert_allclose(index.null(groups, train), data["null_s64"], **ACROSS_CPUS)
    d, j = index.distances(query)
    np.testing.assert_allclose(d, data["dist_s64"], **ACROSS_CPUS)
    np.testing.assert_array_equal(j, data["index_s64"])
    turned = CopyIndex(train)
    assert np.all(turned.distances(query)[0] <= d + 2e-5) and np.all(turned.null(groups, train) <= data["null_s64"] + 2e-5)
    parts = PatchIndex(train, groups)
    np.testing.assert_allclose(parts.null(), data["pnull_s64"], **ACROSS_CPUS)
    np.testing.assert_allclose(parts.scale, data["scale_s64"], **ACROSS_CPUS)
    np.testing.assert_allclose(parts.ratios(query), data["ratios_s64"], **ACROSS_CPUS)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("mode", ["rule", "thr", "nofloor"])
def test_morphology_features_equal_the_stored_ones(data, size, mode):
    # the per-tile noise-aware rule, a shared threshold with the noise floor, and the bare threshold
    x = _f32(data[f"mtiles_s{size}"])
    kwargs = {"rule": {}, "thr": {"threshold": -0.2}, "nofloor": {"threshold": -0.2, "noise_floor": False}}[mode]
    np.testing.assert_allclose(morphology_features(x, **kwargs), data[f"morph_{mode}_s{size}"], rtol=1e-6, atol=1e-6)
