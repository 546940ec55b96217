"""MVAE (Wu & Goodman 2018): product of experts with the prior expert; the joint ELBO plus the
unimodal ELBOs plus ``subsampled_subsets`` random subsets per batch."""

from __future__ import annotations

from typing import Any

import torch

from ..experts import nonempty_subsets
from ..objectives import ObjectiveTerms, mvae_objective
from .poe import PoEVAE


class MVAEModule(PoEVAE):
    prior_expert = 1.0

    def __init__(self, *args: Any, subsampled_subsets: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if subsampled_subsets < 0:
            raise ValueError(f"subsampled_subsets must be >= 0, got {subsampled_subsets}")
        self.subsampled_subsets = subsampled_subsets

    def random_subsets(self) -> list[tuple[int, ...]]:
        """``subsampled_subsets`` distinct subsets of 2 .. M-1 modalities (the joint and the
        unimodal ones are always in the objective)."""
        middle = [s for s in nonempty_subsets(self.n_modalities) if 1 < len(s) < self.n_modalities]
        pick = torch.randperm(len(middle))[: self.subsampled_subsets].tolist()
        return [middle[i] for i in pick]

    def loss(self, views: list[torch.Tensor], *, n_samples: int, beta: float) -> ObjectiveTerms:
        return mvae_objective(self, views, n_samples=n_samples, beta=beta, extra_subsets=self.random_subsets())
