"""The CMVAE estimator: its settings, the module it builds (:class:`~cmvae.models.cmvae.CMVAEModule`) and
the k-means placement of its cluster components; the cluster API comes from :mod:`.clustering`.

>>> model = CMVAE(n_clusters=10, epochs=20, seed=0)
>>> model.fit(views)                      # list of M arrays [N, ...] with the same N
>>> labels = model.predict(views)         # [N] cluster ids
>>> proba = model.predict_proba(views)    # [N, n_clusters]
>>> Z = model.transform(views)            # [N, shared_dim]
>>> model.save("run/model"); model = CMVAE.load("run/model")
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from ..callbacks import HeldOutBound, KMeansPriorInit
from ..models.cmvae import CMVAEModule
from ..registry import register_estimator
from ..schema import DataSchema, DataValidationError
from .base import MultimodalEstimator
from .clustering import ClusteringMixin
from .params import NotFittedError, ParameterError, check_choice, check_int, check_number


#: With ``cluster_init_when="plateau"``, the share of the training rows held out of the gradient steps (their
#: bound decides when the components are placed and which weights training ends with; with enough of them per
#: cluster, k-means places the components on their codes) ...
HELD_OUT_FRACTION = 0.1
#: ... and at most this many rows (the bound's mean is then known to well under a nat).
HELD_OUT_MAX = 2000



def held_out_pick(n_samples: int, n_held: int, seed: int) -> torch.Tensor:
    """The sorted ids ``[n_held]`` of the rows a fit holds out of its gradient steps: a random pick seeded by
    ``seed`` (the fit's seed; the same rows for the same seed and size)."""
    generator = torch.Generator().manual_seed(seed + 1)
    return torch.randperm(n_samples, generator=generator)[:n_held].sort().values

class CMVAE(ClusteringMixin, MultimodalEstimator):
    """Clustering Multimodal VAE: clusters paired multimodal data and generates from each cluster.
    Trains on partially observed samples too (``fit(views, mask=...)``).

    Defaults follow the paper's PolyMNIST setting (Laplace posteriors, priors and
    likelihood with scale 0.75, 32 + 32 latent dimensions) with light networks sized for a
    CPU, except ``beta`` 1 (the plain ELBO, the paper's CUBICC value; its PolyMNIST value 2.5 keeps
    no cluster structure on small tabular data, see README), ``epochs=None`` (at least
    :data:`DEFAULT_MIN_STEPS` optimiser steps) and ``contrastive_warmup_epochs="auto"`` (the first 4 epochs, or
    one in 6 of shorter fits, train the shared-code encoders by CMC's InfoNCE across the modalities, then half as
    many objective epochs keep those codes: on the other image set 0.71 NMI instead of 0.34, on tabular views
    within 0.01 or better; ``0`` starts with the objective as the paper does). ``configs/polymnist.yaml`` has
    the paper's PolyMNIST settings; ``arch="paper"`` builds the authors' networks (22.2 M parameters for 5 PolyMNIST
    modalities), meant for a GPU.
    """

    model_type = "cmvae"
    partial_training = True

    def __init__(
        self,
        n_clusters: int = 10,
        shared_dim: int = 32,
        private_dim: int = 32,
        *,
        learn_prior_scales: bool = False,
        prior_mean_init_std: float = 1.0,
        cluster_init: str = "kmeans",
        cluster_init_epoch: int | None = None,
        cluster_init_when: str = "epoch",
        early_stopping: bool = True,
        assignment: str = "evidence",
        posterior_samples: int = 16,
        scale_param: str = "softplus",
        encoder_branches: str = "separate",
        beta: float = 1.0,
        contrastive_warmup_epochs: int | str = "auto",
        warmup_freeze_epochs: int | str = "auto",
        **kwargs: Any,
    ) -> None:
        check_int("n_clusters", n_clusters, 1)
        check_choice("cluster_init", cluster_init, ("kmeans", "random", "uniform"))
        check_choice("assignment", assignment, ("evidence", "vote"))
        check_choice("cluster_init_when", cluster_init_when, ("ready", "epoch", "plateau"))
        check_int("posterior_samples", posterior_samples, 0)
        if cluster_init_epoch is not None:
            check_int("cluster_init_epoch", cluster_init_epoch, 0)
        check_number("prior_mean_init_std", prior_mean_init_std, 0.0)
        for name, flag in (("learn_prior_scales", learn_prior_scales), ("early_stopping", early_stopping)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ParameterError(f"{name} must be True or False, got {flag!r}")
        self.n_clusters = n_clusters
        self.learn_prior_scales = learn_prior_scales
        self.prior_mean_init_std = prior_mean_init_std
        self.cluster_init = cluster_init
        self.cluster_init_epoch = cluster_init_epoch
        self.cluster_init_when = cluster_init_when
        self.early_stopping = early_stopping
        self.posterior_samples = posterior_samples
        self.assignment = assignment
        super().__init__(shared_dim=shared_dim, private_dim=private_dim, scale_param=scale_param,
                         encoder_branches=encoder_branches, beta=beta,
                         contrastive_warmup_epochs=contrastive_warmup_epochs,
                         warmup_freeze_epochs=warmup_freeze_epochs, **kwargs)

    @property
    def cluster_init_epoch_(self) -> int:
        """Epoch after which k-means places the cluster components (default: two thirds of the
        training epochs, resolved at fit when ``epochs`` is None: the shared latent must carry the
        cluster structure before it is clustered); with ``cluster_init_when="ready"`` or ``"plateau"`` the
        latest epoch: the placement comes from half of it on, as soon as k-means finds a stable partition of
        the latent, or the bound on held-out training rows stops rising (see
        :class:`~cmvae.callbacks.KMeansPriorInit`)."""
        if self.cluster_init_epoch is not None:
            return self.cluster_init_epoch
        epochs = self.epochs if self.epochs is not None else self.epochs_
        if epochs is None:
            raise NotFittedError(
                "cluster_init_epoch_ depends on the training epochs, which epochs=None resolves at fit from the data "
                "size: fit first, or pass epochs or cluster_init_epoch"
            )
        return max(1, (2 * epochs) // 3)

    def _held_out_rows(self, n_samples: int) -> torch.Tensor | None:
        """With ``cluster_init_when="plateau"``: the sorted ids ``[n]`` of the training rows held out of the
        gradient steps (:data:`HELD_OUT_FRACTION` of them, at most :data:`HELD_OUT_MAX`, a seeded random pick)."""
        if not (self.cluster_init == "kmeans" and self.n_clusters > 1 and self.cluster_init_when == "plateau"):
            return None
        n_held = min(HELD_OUT_MAX, max(1, round(HELD_OUT_FRACTION * n_samples)))
        if n_samples - n_held < self.n_clusters:
            raise DataValidationError(
                f"cluster_init_when='plateau' holds out {n_held} of the {n_samples} training samples, which leaves "
                f"fewer than n_clusters={self.n_clusters} to train on: use more data or cluster_init_when='epoch'"
            )
        return held_out_pick(n_samples, n_held, self._fit_seed())

    def _fit_callbacks(self, train: list[torch.Tensor], mask: torch.Tensor | None = None,
                       held_out: torch.Tensor | None = None) -> list[L.Callback]:
        if self.cluster_init == "kmeans" and self.n_clusters > 1:
            bound = None if held_out is None else HeldOutBound(train, held_out, self._fit_seed(), mask)
            return [KMeansPriorInit(*self._fitted(), train, self.cluster_init_epoch_, self._fit_seed(), mask,
                                    when=self.cluster_init_when, held_out=bound,
                                    early_stopping=bool(self.early_stopping))]
        return []

    def _build_module(self, schema: DataSchema) -> CMVAEModule:
        encoders, decoders = self._networks(schema)
        likelihoods = self._make_likelihoods(schema)
        return CMVAEModule(
            encoders,
            decoders,
            likelihoods,
            n_clusters=self.n_clusters,
            shared_dim=self.shared_dim,
            private_dim=self.private_dim,
            latent_family_name=self.latent_family,
            learn_prior_scales=self.learn_prior_scales,
            prior_mean_init_std=self.prior_mean_init_std,
            likelihood_weights=self.likelihood_weights,
            low_memory=self.low_memory,
            scale_param=self.scale_param,
            mean_init=self._mean_init(),
        )

    def _mean_init(self) -> str:
        """How the components start: all at 0 until the k-means placement (so that until then the
        prior is the standard one and training is MMVAE+'s), else random (normal or uniform)."""
        if self.cluster_init == "kmeans" and self.n_clusters > 1:
            return "zeros"
        return "uniform" if self.cluster_init == "uniform" else "normal"


register_estimator(CMVAE)
