import numpy as np
import pytest

from mitogan.errors import ConfigError
from mitogan.metrics import distances as D


def test_kid_near_zero_same_distribution_and_large_when_shifted():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 8)), rng.normal(size=(300, 8))
    same, _, m = D.kid(a, b, subset_size=1000, n_subsets=20)
    assert m == 300  # subset size clamped to the sample counts
    assert abs(same) < 0.05
    shifted, _, _ = D.kid(a, b + 1.0, n_subsets=20)
    assert shifted > 10 * abs(same)


def test_kid_is_deterministic_and_rejects_tiny_sets():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4))
    assert D.kid(a, b, seed=3) == D.kid(a, b, seed=3)
    with pytest.raises(ConfigError, match="at least 2"):
        D.kid(a[:1], b)


def test_frechet_zero_for_identical_and_matches_gaussian_formula():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 3))
    assert D.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    # same covariance, mean shifted by 2 along one axis -> FD = 4
    assert D.frechet_distance(a, a + [2, 0, 0]) == pytest.approx(4, rel=1e-6)


def test_prdc_identical_sets_and_collapse():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 5))
    full = D.prdc(a, a.copy(), k=5)
    assert full["precision"] == 1 and full["recall"] == 1 and full["coverage"] == 1
    collapsed = D.prdc(a, np.repeat(a[:2], 100, axis=0), k=5)
    assert collapsed["precision"] == 1  # every fake is a real image
    assert collapsed["coverage"] < 0.1 and collapsed["recall"] < 0.1  # but modes are missing
    with pytest.raises(ConfigError, match="more than k=5"):
        D.prdc(a[:5], a, k=5)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_vendi_of_k_orthogonal_rows_repeated_is_k(k):
    rows = np.eye(20)[:k]
    assert D.vendi_score(np.resize(rows, (60, 20))) == pytest.approx(k, rel=1e-6)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_rbf_vendi_counts_k_distinct_rows_repeated(k):
    rows = np.random.default_rng(k).normal(0, 10, (k, 5))
    x = rows[np.arange(60) % k]
    assert D.vendi_score_rbf(x, bandwidth=1.0) == pytest.approx(k, rel=0.02)


def test_rbf_vendi_drops_when_a_sample_collapses_onto_a_few_of_its_rows():
    x = np.random.default_rng(0).normal(size=(200, 8))
    tau = D.median_nn_distance(x)
    full, collapsed = D.vendi_score_rbf(x, tau), D.vendi_score_rbf(x[np.arange(200) % 5], tau)
    assert collapsed <= 5.01 and full > 8 * collapsed


def test_mean_pairwise_correlation_is_that_of_every_pair_and_rises_as_images_look_alike():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 64))
    c = np.corrcoef(x)
    assert D.mean_pairwise_correlation(x) == pytest.approx((c.sum() - 40) / (40 * 39), abs=1e-12)
    template = rng.standard_normal(64)
    alike = template + 0.5 * rng.standard_normal((40, 64))  # one template plus noise
    assert D.mean_pairwise_correlation(alike) > 0.7 > 0.1 > abs(D.mean_pairwise_correlation(x))
    flat = np.vstack([np.ones(64), x[:3]])  # a row with no variance counts as uncorrelated, not as NaN
    assert np.isfinite(D.mean_pairwise_correlation(flat))
