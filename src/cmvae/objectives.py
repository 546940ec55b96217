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

Partially observed samples (``observed`` mask): datapoint b with observed modalities S_b
keeps only the m in S_b as sources, sums the likelihoods over n in S_b, uses the mixture
q(z|X_{S_b}) of its observed experts, and averages over m in S_b (weight 1/|S_b|).

Every model in :mod:`cmvae.models` that has this shape reuses :func:`multimodal_objective`
(CMVAE, MMVAE+ with the standard prior, MMVAE without private latents).

The product-of-experts baselines (Gaussian latents, no private latents, standard prior
N(0, I), closed-form KL terms from :mod:`cmvae.experts`, K reparameterised samples averaged
in the reconstruction terms) have one function each below: :func:`mvae_objective`,
:func:`mopoe_objective`, :func:`mmjsd_objective`, :func:`mvtcae_objective`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from .distributions import LocScaleFamily
from .experts import gaussian_kl, nonempty_subsets, product_of_experts, subset_posteriors

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
    log_lik_self: torch.Tensor | None = None
    log_lik_cross: torch.Tensor | None = None
    log_prior_z: torch.Tensor | None = None
    log_prior_w: torch.Tensor | None = None
    log_q_z: torch.Tensor | None = None
    log_q_w: torch.Tensor | None = None
    log_weights: torch.Tensor | None = field(default=None, repr=False)
    samples: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # other objectives' named terms

    def as_dict(self) -> dict[str, float]:
        """Scalars for logging, per modality where that is informative (terms a model lacks are left out)."""
        out = {"loss": float(self.loss.detach()), "bound": float(self.bound)}
        for name in ("log_prior_z", "log_prior_w", "log_q_z", "log_q_w"):
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value)
        for kind in ("self", "cross"):
            values = getattr(self, f"log_lik_{kind}")
            for m, v in enumerate(values.tolist() if values is not None else []):
                out[f"log_lik_{kind}_{m}"] = v
        for name, value in self.extra.items():
            if value.dim() == 0:
                out[name] = float(value)
            else:
                out.update({f"{name}_{m}": v for m, v in enumerate(value.tolist())})
        return out

    def non_finite(self) -> list[str]:
        """Names of the terms that are NaN or infinite (for error messages)."""
        return [name for name, value in self.as_dict().items() if not math.isfinite(value)]


class AuxiliaryPriors(Protocol):
    """The private-latent priors p(w_m) and auxiliary distributions r_n an objective uses."""

    def log_prob(self, w: torch.Tensor) -> torch.Tensor: ...

    def sample_aux(self, shape: tuple[int, ...]) -> torch.Tensor: ...


