"""Cluster assignment by majority vote, and post-hoc selection of the number of clusters."""

from __future__ import annotations

import torch


def majority_vote(log_posteriors: torch.Tensor) -> torch.Tensor:
    """Assign each datapoint by majority vote over modalities.

    ``log_posteriors``: log p(c | z_m) ``[M, N, C]``. Each modality votes for its argmax
    cluster; the cluster with the most votes wins. Tie rule: among the clusters with the
    most votes, the one with the largest posterior probability summed over modalities
    wins (then the lowest id). Returns ``[N]`` (int64).
    """
    if log_posteriors.dim() != 3:
        raise ValueError(f"expected log-posteriors [M, N, C], got shape {list(log_posteriors.shape)}")
    n_clusters = log_posteriors.shape[-1]
    votes = torch.nn.functional.one_hot(log_posteriors.argmax(-1), n_clusters).sum(0)  # [N, C]
    mass = log_posteriors.exp().sum(0)  # [N, C], in [0, M]
    # votes are integers and mass < M + 1, so this orders by votes first, then by mass.
    key = votes.to(mass.dtype) * (log_posteriors.shape[0] + 1) + mass
    return key.argmax(-1)
