"""Shared parts of the baselines with Gaussian latents and no private latents (MVAE, MoPoE,
mmJSD, MVTCAE): the constructor checks and the dispatch to their objective functions in
:mod:`cmvae.objectives`. Products of experts are closed-form only for Gaussians, so these
models use Gaussian posteriors and the standard Gaussian prior N(0, I).

:class:`PoEVAE` adds the product-of-experts posterior of any subset of observed modalities,
q(z | X_S) = PoE(q(z | x_m), m in S [, p(z)]), used by ``generate`` and ``transform``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from ..experts import product_of_experts
from ..objectives import EstimatorName, ObjectiveTerms, Posteriors
from .base import StandardPriorVAE


class GaussianVAE(StandardPriorVAE):
    """Gaussian shared latent only; subclasses define :meth:`loss`."""

    importance_weighted: ClassVar[bool] = False  # no IWAE bound: validation reports the objective itself

    def __init__(self, *args: Any, private_dim: int = 0, latent_family_name: str = "gaussian", **kwargs: Any) -> None:
        """:class:`MultimodalVAE`'s arguments; ``private_dim`` must be 0 and the latents Gaussian."""
        if private_dim != 0:
            raise ValueError(f"{type(self).__name__} has no private latents: private_dim must be 0, got {private_dim}")
        if latent_family_name != "gaussian":
            raise ValueError(
                f"{type(self).__name__} needs Gaussian latents (closed-form products of experts / KL terms); "
                f"got latent_family={latent_family_name!r}"
            )
        super().__init__(*args, private_dim=0, latent_family_name="gaussian", **kwargs)

    def loss(self, views: list[torch.Tensor], *, n_samples: int = 1, beta: float = 1.0) -> ObjectiveTerms:
        """The model's objective on a batch (see :mod:`cmvae.objectives`)."""
        raise NotImplementedError

    def objective(self, views: Sequence[torch.Tensor], *, estimator: EstimatorName = "elbo", **options: Any) -> ObjectiveTerms:
        """:meth:`loss` with ``n_samples`` and ``beta`` from ``options`` (``keep_samples`` has nothing to keep)."""
        if estimator != "elbo":
            raise ValueError(
                f"{type(self).__name__} trains its own ELBO-type objective: estimator must be 'elbo', got {estimator!r}"
            )
        options.pop("keep_samples", None)
        return self.loss(list(views), **options)


class PoEVAE(GaussianVAE):
    """Joint and subset posteriors are products of the observed experts (and of the prior expert
    with weight :attr:`prior_expert`, 1 or 0)."""

    prior_expert: ClassVar[float] = 1.0

    def fuse(self, post: Posteriors, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """PoE of the experts in ``post`` (``[E, B, dz]``): (loc, scale) ``[B, dz]``. ``keep``
        ``[B, E]`` (bool) multiplies, per datapoint, only its kept experts (the others may be NaN)."""
        if keep is None:
            return product_of_experts(post.z_loc, post.z_scale, prior_weight=self.prior_expert)
        loc, scale = kept_experts(post, keep)
        return product_of_experts(loc, scale, prior_weight=self.prior_expert, weights=keep.t().to(loc.dtype))

    def joint_mean(self, post: Posteriors, observed: torch.Tensor | None = None) -> torch.Tensor:
        return self.fuse(post, observed)[0]

    def sample_subset_z(
        self, views: Sequence[torch.Tensor | None], *, use_mean: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z from the PoE of the observed modalities' experts (its mean with ``use_mean``): ``[B, dz]``.
        ``mask`` ``[B, M]`` (True = observed) restricts the product per datapoint."""
        ids, post = self.encode_subset(views)
        loc, scale = self.fuse(post, None if mask is None else mask[:, ids].to(post.z_loc.device))
        return loc if use_mean else self.z_family.sample(loc, scale)


def kept_experts(post: Posteriors, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``post``'s z parameters ``[E, B, dz]`` with the entries not kept (``keep`` ``[B, E]`` False,
    possibly NaN) replaced by the harmless (0, 1), for products weighted by ``keep``."""
    hold = keep.t().unsqueeze(-1)
    return torch.where(hold, post.z_loc, 0.0), torch.where(hold, post.z_scale, 1.0)
