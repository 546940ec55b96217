"""Closed-form Gaussian expert math of the product-of-experts baselines.

Used by the MVAE, MoPoE, mmJSD and MVTCAE objectives (:mod:`cmvae.objectives`) and their
subset posteriors for generation. Products of experts are closed-form only for Gaussian
experts, so the PoE models use Gaussian latents (their estimators refuse ``laplace``).

Shapes: experts ``loc``/``scale`` ``[E, ..., d]`` (E experts, e.g. ``[M, B, d]``); a fused
posterior ``[..., d]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch


def product_of_experts(
    loc: torch.Tensor,
    scale: torch.Tensor,
    *,
    prior_weight: float = 1.0,
    weights: torch.Tensor | Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (weighted) product of Gaussian experts, optionally with the N(0, I) prior expert.

    prod_e N(loc_e, scale_e^2)^{weights_e} * N(0, I)^{prior_weight}, renormalised: the precision
    is sum_e weights_e / scale_e^2 (+ prior_weight) and the mean the precision-weighted mean.
    ``weights`` (``[E]``, or ``[E, B]`` per sample) default to 1 (plain PoE, Wu & Goodman 2018); ``prior_weight=0`` drops the prior
    expert; weights summing to one (with the prior's) give the weighted geometric mean of mmJSD.

    ``loc``/``scale``: ``[E, ..., d]``; returns (loc, scale) ``[..., d]``.
    """
    if loc.shape[0] == 0:
        raise ValueError("a product of experts needs at least one expert")
    w = torch.ones(loc.shape[0], dtype=loc.dtype, device=loc.device) if weights is None else torch.as_tensor(
        weights, dtype=loc.dtype, device=loc.device
    )
    w = w.reshape(*w.shape, *([1] * (loc.dim() - w.dim())))  # [E] or per-sample [E, B]
    precisions = w / scale**2  # [E, ..., d]
    precision = precisions.sum(0) + prior_weight
    fused_loc = (precisions * loc).sum(0) / precision  # the prior expert has mean 0
    return fused_loc, precision.rsqrt()


def gaussian_kl(
    loc_q: torch.Tensor, scale_q: torch.Tensor, loc_p: torch.Tensor | float = 0.0, scale_p: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """KL(N(loc_q, scale_q^2) || N(loc_p, scale_p^2)) summed over the last axis: ``[..., d] -> [...]``
    (defaults: the standard prior N(0, I))."""
    loc_p = torch.as_tensor(loc_p, dtype=loc_q.dtype, device=loc_q.device)
    scale_p = torch.as_tensor(scale_p, dtype=loc_q.dtype, device=loc_q.device)
    ratio = (scale_q / scale_p) ** 2
    per_dim = 0.5 * (ratio + ((loc_q - loc_p) / scale_p) ** 2 - 1.0 - torch.log(ratio))
    return per_dim.sum(-1)


def nonempty_subsets(members: Sequence[int] | int) -> list[tuple[int, ...]]:
    """The 2^n - 1 non-empty subsets of ``members`` (or of ``range(members)``), smallest first.

    >>> nonempty_subsets(3)
    [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    """
    items = list(range(members)) if isinstance(members, int) else list(members)
    return [s for size in range(1, len(items) + 1) for s in combinations(items, size)]


def subset_posteriors(
    loc: torch.Tensor, scale: torch.Tensor, subsets: Sequence[Sequence[int]], *, prior_weight: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PoE posterior of every subset of experts: ``[E, B, d]`` -> (loc, scale) ``[S, B, d]``."""
    fused = [product_of_experts(loc[list(s)], scale[list(s)], prior_weight=prior_weight) for s in subsets]
    return torch.stack([f[0] for f in fused]), torch.stack([f[1] for f in fused])
