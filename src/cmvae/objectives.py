"""The multimodal objective: ELBO, importance-weighted (IWAE) and DReG estimators.

One place computes the per-sample log importance weights of the MMVAE+ / CMVAE family.
For every modality m (M modalities, K samples, batch B), with z ~ q(z|x_m) and
w_m ~ q(w_m|x_m), and for n != m a private latent w_n ~ r_n (auxiliary distribution):

    log W_m = sum_n lambda_n log p(x_n | z, w_n)                         (self + cross-modal)
              + beta * [ log p(z) + log p(w_m) - log q(z|X) - log q(w_m|x_m) ]

where q(z|X) = (1/M) sum_n q(z|x_n) is the mixture of experts and log p(z) is the
model's prior on z. For CMVAE, log p(z) = log sum_c pi_c p(z|c), which *is*
E_{q(c|z)}[log p(c) + log p(z|c) - log q(c|z)] with q(c|z) = p(c|z): the expectation
over clusters is exact. The objective averages over m (and over the batch):

* ``elbo``: mean over the K samples of log W (K = 1 is the plain ELBO);
* ``iwae``: log (1/K) sum_k W_k;
* ``dreg``: the IWAE bound with the doubly-reparameterised gradient (Tucker et al. 2019):
  the encoder receives sum_k [(1 - beta) w~_k + beta w~_k^2] d log W_k / d z_k (q's
  parameters stop-gradiented inside the densities; w~_k^2 for beta = 1), the decoders and
  priors the IWAE gradient sum_k w~_k d log W_k. The beta-weighting follows from applying
  the DReG identity to the score term, which log W carries with a factor beta.

Every model in :mod:`cmvae.models` that has this shape reuses :func:`multimodal_objective`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch

from .distributions import LocScaleFamily

if TYPE_CHECKING:  # pragma: no cover
    from .models.base import MultimodalVAE

EstimatorName = Literal["elbo", "iwae", "dreg"]


@dataclass
class Posteriors:
    """Unimodal posterior parameters for all modalities.

    ``z_loc``/``z_scale``: ``[M, B, shared_dim]``; ``w_loc``/``w_scale``: ``[M, B, private_dim]``.
    """

    z_loc: torch.Tensor
    z_scale: torch.Tensor
    w_loc: torch.Tensor
    w_scale: torch.Tensor

    def detached(self) -> "Posteriors":
        return Posteriors(self.z_loc.detach(), self.z_scale.detach(), self.w_loc.detach(), self.w_scale.detach())


@dataclass
class ObjectiveTerms:
    """Named pieces of one objective evaluation (means over modalities, samples and batch).

    ``loss`` is the differentiable quantity to minimise; everything else is detached and
    meant for logging. Per-modality entries are ``[M]`` tensors.
    """

    loss: torch.Tensor
    bound: torch.Tensor
    log_lik_self: torch.Tensor
    log_lik_cross: torch.Tensor
    log_prior_z: torch.Tensor
    log_prior_w: torch.Tensor
    log_q_z: torch.Tensor
    log_q_w: torch.Tensor
    log_weights: torch.Tensor = field(repr=False)
    samples: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, float]:
        """Scalars for logging, per modality where that is informative."""
        out = {
            "loss": float(self.loss.detach()),
            "bound": float(self.bound),
            "log_prior_z": float(self.log_prior_z),
            "log_prior_w": float(self.log_prior_w),
            "log_q_z": float(self.log_q_z),
            "log_q_w": float(self.log_q_w),
        }
        for m, (own, cross) in enumerate(zip(self.log_lik_self.tolist(), self.log_lik_cross.tolist())):
            out[f"log_lik_self_{m}"] = own
            out[f"log_lik_cross_{m}"] = cross
        return out

    def non_finite(self) -> list[str]:
        """Names of the terms that are NaN or infinite (for error messages)."""
        return [name for name, value in self.as_dict().items() if not math.isfinite(value)]


def mixture_log_prob(family: LocScaleFamily, z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log (1/M) sum_n q(z | x_n) for samples drawn from every modality.

    ``z``: ``[M_src, K, B, d]``; ``loc``/``scale``: ``[M, B, d]``; returns ``[M_src, K, B]``.
    """
    per_expert = family.log_prob(z.unsqueeze(1), loc[None, :, None], scale[None, :, None]).sum(-1)
    return torch.logsumexp(per_expert, dim=1) - math.log(loc.shape[0])


