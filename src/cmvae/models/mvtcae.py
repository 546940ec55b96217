"""MVTCAE (Hwang, Kim, Hong & Kim 2021): product-of-experts posterior without prior expert,
trained with the total-correlation objective (weight ``alpha`` on the conditional VIB terms)."""

from __future__ import annotations

from typing import Any

import torch

from ..objectives import ObjectiveTerms, mvtcae_objective
from .poe import PoEVAE


class MVTCAEModule(PoEVAE):
    prior_expert = 0.0

    def __init__(self, *args: Any, alpha: float = 0.1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha

    def loss(self, views: list[torch.Tensor], *, n_samples: int, beta: float) -> ObjectiveTerms:
        return mvtcae_objective(self, views, n_samples=n_samples, beta=beta, alpha=self.alpha)
