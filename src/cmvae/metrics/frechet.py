"""Frechet distance between real and generated samples in a feature space.

:func:`frechet_classifier_distance` -- "FD (classifier features)" -- fits a Gaussian to the
penultimate-layer activations of the project's own modality classifiers
(:mod:`cmvae.metrics.coherence`) on real and on generated data, and returns

    ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))

(the formula of the FID, with ``scipy.linalg.sqrtm``). It is NOT the FID: the features
are those of small classifiers trained on this data set, not of Inception-v3, so values
are comparable only between models scored with the same classifiers (same run folder
or the same saved classifiers), never with FIDs from papers.

The standard FID needs the TF-ported Inception-v3 network of ``pytorch-fid``;
:func:`frechet_inception_distance` documents why it is not provided (no download, no
silent fallback to the classifier features).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import linalg

__all__ = [
    "FD_NAME",
    "feature_statistics",
    "frechet_distance",
    "frechet_classifier_distance",
    "frechet_inception_distance",
]

#: How reports name the metric (never "FID").
FD_NAME = "FD (classifier features)"


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[F]`` and covariance ``[F, F]`` of features ``[N, F]`` (N >= 2)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, F], got shape {list(f.shape)}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = 1e-6) -> float:
    """Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    As in the reference FID code: when the product of the covariances is singular,
    ``eps`` is added to their diagonals; a negligible imaginary part of the square root
    (numerical error) is dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} and {mu2.shape}, covariances {sigma1.shape} and {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are expected (ReLU features): handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3 * max(1.0, float(np.abs(covmean).max()))):
            raise ValueError(f"sqrtm has a large imaginary component {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def frechet_classifier_distance(
    real: Any, generated: Any, classifiers: Any, modality: int, *, batch_size: int = 1024
) -> float:
    """FD (classifier features) between ``real`` and ``generated`` samples ``[N, ...]`` of ``modality``:
    the Frechet distance of Gaussians fitted to ``classifiers.features(modality, x)``."""
    f_real = classifiers.features(modality, real, batch_size=batch_size)
    f_gen = classifiers.features(modality, generated, batch_size=batch_size)
    return frechet_distance(*feature_statistics(f_real), *feature_statistics(f_gen))


def frechet_inception_distance(real: Any, generated: Any, weights_path: str | Path) -> float:
    """The standard FID with local Inception weights: not provided.

    The standard FID is defined on the pool3 features of the TF-ported Inception-v3 of
    ``pytorch-fid`` (a modified torchvision Inception with its own blocks and resizing),
    which cmvae does not ship, and weights are never downloaded at run time. Use
    :func:`frechet_classifier_distance` instead, or export samples as PNGs and run
    ``pytorch-fid`` yourself. Raises FileNotFoundError for a missing ``weights_path``,
    NotImplementedError otherwise.
    """
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Inception weights not found: {path}")
    raise NotImplementedError(
        f"the standard FID (Inception-v3 features, weights {path}) is not implemented: it needs the "
        "pytorch-fid Inception network, which cmvae does not ship (and it never downloads weights). "
        f"Use frechet_classifier_distance ('{FD_NAME}'), or save samples as images and run pytorch-fid on them."
    )
