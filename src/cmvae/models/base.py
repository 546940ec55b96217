"""Shared machinery of the multimodal VAEs with shared and private latents (MMVAE+ family).

A :class:`MultimodalVAE` owns, for each of its M modalities, an encoder giving
q(z|x_m) (shared latent) and q(w_m|x_m) (private latent), a decoder p(x_m | z, w_m)
and a likelihood. Subclasses state only the prior on z (:meth:`log_prior_z`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..distributions import Likelihood, latent_family, scale_transform
from ..missing import masked_mean
from ..objectives import EstimatorName, ObjectiveTerms, Posteriors, multimodal_objective
from ..priors import PrivatePriors


class MultimodalVAE(nn.Module):
    """Encoders, decoders and likelihoods of M modalities; the prior on z is the subclass's."""

    #: Fewest modalities a subclass accepts (1 for unimodal special cases such as VaDE).
    min_modalities: int = 2

    def __init__(
        self,
        encoders: Sequence[nn.Module],
        decoders: Sequence[nn.Module],
        likelihoods: Sequence[Likelihood],
        *,
        shared_dim: int,
        private_dim: int,
        latent_family_name: str = "gaussian",
        likelihood_weights: Sequence[float] | None = None,
        learn_aux_scale: bool = True,
        low_memory: bool = False,
        scale_param: str = "softplus",
    ) -> None:
        super().__init__()
        self.low_memory = low_memory
        self.scale_param = scale_param
        self.to_scale = scale_transform(scale_param)
        n = len(encoders)
        if n < self.min_modalities or len(decoders) != n or len(likelihoods) != n:
            raise ValueError(
                f"need the same number (>= {self.min_modalities}) of encoders, decoders and likelihoods; got "
                f"{len(encoders)}, {len(decoders)}, {len(likelihoods)}"
            )
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)
        self.likelihoods = list(likelihoods)
        self.shared_dim = shared_dim
        self.private_dim = private_dim
        self.z_family = latent_family(latent_family_name)
        self.w_family = self.z_family
        self.private_prior = PrivatePriors(n, private_dim, latent_family_name, learn_aux_scale=learn_aux_scale,
                                           scale_param=scale_param)
        weights = torch.ones(n) if likelihood_weights is None else torch.as_tensor(likelihood_weights, dtype=torch.float)
        if weights.shape != (n,):
            raise ValueError(f"likelihood_weights needs {n} entries, got {tuple(weights.shape)}")
        self.register_buffer("likelihood_weights", weights)

    @property
    def n_modalities(self) -> int:
        return len(self.encoders)

    # -- the prior on z: what subclasses define ------------------------------------------
    def log_prior_z(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): ``[..., shared_dim] -> [...]``."""
        raise NotImplementedError

    def sample_prior_z(self, n: int, cluster: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``[n, shared_dim]`` draws from p(z) (or p(z | c = cluster)), the prior's scales times ``temperature``."""
        raise NotImplementedError

    # -- encoders and decoders -----------------------------------------------------------
    def encode_modality(self, m: int, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(z_loc, z_scale, w_loc, w_scale) of modality ``m``, each ``[B, dim]``."""
        out = self.encoders[m](x)
        dz, dw = self.shared_dim, self.private_dim
        expected = 2 * (dz + dw)
        if out.dim() != 2 or out.shape[1] != expected:
            raise ValueError(
                f"encoder of modality {m} returned shape {tuple(out.shape)}; expected [batch, {expected}] "
                f"(z loc, z raw scale, w loc, w raw scale for shared_dim={dz}, private_dim={dw})"
            )
        z_loc, z_raw, w_loc, w_raw = torch.split(out, [dz, dz, dw, dw], dim=1)
        return z_loc, self.to_scale(z_raw), w_loc, self.to_scale(w_raw)

    def encode(self, views: Sequence[torch.Tensor]) -> Posteriors:
        """Posterior parameters of every modality: ``[M, B, dim]`` each."""
        parts = [self.encode_modality(m, x) for m, x in enumerate(views)]
        return Posteriors(*(torch.stack(p) for p in zip(*parts)))

    @torch.no_grad()
    def standardise_shared_codes(self, m: int, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> bool:
        """Rescale modality ``m``'s encoder so that its shared-code locations become ``(z_loc - mean) / std``
        (``mean``, ``std``: ``[shared_dim]``), by changing the weights and bias of the linear layer that outputs
        them (the last ``nn.Linear`` of the encoder's shared branch whose first ``shared_dim`` outputs are the
        locations; data-dependent initialisation). ``x``: a batch of that modality's model input ``[B, ...]``, on
        which the result is checked (call in eval mode when the encoder has batch norm or dropout). Returns False,
        with the encoder unchanged, when no layer gives that result (an encoder of another design)."""
        dz = self.shared_dim
        encoder = self.encoders[m]
        branch = getattr(encoder, "shared", encoder)
        before = self.encode_modality(m, x)[0]
        target = (before - mean) / std
        tolerance = 1e-3 * (1.0 + target.abs().max())
        candidates = [layer for layer in branch.modules() if isinstance(layer, nn.Linear)
                      and layer.bias is not None and layer.out_features >= dz]
        for layer in reversed(candidates):
            weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
            layer.weight[:dz] /= std[:, None].to(weight)
            layer.bias[:dz] = (bias[:dz] - mean.to(bias)) / std.to(bias)
            if (self.encode_modality(m, x)[0] - target).abs().max() <= tolerance:
                return True
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        return False

    # -- generation ------------------------------------------------------------------------
    def encode_subset(self, views: Sequence[torch.Tensor | None]) -> tuple[list[int], Posteriors]:
        """Posteriors of the observed modalities only (``None`` = unobserved):
        (observed ids, fields ``[M_obs, B, dim]``)."""
        observed = [m for m, x in enumerate(views) if x is not None]
        if not observed:
            raise ValueError("at least one modality must be observed")
        parts = [self.encode_modality(m, views[m]) for m in observed]  # type: ignore[arg-type]
        return observed, Posteriors(*(torch.stack(p) for p in zip(*parts)))

    def sample_subset_z(
        self, views: Sequence[torch.Tensor | None], *, use_mean: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z from the mixture posterior q(z | X_S) = (1/|S|) sum_{m in S} q(z | x_m) of the observed
        modalities S: per sample, an observed modality is picked uniformly and z drawn from its
        q(z | x_m). ``use_mean``: the mixture's mean (the average of the unimodal means). ``[B, dz]``.
        ``mask`` ``[B, M]`` (True = observed) restricts S per sample (its None columns are ignored)."""
        observed, post = self.encode_subset(views)
        keep = None if mask is None else mask[:, observed].to(post.z_loc.device)  # [B, M_obs]
        if use_mean:
            return self.joint_mean(post, keep)
        return self.sample_mixture(post.z_loc, post.z_scale, None if keep is None else keep.t())

    def sample_mixture(self, loc: torch.Tensor, scale: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """One draw per datapoint from the uniform mixture of components ``[C, B, dz]``: ``[B, dz]``.
        ``valid`` ``[C, B]`` (bool) restricts each datapoint's mixture to its valid components."""
        k, b = loc.shape[:2]
        if valid is None:
            pick = torch.randint(k, (b,), device=loc.device)
        else:
            pick = torch.multinomial(valid.t().to(loc.dtype), 1).squeeze(1)
        rows = torch.arange(b, device=loc.device)
        return self.z_family.sample(loc[pick, rows], scale[pick, rows])

    def joint_mean(self, post: Posteriors, observed: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the joint posterior q(z|X) from the unimodal ``[M, B, dz]`` parameters: ``[B, dz]``
        (here the mixture of experts: the average of the unimodal means). ``observed`` ``[B, M]``
        (True = observed; unobserved entries of ``post`` may be NaN): the posterior of each
        datapoint's observed modalities only."""
        return post.z_loc.mean(0) if observed is None else masked_mean(post.z_loc, observed)

    def generate_from_z(self, z: torch.Tensor, targets: Sequence[int]) -> dict[int, torch.Tensor]:
        """Decoder means of the ``targets`` for shared latents ``z`` ``[B, dz]``, with w_m ~ p(w_m)."""
        out = {}
        for m in targets:
            w = self.private_prior.sample_prior((z.shape[0],), z)
            out[m] = self.likelihoods[m].mean(self.decode(m, z, w))
        return out

    def decode(self, m: int, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Decoder output of modality ``m`` for latents ``[..., dz]`` and ``[..., dw]``: ``[..., *shape_m]``."""
        lead = z.shape[:-1]
        latent = torch.cat([z, w], dim=-1).reshape(-1, self.shared_dim + self.private_dim)
        out = self.decoders[m](latent)
        return out.reshape(*lead, *out.shape[1:])

    def cross_log_likelihoods(
        self, views: Sequence[torch.Tensor], z: torch.Tensor, w_own: torch.Tensor, w_aux: torch.Tensor
    ) -> torch.Tensor:
        """lambda_n log p(x_n | z^(m), w) for every source m and target n: ``[M_src, M_tgt, K, B]``.

        ``z``, ``w_own``: ``[M, K, B, d]`` (w_own[m] ~ q(w_m | x_m)); ``w_aux``: ``[M_tgt, M_src, K, B, dw]``
        (w_aux[n] ~ r_n). The target n decodes its own private sample when m == n and the
        auxiliary one otherwise. One decoder call per target covers every source.
        """
        m_count = z.shape[0]
        own_mask = torch.eye(m_count, dtype=torch.bool, device=z.device).view(m_count, m_count, 1, 1, 1)
        per_target = []
        for n, x in enumerate(views):
            w = torch.where(own_mask[:, n], w_own[n].unsqueeze(0), w_aux[n])  # [M_src, K, B, dw]
            if self.low_memory and torch.is_grad_enabled():
                log_lik = self._checkpointed_log_likelihood(n, x, z, w)
            else:
                log_lik = self._target_log_likelihood(n, x, z, w)
            per_target.append(log_lik)
        return torch.stack(per_target, dim=1)

    #: ``low_memory``: the most decoded samples whose activations are held at once (per chunk of
    #: (source, sample) pairs). The decoders' activations then take a bounded amount of memory at any K.
    low_memory_rows: int = 1024

    def _checkpointed_log_likelihood(self, n: int, x: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """:meth:`_target_log_likelihood` with the decoder's activations recomputed in backward, in chunks of
        at most :attr:`low_memory_rows` decoded samples (whole batches of B): the same values and gradients.
        A decoder with batch norm is run in one chunk, since chunks would change its batch statistics."""
        lead, b = z.shape[:-2], z.shape[-2]
        z_sets, w_sets = z.reshape(-1, b, z.shape[-1]), w.reshape(-1, b, w.shape[-1])  # [S, B, d]
        per_chunk = max(1, self.low_memory_rows // b)
        if any(isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in self.decoders[n].modules()):
            per_chunk = z_sets.shape[0]
        parts = [
            checkpoint(self._target_log_likelihood, n, x, zc, wc, use_reentrant=False)
            for zc, wc in zip(z_sets.split(per_chunk), w_sets.split(per_chunk))
        ]
        return torch.cat(parts).reshape(*lead, b)

    def _target_log_likelihood(self, n: int, x: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """lambda_n log p(x_n | z, w): ``[..., B]`` for latents ``[..., B, d]``."""
        return self.likelihoods[n].log_prob(x, self.decode(n, z, w)) * self.likelihood_weights[n]

    # -- objective -----------------------------------------------------------------------
    def objective(
        self,
        views: Sequence[torch.Tensor],
        *,
        n_samples: int = 1,
        estimator: EstimatorName = "elbo",
        beta: float = 1.0,
        keep_samples: bool = False,
        observed: torch.Tensor | None = None,
    ) -> ObjectiveTerms:
        """The multimodal objective on a batch (see :mod:`cmvae.objectives`); ``observed`` ``[B, M]``
        (True = observed) for partially observed samples."""
        return multimodal_objective(
            self, list(views), n_samples=n_samples, estimator=estimator, beta=beta, keep_samples=keep_samples,
            observed=observed,
        )


class StandardPriorVAE(MultimodalVAE):
    """A multimodal VAE with the fixed standard prior p(z) = F(0, I) (F: the latent family)."""

    def log_prior_z(self, z: torch.Tensor) -> torch.Tensor:
        zero = z.new_zeros(())
        return self.z_family.log_prob(z, zero, zero + 1.0).sum(-1)

    def sample_prior_z(self, n: int, cluster: int | None = None, temperature: float = 1.0) -> torch.Tensor:
        if cluster is not None:
            raise ValueError(f"{type(self).__name__} has no clusters: sample with cluster=None")
        return self.z_family.noise((n, self.shared_dim), self.likelihood_weights) * temperature
