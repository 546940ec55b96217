"""The cluster API of the models with a cluster prior (:class:`~cmvae.estimator.cmvae.CMVAE`, VaDE):
cluster posteriors, ``predict`` / ``predict_proba`` / ``score``, and the post-hoc choice of the number
of clusters (``select_clusters``, ``apply_selection``; the paper's Algorithm 1 in :mod:`cmvae.selection`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ..inputs import Input, check_labels
from ..missing import masked_mean
from ..schema import ArrayLike
from ..selection import DEFAULT_TIE_TOLERANCE, SelectionResult, assign_clusters, combined_evidence
from ..selection import select_clusters as prune_clusters
from .params import ParameterError, check_choice, check_number

E = TypeVar("E", bound="ClusteringMixin")


class ClusteringMixin:
    """Cluster methods of an estimator whose module has a ``prior`` (:class:`~cmvae.priors.ClusterPrior`)."""

    @property
    def cluster_weights_(self) -> np.ndarray:
        """Prior cluster probabilities pi ``[n_clusters]`` (0 for pruned clusters)."""
        module, _ = self._fitted()
        return module.prior.weights().detach().cpu().numpy()  # type: ignore[union-attr]

    def cluster_log_posteriors(
        self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None
    ) -> torch.Tensor:
        """Each modality's cluster posterior log q(c | x_m) = log E_{q(z|x_m)} p(c | z), averaged over
        ``posterior_samples`` draws of z (0: log p(c | z) at the posterior mean): ``[M, N, n_clusters]``
        (NaN at unobserved entries: ``None`` views or ``mask`` [N, M] False). Reproducible: the draws
        use their own generator, seeded by the estimator's seed."""
        return self._cluster_log_posteriors(self._input(views, mask))

    def _cluster_log_posteriors(self, data: Input) -> torch.Tensor:
        """log q(c | x_m) ``[M, N, n_clusters]`` of checked data (NaN at its unobserved entries)."""
        module, _ = self._fitted()
        post = self._encode(data)
        prior = module.prior  # type: ignore[union-attr]
        return prior.expected_log_posterior(post.z_loc, post.z_scale, self.posterior_samples, self._fit_seed())

    def cluster_log_likelihoods(self, views: Sequence[ArrayLike], *, use_mean: bool = True) -> torch.Tensor:
        """log p(z_m | c) for each modality's latent (posterior mean or one sample): ``[M, N, n_clusters]``."""
        return self._cluster_log_likelihoods(self._input(views), use_mean)

    def _cluster_log_likelihoods(self, data: Input, use_mean: bool) -> torch.Tensor:
        """log p(z_m | c) ``[M, N, n_clusters]`` of checked data."""
        module, _ = self._fitted()
        post = self._encode(data)
        z = post.z_loc if use_mean else module.z_family.sample(post.z_loc, post.z_scale)
        prior = module.prior  # type: ignore[union-attr]
        with torch.no_grad():
            return prior.log_likelihoods(z)

    def select_clusters(
        self,
        views: Sequence[ArrayLike],
        labels: ArrayLike | None = None,
        *,
        criterion: str = "entropy",
        assignment: str | None = None,
        use_mean: bool = True,
        eval_views: Sequence[ArrayLike] | None = None,
        eval_labels: ArrayLike | None = None,
        tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
        progress: Any = None,
    ) -> SelectionResult:
        """Post-hoc choice of the number of clusters (the paper's Algorithm 1); the model is unchanged.

        Prunes, one at a time, the cluster with the fewest points assigned on ``views`` and
        returns K_hat = argmin_k of the mean normalised entropy of p(c|z_m) (``criterion=
        "entropy"``) or of the released code's ``"entropy_loglik"`` score. Points are assigned
        as :meth:`predict` assigns them (``assignment=None``: this model's ``assignment`` rule;
        ``"vote"``: the paper's majority vote; ``"evidence"``). ``use_mean``: z_m is the posterior
        mean (else one sample). ``tie_tolerance``: a k whose score lies within that many standard errors
        of the lowest counts as a tie, and ties go to the larger k (0: the paper's exact argmin).
        With labels, NMI/ARI at each k are reported on ``eval_views``/``eval_labels`` (e.g. a test
        split), else on ``views``.
        Apply the result with :meth:`apply_selection`.
        """
        module, _ = self._fitted()
        if assignment is not None:
            check_choice("assignment", assignment, ("evidence", "vote"))
        tie_tolerance = check_number("tie_tolerance", tie_tolerance, 0.0)
        log_lik = self._cluster_log_likelihoods(self._input(views), use_mean)
        n = log_lik.shape[1]
        eval_lik = None
        if eval_views is not None:
            eval_lik = self._cluster_log_likelihoods(self._input(eval_views), True)
            if eval_labels is None:
                raise ValueError("eval_views given without eval_labels")
            eval_labels = check_labels(eval_labels, eval_lik.shape[1])
        labels_arr = check_labels(labels, n) if labels is not None else None
        with torch.no_grad():
            log_pi = module.prior.log_weights().detach().cpu()  # type: ignore[union-attr]
        result = prune_clusters(
            log_lik,
            log_pi,
            criterion=criterion,  # type: ignore[arg-type]
            assignment=getattr(self, "assignment", "vote") if assignment is None else assignment,  # type: ignore[arg-type]
            beta=self.beta,
            dim_z=self.shared_dim,
            labels=labels_arr,
            eval_log_lik=eval_lik,
            eval_labels=eval_labels,
            tie_tolerance=tie_tolerance,
            progress=progress,
        )
        result.model_fingerprint = self._prior_fingerprint()
        return result

    def _prior_fingerprint(self) -> str:
        """SHA-256 of the cluster prior's means and scales (unchanged by pruning): identifies this model."""
        module, _ = self._fitted()
        prior = module.prior  # type: ignore[union-attr]
        digest = hashlib.sha256()
        for t in (prior.means, prior.scales):
            digest.update(t.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def apply_selection(self: E, result: SelectionResult) -> E:
        """Keep only ``result.kept`` clusters: their pi is renormalised, the others get exactly 0.
        ``result`` must come from this model's :meth:`select_clusters`."""
        module, _ = self._fitted()
        if not isinstance(result, SelectionResult):
            raise ParameterError(f"apply_selection expects the SelectionResult of select_clusters, got {type(result).__name__}")
        if result.model_fingerprint is not None and result.model_fingerprint != self._prior_fingerprint():
            raise ParameterError(
                "apply_selection: this SelectionResult was computed on another model (its cluster prior differs): "
                "run select_clusters on this model"
            )
        bad = [c for c in result.kept if not 0 <= c < self.n_clusters]
        if bad or not result.kept:
            raise ValueError(f"selection keeps invalid cluster ids {bad or result.kept} for {self.n_clusters} clusters")
        module.prior.set_active(result.kept)  # type: ignore[union-attr]
        return self

    def _log_pi(self) -> torch.Tensor:
        module, _ = self._fitted()
        with torch.no_grad():
            return module.prior.log_weights().detach().cpu()  # type: ignore[union-attr]

    def predict(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Cluster ids ``[N]`` from every observed modality's p(c | z_m) (``None`` views, ``mask``
        [N, M] with True = observed). ``assignment="evidence"``: the argmax of the combined evidence
        log pi_c + sum_m [log p(c | z_m) - log pi_c]; ``"vote"``: the paper's majority vote (each
        modality votes for its argmax; ties go to the larger summed posterior)."""
        data = self._input(views, mask)
        log_post = self._cluster_log_posteriors(data)
        return assign_clusters(log_post, self._log_pi(), data.mask, self.assignment).numpy()  # type: ignore[arg-type]

    def predict_proba(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Cluster probabilities ``[N, n_clusters]``: the normalised combined evidence of the observed
        modalities (``assignment="evidence"``), or p(c | z_m) averaged over them (``"vote"``)."""
        data = self._input(views, mask)
        log_post = self._cluster_log_posteriors(data)
        if self.assignment == "evidence":
            return combined_evidence(log_post, self._log_pi(), data.mask).exp().numpy()
        if data.complete:
            return log_post.exp().mean(0).numpy()
        return masked_mean(log_post.exp(), data.observed).numpy()

    def score(
        self, views: Sequence[ArrayLike | None], y: ArrayLike, *, mask: ArrayLike | None = None
    ) -> dict[str, float]:
        """NMI, ARI and Hungarian accuracy of :meth:`predict` against labels ``y`` ``[N]``."""
        from ..metrics import clustering_scores

        return clustering_scores(np.asarray(y), self.predict(views, mask=mask))
