"""Latent and likelihood families as plain log-density / sampling functions.

Every family works element-wise on tensors of any shape; callers sum over the event
dimension themselves. Keeping them as small stateless objects (instead of
``torch.distributions`` instances) keeps the hot path free of argument validation and
object churn, and lets one code path serve Gaussian and Laplace models.

Shapes used across the package (M modalities, K importance samples, B batch):

* posterior parameters ``loc``/``scale``: ``[B, dim]`` or ``[M, B, dim]``
* samples: ``[K, B, dim]`` or ``[M, K, B, dim]``
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

LatentFamilyName = Literal["gaussian", "laplace"]
LikelihoodName = Literal["gaussian", "laplace", "bernoulli", "categorical"]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


@dataclass(frozen=True)
class LocScaleFamily:
    """A location-scale family (Gaussian or Laplace) with reparameterised sampling."""

    name: LatentFamilyName

    def log_prob(self, value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Element-wise log-density; broadcasting ``value``, ``loc`` and ``scale``."""
        if self.name == "gaussian":
            return -0.5 * ((value - loc) / scale) ** 2 - torch.log(scale) - 0.5 * _LOG_2PI
        return -torch.abs(value - loc) / scale - torch.log(scale) - _LOG_2

    def noise(self, shape: torch.Size | tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Standard (loc 0, scale 1) noise of the given shape, dtype/device of ``like``."""
        if self.name == "gaussian":
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        # Inverse-CDF of the Laplace distribution, kept away from the poles.
        tiny = torch.finfo(like.dtype).eps
        u = torch.rand(shape, dtype=like.dtype, device=like.device) * (2 - 2 * tiny) - (1 - tiny)
        return -torch.sign(u) * torch.log1p(-u.abs())

    def rsample(self, loc: torch.Tensor, scale: torch.Tensor, n_samples: int) -> torch.Tensor:
        """Draw ``n_samples`` reparameterised samples: ``[..., B, dim] -> [..., n_samples, B, dim]``.

        The sample axis is inserted just before the batch axis.
        """
        loc = loc.unsqueeze(-3)
        scale = scale.unsqueeze(-3)
        shape = loc.shape[:-3] + (n_samples,) + loc.shape[-2:]
        return loc + scale * self.noise(shape, loc)

    def sample(self, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """One sample with the broadcast shape of ``loc`` and ``scale`` (no extra axis)."""
        shape = torch.broadcast_shapes(loc.shape, scale.shape)
        return loc + scale * self.noise(shape, loc)

    def variance(self, scale: torch.Tensor) -> torch.Tensor:
        """Variance for the given scale (``scale**2`` for Gaussian, ``2 scale**2`` for Laplace)."""
        return scale**2 if self.name == "gaussian" else 2 * scale**2


def latent_family(name: str) -> LocScaleFamily:
    """Look up a latent family by name, with a clear error for unknown names."""
    if name not in ("gaussian", "laplace"):
        raise ValueError(f"unknown latent family {name!r}; choose 'gaussian' or 'laplace'")
    return LocScaleFamily(name)  # type: ignore[arg-type]


def positive_scale(raw: torch.Tensor, min_scale: float = 1e-4) -> torch.Tensor:
    """Map an unconstrained network output to a strictly positive scale."""
    return F.softplus(raw) + min_scale


ScaleParam = Literal["softplus", "softmax"]


def normalised_scale(raw: torch.Tensor, min_scale: float = 1e-6) -> torch.Tensor:
    """The authors' parametrisation (MMVAE+, CMVAE): ``softmax(raw over the last axis) * dim``,
    scales ``[..., dim]`` that average exactly 1 over the dimensions (plus ``min_scale``). A posterior
    cannot shrink as a whole, only trade precision between dimensions; so the unimodal posteriors
    of one object overlap and the modalities cannot drift apart in z (see benchmarks/RESULTS.md)."""
    return F.softmax(raw, dim=-1) * raw.shape[-1] + min_scale


def scale_transform(name: str):
    """The function raw -> scale of a parametrisation name ("softplus" or "softmax")."""
    if name == "softplus":
        return positive_scale
    if name == "softmax":
        return normalised_scale
    raise ValueError(f"scale_param must be 'softplus' or 'softmax', got {name!r}")


@dataclass(frozen=True)
class Likelihood:
    """Observation model p(x | decoder output).

    * ``gaussian`` / ``laplace``: the decoder outputs the mean; the scale is fixed
      (``scale``), as in the paper (Laplace with scale 0.75 on PolyMNIST).
    * ``bernoulli``: the decoder outputs logits; x in [0, 1].
    * ``categorical``: the decoder outputs logits ``[..., length, vocab]``; x holds
      integer token ids ``[..., length]``.
    """

    name: LikelihoodName
    scale: float = 0.75

    def log_prob(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """Log-likelihood summed over every non-batch axis of ``x``.

        ``decoded`` has ``extra`` leading axes compared to ``x`` (e.g. ``[M, K, B, ...]``
        against ``x`` ``[B, ...]``); the result has shape ``decoded.shape[:extra + 1]``.
        """
        if self.name == "categorical":
            log_p = torch.log_softmax(decoded, dim=-1)
            index = x.long().expand(decoded.shape[:-1]).unsqueeze(-1)
            per_elem = torch.gather(log_p, -1, index).squeeze(-1)
            event_dims = x.dim() - 1
        else:
            event_dims = x.dim() - 1
            if self.name == "bernoulli":
                per_elem = -F.binary_cross_entropy_with_logits(
                    decoded, x.expand_as(decoded), reduction="none"
                )
            else:
                scale = torch.as_tensor(self.scale, dtype=decoded.dtype, device=decoded.device)
                per_elem = latent_family(self.name).log_prob(x, decoded, scale)
        if event_dims == 0:
            return per_elem
        return per_elem.flatten(start_dim=per_elem.dim() - event_dims).sum(-1)

    def mean(self, decoded: torch.Tensor) -> torch.Tensor:
        """The mean (or the most likely token ids for ``categorical``) of p(x | decoded)."""
        if self.name == "bernoulli":
            return torch.sigmoid(decoded)
        if self.name == "categorical":
            return decoded.argmax(-1)
        return decoded


def likelihood(name: str, scale: float = 0.75) -> Likelihood:
    """Look up a likelihood by name, with a clear error for unknown names."""
    allowed = ("gaussian", "laplace", "bernoulli", "categorical")
    if name not in allowed:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {allowed}")
    if scale <= 0:
        raise ValueError(f"likelihood scale must be positive, got {scale}")
    return Likelihood(name, float(scale))  # type: ignore[arg-type]
