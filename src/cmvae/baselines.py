"""The multimodal VAE baselines as estimators, with CMVAE's API.

>>> model = MoPoE(n_clusters=10, epochs=20).fit(views)
>>> labels = model.predict(views)          # k-means (seeded) on transform codes
>>> Z = model.transform(views)             # [N, shared_dim]: the mean of the joint posterior
>>> out = model.generate([views[0], None, None])   # from any subset of modalities
>>> model.save("run/model"); model = MultimodalEstimator.load("run/model")

======================  ==========  =========================================================
class (``model_type``)  latents     objective (see :mod:`cmvae.objectives`)
======================  ==========  =========================================================
MVAE (``mvae``)         Gaussian    joint + unimodal (+ sub-sampled) ELBOs, PoE with prior expert
MMVAE (``mmvae``)       any         MoE; IWAE / DReG over K samples (default DReG, K = 10)
MoPoE (``mopoe``)       Gaussian    ELBO of the mixture of subset PoEs (one random subset per point)
MMJSD (``mmjsd``)       Gaussian    MoE reconstructions + multimodal JS to the dynamic prior
MVTCAE (``mvtcae``)     Gaussian    total-correlation objective, PoE without prior expert
MMVAEPlus (``mmvae_plus``) any      CMVAE's objective with the standard prior (private latents)
======================  ==========  =========================================================

The baselines have no cluster prior: :meth:`BaselineEstimator.predict` clusters the latent
codes of the views it is given with k-means (``n_clusters``, seeded by ``seed``), as the
papers' clustering evaluations of these models do; ``predict_proba`` is not defined.
MMVAE and MMVAE+ train on partially observed samples (``fit(views, mask=...)``), the others
on fully observed ones only.
Defaults: each paper's where it fits (beta 2.5 of the PolyMNIST experiments of MoPoE, mmJSD,
MVTCAE and MMVAE+; beta 1 for MVAE and MMVAE, whose objectives are plain ELBO / IWAE), with
the light CPU networks and the package's Laplace likelihood (scale 0.75). MMVAE's DReG with
K = 10 costs 10 x M^2 decoder passes per batch: on a CPU use ``n_samples=1`` or ``2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from .config import ConfigError, ModelConfig, RunConfig, config_from_dict
from .estimator import (
    CMVAE,
    MultimodalEstimator,
    ParameterError,
    check_int,
    check_number,
)
from .models.base import MultimodalVAE
from .models.mmjsd import MMJSDModule
from .models.mmvae import MMVAEModule
from .models.mmvae_plus import MMVAEPlusModule
from .models.mopoe import MoPoEModule
from .models.mvae import MVAEModule
from .models.mvtcae import MVTCAEModule
from .registry import estimator_class, estimator_defaults, register_estimator
from .schema import ArrayLike, DataSchema, DataValidationError

__all__ = [
    "BaselineEstimator",
    "MMJSD",
    "MMVAE",
    "MMVAEPlus",
    "MVAE",
    "MVTCAE",
    "MoPoE",
    "estimator_class",
    "estimator_defaults",
    "make_estimator",
]


class BaselineEstimator(MultimodalEstimator):
    """A multimodal VAE without a cluster prior; clusters by k-means on its latent codes."""

    module_class: ClassVar[type[MultimodalVAE]]
    has_private_latents: ClassVar[bool] = False
    gaussian_only: ClassVar[bool] = True  # closed-form products of experts / KL terms
    elbo_only: ClassVar[bool] = True  # trained with its own ELBO-type objective (no IWAE/DReG)

    def __init__(
        self,
        n_clusters: int = 10,
        shared_dim: int = 32,
        private_dim: int = 0,
        *,
        latent_family: str = "gaussian",
        beta: float = 2.5,
        **kwargs: Any,
    ) -> None:
        check_int("n_clusters", n_clusters, 1)
        self.n_clusters = n_clusters
        super().__init__(shared_dim=shared_dim, private_dim=private_dim, latent_family=latent_family, beta=beta, **kwargs)

    def _check_params(self) -> None:
        super()._check_params()
        name = type(self).__name__
        if not self.has_private_latents and self.private_dim != 0:
            raise ValueError(f"{name} has no private latents: private_dim must be 0, got {self.private_dim}")
        if self.gaussian_only and self.latent_family != "gaussian":
            raise ValueError(f"{name} multiplies Gaussian experts: latent_family must be 'gaussian', got {self.latent_family!r}")
        if self.elbo_only and self.estimator != "elbo":
            raise ValueError(f"{name} trains its own ELBO-type objective: estimator must be 'elbo', got {self.estimator!r}")

    def _module_options(self) -> dict[str, Any]:
        """Model-specific constructor arguments of :attr:`module_class`."""
        return {}

    def _build_module(self, schema: DataSchema) -> MultimodalVAE:
        encoders, decoders = self._networks(schema)
        likelihoods = self._make_likelihoods(schema)
        return self.module_class(
            encoders,
            decoders,
            likelihoods,
            shared_dim=self.shared_dim,
            private_dim=self.private_dim,
            latent_family_name=self.latent_family,
            likelihood_weights=self.likelihood_weights,
            low_memory=self.low_memory,
            scale_param=self.scale_param,
            **self._module_options(),
        )

    def transform(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Shared latent codes ``[N, shared_dim]``: the mean of the model's joint posterior q(z|X)
        (the PoE for MVAE/MVTCAE, the mixture of subset PoEs for MoPoE, the mixture of experts otherwise).
        Missing data (``None`` views, ``mask`` ``[N, M]``, True = observed): the same posterior of
        each sample's observed modalities."""
        module, _ = self._fitted()
        data = self._input(views, mask)
        post = self._encode(data)
        with torch.no_grad():
            return module.joint_mean(post, data.mask).numpy()

    def predict(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Cluster ids ``[N]``: k-means with ``n_clusters`` (10 restarts, ``random_state=seed``)
        fitted on the :meth:`transform` codes of ``views`` (the model itself has no clusters)."""
        from sklearn.cluster import KMeans

        codes = self.transform(views, mask=mask).astype(np.float64)
        if codes.shape[0] < self.n_clusters:
            raise DataValidationError(f"k-means with n_clusters={self.n_clusters} needs at least as many samples, got {codes.shape[0]}")
        return KMeans(n_clusters=self.n_clusters, n_init=10, random_state=self.seed).fit_predict(codes)

    def predict_proba(self, views: list[ArrayLike]) -> np.ndarray:
        raise NotImplementedError(
            f"{type(self).__name__} has no cluster posterior (predict runs k-means on the latent codes); "
            "predict_proba exists only for CMVAE"
        )

    score = CMVAE.score  # NMI, ARI and Hungarian accuracy of predict against labels


@register_estimator
class MVAE(BaselineEstimator):
    """MVAE (Wu & Goodman 2018). ``subsampled_subsets``: random subsets of 2..M-1 modalities
    whose ELBOs are added each batch (the paper's sub-sampling; 0 = joint + unimodal terms only)."""

    model_type = "mvae"
    module_class = MVAEModule

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, *, beta: float = 1.0, subsampled_subsets: int = 0,
                 **kwargs: Any) -> None:
        check_int("subsampled_subsets", subsampled_subsets, 0)
        self.subsampled_subsets = subsampled_subsets
        super().__init__(n_clusters, shared_dim, beta=beta, **kwargs)

    def _module_options(self) -> dict[str, Any]:
        return {"subsampled_subsets": self.subsampled_subsets}


@register_estimator
class MMVAE(BaselineEstimator):
    """MMVAE (Shi et al. 2019): mixture of experts, Laplace latents, DReG with K = 10 samples."""

    model_type = "mmvae"
    module_class = MMVAEModule
    partial_training = True
    gaussian_only = False
    elbo_only = False

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, *, latent_family: str = "laplace", beta: float = 1.0,
                 estimator: str = "dreg", n_samples: int = 10, **kwargs: Any) -> None:
        super().__init__(n_clusters, shared_dim, latent_family=latent_family, beta=beta, estimator=estimator,
                         n_samples=n_samples, **kwargs)