class ObjectiveModel(Protocol):
    """What the objectives call on a model: :class:`cmvae.models.base.MultimodalVAE` has all of it.

    The objectives depend on this, not on the model class (the models call the objectives)."""

    z_family: LocScaleFamily
    w_family: LocScaleFamily
    private_prior: AuxiliaryPriors
    private_dim: int

    def encode(self, views: Sequence[torch.Tensor]) -> Posteriors:
        """Posterior parameters of every modality: ``[M, B, dim]`` each."""
        ...

    def log_prior_z(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z): ``[..., shared_dim] -> [...]``."""
        ...

    def cross_log_likelihoods(
        self, views: Sequence[torch.Tensor], z: torch.Tensor, w_own: torch.Tensor, w_aux: torch.Tensor
    ) -> torch.Tensor:
        """lambda_n log p(x_n | z_m, w_n) of every source m and target n: ``[M_src, M_tgt, K, B]``."""
        ...

    def _target_log_likelihood(self, n: int, x: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """lambda_n log p(x_n | z, w): ``[..., B]`` for latents ``[..., B, d]``."""
        ...


def mixture_log_prob(
    family: LocScaleFamily,
    z: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    observed: torch.Tensor | None = None,
) -> torch.Tensor:
    """log (1/M) sum_n q(z | x_n) for samples drawn from every modality.

    ``z``: ``[M_src, K, B, d]``; ``loc``/``scale``: ``[M, B, d]``; returns ``[M_src, K, B]``.
    ``observed`` ``[B, M]`` (bool, each row with a True): datapoint b's mixture is
    (1/|S_b|) sum_{n in S_b} q(z | x_n) over its observed experts S_b only.
    """
    per_expert = family.log_prob(z.unsqueeze(1), loc[None, :, None], scale[None, :, None]).sum(-1)
    if observed is None:
        return torch.logsumexp(per_expert, dim=1) - math.log(loc.shape[0])
    experts = observed.t()[None, :, None]  # [1, M, 1, B]
    per_expert = per_expert.masked_fill(~experts, float("-inf"))
    return torch.logsumexp(per_expert, dim=1) - observed.sum(1).to(per_expert.dtype).log()


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
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn log W ``[M, K, B]`` into (loss to minimise, bound value), both scalars.

    The per-(m, b) reductions (mean over samples, or log-mean-exp) are averaged over m and b,
    or, with ``weights`` ``[M, B]``, summed with those weights (partially observed data:
    1 / (|S_b| B) for the observed sources m of datapoint b, 0 for the others, whose log W
    must be finite and carry no gradient).

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

    def average(per_point: torch.Tensor) -> torch.Tensor:  # [M, B] -> scalar
        return per_point.mean() if weights is None else (weights * per_point).sum()

    iw_bound = torch.logsumexp(log_weights, dim=1) - math.log(n_samples)  # [M, B]
    if estimator == "elbo":
        per_point = log_weights.mean(1)
        return -average(per_point), average(per_point).detach()
    if estimator == "iwae":
        return -average(iw_bound), average(iw_bound).detach()
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
        return -average(surrogate), average(iw_bound).detach()
    raise ValueError(f"unknown estimator {estimator!r}; choose 'elbo', 'iwae' or 'dreg'")


def multimodal_objective(
    model: ObjectiveModel,
    views: list[torch.Tensor],
    *,
    n_samples: int = 1,
    estimator: EstimatorName = "elbo",
    beta: float = 1.0,
    keep_samples: bool = False,
    observed: torch.Tensor | None = None,
) -> ObjectiveTerms:
    """Evaluate the objective of ``model`` on one batch (see module docstring).

    ``views``: list of M tensors ``[B, *shape_m]``. ``observed`` ``[B, M]`` (bool, True =
    observed, each row with a True) trains on partially observed samples: datapoint b with
    observed modalities S_b has the bound (1/|S_b|) sum_{m in S_b} of the reductions of

        log W_m = sum_{n in S_b} lambda_n log p(x_n | z, w_n)
                  + beta * [ log p(z) + log p(w_m) - log q(z|X_{S_b}) - log q(w_m|x_m) ],

    q(z|X_S) = (1/|S|) sum_{n in S} q(z|x_n). Unobserved entries of ``views`` are placeholders
    (set to 0 here, so any value works) that reach no value and no gradient.
    ``observed`` None or all True is exactly the fully observed objective.
    """
    if observed is not None:
        observed = observed.to(device=views[0].device, dtype=torch.bool)
        if tuple(observed.shape) != (views[0].shape[0], len(views)) or not bool(observed.any(1).all()):
            raise ValueError(f"observed must be [B, M] = [{views[0].shape[0]}, {len(views)}] with an observed "
                             f"modality in every row, got shape {list(observed.shape)}")
        if bool(observed.all()):
            observed = None
        else:
            views = [_zero_unobserved(x, observed[:, n]) for n, x in enumerate(views)]
    post = model.encode(views)
    z_family, w_family = model.z_family, model.w_family
    z = z_family.rsample(post.z_loc, post.z_scale, n_samples)  # [M, K, B, dz]
    w_own = w_family.rsample(post.w_loc, post.w_scale, n_samples)  # [M, K, B, dw]
    m, k, b = z.shape[:3]
    w_aux = model.private_prior.sample_aux((m, k, b))  # [M_tgt, M_src, K, B, dw]

    dens = post.detached() if estimator == "dreg" else post
    log_q_z = mixture_log_prob(z_family, z, dens.z_loc, dens.z_scale, observed)
    log_q_w = w_family.log_prob(w_own, dens.w_loc.unsqueeze(1), dens.w_scale.unsqueeze(1)).sum(-1)
    log_prior_z = model.log_prior_z(z)
    log_prior_w = model.private_prior.log_prob(w_own)
    log_lik = model.cross_log_likelihoods(views, z, w_own, w_aux)  # [M_src, M_tgt, K, B]
    source = weights = None
    if observed is not None:  # unobserved targets drop out of the sums, unobserved sources out of the average
        source = observed.t().unsqueeze(1)  # [M, 1, B]
        log_lik = _only_observed(log_lik, source.unsqueeze(0))  # targets: [1, M_tgt, 1, B]
        weights = observed.t().to(z.dtype) / (observed.sum(1).to(z.dtype) * b)  # [M, B]

    log_weights = combine_log_weights(log_lik, log_prior_z, log_prior_w, log_q_z, log_q_w, beta)
    if source is not None:
        log_weights = _only_observed(log_weights, source)
    correction = None
    if estimator == "dreg" and torch.is_grad_enabled():
        z_fixed = z.detach()
        correction = mixture_log_prob(z_family, z_fixed, post.z_loc, post.z_scale, observed) - z_family.log_prob(
            z_fixed, post.z_loc.unsqueeze(1), post.z_scale.unsqueeze(1)
        ).sum(-1)
        if source is not None:
            correction = _only_observed(correction, source)
    loss, bound = reduce_log_weights(
        log_weights, estimator, (z, w_own), beta=beta, score_correction=correction, weights=weights
    )

    with torch.no_grad():
        if observed is None:
            lik = log_lik.mean((2, 3))  # [M_src, M_tgt]
            average = torch.Tensor.mean
        else:  # over the datapoints that observe both the source and the target
            pairs = (observed.t().unsqueeze(1) & observed.t().unsqueeze(0)).to(z.dtype)  # [M_src, M_tgt, B]
            lik = (log_lik.mean(2) * pairs).sum(-1) / pairs.sum(-1).clamp_min(1.0)
            per_source = weights.unsqueeze(1) / k  # [M, 1, B]: the bound's weights, spread over the samples

            def average(t: torch.Tensor) -> torch.Tensor:
                return (_only_observed(t, source) * per_source).sum()

        eye = torch.eye(m, dtype=torch.bool, device=z.device)
        self_lik = lik.diagonal()
        cross_lik = (lik.masked_fill(eye, 0.0).sum(0) / max(m - 1, 1)) if m > 1 else torch.zeros_like(self_lik)
    samples = {"z": z, "w_own": w_own, "w_aux": w_aux} if keep_samples else {}
    return ObjectiveTerms(
        loss=loss,
        bound=bound,
        log_lik_self=self_lik,
        log_lik_cross=cross_lik,
        log_prior_z=average(log_prior_z.detach()),
        log_prior_w=average(log_prior_w.detach()),
        log_q_z=average(log_q_z.detach()),
        log_q_w=average(log_q_w.detach()),
        log_weights=log_weights.detach(),
        samples=samples,
    )


def _zero_unobserved(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """One view ``[B, ...]`` with the rows of unobserved datapoints (``observed`` ``[B]`` False) set to 0."""
    return x.masked_fill(~observed.view(-1, *([1] * (x.dim() - 1))), 0)


def _only_observed(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``values`` with the entries where the broadcast bool ``keep`` is False set to 0 (no gradient reaches them),
    e.g. log W ``[M, K, B]`` with ``keep`` ``[M, 1, B]`` (the observed sources)."""
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


