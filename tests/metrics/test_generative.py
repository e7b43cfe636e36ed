"""FID / KID / precision-recall: the properties an honest evaluation relies on."""

import numpy as np
import pytest
import scipy.linalg
import torch

from hfgen.metrics.generative import (
    frechet_distance,
    gaussian_statistics,
    generative_metrics,
    kernel_inception_distance,
    precision_recall,
)


def gaussian(n, dim, shift=0.0, scale=1.0, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)) * scale + shift


def test_fid_of_a_set_with_itself_is_zero_and_a_mean_shift_adds_its_square():
    x = gaussian(500, 16)
    mu, sigma = gaussian_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(mu, sigma, mu + 0.5, sigma) == pytest.approx(16 * 0.25, rel=1e-6)


def test_fid_matches_the_scipy_sqrtm_formula_when_well_conditioned():
    mu1, s1 = gaussian_statistics(gaussian(400, 8, seed=1))
    mu2, s2 = gaussian_statistics(gaussian(400, 8, shift=0.3, scale=1.5, seed=2))
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-6)


def test_fid_is_real_and_stable_with_fewer_samples_than_dimensions():
    # N < D: both covariances are singular; sqrtm of their product famously blows up
    a, b = gaussian(20, 64, seed=3), gaussian(20, 64, seed=4)
    value = frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))
    assert np.isfinite(value) and value > 0
    assert frechet_distance(*gaussian_statistics(a), *gaussian_statistics(a)) == pytest.approx(0.0, abs=1e-6)


def test_fid_grows_monotonically_with_corruption():
    real = gaussian(800, 12, seed=5)
    reference = gaussian(800, 12, seed=6)  # a second real sample
    values = [
        frechet_distance(*gaussian_statistics(real), *gaussian_statistics(reference + noise * gaussian(800, 12, seed=7)))
        for noise in (0.0, 0.25, 0.5, 1.0, 2.0)
    ]
    assert values == sorted(values) and values[0] < 0.5 < values[-1]


def test_kid_is_near_zero_for_the_same_distribution_and_grows_with_a_shift():
    same, _ = kernel_inception_distance(gaussian(300, 8, seed=8), gaussian(300, 8, seed=9), num_subsets=20, subset_size=200)
    shifted, _ = kernel_inception_distance(gaussian(300, 8, seed=8), gaussian(300, 8, shift=1.0, seed=9), num_subsets=20, subset_size=200)
    assert abs(same) < 0.02 < shifted


def test_precision_and_recall_separate_fidelity_from_coverage():
    real = gaussian(400, 4, seed=10)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    far = gaussian(400, 4, shift=50.0, seed=11)
    assert precision_recall(real, far) == (0.0, 0.0)
    collapsed = real[real[:, 0] > 1.0]  # a generator stuck on one mode: faithful but no coverage
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.9 and recall < 0.5


def test_generative_metrics_bundle():
    metrics = generative_metrics(gaussian(200, 6, seed=12), gaussian(200, 6, seed=13), kid_subset_size=100)
    assert set(metrics) == {"fid", "kid", "kid_std", "precision", "recall"}
    assert all(np.isfinite(v) for v in metrics.values())
