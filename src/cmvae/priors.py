"""Priors on the shared latent z and the private latents w_m.

* :class:`ClusterPrior` -- p(c) p(z|c): a categorical over clusters with learnable
  weights pi and one Gaussian or Laplace component per cluster with learnable means
  and (optionally learnable) scales. A cluster can be switched off: its pi is then
  exactly 0, it never receives an assignment and never generates a sample. With one
  cluster whose mean is fixed at 0 and scale at 1, it is the standard prior used by
  MMVAE+ (so MMVAE+ is CMVAE with ``n_clusters=1, learn_means=False``).
* :class:`PrivatePriors` -- the fixed priors p(w_m) used for generation, and the
  auxiliary distributions r_m (zero mean, learnable scale) that the cross-modal terms
  of the objective draw private latents from (MMVAE+).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .distributions import latent_family, scale_transform

_INV_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(x) == 1  <=>  x == log(e - 1)
#: Rows of codes scored at a time when a whole data set is scored (predict, select_clusters): the
#: ``[rows, C, dim]`` intermediates stay bounded whatever N.
SCORE_ROWS = 4096
#: k-means++ starts of a fresh placement (:meth:`ClusterPrior.init_from_codes`); the lowest within-cluster sum of
#: squares wins. On the quickstart's held-out codes the best of 3 (the number before) stayed in a worse partition in 2
#: of 6 runs (NMI 0.93 vs 0.96-0.98 for the best of 10; benchmarks/RESULTS.md, round 20).
KMEANS_RESTARTS = 10


def by_rows(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
    """``fn`` on blocks of :data:`SCORE_ROWS` rows of ``tensors`` ``[..., dim]`` (the leading dims
    flattened), results ``[rows, C]`` put back as ``[..., C]``; for functions that treat rows independently."""
    lead = tensors[0].shape[:-1]
    flat = [t.reshape(-1, t.shape[-1]) for t in tensors]
    n = flat[0].shape[0]
    if n <= SCORE_ROWS:
        out = fn(*flat)
    else:
        out = torch.cat([fn(*(f[start : start + SCORE_ROWS] for f in flat)) for start in range(0, n, SCORE_ROWS)])
    return out.reshape(*lead, out.shape[-1])


class ClusterPrior(nn.Module):
    """Mixture prior p(z) = sum_c pi_c p(z | c) over ``n_clusters`` components of size ``dim``."""

    def __init__(
        self,
        n_clusters: int,
        dim: int,
        family: str = "gaussian",
        *,
        learn_means: bool = True,
        learn_scales: bool = False,
        learn_weights: bool = True,
        init_mean_std: float = 1.0,
        mean_init: str = "normal",
    ) -> None:
        super().__init__()
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        self.family = latent_family(family)
        self.n_clusters = n_clusters
        self.dim = dim
        self.logits = nn.Parameter(torch.zeros(n_clusters), requires_grad=learn_weights)
        if mean_init not in ("normal", "uniform", "zeros"):
            raise ValueError(f"mean_init must be 'normal', 'uniform' or 'zeros', got {mean_init!r}")
        if not learn_means or mean_init == "zeros":
            means = torch.zeros(n_clusters, dim)
        elif mean_init == "uniform":  # U(-s, s), as the authors' code (s = 1)
            means = (torch.rand(n_clusters, dim) * 2 - 1) * init_mean_std
        else:
            means = torch.randn(n_clusters, dim) * init_mean_std
        self.means = nn.Parameter(means, requires_grad=learn_means)
        self.raw_scales = nn.Parameter(
            torch.full((n_clusters, dim), _INV_SOFTPLUS_ONE), requires_grad=learn_scales
        )
        self.register_buffer("active", torch.ones(n_clusters, dtype=torch.bool))

    # -- parameters -------------------------------------------------------------------
    @property
    def scales(self) -> torch.Tensor:
        """Component scales ``[C, dim]`` (exactly 1 at initialisation)."""
        return torch.nn.functional.softplus(self.raw_scales).clamp_min(1e-4)

    def log_weights(self) -> torch.Tensor:
        """log pi ``[C]``; ``-inf`` for switched-off clusters, the rest renormalised."""
        masked = self.logits.masked_fill(~self.active, float("-inf"))
        return torch.log_softmax(masked, dim=-1)

    def weights(self) -> torch.Tensor:
        """pi ``[C]`` (a valid distribution; exactly 0 for switched-off clusters)."""
        return self.log_weights().exp()

    # -- densities --------------------------------------------------------------------
    def _log_pz_c(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z | c) for every cluster, all rows at once: ``[..., dim] -> [..., C]``."""
        return self.family.log_prob(z.unsqueeze(-2), self.means, self.scales).sum(-1)

    def log_joint(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c) + log p(z | c) for every cluster: ``[..., dim] -> [..., C]``."""
        return self._log_pz_c(z) + self.log_weights()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Marginal log p(z) = log sum_c pi_c p(z|c): ``[..., dim] -> [...]``.

        This is also E_{q(c|z)}[log p(c) + log p(z|c) - log q(c|z)] with q(c|z) = p(c|z),
        i.e. the cluster part of the CMVAE objective with the expectation over c exact.
        """
        return torch.logsumexp(self.log_joint(z), dim=-1)

    def log_posterior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c | z) by Bayes' rule in log space: ``[..., dim] -> [..., C]``."""
        joint = self.log_joint(z)
        return joint - torch.logsumexp(joint, dim=-1, keepdim=True)

    @torch.no_grad()
    def expected_log_posterior(self, loc: torch.Tensor, scale: torch.Tensor, samples: int, seed: int = 0) -> torch.Tensor:
        """log q(c | x) = log E_{z ~ F(loc, scale)} p(c | z), by ``samples`` draws of the posterior
        (``loc``, ``scale`` ``[..., dim]`` -> ``[..., C]``); ``samples=0``: log p(c | loc). Every row
        uses the same ``samples`` standardised draws, so a row's result does not depend on the batch.

        Averaging over the posterior rather than reading p(c | z) at its mean keeps an uncertain
        code from voting with full confidence. The draws come from their own generator seeded by
        ``seed`` on the CPU (the global random state is untouched), so the result is reproducible.
        """
        if samples <= 0:
            return by_rows(self.log_posterior, loc)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            noise = self.family.noise((samples, loc.shape[-1]), loc.new_zeros(()).cpu()).to(loc)  # [S, dim]

        def expected(loc_rows: torch.Tensor, scale_rows: torch.Tensor) -> torch.Tensor:
            total: torch.Tensor | None = None
            for eps in noise:  # the same S draws for every row: a row's result never depends on the others
                log_post = self.log_posterior(loc_rows + scale_rows * eps)
                total = log_post if total is None else torch.logaddexp(total, log_post)
            assert total is not None
            return total - math.log(samples)

        return by_rows(expected, loc, scale)

    def log_likelihoods(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z | c) for every cluster, :data:`SCORE_ROWS` rows at a time: ``[..., dim] -> [..., C]``."""
        return by_rows(self._log_pz_c, z)

    # -- sampling and pruning ---------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, cluster: int | None = None, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` pairs (z, c): z ``[n, dim]``, c ``[n]``; ``cluster`` fixes c. ``temperature`` multiplies the
        components' scales (1: p(z|c) itself; below 1 the draws stay nearer each component's mean)."""
        device = self.means.device
        if cluster is None:
            c = torch.multinomial(self.weights(), n, replacement=True)
        else:
            if not 0 <= cluster < self.n_clusters:
                raise ValueError(f"cluster must be in [0, {self.n_clusters}), got {cluster}")
            if not bool(self.active[cluster]):
                raise ValueError(f"cluster {cluster} was pruned (pi = 0); active: {self.active_ids()}")
            c = torch.full((n,), cluster, dtype=torch.long, device=device)
        return self.family.sample(self.means[c], self.scales[c] * temperature), c

    @torch.no_grad()
    def init_from_codes(self, codes: torch.Tensor, seed: int = 0, max_points: int = 20000,
                        from_means: bool = False) -> torch.Tensor:
        """Place the components on k-means centroids of latent codes ``[N, dim]`` (as VaDE does).

        Means become the centroids, pi the cluster fractions and, when scales are learnable,
        scales the per-cluster spread. Returns the k-means labels of the (sub-sampled) codes.
        k-means runs from :data:`KMEANS_RESTARTS` k-means++ starts. ``from_means``: k-means starts from the active
        components' current means (one run), so component ``c`` moves to the centroid of the codes nearest to it and
        keeps its identity (a placed model is placed again without renumbering its clusters). Restarts are not tried
        there: with an over-specified K (40 for 10 digits) a fresh partition spreads the components evenly over the
        codes and erases the sizes that Algorithm 1 prunes by (NMI at k = 10 0.907 -> 0.871, K_hat 11 -> 14 on one
        40-cluster run; benchmarks/RESULTS.md, round 20).
        """
        from sklearn.cluster import KMeans

        codes = codes.detach().double().cpu()
        if codes.shape[0] > max_points:
            codes = codes[torch.randperm(codes.shape[0], generator=torch.Generator().manual_seed(seed))[:max_points]]
        active = self.active_ids()
        if codes.shape[0] < len(active):
            raise ValueError(f"need at least {len(active)} codes to initialise {len(active)} clusters")
        start = self.means.detach()[active].double().cpu().numpy() if from_means else "k-means++"
        km = KMeans(n_clusters=len(active), init=start, n_init=1 if from_means else KMEANS_RESTARTS,
                    random_state=seed).fit(codes.numpy())
        labels = torch.as_tensor(km.labels_)
        centers = torch.as_tensor(km.cluster_centers_, dtype=self.means.dtype)
        counts = torch.bincount(labels, minlength=len(active)).to(self.logits.dtype).clamp_min(1.0)
        ids = torch.as_tensor(active, device=self.means.device)
        self.means[ids] = centers.to(self.means.device)
        self.logits[ids] = counts.log().to(self.logits.device)
        if self.raw_scales.requires_grad:
            for j, c in enumerate(active):
                members = codes[labels == j]
                if members.shape[0] > 1:
                    spread = (members - centers[j].double()).abs().mean(0) if self.family.name == "laplace" else (
                        members - centers[j].double()
                    ).std(0)
                    target = spread.clamp_min(1e-2).to(self.raw_scales.dtype)
                    self.raw_scales[c] = torch.log(torch.expm1(target)).to(self.raw_scales.device)
        return labels

    def active_ids(self) -> list[int]:
        """Ids of the clusters with positive prior probability."""
        return torch.nonzero(self.active).flatten().tolist()

    @torch.no_grad()
    def set_active(self, keep: torch.Tensor | list[int]) -> None:
        """Keep only the clusters in ``keep`` (ids or a boolean mask ``[C]``); pi renormalises."""
        mask = torch.zeros_like(self.active)
        keep_t = torch.as_tensor(keep, device=mask.device)
        if keep_t.dtype == torch.bool:
            mask = keep_t.clone()
        else:
            mask[keep_t.long()] = True
        if not bool(mask.any()):
            raise ValueError("at least one cluster must stay active")
        self.active.copy_(mask)


