"""MoPoE (Sutter, Daunhawer & Vogt 2021): the posterior of a set of modalities is the uniform
mixture over its non-empty subsets of the subsets' products of experts (no prior expert).
``subset_sampling``: train on one random subset per datapoint instead of all 2^M - 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..experts import nonempty_subsets, subset_posteriors
from ..objectives import ObjectiveTerms, Posteriors, mopoe_objective
from .poe import PoEVAE


class MoPoEModule(PoEVAE):
    prior_expert = 0.0

    def __init__(self, *args: Any, subset_sampling: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subset_sampling = subset_sampling

    def components(self, post: Posteriors) -> tuple[torch.Tensor, torch.Tensor]:
        """The PoE of every non-empty subset of the experts in ``post``: (loc, scale) ``[S, B, dz]``."""
        subsets = nonempty_subsets(post.z_loc.shape[0])
        return subset_posteriors(post.z_loc, post.z_scale, subsets, prior_weight=self.prior_expert)

    def joint_mean(self, post: Posteriors) -> torch.Tensor:
        return self.components(post)[0].mean(0)

    def sample_subset_z(self, views: Sequence[torch.Tensor | None], *, use_mean: bool = False) -> torch.Tensor:
        """z from the MoPoE posterior of the observed modalities (its mean with ``use_mean``)."""
        _, post = self.encode_subset(views)
        loc, scale = self.components(post)
        return loc.mean(0) if use_mean else self.sample_mixture(loc, scale)

    def loss(self, views: list[torch.Tensor], *, n_samples: int, beta: float) -> ObjectiveTerms:
        return mopoe_objective(self, views, n_samples=n_samples, beta=beta, sample_subsets=self.subset_sampling)
