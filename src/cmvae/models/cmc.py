"""Contrastive Multiview Coding (CMC, Tian et al., 2020): one encoder per modality trained so
that the views of one sample embed close together and views of different samples apart.

Embeddings are the first ``embed_dim`` outputs of each encoder (an encoder of
:mod:`cmvae.nets` built with ``private_dim=0``), L2-normalised. The objective is the
full-graph multi-view InfoNCE of :func:`cmvae.objectives.multiview_info_nce` with in-batch
negatives (B - 1 per anchor) instead of CMC's memory bank of 16,384 negatives: simpler,
and at batch 128+ close for clustering purposes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..objectives import multiview_info_nce


class CMCModule(nn.Module):
    """M encoders mapping each view ``[B, *shape_m]`` to a unit vector ``[B, embed_dim]``."""

    def __init__(self, encoders: Sequence[nn.Module], embed_dim: int, temperature: float = 0.1) -> None:
        super().__init__()
        if len(encoders) < 2:
            raise ValueError(f"CMC needs at least 2 modalities (one encoder each), got {len(encoders)}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.encoders = nn.ModuleList(encoders)
        self.embed_dim = embed_dim
        self.temperature = temperature

    def embed(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised embeddings of every view: ``[M, B, embed_dim]``."""
        out = [enc(x)[:, : self.embed_dim] for enc, x in zip(self.encoders, views)]
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    def loss(self, views: Sequence[torch.Tensor]) -> torch.Tensor:
        """The multi-view InfoNCE on one batch (a scalar)."""
        return multiview_info_nce(self.embed(views), self.temperature)
