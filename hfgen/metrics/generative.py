"""Sample-quality metrics for generators, computed from feature vectors of real and generated images.

- **FID** (Heusel et al. 2017): Fréchet distance between Gaussians fitted to the two feature sets.
- **KID** (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel, mean and std over
  random subsets; unbiased, so usable at small N where FID is biased upwards.
- **Precision / recall** (Kynkäänniemi et al. 2019): the fraction of generated samples inside the
  k-NN manifold of the real ones (precision, fidelity) and of real samples inside the manifold of
  the generated ones (recall, coverage).

Example::

    real, fake = extractor(real_images), extractor(generator.generate(2000, seed=0))
    fid = frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of `features` (N, D), in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½).

    tr((S1 S2)^½) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^½ S2 S1^½ (same spectrum as S1 S2), so it stays real and stable for singular
    covariances (N < D), where scipy's sqrtm of S1 S2 can return large imaginary parts.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature statistics differ in shape: {mu1.shape} vs {mu2.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(value, 0.0)


def kernel_inception_distance(
    real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID: mean and std of the unbiased MMD² (kernel k(x, y) = (x·y / d + 1)³) over random subsets."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError("KID needs at least 2 real and 2 generated feature vectors")
    dim = real.shape[1]
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(num_subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = fake[rng.choice(len(fake), size, replace=False)]
        kxx, kyy, kxy = ((x @ x.T) / dim + 1) ** 3, ((y @ y.T) / dim + 1) ** 3, ((x @ y.T) / dim + 1) ** 3
        off_diagonal = size * (size - 1)
        mmd = (kxx.sum() - np.trace(kxx)) / off_diagonal + (kyy.sum() - np.trace(kyy)) / off_diagonal - 2 * kxy.mean()
        estimates.append(mmd)
    return float(np.mean(estimates)), float(np.std(estimates))


def _knn_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each vector to its k-th nearest other vector in the same set."""
    radii = []
    for start in range(0, len(features), chunk):
        distances = torch.cdist(features[start : start + chunk], features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # +1: the point itself is at distance 0
    return torch.cat(radii)


def _inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    inside = []
    for start in range(0, len(queries), chunk):
        distances = torch.cdist(queries[start : start + chunk], support)
        inside.append((distances <= radii[None, :]).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds (k=3 as in the paper)."""
    real = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} vectors per set")
    precision = _inside_manifold(fake, real, _knn_radii(real, k)).float().mean().item()
    recall = _inside_manifold(real, fake, _knn_radii(fake, k)).float().mean().item()
    return precision, recall


def generative_metrics(real: torch.Tensor, fake: torch.Tensor, kid_subset_size: int = 1000) -> dict[str, float]:
    """FID, KID (mean, std), precision and recall of `fake` against `real` features."""
    fid = frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))
    kid, kid_std = kernel_inception_distance(real, fake, subset_size=kid_subset_size)
    precision, recall = precision_recall(real, fake)
    return {"fid": fid, "kid": kid, "kid_std": kid_std, "precision": precision, "recall": recall}
