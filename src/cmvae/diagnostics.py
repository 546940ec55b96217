"""Why do the model's clusters differ from the structure of its latent? Numbers that tell.

:func:`latent_diagnostics` compares, on labelled data, the clusters the model itself assigns
(majority vote of p(c | z_m)) with what k-means finds in the same latent codes, and measures
how the unimodal codes z_m are organised:

* ``nmi``/``ari``: the model's own clusters (what ``predict`` returns with assignment ``rule``),
  and ``vote_nmi``/``evidence_nmi`` (and ``_ari``) for both assignment rules;
* ``modality_nmi_mean``/``_min``/``_max``: NMI of each modality's clusters alone (argmax of its
  q(c | x_m)), over the modalities: what the combined assignment is built from. The objective
  fits the mixture to single-modality codes, so these bound how well it can place the components;
* ``kmeans_mean_nmi``/``_ari``: k-means on the mixture means z-bar = mean_m E[z | x_m]
  (what ``transform`` returns): how much cluster structure the shared latent holds;
  ``kmeans_r2``, the same without labels: the share of the variance of z-bar that those k-means
  clusters explain (1 - inertia / total sum of squares);
* ``kmeans_vote_nmi``/``_ari``: one k-means fitted on the pooled unimodal codes, each z_m
  labelled by it, then a majority vote -- low when the z_m of different modalities sit apart;
* ``modality_share``/``cluster_share``: fractions of the pooled z_m variance explained by the
  modality (offsets between modalities) and by the true label (between-class variance);
* ``clusters_used``, ``pi_entropy`` (entropy of pi / log of the number of active clusters)
  and ``prior_gap`` (mean distance from each k-means centroid of z-bar to the nearest prior
  mean, in units of the root-mean-square distance of the codes to their centroid).

Used by :class:`~cmvae.callbacks.ClusteringMonitor` (logged every epoch as ``val/...``) and by
``benchmarks/clustering_diagnostics.py`` (curves over training).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .metrics import clustering_scores
from .selection import AssignmentRule, assign_clusters, majority_vote


def variance_shares(codes: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """Shares of the variance of the pooled unimodal codes ``[M, N, d]`` explained by the modality
    and by the class ``labels`` ``[N]``: (between-modality, between-class) / total, each in [0, 1]."""
    m, n, _ = codes.shape
    pooled = codes.reshape(m * n, -1).double()
    total = pooled.var(0, unbiased=False).sum()
    if float(total) <= 0:
        return 0.0, 0.0
    modality_means = codes.double().mean(1)  # [M, d]
    between_modality = modality_means.var(0, unbiased=False).sum()
    y = torch.as_tensor(np.tile(np.asarray(labels), m))
    classes, counts = torch.unique(y, return_counts=True)
    class_means = torch.stack([pooled[y == c].mean(0) for c in classes])  # [L, d]
    weights = counts.double() / counts.sum()
    grand = pooled.mean(0)
    between_class = (weights[:, None] * (class_means - grand) ** 2).sum()
    return float(between_modality / total), float(between_class / total)


def _kmeans(codes: np.ndarray, k: int, seed: int):
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit(codes)


@torch.no_grad()
def latent_diagnostics(
    z_loc: torch.Tensor,
    log_posteriors: torch.Tensor,
    log_pi: torch.Tensor,
    prior_means: torch.Tensor,
    labels: np.ndarray,
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    rule: AssignmentRule = "evidence",
) -> dict[str, float]:
    """Diagnostics (see the module docstring) from the unimodal posterior means ``z_loc``
    ``[M, N, d]``, their cluster posteriors ``log_posteriors`` ``[M, N, C]``, the prior's
    ``log_pi`` ``[C]`` and ``prior_means`` ``[C, d]``, and true ``labels`` ``[N]``.
    k-means uses ``n_clusters`` (default: the number of distinct labels)."""
    labels = np.asarray(labels)
    k = n_clusters or len(np.unique(labels))
    m_count, n, _ = z_loc.shape
    out: dict[str, float] = {}
    for name in ("vote", "evidence"):
        predicted = assign_clusters(log_posteriors, log_pi, None, name).numpy()  # type: ignore[arg-type]
        scores = clustering_scores(labels, predicted)
        out[f"{name}_nmi"], out[f"{name}_ari"] = float(scores["nmi"]), float(scores["ari"])
        if name == rule:
            out["nmi"], out["ari"] = out[f"{name}_nmi"], out[f"{name}_ari"]
            out["clusters_used"] = float(len(np.unique(predicted)))

    per_modality_nmi = [float(clustering_scores(labels, log_posteriors[m].argmax(-1).numpy())["nmi"])
                        for m in range(log_posteriors.shape[0])]
    out["modality_nmi_mean"] = float(np.mean(per_modality_nmi))
    out["modality_nmi_min"], out["modality_nmi_max"] = min(per_modality_nmi), max(per_modality_nmi)

    mixture_mean = z_loc.mean(0).double().numpy()
    km = _kmeans(mixture_mean, k, seed)
    scores = clustering_scores(labels, km.labels_)
    out["kmeans_mean_nmi"], out["kmeans_mean_ari"] = float(scores["nmi"]), float(scores["ari"])
    total = float(((mixture_mean - mixture_mean.mean(0)) ** 2).sum())
    out["kmeans_r2"] = 1.0 - float(km.inertia_) / total if total > 0 else 0.0

    pooled = z_loc.reshape(m_count * n, -1).double().numpy()
    km_pooled = _kmeans(pooled, k, seed)
    per_modality = torch.as_tensor(km_pooled.labels_.reshape(m_count, n), dtype=torch.long)
    votes = torch.nn.functional.one_hot(per_modality, k).double().log()  # log of one-hot: argmax = the label
    voted = majority_vote(votes).numpy()
    scores = clustering_scores(labels, voted)
    out["kmeans_vote_nmi"], out["kmeans_vote_ari"] = float(scores["nmi"]), float(scores["ari"])

    out["modality_share"], out["cluster_share"] = variance_shares(z_loc, labels)

    active = torch.isfinite(log_pi)
    pi = log_pi[active].exp().double()
    out["pi_entropy"] = float(-(pi * pi.log()).sum() / math.log(len(pi))) if len(pi) > 1 else 0.0

    centers = torch.as_tensor(km.cluster_centers_)
    spread = math.sqrt(float(((torch.as_tensor(mixture_mean) - centers[km.labels_]) ** 2).sum(1).mean()) / centers.shape[1])
    distances = torch.cdist(centers, prior_means[active].double().cpu())  # [k, C_active]
    out["prior_gap"] = float(distances.min(1).values.mean() / max(spread, 1e-12) / math.sqrt(centers.shape[1]))
    return out
