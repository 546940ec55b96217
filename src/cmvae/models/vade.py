"""VaDE (Jiang et al., 2016): a unimodal VAE with a Gaussian-mixture prior on z.

Generative model: c ~ Cat(pi), z ~ N(mu_c, sigma_c^2), x ~ p(x | z); inference q(z|x) and
q(c|x) ~= p(c|z). Its ELBO with a beta on the KL part,

    E_q(z|x) [ log p(x|z) + beta * ( log sum_c pi_c p(z|c) - log q(z|x) ) ],

is exactly the CMVAE objective of :mod:`cmvae.objectives` with one modality and no private
latent: the mixture of experts q(z|X) is then q(z|x), log p(w) and log q(w|x) sum over an
empty axis (0) and there are no cross-modal terms. ``log sum_c pi_c p(z|c)`` is VaDE's
E_{q(c|x)}[log p(c) + log p(z|c) - log q(c|x)] with q(c|x) = p(c|z) and the expectation over
c exact (:meth:`cmvae.priors.ClusterPrior.log_prob`). So VaDE reuses :class:`CMVAEModule`
(and with it the ELBO/IWAE/DReG code) rather than a copy of the loss.

Shapes: the module sees a list of one view ``[B, *shape]``; posteriors are ``[1, B, shared_dim]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..distributions import Likelihood
from .cmvae import CMVAEModule


class VaDEModule(CMVAEModule):
    """CMVAE restricted to one modality and ``private_dim = 0``: the VaDE model (Gaussian or Laplace mixture)."""

    min_modalities = 1

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        likelihood: Likelihood,
        *,
        n_clusters: int,
        shared_dim: int,
        latent_family_name: str = "gaussian",
        learn_prior_scales: bool = True,
        prior_mean_init_std: float = 1.0,
        scale_param: str = "softplus",
        mean_init: str = "normal",
    ) -> None:
        super().__init__(
            [encoder],
            [decoder],
            [likelihood],
            n_clusters=n_clusters,
            shared_dim=shared_dim,
            private_dim=0,
            latent_family_name=latent_family_name,
            learn_prior_scales=learn_prior_scales,
            prior_mean_init_std=prior_mean_init_std,
            scale_param=scale_param,
            mean_init=mean_init,
        )

    @classmethod
    def from_lists(
        cls, encoders: Sequence[nn.Module], decoders: Sequence[nn.Module], likelihoods: Sequence[Likelihood], **kwargs
    ) -> "VaDEModule":
        """Build from one-element lists (the shape the estimators produce)."""
        if not (len(encoders) == len(decoders) == len(likelihoods) == 1):
            raise ValueError(
                f"VaDE models one modality: got {len(encoders)} encoders, {len(decoders)} decoders, "
                f"{len(likelihoods)} likelihoods"
            )
        return cls(encoders[0], decoders[0], likelihoods[0], **kwargs)