class PrivatePriors(nn.Module):
    """Fixed priors p(w_m) = F(0, 1) and auxiliary r_m = F(0, s_m) with learnable s_m."""

    def __init__(self, n_modalities: int, dim: int, family: str = "gaussian", *, learn_aux_scale: bool = True,
                 scale_param: str = "softplus"):
        super().__init__()
        self.family = latent_family(family)
        self.dim = dim
        self.to_scale = scale_transform(scale_param)
        start = _INV_SOFTPLUS_ONE if scale_param == "softplus" else 0.0  # scales exactly 1 (up to the floor)
        self.raw_aux_scales = nn.Parameter(torch.full((n_modalities, dim), start), requires_grad=learn_aux_scale)

    def aux_scales(self) -> torch.Tensor:
        """Scales of the auxiliary distributions r_m: ``[M, dim]`` (the encoders' parametrisation)."""
        return self.to_scale(self.raw_aux_scales)

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """log p(w) under the fixed prior, summed over the last axis: ``[..., dim] -> [...]``."""
        zero = torch.zeros((), dtype=w.dtype, device=w.device)
        return self.family.log_prob(w, zero, zero + 1.0).sum(-1)

    def sample_aux(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Reparameterised samples from every r_m: ``shape + (M, dim)`` -> returned as
        ``[M, *shape, dim]``."""
        scales = self.aux_scales()
        m, d = scales.shape
        noise = self.family.noise((m, *shape, d), scales)
        return noise * scales.view(m, *([1] * len(shape)), d)

    def sample_prior(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Samples from the fixed prior p(w): ``shape + (dim,)``."""
        return self.family.noise((*shape, self.dim), like)