@register_estimator
class MoPoE(BaselineEstimator):
    """MoPoE (Sutter, Daunhawer & Vogt 2021): mixture of the 2^M - 1 subset products of experts.
    ``subset_sampling`` (default, as the authors' code): each datapoint's ELBO uses one random
    subset, an unbiased estimate 2^M - 1 times cheaper than evaluating every subset (False)."""

    model_type = "mopoe"
    module_class = MoPoEModule

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, *, subset_sampling: bool = True, **kwargs: Any) -> None:
        self.subset_sampling = subset_sampling
        super().__init__(n_clusters, shared_dim, **kwargs)

    def _module_options(self) -> dict[str, Any]:
        return {"subset_sampling": self.subset_sampling}


@register_estimator
class MMJSD(BaselineEstimator):
    """mmJSD (Sutter, Daunhawer & Vogt 2020): multimodal Jensen-Shannon divergence objective."""

    model_type = "mmjsd"
    module_class = MMJSDModule


@register_estimator
class MVTCAE(BaselineEstimator):
    """MVTCAE (Hwang et al. 2021). ``alpha`` in [0, 1] weighs the conditional VIB terms against the
    VIB term (default 0.1, the authors' code)."""

    model_type = "mvtcae"
    module_class = MVTCAEModule

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, *, alpha: float = 0.1, **kwargs: Any) -> None:
        if check_number("alpha", alpha, 0.0) > 1.0:
            raise ParameterError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        super().__init__(n_clusters, shared_dim, **kwargs)

    def _module_options(self) -> dict[str, Any]:
        return {"alpha": self.alpha}


