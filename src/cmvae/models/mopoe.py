"""MoPoE (Sutter, Daunhawer & Vogt 2021): the posterior of a set of modalities is the uniform
mixture over its non-empty subsets of the subsets' products of experts (no prior expert).
``subset_sampling``: train on one random subset per datapoint instead of all 2^M - 1."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..experts import nonempty_subsets, subset_posteriors
from ..objectives import ObjectiveTerms, Posteriors, mopoe_objective
from ..missing import masked_mean
from .poe import PoEVAE, kept_experts


class MoPoEModule(PoEVAE):
    prior_expert = 0.0

    def __init__(self, *args: Any, subset_sampling: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subset_sampling = subset_sampling

    def components(
        self, post: Posteriors, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The PoE of every non-empty subset of the experts in ``post``: (loc, scale) ``[S, B, dz]``,
        and with ``keep`` ``[B, E]`` (bool) which subsets hold only kept experts, ``[S, B]`` (else None)."""
        subsets = nonempty_subsets(post.z_loc.shape[0])
        if keep is None:
            return (*subset_posteriors(post.z_loc, post.z_scale, subsets, prior_weight=self.prior_expert), None)
        loc, scale = kept_experts(post, keep)
        valid = torch.stack([keep[:, list(s)].all(1) for s in subsets])
        return (*subset_posteriors(loc, scale, subsets, prior_weight=self.prior_expert), valid)

    def joint_mean(self, post: Posteriors, observed: torch.Tensor | None = None) -> torch.Tensor:
        loc, _, valid = self.components(post, observed)
        return loc.mean(0) if valid is None else masked_mean(loc, valid.t())

    def sample_subset_z(
        self, views: Sequence[torch.Tensor | None], *, use_mean: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z from the MoPoE posterior of the observed modalities (its mean with ``use_mean``);
        ``mask`` ``[B, M]`` (True = observed) restricts the subsets per datapoint."""
        ids, post = self.encode_subset(views)
        keep = None if mask is None else mask[:, ids].to(post.z_loc.device)
        if use_mean:
            return self.joint_mean(post, keep)
        loc, scale, valid = self.components(post, keep)
        return self.sample_mixture(loc, scale, valid)

    def loss(self, views: list[torch.Tensor], *, n_samples: int, beta: float) -> ObjectiveTerms:
        return mopoe_objective(self, views, n_samples=n_samples, beta=beta, sample_subsets=self.subset_sampling)
