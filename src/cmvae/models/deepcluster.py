"""DeepCluster (Caron et al., 2018): alternate k-means on the network's features and
classification of the k-means pseudo-labels.

Every epoch: features of the whole training set ``[N, d]`` -> PCA whitening (to at most
``pca_dim`` dimensions, capped by the data) and L2 normalisation -> k-means with K clusters
-> re-assignment of empty clusters -> a freshly initialised classifier head -> one epoch of
cross-entropy on the pseudo-labels, sampling clusters uniformly. This module holds the
network and those steps as small functions; the loop lives in
:mod:`cmvae.clustering_baselines`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from torch import nn
from torch.utils.data import Sampler


class DeepClusterModule(nn.Module):
    """Backbone + linear classifier head over ``n_clusters`` pseudo-classes.

    ``backbone``: an encoder of :mod:`cmvae.nets` built with ``private_dim=0``, i.e.
    ``x [B, *shape] -> [B, 2 * feature_dim]``; the features are its first ``feature_dim``
    outputs (the part CMVAE reads as the location of q(z|x)).
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, n_clusters: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, n_clusters)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *shape] -> [B, feature_dim]``."""
        return self.backbone(x)[:, : self.feature_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pseudo-class logits ``[B, n_clusters]``."""
        return self.head(self.features(x))

    def reset_head(self) -> None:
        """Re-initialise the classifier head (DeepCluster does so after every re-clustering)."""
        self.head.reset_parameters()


class WhitenNormalize:
    """PCA whitening to ``min(pca_dim, d, N - 1)`` components followed by L2 normalisation of the rows."""

    def __init__(self, pca_dim: int = 256, seed: int = 0) -> None:
        self.pca_dim = pca_dim
        self.seed = seed
        self.pca_: PCA | None = None

    def fit_transform(self, features: np.ndarray) -> np.ndarray:
        """``[N, d] -> [N, k]`` with unit-norm rows."""
        n, d = features.shape
        k = max(1, min(self.pca_dim, d, n - 1))
        self.pca_ = PCA(n_components=k, whiten=True, random_state=self.seed).fit(features)
        return self.transform(features)

    def transform(self, features: np.ndarray) -> np.ndarray:
        if self.pca_ is None:
            raise RuntimeError("WhitenNormalize.transform before fit_transform")
        out = self.pca_.transform(features)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def reassign_empty_clusters(
    features: np.ndarray, centroids: np.ndarray, labels: np.ndarray, rng: np.random.Generator, eps: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """DeepCluster's fix for empty clusters: each empty cluster j takes a random non-empty
    cluster c with at least 2 members and splits it -- centroid_j = centroid_c + eps * u,
    centroid_c = centroid_c - eps * u (u random) -- and c's members go to the nearer of the two.

    ``features`` ``[N, d]``, ``centroids`` ``[K, d]``, ``labels`` ``[N]``; returns new
    (centroids, labels) with every cluster non-empty (when N >= K).
    """
    centroids = centroids.copy()
    labels = labels.copy()
    k = centroids.shape[0]
    if features.shape[0] < k:
        raise ValueError(f"cannot fill {k} clusters with {features.shape[0]} points")
    for j in range(k):
        if np.any(labels == j):
            continue
        counts = np.bincount(labels, minlength=k)
        donor = int(rng.choice(np.flatnonzero(counts >= 2)))
        u = rng.standard_normal(centroids.shape[1])
        centroids[j] = centroids[donor] + eps * u
        centroids[donor] = centroids[donor] - eps * u
        members = np.flatnonzero(labels == donor)
        to_j = np.linalg.norm(features[members] - centroids[j], axis=1) < np.linalg.norm(
            features[members] - centroids[donor], axis=1
        )
        if not to_j.any() or to_j.all():  # identical points: split them by half
            to_j = np.zeros(members.shape[0], dtype=bool)
            to_j[: members.shape[0] // 2] = True
        labels[members[to_j]] = j
    return centroids, labels


def cluster_features(features: np.ndarray, n_clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means pseudo-labels ``[N]`` and centroids ``[K, d]``, no cluster left empty."""
    km = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(features)
    centroids, labels = reassign_empty_clusters(
        features, km.cluster_centers_, km.labels_.astype(np.int64), np.random.default_rng(seed)
    )
    return labels, centroids


class ClusterBalancedSampler(Sampler[int]):
    """Draws ``len(labels)`` indices per epoch with every (non-empty) pseudo-class equally likely,
    then a member uniformly -- DeepCluster's uniform sampling over pseudo-labels.

    ``labels``: a callable returning the current pseudo-labels ``[n]``, read when iteration
    starts (so labels set after the loader was built, e.g. at the start of training, are used).
    """

    def __init__(self, labels: Callable[[], torch.Tensor], n: int, seed: int = 0) -> None:
        self.labels = labels
        self.n = n
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        labels = self.labels()
        if labels.shape[0] != self.n:
            raise ValueError(f"got {labels.shape[0]} pseudo-labels for {self.n} samples")
        counts = torch.bincount(labels)
        weights = 1.0 / counts[labels].double()
        yield from torch.multinomial(weights, labels.shape[0], replacement=True, generator=self.generator).tolist()