@register_estimator
class MMVAEPlus(BaselineEstimator):
    """MMVAE+ (Palumbo, Daunhawer & Vogt 2023): CMVAE's model and objective with the standard prior;
    defaults = its paper's PolyMNIST setting (Laplace, beta 2.5, 32 + 32 latent dimensions; CMVAE's
    default beta is 1)."""

    model_type = "mmvae_plus"
    module_class = MMVAEPlusModule
    partial_training = True
    has_private_latents = True
    gaussian_only = False
    elbo_only = False

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, private_dim: int = 32, *,
                 latent_family: str = "laplace", **kwargs: Any) -> None:
        super().__init__(n_clusters, shared_dim, private_dim, latent_family=latent_family, **kwargs)


# ------------------------------------------------------------------------ selection by name


def make_estimator(config: Any, **overrides: Any) -> MultimodalEstimator:
    """Build the estimator a config describes.

    ``config``: a :class:`~cmvae.config.RunConfig` (model + training sections), a
    :class:`~cmvae.config.ModelConfig`, or a mapping: a whole run config (with ``model``/
    ``training``/``data`` keys) or one model section (``{"type": "mopoe", "beta": 2.5}``),
    validated like a YAML file (:class:`~cmvae.config.ConfigError` naming the key).
    ``overrides`` are estimator parameters set last (e.g. ``epochs=1, progress=False``).
    """
    if isinstance(config, Mapping):
        if set(config) & {"model", "training", "data"}:
            config = config_from_dict(dict(config), source="<make_estimator>")
        else:
            config = config_from_dict({"model": dict(config)}, source="<make_estimator>").model
    if isinstance(config, ModelConfig):
        config = RunConfig(model=config)  # training section: the estimator defaults
    if not isinstance(config, RunConfig):
        raise TypeError(f"make_estimator takes a RunConfig, ModelConfig or mapping, got {type(config).__name__}")
    klass = estimator_class(config.model.type)
    unknown = set(overrides) - set(klass._param_names())
    if unknown:
        raise ConfigError(f"{klass.__name__} has no parameter(s) {sorted(unknown)}")
    try:
        return klass(**{**config.estimator_kwargs(), **overrides})
    except ValueError as err:  # a combination the class refuses (e.g. laplace latents for a PoE model)
        raise ConfigError(f"model: {err}") from None
