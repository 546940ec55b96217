"""The common base of the multimodal VAE estimators: settings, their checks, and building the torch module.

:class:`MultimodalEstimator` is assembled from one mixin per responsibility, each in its own file:
:mod:`.fitting` (``fit``), :mod:`.encoding` (``encode``, ``transform``), :mod:`.sampling`
(``sample``, ``generate``) and :mod:`.persistence` (``save``, ``load``); :mod:`.clustering` adds the
cluster API of the models with a cluster prior (:class:`~cmvae.estimator.cmvae.CMVAE`). User data
enters every method through :meth:`MultimodalEstimator._input` / :meth:`~MultimodalEstimator._training_input`,
the estimators' calls of :func:`cmvae.inputs.prepare_input`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import nn

from ..distributions import likelihood as make_likelihood
from ..inputs import Input, TrainingRules, prepare_input
from ..models.base import MultimodalVAE
from ..nets import ARCHS, WEIGHT_INITS, build_networks
from ..schema import ArrayLike, DataSchema
from .encoding import EncodingMixin
from .fitting import FittingMixin
from .params import (
    ACCELERATORS, NotFittedError, ParameterError, check_choice, check_epochs_or_auto, check_int, check_number, is_list,
)
from .persistence import PersistenceMixin
from .sampling import SamplingMixin



#: The largest learning rate accepted (Adam's steps are about lr per parameter: above this it is a typo).
MAX_LR = 1000.0
#: The largest seed accepted (NumPy's and scikit-learn's random states take 32-bit seeds).
MAX_SEED = 2**32 - 1

class MultimodalEstimator(FittingMixin, EncodingMixin, SamplingMixin, PersistenceMixin):
    """Common fit/transform/save/load machinery of the multimodal VAEs.

    ``fit`` comes from :class:`~.fitting.FittingMixin`, ``encode``/``transform`` from
    :class:`~.encoding.EncodingMixin`, ``sample``/``generate`` from :class:`~.sampling.SamplingMixin`,
    ``save``/``load`` from :class:`~.persistence.PersistenceMixin`. Subclasses implement
    :meth:`_build_module` and may add methods (``predict`` ...); a unimodal one overrides
    :meth:`_input_modality`.
    """

    model_type: ClassVar[str] = "base"
    #: Fewest modalities ``fit`` accepts (the unimodal baselines select one view before fitting).
    min_fit_modalities: ClassVar[int] = 2
    #: Whether ``fit`` trains on partially observed samples (models whose objective is
    #: :func:`cmvae.objectives.multimodal_objective`, which takes the observed mask).
    partial_training: ClassVar[bool] = False

    def __init__(
        self,
        *,
        shared_dim: int = 32,
        private_dim: int = 32,
        latent_family: str = "laplace",
        likelihood: str | Sequence[str] = "laplace",
        likelihood_scale: float | Sequence[float] = 0.75,
        likelihood_weights: Sequence[float] | None = None,
        beta: float = 2.5,
        beta_warmup_epochs: int = 0,
        contrastive_warmup_epochs: int | str = 0,
        contrastive_warmup_lr: float | None = None,
        warmup_freeze_epochs: int | str = 0,
        n_samples: int = 1,
        estimator: str = "elbo",
        arch: str = "light",
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        weight_decay_from: str = "start",
        amsgrad: bool = True,
        gradient_clip_norm: float | None = None,
        seed: int = 0,
        accelerator: str = "auto",
        devices: Any = "auto",
        strategy: str = "auto",
        num_nodes: int = 1,
        precision: Any = "32-true",
        num_workers: int = 0,
        max_time_minutes: float | None = None,
        progress: bool = True,
        low_memory: bool = False,
        compile_networks: bool = False,
        scale_param: str = "softplus",
        encoder_branches: str = "shared",
        weight_init: str = "torch",
        encoders: Sequence[nn.Module] | None = None,
        decoders: Sequence[nn.Module] | None = None,
    ) -> None:
        self.shared_dim = shared_dim
        self.private_dim = private_dim
        self.latent_family = latent_family
        self.likelihood = likelihood
        self.likelihood_scale = likelihood_scale
        self.likelihood_weights = likelihood_weights
        self.beta = beta
        self.beta_warmup_epochs = beta_warmup_epochs
        self.contrastive_warmup_epochs = contrastive_warmup_epochs
        self.contrastive_warmup_lr = contrastive_warmup_lr
        self.warmup_freeze_epochs = warmup_freeze_epochs
        self.n_samples = n_samples
        self.estimator = estimator
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.weight_decay = weight_decay
        self.weight_decay_from = weight_decay_from
        self.amsgrad = amsgrad
        self.gradient_clip_norm = gradient_clip_norm
        self.seed = seed
        self.accelerator = accelerator
        self.devices = devices
        self.strategy = strategy
        self.num_nodes = num_nodes
        self.precision = precision
        self.num_workers = num_workers
        self.max_time_minutes = max_time_minutes
        self.progress = progress
        self.low_memory = low_memory
        self.compile_networks = compile_networks
        self.scale_param = scale_param
        self.encoder_branches = encoder_branches
        self.weight_init = weight_init
        self.encoders = encoders
        self.decoders = decoders
        self.module_: MultimodalVAE | None = None
        self.schema_: DataSchema | None = None
        self.history_: dict[str, list[float]] = {}
        #: The epochs of the last fit (``epochs``, or with ``None`` the number resolved from the data size).
        self.epochs_: int | None = None
        self.warmup_epochs_: tuple[int, int] | None = None
        self._check_params()

    # -- parameters -------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            if "__init__" in klass.__dict__ and klass is not object:
                sig = inspect.signature(klass.__init__)
                names += [p for p in sig.parameters if p != "self" and p not in names and p != "kwargs"]
        return [n for n in names if n not in ("encoders", "decoders")]

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (JSON-serialisable; custom networks excluded)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def _check_params(self) -> None:
        """Type and range of every setting, with a :class:`ParameterError` naming it."""
        for name, minimum in (("shared_dim", 1), ("private_dim", 0), ("batch_size", 1),
                              ("n_samples", 1), ("beta_warmup_epochs", 0),
                              ("num_workers", 0), ("num_nodes", 1)):
            check_int(name, getattr(self, name), minimum)
        for name in ("contrastive_warmup_epochs", "warmup_freeze_epochs"):
            check_epochs_or_auto(name, getattr(self, name))
        if self.epochs is not None:
            check_int("epochs", self.epochs, 1)
        if self.seed is not None:
            if check_int("seed", self.seed, 0) > MAX_SEED:
                raise ParameterError(f"seed must be an integer in [0, {MAX_SEED}] (NumPy's seed range), got {self.seed!r}")
        if check_number("lr", self.lr, 0.0, strict=True) > MAX_LR:
            raise ParameterError(f"lr must be a learning rate in (0, {MAX_LR:g}], got {self.lr!r}")
        warmup_lr = self.contrastive_warmup_lr
        if warmup_lr is not None and check_number("contrastive_warmup_lr", warmup_lr, 0.0, strict=True) > MAX_LR:
            raise ParameterError(f"contrastive_warmup_lr must be a learning rate in (0, {MAX_LR:g}] or None, "
                                 f"got {warmup_lr!r}")
        hint = f"a fraction of training in [0, 1], got {self.lr_decay!r}"
        if check_number("lr_decay", self.lr_decay, 0.0, hint=hint) > 1:
            raise ParameterError(f"lr_decay must be {hint}")
        check_number("beta", self.beta, 0.0)
        check_number("weight_decay", self.weight_decay, 0.0)
        if self.gradient_clip_norm is not None:
            check_number("gradient_clip_norm", self.gradient_clip_norm, 0.0, strict=True,
                         hint=f"a positive gradient norm or None (no clipping), got {self.gradient_clip_norm!r}")
        check_choice("weight_decay_from", self.weight_decay_from, ("start", "placement"))
        if self.max_time_minutes is not None:
            if check_number("max_time_minutes", self.max_time_minutes, 0.0, strict=True) > 1e9:
                raise ParameterError(f"max_time_minutes must be a time limit in (0, 1e9] minutes, got {self.max_time_minutes!r}")
        scales = self.likelihood_scale if is_list(self.likelihood_scale) else [self.likelihood_scale]
        if not scales:
            raise ParameterError("likelihood_scale must be positive (one value or one per modality), got []")
        for scale in scales:
            check_number("likelihood_scale", scale, 0.0, strict=True,
                         hint=f"positive (one value or one per modality), got {self.likelihood_scale!r}")
        if self.likelihood_weights is not None:
            if not is_list(self.likelihood_weights):
                raise ParameterError(f"likelihood_weights must be a list (one weight per modality), got {self.likelihood_weights!r}")
            for weight in self.likelihood_weights:
                check_number("likelihood_weights", weight, 0.0)
        likelihoods = self.likelihood if is_list(self.likelihood) else [self.likelihood]
        for lik in likelihoods:
            check_choice("likelihood", lik, ("laplace", "gaussian", "bernoulli", "categorical"))
        check_choice("estimator", self.estimator, ("elbo", "iwae", "dreg"))
        check_choice("latent_family", self.latent_family, ("gaussian", "laplace"))
        check_choice("arch", self.arch, ARCHS)
        check_choice("accelerator", self.accelerator, ACCELERATORS)
        for name in ("strategy",):
            if not isinstance(getattr(self, name), str):
                raise ParameterError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("amsgrad", "progress", "low_memory", "compile_networks"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_choice("scale_param", self.scale_param, ("softplus", "softmax"))
        check_choice("encoder_branches", self.encoder_branches, ("shared", "separate"))
        check_choice("weight_init", self.weight_init, WEIGHT_INITS)
        if (self.encoders is None) != (self.decoders is None):
            raise ParameterError("pass both encoders and decoders (one per modality), or neither")

    # -- building -----------------------------------------------------------------------
    def _likelihood_names(self, n_modalities: int, kinds: Sequence[str] = ()) -> list[str]:
        """One likelihood per modality; text modalities (``kinds``) take "categorical" when one name is given."""
        names = [self.likelihood] * n_modalities if isinstance(self.likelihood, str) else list(self.likelihood)
        if len(names) != n_modalities:
            raise ParameterError(f"likelihood lists {len(names)} entries for {n_modalities} modalities")
        for m, kind in enumerate(kinds):
            if kind == "text" and isinstance(self.likelihood, str):
                names[m] = "categorical"
            elif (kind == "text") != (names[m] == "categorical"):
                raise ParameterError(
                    f"modality {m} is {kind} but its likelihood is {names[m]!r}: the categorical likelihood is for "
                    "text modalities (token ids declared with fit(..., vocabularies=...)) and only for them"
                )
        return names

    def _make_likelihoods(self, schema: DataSchema) -> list:
        """The likelihood objects of every modality (names and scales, per modality or shared)."""
        n = schema.n_modalities
        names = self._likelihood_names(n, [spec.kind for spec in schema.modalities])
        scales = self.likelihood_scale
        scales = [scales] * n if isinstance(scales, (int, float)) else list(scales)
        if len(scales) != n:
            raise ParameterError(f"likelihood_scale lists {len(scales)} entries for {n} modalities")
        if self.likelihood_weights is not None and len(self.likelihood_weights) != n:
            raise ParameterError(f"likelihood_weights lists {len(self.likelihood_weights)} entries for {n} modalities")
        return [make_likelihood(name, scale) for name, scale in zip(names, scales)]

    def _networks(self, schema: DataSchema) -> tuple[list[nn.Module], list[nn.Module]]:
        if self.encoders is not None and self.decoders is not None:
            if len(self.encoders) != schema.n_modalities or len(self.decoders) != schema.n_modalities:
                raise ParameterError(
                    f"got {len(self.encoders)} encoders and {len(self.decoders)} decoders for "
                    f"{schema.n_modalities} modalities"
                )
            return list(self.encoders), list(self.decoders)
        names = self._likelihood_names(schema.n_modalities, [spec.kind for spec in schema.modalities])
        pairs = [
            build_networks(spec.shape, self.shared_dim, self.private_dim, arch=self.arch, likelihood=lik,
                           vocab_size=spec.vocab_size, branches=self.encoder_branches,
                           weight_init=self.weight_init)
            for spec, lik in zip(schema.modalities, names)
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _build_module(self, schema: DataSchema) -> MultimodalVAE:
        raise NotImplementedError

    def _fit_callbacks(self, train: list[torch.Tensor], mask: torch.Tensor | None = None,
                       held_out: torch.Tensor | None = None) -> list[L.Callback]:
        """Model-specific callbacks added to every ``fit`` (``mask`` ``[N, M]``: observed entries of ``train``;
        ``held_out``: the rows of :meth:`_held_out_rows`)."""
        return []

    def _held_out_rows(self, n_samples: int) -> torch.Tensor | None:
        """Ids ``[n]`` of training rows that ``fit`` keeps out of the gradient steps (for a model that
        judges its training on them), or None: every row is trained on."""
        return None

    # -- the way in for data and the fitted state ------------------------------------------
    def _fitted(self) -> tuple[MultimodalVAE, DataSchema]:
        if self.module_ is None or self.schema_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or load() first")
        return self.module_, self.schema_

    def _input_modality(self) -> int | None:
        """The one modality a unimodal model reads (``views[modality]``); None: every modality."""
        return None

    def _input(self, views: Any, mask: ArrayLike | None = None, *, each_modality: bool = False) -> Input:
        """User data of an inference method, checked against the fitted schema (:func:`~cmvae.inputs.prepare_input`)."""
        _, schema = self._fitted()
        return prepare_input(views, mask, schema=schema, modality=self._input_modality(), each_modality=each_modality)

    def _training_input(self, views: Any, mask: ArrayLike | None, *, validation: bool = False) -> Input:
        """The training views of ``fit`` (``validation``: its ``val_views``, checked against the schema
        just recorded; a modality may be unobserved in them) through :func:`~cmvae.inputs.prepare_input`."""
        rules = TrainingRules(type(self).__name__, self.partial_training, self.min_fit_modalities,
                              every_modality=not validation)
        return prepare_input(views, mask, training=rules, schema=self.schema_ if validation else None,
                             name="val_views" if validation else "views", modality=self._input_modality())

