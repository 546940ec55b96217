"""mmJSD (Sutter, Daunhawer & Vogt 2020): mixture-of-experts posterior (generation and codes as
MMVAE's), trained with reconstructions plus the multimodal Jensen-Shannon divergence towards the
dynamic prior (a weighted product of the unimodal experts and p(z)); Gaussian latents."""

from __future__ import annotations

import torch

from ..objectives import ObjectiveTerms, mmjsd_objective
from .poe import GaussianVAE


class MMJSDModule(GaussianVAE):
    def loss(self, views: list[torch.Tensor], *, n_samples: int, beta: float) -> ObjectiveTerms:
        return mmjsd_objective(self, views, n_samples=n_samples, beta=beta)