# ---------------------------------------------------------------------------------------
# product-of-experts baselines (Gaussian shared latent only, standard prior N(0, I))
# ---------------------------------------------------------------------------------------
def reconstructions(model: ObjectiveModel, views: list[torch.Tensor], z: torch.Tensor, targets: Sequence[int]) -> torch.Tensor:
    """lambda_n log p(x_n | z) for each target n of a model without private latents:
    z ``[..., B, dz]`` -> ``[len(targets), ..., B]``."""
    if model.private_dim:
        raise ValueError(f"this objective has no private latents; the model has private_dim={model.private_dim}")
    empty = z[..., :0]
    return torch.stack([model._target_log_likelihood(n, views[n], z, empty) for n in targets])


def reconstruction_and_kl(
    model: ObjectiveModel,
    views: list[torch.Tensor],
    loc: torch.Tensor,
    scale: torch.Tensor,
    targets: Sequence[int],
    n_samples: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two ELBO terms of Gaussian posteriors ``loc``/``scale`` ``[..., B, dz]``:
    E_q[lambda_n log p(x_n | z)] per target (mean over ``n_samples`` reparameterised z),
    ``[len(targets), ..., B]``, and KL(q || N(0, I)) ``[..., B]``."""
    z = model.z_family.rsample(loc, scale, n_samples)  # [..., K, B, dz]
    return reconstructions(model, views, z, targets).mean(-2), gaussian_kl(loc, scale)


def _objective_terms(objective: torch.Tensor, rec: torch.Tensor, **extra: torch.Tensor) -> ObjectiveTerms:
    """Terms of an objective to maximise ``[B]``; ``rec``: per-modality reconstruction ``[M, ..., B]``."""
    return ObjectiveTerms(
        loss=-objective.mean(),
        bound=objective.mean().detach(),
        extra={"log_lik": rec.detach().flatten(1).mean(1), **{k: v.detach().mean() for k, v in extra.items()}},
    )


def mvae_objective(
    model: ObjectiveModel,
    views: list[torch.Tensor],
    *,
    n_samples: int = 1,
    beta: float = 1.0,
    extra_subsets: Sequence[Sequence[int]] = (),
) -> ObjectiveTerms:
    """MVAE (Wu & Goodman 2018, Eq. 5 with sub-sampling): ELBO(X) + sum_m ELBO(x_m) + sum_j ELBO(X_j).

    Each ELBO(X_s) reconstructs the modalities of s from z ~ q(z|X_s) = PoE(p(z), q(z|x_m), m in s)
    and pays beta * KL(q(z|X_s) || p(z)); ``extra_subsets`` are the sub-sampled X_j.
    """
    post = model.encode(views)
    n_mod = len(views)
    subsets = [tuple(range(n_mod))] + [(m,) for m in range(n_mod)] + [tuple(s) for s in extra_subsets]
    objective = torch.zeros((), dtype=post.z_loc.dtype, device=post.z_loc.device)
    for i, members in enumerate(subsets):
        loc, scale = product_of_experts(post.z_loc[list(members)], post.z_scale[list(members)], prior_weight=1.0)
        rec, kl = reconstruction_and_kl(model, views, loc, scale, members, n_samples)
        objective = objective + rec.sum(0) - beta * kl
        if i == 0:
            joint_rec, joint_kl = rec, kl
    return _objective_terms(objective, joint_rec, kl_joint=joint_kl)


def mopoe_objective(
    model: ObjectiveModel,
    views: list[torch.Tensor],
    *,
    n_samples: int = 1,
    beta: float = 1.0,
    sample_subsets: bool = False,
) -> ObjectiveTerms:
    """MoPoE (Sutter, Daunhawer & Vogt 2021): q(z|X) = (1/S) sum_s PoE(q(z|x_m), m in s) over the
    S = 2^M - 1 non-empty subsets (no prior expert). The ELBO of the mixture is bounded below by
    the mean over subsets of [E_{q_s} sum_n lambda_n log p(x_n|z) - beta KL(q_s || p(z))]
    (Jensen on the KL, as in the paper). Every subset is evaluated, or, with ``sample_subsets``,
    one uniformly drawn subset per datapoint (an unbiased estimate, S times cheaper; the
    authors' code likewise assigns each datapoint to one subset); the draws are in
    ``samples["subset"]`` ``[B]`` (indices into :func:`~cmvae.experts.nonempty_subsets`)."""
    post = model.encode(views)
    n_mod = len(views)
    subsets = nonempty_subsets(n_mod)
    loc, scale = subset_posteriors(post.z_loc, post.z_scale, subsets, prior_weight=0.0)  # [S, B, dz]
    pick = None
    if sample_subsets:
        pick = torch.randint(len(subsets), (loc.shape[1],), device=loc.device)
        rows = torch.arange(loc.shape[1], device=loc.device)
        loc, scale = loc[pick, rows], scale[pick, rows]  # [B, dz]
    rec, kl = reconstruction_and_kl(model, views, loc, scale, range(n_mod), n_samples)  # [M, (S,) B], [(S,) B]
    objective = rec.sum(0) - beta * kl
    terms = _objective_terms(objective if sample_subsets else objective.mean(0), rec, kl=kl)
    if pick is not None:
        terms.samples["subset"] = pick
    return terms


def mmjsd_objective(
    model: ObjectiveModel, views: list[torch.Tensor], *, n_samples: int = 1, beta: float = 1.0
) -> ObjectiveTerms:
    """mmJSD (Sutter, Daunhawer & Vogt 2020, Eq. 8): E_{q(z|X)}[log p(X|z)] - beta JS_pi(q(z|x_1), ...,
    q(z|x_M), p(z)) with q(z|X) = (1/M) sum_m q(z|x_m) (the expectation summed over m exactly) and
    uniform pi = 1/(M+1). The JS uses the dynamic prior f = weighted geometric mean of the unimodal
    posteriors and p(z) (a weighted PoE, closed form): JS = sum_j pi KL(q_j || f) + pi KL(p || f)."""
    post = model.encode(views)
    n_mod = len(views)
    z = model.z_family.rsample(post.z_loc, post.z_scale, n_samples)  # [M_src, K, B, dz]
    rec = reconstructions(model, views, z, range(n_mod)).mean((1, 2))  # [M_tgt, B]
    pi = 1.0 / (n_mod + 1)
    f_loc, f_scale = product_of_experts(post.z_loc, post.z_scale, prior_weight=pi, weights=[pi] * n_mod)
    js = pi * gaussian_kl(post.z_loc, post.z_scale, f_loc, f_scale).sum(0) + pi * gaussian_kl(
        torch.zeros_like(f_loc), torch.ones_like(f_scale), f_loc, f_scale
    )
    return _objective_terms(rec.sum(0) - beta * js, rec, js=js)


def mvtcae_objective(
    model: ObjectiveModel,
    views: list[torch.Tensor],
    *,
    n_samples: int = 1,
    beta: float = 1.0,
    alpha: float = 0.1,
) -> ObjectiveTerms:
    """MVTCAE (Hwang et al. 2021, total-correlation objective, as in the authors' code):
    (M - alpha)/M E_{q(z|X)}[log p(X|z)] - beta [(1 - alpha) KL(q(z|X) || p(z))
    + alpha/M sum_m KL(q(z|X) || q(z|x_m))], q(z|X) = PoE(q(z|x_1), ..., q(z|x_M)) (no prior expert)."""
    post = model.encode(views)
    n_mod = len(views)
    loc, scale = product_of_experts(post.z_loc, post.z_scale, prior_weight=0.0)
    rec, kl_joint = reconstruction_and_kl(model, views, loc, scale, range(n_mod), n_samples)  # [M, B], [B]
    cvib = gaussian_kl(loc.unsqueeze(0), scale.unsqueeze(0), post.z_loc, post.z_scale).sum(0)
    objective = (n_mod - alpha) / n_mod * rec.sum(0) - beta * ((1 - alpha) * kl_joint + alpha / n_mod * cvib)
    return _objective_terms(objective, rec, kl_joint=kl_joint, kl_conditional=cvib)


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
