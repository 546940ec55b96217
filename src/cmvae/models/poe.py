"""Shared parts of the baselines with Gaussian latents and no private latents (MVAE, MoPoE,
mmJSD, MVTCAE): the constructor checks and the dispatch to their objective functions in
:mod:`cmvae.objectives`. Products of experts are closed-form only for Gaussians, so these
models use Gaussian posteriors and the standard Gaussian prior N(0, I).

:class:`PoEVAE` adds the product-of-experts posterior of any subset of observed modalities,
q(z | X_S) = PoE(q(z | x_m), m in S [, p(z)]), used by ``generate`` and ``transform``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from ..distributions import Likelihood
from ..experts import product_of_experts
from ..objectives import EstimatorName, ObjectiveTerms, Posteriors
from .base import StandardPriorVAE


class GaussianVAE(StandardPriorVAE):
    """Gaussian shared latent only; subclasses define :meth:`loss`."""

    def __init__(
        self,
        encoders: Sequence[nn.Module],
        decoders: Sequence[nn.Module],
        likelihoods: Sequence[Likelihood],
        *,
        shared_dim: int,
        private_dim: int = 0,
        latent_family_name: str = "gaussian",
        likelihood_weights: Sequence[float] | None = None,
        low_memory: bool = False,
    ) -> None:
        if private_dim != 0:
            raise ValueError(f"{type(self).__name__} has no private latents: private_dim must be 0, got {private_dim}")
        if latent_family_name != "gaussian":
            raise ValueError(
                f"{type(self).__name__} needs Gaussian latents (closed-form products of experts / KL terms); "
                f"got latent_family={latent_family_name!r}"
            )
        super().__init__(
            encoders,
            decoders,
            likelihoods,
            shared_dim=shared_dim,
            private_dim=0,
            latent_family_name="gaussian",
            likelihood_weights=likelihood_weights,
            low_memory=low_memory,
        )

    def loss(self, views: list[torch.Tensor], *, n_samples: int, beta: float) -> ObjectiveTerms:
        """The model's objective on a batch (see :mod:`cmvae.objectives`)."""
        raise NotImplementedError

    def objective(
        self,
        views: Sequence[torch.Tensor],
        *,
        n_samples: int = 1,
        estimator: EstimatorName = "elbo",
        beta: float = 1.0,
        keep_samples: bool = False,
    ) -> ObjectiveTerms:
        if estimator != "elbo":
            raise ValueError(
                f"{type(self).__name__} trains its own ELBO-type objective: estimator must be 'elbo', got {estimator!r}"
            )
        return self.loss(list(views), n_samples=n_samples, beta=beta)


class PoEVAE(GaussianVAE):
    """Joint and subset posteriors are products of the observed experts (and of the prior expert
    with weight :attr:`prior_expert`, 1 or 0)."""

    prior_expert: ClassVar[float] = 1.0

    def fuse(self, post: Posteriors) -> tuple[torch.Tensor, torch.Tensor]:
        """PoE of all experts in ``post`` (``[E, B, dz]``): (loc, scale) ``[B, dz]``."""
        return product_of_experts(post.z_loc, post.z_scale, prior_weight=self.prior_expert)

    def joint_mean(self, post: Posteriors) -> torch.Tensor:
        return self.fuse(post)[0]

    def sample_subset_z(self, views: Sequence[torch.Tensor | None], *, use_mean: bool = False) -> torch.Tensor:
        """z from the PoE of the observed modalities' experts (its mean with ``use_mean``): ``[B, dz]``."""
        _, post = self.encode_subset(views)
        loc, scale = self.fuse(post)
        return loc if use_mean else self.z_family.sample(loc, scale)