def combine_log_weights(
    log_lik: torch.Tensor,
    log_prior_z: torch.Tensor,
    log_prior_w: torch.Tensor,
    log_q_z: torch.Tensor,
    log_q_w: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """log W ``[M, K, B]`` from the likelihoods ``[M_src, M_tgt, K, B]`` and the ``[M, K, B]`` terms."""
    return log_lik.sum(1) + beta * (log_prior_z + log_prior_w - log_q_z - log_q_w)


def reduce_log_weights(
    log_weights: torch.Tensor,
    estimator: EstimatorName,
    reparam_samples: tuple[torch.Tensor, ...] = (),
    beta: float = 1.0,
    score_correction: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn log W ``[M, K, B]`` into (loss to minimise, bound value), both scalars.

    For ``dreg`` the ``reparam_samples`` (encoder samples ``[M, K, B, d]`` that produced
    ``log_weights``) get a gradient hook so that the encoder sees the weights
    ``(1 - beta) w~ + beta w~^2`` (squared weights for ``beta = 1``), where ``beta`` is the
    factor on log q inside ``log_weights``.

    ``score_correction`` ``[M, K, B]`` (DReG only) holds, at stop-gradiented samples and live
    encoder parameters, the part of log q whose score the DReG identity cannot move onto the
    path: for the mixture of experts, log q(z|X) - log q(z|x_m), since z_k is drawn from
    q(z|x_m) alone. Its score term enters the gradient as in IWAE; the loss value is unchanged.
    """
    n_samples = log_weights.shape[1]
    iw_bound = torch.logsumexp(log_weights, dim=1) - math.log(n_samples)  # [M, B]
    if estimator == "elbo":
        per_point = log_weights.mean(1)
        return -per_point.mean(), per_point.mean().detach()
    if estimator == "iwae":
        return -iw_bound.mean(), iw_bound.mean().detach()
    if estimator == "dreg":
        normalised = torch.softmax(log_weights.detach(), dim=1)  # w~ [M, K, B]
        if torch.is_grad_enabled():
            for sample in reparam_samples:
                if sample.requires_grad:
                    # grad already carries w~ (from the surrogate); the DReG identity turns the
                    # score term -beta * w~ d log q into beta * (w~^2 - w~) on the path gradient.
                    factor = (1.0 - beta) + beta * normalised
                    sample.register_hook(lambda grad, f=factor: grad * f.unsqueeze(-1))
        surrogate = (normalised * log_weights).sum(1)  # [M, B]
        if score_correction is not None:
            live = score_correction - score_correction.detach()  # value 0, gradient d/dphi
            surrogate = surrogate - beta * (normalised * live).sum(1)
        return -surrogate.mean(), iw_bound.mean().detach()
    raise ValueError(f"unknown estimator {estimator!r}; choose 'elbo', 'iwae' or 'dreg'")


def multimodal_objective(
    model: "MultimodalVAE",
    views: list[torch.Tensor],
    *,
    n_samples: int = 1,
    estimator: EstimatorName = "elbo",
    beta: float = 1.0,
    keep_samples: bool = False,
) -> ObjectiveTerms:
    """Evaluate the objective of ``model`` on one batch (see module docstring).

    ``views``: list of M tensors ``[B, *shape_m]``.
    """
    post = model.encode(views)
    z_family, w_family = model.z_family, model.w_family
    z = z_family.rsample(post.z_loc, post.z_scale, n_samples)  # [M, K, B, dz]
    w_own = w_family.rsample(post.w_loc, post.w_scale, n_samples)  # [M, K, B, dw]
    m, k, b = z.shape[:3]
    w_aux = model.private_prior.sample_aux((m, k, b))  # [M_tgt, M_src, K, B, dw]

    dens = post.detached() if estimator == "dreg" else post
    log_q_z = mixture_log_prob(z_family, z, dens.z_loc, dens.z_scale)
    log_q_w = w_family.log_prob(w_own, dens.w_loc.unsqueeze(1), dens.w_scale.unsqueeze(1)).sum(-1)
    log_prior_z = model.log_prior_z(z)
    log_prior_w = model.private_prior.log_prob(w_own)
    log_lik = model.cross_log_likelihoods(views, z, w_own, w_aux)  # [M_src, M_tgt, K, B]

    log_weights = combine_log_weights(log_lik, log_prior_z, log_prior_w, log_q_z, log_q_w, beta)
    correction = None
    if estimator == "dreg" and torch.is_grad_enabled():
        z_fixed = z.detach()
        correction = mixture_log_prob(z_family, z_fixed, post.z_loc, post.z_scale) - z_family.log_prob(
            z_fixed, post.z_loc.unsqueeze(1), post.z_scale.unsqueeze(1)
        ).sum(-1)
    loss, bound = reduce_log_weights(log_weights, estimator, (z, w_own), beta=beta, score_correction=correction)

    with torch.no_grad():
        eye = torch.eye(m, dtype=torch.bool, device=z.device)
        lik = log_lik.mean((2, 3))  # [M_src, M_tgt]
        self_lik = lik.diagonal()
        cross_lik = (lik.masked_fill(eye, 0.0).sum(0) / max(m - 1, 1)) if m > 1 else torch.zeros_like(self_lik)
    samples = {"z": z, "w_own": w_own, "w_aux": w_aux} if keep_samples else {}
    return ObjectiveTerms(
        loss=loss,
        bound=bound,
        log_lik_self=self_lik,
        log_lik_cross=cross_lik,
        log_prior_z=log_prior_z.detach().mean(),
        log_prior_w=log_prior_w.detach().mean(),
        log_q_z=log_q_z.detach().mean(),
        log_q_w=log_q_w.detach().mean(),
        log_weights=log_weights.detach(),
        samples=samples,
    )


# ---------------------------------------------------------------- contrastive baselines (CMC)


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE of one view pair with in-batch negatives (CMC, Tian et al. 2020), a scalar.

    ``anchor``/``positive``: L2-normalised embeddings ``[B, d]``; row i of both is the same
    sample. For each anchor i the positive is i and the other B - 1 rows are the negatives:
    ``-(1/B) sum_i log softmax_j(<a_i, p_j> / temperature)[i]``. Its minimum over
    perfectly separated embeddings approaches 0; for random embeddings it is ~log B.
    """
    if anchor.shape != positive.shape or anchor.dim() != 2:
        raise ValueError(f"info_nce needs two [B, d] tensors of the same shape, got {tuple(anchor.shape)} "
                         f"and {tuple(positive.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = anchor @ positive.T / temperature  # [B, B]
    targets = torch.arange(anchor.shape[0], device=anchor.device)
    return torch.nn.functional.cross_entropy(logits, targets)


def multiview_info_nce(embeddings: torch.Tensor, temperature: float) -> torch.Tensor:
    """CMC's full-graph objective: the mean over every ordered pair of views (i != j) of
    :func:`info_nce` with view i as anchors and view j as positives (both directions of every
    edge, as in CMC's "full graph"). ``embeddings``: ``[M, B, d]`` (normalised), M >= 2; a scalar.
    """
    m = embeddings.shape[0]
    if m < 2:
        raise ValueError(f"the multi-view InfoNCE needs at least 2 views, got {m}")
    pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
    return torch.stack([info_nce(embeddings[i], embeddings[j], temperature) for i, j in pairs]).mean()
