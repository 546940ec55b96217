"""The Clustering Multimodal VAE (Palumbo, Laguna, Chopard & Vogt, 2023).

Generative model: c ~ Cat(pi), z ~ p(z | c) (Gaussian or Laplace with learnable means),
w_m ~ p(w_m) fixed, x_m ~ p(x_m | z, w_m). Inference: q(z|X) = (1/M) sum_m q(z|x_m),
q(w_m|x_m), and q(c|z) = p(c|z) (as in VaDE). Everything but the prior on z is shared
with the other MMVAE+-style models in :class:`~cmvae.models.base.MultimodalVAE`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..distributions import Likelihood
from ..priors import ClusterPrior
from .base import MultimodalVAE


class CMVAEModule(MultimodalVAE):
    """Torch module of CMVAE: the multimodal VAE with a learnable mixture prior on z."""

    def __init__(
        self,
        encoders: Sequence[nn.Module],
        decoders: Sequence[nn.Module],
        likelihoods: Sequence[Likelihood],
        *,
        n_clusters: int,
        shared_dim: int,
        private_dim: int,
        latent_family_name: str = "gaussian",
        learn_prior_scales: bool = False,
        learn_prior_means: bool = True,
        prior_mean_init_std: float = 1.0,
        likelihood_weights: Sequence[float] | None = None,
        low_memory: bool = False,
        scale_param: str = "softplus",
        mean_init: str = "normal",
    ) -> None:
        super().__init__(
            encoders,
            decoders,
            likelihoods,
            shared_dim=shared_dim,
            private_dim=private_dim,
            latent_family_name=latent_family_name,
            likelihood_weights=likelihood_weights,
            low_memory=low_memory,
            scale_param=scale_param,
        )
        self.prior = ClusterPrior(
            n_clusters,
            shared_dim,
            latent_family_name,
            learn_means=learn_prior_means,
            learn_scales=learn_prior_scales,
            learn_weights=n_clusters > 1,
            init_mean_std=prior_mean_init_std,
            mean_init=mean_init,
        )

    def log_prior_z(self, z: torch.Tensor) -> torch.Tensor:
        return self.prior.log_prob(z)

    def sample_prior_z(self, n: int, cluster: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        return self.prior.sample(n, cluster, temperature)[0]

    def cluster_log_posteriors(self, views: Sequence[torch.Tensor], *, use_mean: bool = True) -> torch.Tensor:
        """log p(c | z_m) for each modality's latent (posterior mean, or one sample): ``[M, B, C]``."""
        post = self.encode(views)
        z = post.z_loc if use_mean else self.z_family.sample(post.z_loc, post.z_scale)
        return self.prior.log_posterior(z)
