"""The user-facing estimators, in scikit-learn conventions.

>>> model = CMVAE(n_clusters=10, epochs=20, seed=0)
>>> model.fit(views)                      # list of M arrays [N, ...] with the same N
>>> labels = model.predict(views)         # [N] cluster ids (majority vote over modalities)
>>> proba = model.predict_proba(views)    # [N, n_clusters]
>>> Z = model.transform(views)            # [N, shared_dim]
>>> model.save("run/model"); model = CMVAE.load("run/model")

The estimator is thin: the math lives in :mod:`cmvae.models` and :mod:`cmvae.objectives`,
the loop in :mod:`cmvae.training`.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ._version import __version__
from .callbacks import ClusteringMonitor, KMeansPriorInit
from .distributions import likelihood as make_likelihood
from .models.base import MultimodalVAE
from .models.cmvae import CMVAEModule
from .missing import fill_unobserved, masked_mean, observation_mask
from .nets import ARCHS, build_networks
from .objectives import Posteriors
from .registry import _ESTIMATORS, register_estimator
from .schema import ArrayLike, DataSchema, DataValidationError, as_views, views_of
from .saving import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelFileError,
    read_config,
    restore_interrupted_replacement,
    verify_checksums,
    write_model_folder,
)
from .selection import SelectionResult, assign_clusters, combined_evidence
from .training import (
    EpochHistory,
    TrainingPlan,
    is_global_zero,
    make_loader,
    make_trainer,
    quiet_lightning_warnings,
    sanity_check,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: Without ``epochs`` a fit lasts at least this many optimiser steps...
DEFAULT_MIN_STEPS = 1000
#: ...and at least this many epochs (the former fixed default, which data of 4,225+ samples keep).
DEFAULT_MIN_EPOCHS = 30
#: Lightning's accelerator names (``gpu`` and ``cuda`` need CUDA).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


class NotFittedError(RuntimeError):
    """The estimator was used before ``fit`` (or ``load``)."""


class ParameterError(ValueError):
    """A setting (constructor parameter or method argument) has a wrong type or value; the message names it."""


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (bools, floats and strings refused), else :class:`ParameterError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_number(name: str, value: Any, minimum: float, *, strict: bool = False, hint: str = "") -> float:
    """``value`` as a finite real number > (``strict``) or >= ``minimum``, else :class:`ParameterError`."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok_type or not np.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ParameterError(f"{name} must be " + (hint or f"a finite number {bound}, got {value!r}"))
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`ParameterError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def resolve_epochs(epochs: int | None, n_samples: int, batch_size: int) -> int:
    """Training epochs: ``epochs`` when given; with ``None`` enough epochs of ``ceil(n_samples / batch_size)``
    optimiser steps for :data:`DEFAULT_MIN_STEPS` steps, and at least :data:`DEFAULT_MIN_EPOCHS`
    (1,200 samples in batches of 128: 100 epochs; 8,000 samples: 30). Steps are counted for one
    process: with several DDP processes each takes fewer steps per epoch."""
    if epochs is not None:
        return int(epochs)
    steps_per_epoch = max(1, math.ceil(n_samples / batch_size))
    return max(DEFAULT_MIN_EPOCHS, math.ceil(DEFAULT_MIN_STEPS / steps_per_epoch))


def pick_device(accelerator: str = "auto") -> torch.device:
    """CUDA when present and allowed, else CPU. Never assumes a GPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise RuntimeError(f"accelerator={accelerator!r} requested but CUDA is not available")
    return torch.device("cpu")


class _seeded:
    """Context manager: with a seed, run on a forked torch RNG seeded with it (the global RNG is untouched)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._fork: Any = None

    def __enter__(self) -> None:
        if self.seed is not None:
            devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            self._fork = torch.random.fork_rng(devices=devices)
            self._fork.__enter__()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        if self._fork is not None:
            self._fork.__exit__(*exc)
            self._fork = None


#: Values of parameters added after format 1 that reproduce how older saved models were built
#: (a saved model without the key was trained with this value, whatever today's default is).
LEGACY_PARAMS: dict[str, Any] = {"scale_param": "softplus", "encoder_branches": "shared", "assignment": "vote",
                                  "cluster_init_when": "epoch", "posterior_samples": 0}


def fit_seed(estimator: Any) -> int:
    """``estimator.seed``, or with ``seed=None`` a random seed drawn once for that estimator (kept in
    ``estimator.seed_``)."""
    if estimator.seed is not None:
        return int(estimator.seed)
    if getattr(estimator, "seed_", None) is None:
        estimator.seed_ = int(np.random.SeedSequence().entropy % (2**31))
    return estimator.seed_


class MultimodalEstimator:
    """Common fit/transform/save/load machinery of the multimodal VAEs.

    Subclasses implement :meth:`_build_module` and may add methods (``predict`` ...).
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
        n_samples: int = 1,
        estimator: str = "elbo",
        arch: str = "light",
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-3,
        amsgrad: bool = True,
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
        scale_param: str = "softplus",
        encoder_branches: str = "shared",
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
        self.n_samples = n_samples
        self.estimator = estimator
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.amsgrad = amsgrad
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
        self.scale_param = scale_param
        self.encoder_branches = encoder_branches
        self.encoders = encoders
        self.decoders = decoders
        self.module_: MultimodalVAE | None = None
        self.schema_: DataSchema | None = None
        self.history_: dict[str, list[float]] = {}
        #: The epochs of the last fit (``epochs``, or with ``None`` the number resolved from the data size).
        self.epochs_: int | None = None
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
                              ("n_samples", 1), ("beta_warmup_epochs", 0), ("num_workers", 0), ("num_nodes", 1)):
            check_int(name, getattr(self, name), minimum)
        if self.epochs is not None:
            check_int("epochs", self.epochs, 1)
        if self.seed is not None:
            check_int("seed", self.seed, 0)
        check_number("lr", self.lr, 0.0, strict=True)
        check_number("beta", self.beta, 0.0)
        if self.max_time_minutes is not None:
            check_number("max_time_minutes", self.max_time_minutes, 0.0, strict=True)
        scales = self.likelihood_scale if _is_list(self.likelihood_scale) else [self.likelihood_scale]
        if not scales:
            raise ParameterError("likelihood_scale must be positive (one value or one per modality), got []")
        for scale in scales:
            check_number("likelihood_scale", scale, 0.0, strict=True,
                         hint=f"positive (one value or one per modality), got {self.likelihood_scale!r}")
        if self.likelihood_weights is not None:
            if not _is_list(self.likelihood_weights):
                raise ParameterError(f"likelihood_weights must be a list (one weight per modality), got {self.likelihood_weights!r}")
            for weight in self.likelihood_weights:
                check_number("likelihood_weights", weight, 0.0)
        likelihoods = self.likelihood if _is_list(self.likelihood) else [self.likelihood]
        for lik in likelihoods:
            check_choice("likelihood", lik, ("laplace", "gaussian", "bernoulli", "categorical"))
        check_choice("estimator", self.estimator, ("elbo", "iwae", "dreg"))
        check_choice("latent_family", self.latent_family, ("gaussian", "laplace"))
        check_choice("arch", self.arch, ARCHS)
        check_choice("accelerator", self.accelerator, ACCELERATORS)
        for name in ("strategy",):
            if not isinstance(getattr(self, name), str):
                raise ParameterError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("amsgrad", "progress", "low_memory"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_choice("scale_param", self.scale_param, ("softplus", "softmax"))
        check_choice("encoder_branches", self.encoder_branches, ("shared", "separate"))
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
                           vocab_size=spec.vocab_size, branches=self.encoder_branches)
            for spec, lik in zip(schema.modalities, names)
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def _build_module(self, schema: DataSchema) -> MultimodalVAE:
        raise NotImplementedError

    def _fit_callbacks(self, train: list[torch.Tensor], mask: torch.Tensor | None = None) -> list[L.Callback]:
        """Model-specific callbacks added to every ``fit`` (``mask`` ``[N, M]``: observed entries of ``train``)."""
        return []

    # -- fitting --------------------------------------------------------------------------
    def fit(
        self,
        views: Sequence[ArrayLike],
        y: ArrayLike | None = None,
        *,
        val_views: Sequence[ArrayLike] | None = None,
        val_labels: ArrayLike | None = None,
        out_dir: str | Path | None = None,
        resume: bool = False,
        callbacks: Sequence[L.Callback] = (),
        vocabularies: Sequence[Any] | None = None,
        mask: ArrayLike | None = None,
        val_mask: ArrayLike | None = None,
    ) -> "MultimodalEstimator":
        """Train on paired ``views`` (list of M arrays ``[N, ...]``). ``y`` is ignored (unsupervised).

        ``mask`` ``[N, M]`` (True = observed; or a dataset's ``mask``) trains on partially
        observed samples (CMVAE, MMVAE, MMVAE+: the objective of each sample uses its observed
        modalities only, see :func:`cmvae.objectives.multimodal_objective`); masked-out entries
        are placeholders (NaN allowed). Every sample needs one observed modality and every
        modality some observed samples. ``val_mask`` likewise for ``val_views``.

        ``vocabularies``: one entry per modality marking text modalities (token ids ``[N, L]``):
        a :class:`~cmvae.data.text.Vocabulary`, a token list or a vocabulary size; None elsewhere.
        Text modalities get 1-D convolutional nets and the categorical likelihood; the
        vocabulary is saved with the model (:meth:`decode_text` turns generated ids into strings).

        ``out_dir`` receives checkpoints (``checkpoints/last.ckpt``) and logs; ``resume``
        continues from its last checkpoint. With ``val_labels``, clustering scores on the
        validation views are logged every epoch.
        """
        previous = (self.module_, self.schema_, self.history_, self.epochs_)
        try:
            return self._fit(views, val_views=val_views, val_labels=val_labels, out_dir=out_dir, resume=resume,
                             callbacks=callbacks, vocabularies=vocabularies, mask=mask, val_mask=val_mask)
        except Exception:
            # a failed fit leaves the estimator as it was (not "fitted" with a half-built model);
            # an interrupted one (Ctrl-C) keeps what it trained
            self.module_, self.schema_, self.history_, self.epochs_ = previous
            raise

    def _fit(
        self,
        views: Sequence[ArrayLike],
        *,
        val_views: Sequence[ArrayLike] | None,
        val_labels: ArrayLike | None,
        out_dir: str | Path | None,
        resume: bool,
        callbacks: Sequence[L.Callback],
        vocabularies: Sequence[Any] | None,
        mask: ArrayLike | None,
        val_mask: ArrayLike | None,
    ) -> "MultimodalEstimator":
        """:meth:`fit` (which restores the previous state when this raises)."""
        train, train_mask = self._training_views(views, mask, "views")
        val, val_observed = None, None
        if val_views is not None:
            val, val_observed = self._training_views(val_views, val_mask, "val_views")
        self._check_fit_settings(int(train[0].shape[0]))
        self.epochs_ = resolve_epochs(self.epochs, int(train[0].shape[0]), self.batch_size)
        seed = self._fit_seed()
        L.seed_everything(seed, workers=True, verbose=False)
        if self.module_ is None or not resume:
            self.schema_ = DataSchema.infer(train, vocabularies=vocabularies, mask=train_mask)
            self.module_ = self._build_module(self.schema_)
        assert self.schema_ is not None and self.module_ is not None
        if val is not None:
            self.schema_.check(val)
        plan = TrainingPlan(
            self.module_,
            self.schema_,
            lr=self.lr,
            amsgrad=self.amsgrad,
            n_samples=self.n_samples,
            estimator=self.estimator,  # type: ignore[arg-type]
            beta=self.beta,
            beta_warmup_epochs=self.beta_warmup_epochs,
        )
        ckpt_path = None
        if resume:  # checked before anything (trainer, logger) touches out_dir
            last = Path(out_dir or ".") / "checkpoints" / "last.ckpt"
            if not last.exists():
                raise FileNotFoundError(f"resume=True but no checkpoint at {last}")
            check_checkpoint(last, plan, self.epochs_)
            ckpt_path = str(last)
        sanity_check(plan, train, self.batch_size, train_mask)
        history = EpochHistory()
        extra: list[L.Callback] = [history, *self._fit_callbacks(train, train_mask), *callbacks]
        if val is not None and val_labels is not None:
            extra.append(ClusteringMonitor(*self._fitted(), val, np.asarray(val_labels), val_observed,
                                           assignment=getattr(self, "assignment", "vote"), seed=self._fit_seed(),
                                           posterior_samples=getattr(self, "posterior_samples", 0)))
        trainer = make_trainer(
            epochs=self.epochs_,
            out_dir=out_dir,
            accelerator=self.accelerator,
            devices=self.devices,
            strategy=self.strategy,
            num_nodes=self.num_nodes,
            precision=self.precision,
            progress=self.progress,
            max_time_minutes=self.max_time_minutes,
            extra_callbacks=extra,
        )
        train_loader = make_loader(train, self.batch_size, shuffle=True, num_workers=self.num_workers, seed=seed,
                                   mask=train_mask)
        val_loader = (
            make_loader(val, self.batch_size, shuffle=False, num_workers=self.num_workers, mask=val_observed)
            if val is not None else None
        )
        with warnings.catch_warnings():
            quiet_lightning_warnings()
            trainer.fit(plan, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path)
        self.module_.to("cpu").eval()
        self.history_ = history.history
        return self

    def _fit_seed(self) -> int:
        return fit_seed(self)

    def _check_fit_settings(self, n_samples: int) -> None:
        """Settings that only fail against the data or the machine, checked before training starts."""
        n_clusters = getattr(self, "n_clusters", None)
        if n_clusters is not None and n_clusters > n_samples:
            raise DataValidationError(
                f"n_clusters={n_clusters} exceeds the {n_samples} training samples: use at most {n_samples} clusters "
                "or more data"
            )
        if self.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ParameterError(f"accelerator={self.accelerator!r} but no CUDA GPU is available: use 'cpu' or 'auto'")

    def _training_views(
        self, views: Any, mask: ArrayLike | None, name: str
    ) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Checked training views and their observed mask ``[N, M]`` (None when fully observed).

        Holes (``mask`` or a dataset's ``mask``) need a model with :attr:`partial_training`;
        placeholders are made finite (:func:`~cmvae.missing.fill_unobserved`). A modality given
        as ``None`` or observed for no training sample cannot be trained.
        """
        if mask is None:
            mask = getattr(views, "mask", None)
        raw = views_of(views)
        if mask is None and not _has_none(raw):
            return as_views(raw, name=name, min_modalities=self.min_fit_modalities), None
        if isinstance(raw, (np.ndarray, torch.Tensor)) or not isinstance(raw, Sequence):
            raise DataValidationError(f"{name} must be a list with one array per modality, got {type(raw).__name__}")
        observed = observation_mask(list(raw), mask, _n_samples(raw))  # checks the mask's shape and type
        if bool(observed.all()):
            return as_views(raw, name=name, min_modalities=self.min_fit_modalities), None
        _refuse_partial(type(self).__name__, self.partial_training, name)
        absent = [m for m, x in enumerate(raw) if x is None]
        if absent:
            raise DataValidationError(
                f"{name}[{absent[0]}] is None: fit needs every modality observed for some samples (a modality "
                "nobody observed cannot be learned); mark per-sample holes with mask= [N, M] instead"
            )
        never = torch.nonzero(~observed.any(0)).flatten().tolist()
        if never and name == "views":
            raise DataValidationError(
                f"{name}: modality {never[0]} is observed for no sample; fit needs every modality observed for some"
            )
        filled = [fill_unobserved(x, observed[:, m]) for m, x in enumerate(raw)]
        return as_views(filled, name=name, min_modalities=self.min_fit_modalities), observed

    # -- inference helpers --------------------------------------------------------------------
    def _fitted(self) -> tuple[MultimodalVAE, DataSchema]:
        if self.module_ is None or self.schema_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() or load() first")
        return self.module_, self.schema_

    def _checked_views(self, views: Sequence[ArrayLike]) -> list[torch.Tensor]:
        _, schema = self._fitted()
        tensors = as_views(views, min_modalities=1)
        schema.check(tensors)
        return tensors

    @torch.no_grad()
    def encode(
        self, views: Sequence[ArrayLike | None], batch_size: int = 512, *, mask: ArrayLike | None = None
    ) -> Posteriors:
        """Unimodal posterior parameters, on CPU: ``[M, N, dim]`` per field.

        ``None`` entries in ``views`` (unobserved modality) and ``mask`` ``[N, M]`` (True =
        observed; see :mod:`cmvae.missing`) mark missing data: those entries are NaN.
        """
        if mask is not None or _has_none(views):
            return self._posteriors(views, mask, batch_size)[0]
        module, schema = self._fitted()
        tensors = self._checked_views(views)
        device = pick_device(self.accelerator)
        module.to(device).eval()
        parts: list[Posteriors] = []
        n = tensors[0].shape[0]
        for start in range(0, n, batch_size):
            batch = schema.to_model_input([x[start : start + batch_size] for x in tensors], device)
            post = module.encode(batch)
            parts.append(Posteriors(*(t.cpu() for t in (post.z_loc, post.z_scale, post.w_loc, post.w_scale))))
        module.to("cpu")
        return Posteriors(*(torch.cat(fields, dim=1) for fields in zip(*((p.z_loc, p.z_scale, p.w_loc, p.w_scale) for p in parts))))

    def _posteriors(
        self, views: Sequence[ArrayLike | None], mask: ArrayLike | None, batch_size: int = 512
    ) -> tuple[Posteriors, torch.Tensor | None]:
        """Posteriors ``[M, N, dim]`` and the observed mask ``[N, M]`` (None when everything is observed,
        in which case the fully observed code path is used). Unobserved entries are NaN."""
        if mask is None and not _has_none(views):
            return self.encode(views, batch_size), None
        module, schema = self._fitted()
        checked, observed = self._observed_views(views, mask)
        if bool(observed.all()):
            return self.encode(checked, batch_size), None  # type: ignore[arg-type]
        device = pick_device(self.accelerator)
        module.to(device).eval()
        n = observed.shape[0]
        fields: list[list[torch.Tensor]] = [[], [], [], []]
        try:
            with torch.no_grad():
                for start in range(0, n, batch_size):
                    ids, post = module.encode_subset(self._model_batch(checked, start, batch_size, device))
                    for f, t in zip(fields, (post.z_loc, post.z_scale, post.w_loc, post.w_scale)):
                        full = torch.full((schema.n_modalities, *t.shape[1:]), float("nan"))
                        full[ids] = t.cpu()
                        f.append(full)
        finally:
            module.to("cpu")
        hole = ~observed.t().unsqueeze(-1)  # [M, N, 1]
        post = Posteriors(*(torch.cat(f, dim=1).masked_fill(hole, float("nan")) for f in fields))
        return post, observed

    def _model_batch(
        self, checked: list[torch.Tensor | None], start: int, batch_size: int, device: torch.device
    ) -> list[torch.Tensor | None]:
        """Rows ``start:start+batch_size`` of partially given views as model inputs (None stays None)."""
        _, schema = self._fitted()
        return [
            None if x is None else DataSchema([schema.modalities[m]]).to_model_input(
                [x[start : start + batch_size]], device)[0]
            for m, x in enumerate(checked)
        ]

    def _observed_views(
        self, views: Sequence[ArrayLike | None], mask: ArrayLike | None
    ) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """Checked views (None = unobserved modality) and the ``[N, M]`` observed mask."""
        if mask is None:
            mask = getattr(views, "mask", None)  # a MultimodalDataset with holes
        views = views_of(views)
        if mask is not None and isinstance(views, Sequence) and not isinstance(views, (np.ndarray, torch.Tensor)):
            obs = observation_mask(list(views), mask, _n_samples(views))
            views = [None if x is None else fill_unobserved(x, obs[:, m]) for m, x in enumerate(views)]
        checked = self._partial_views(views)
        n = next(int(t.shape[0]) for t in checked if t is not None)
        return checked, observation_mask(checked, mask, n)

    def transform(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Shared latent codes ``[N, shared_dim]``: the mean of q(z|X), i.e. the average of the unimodal means.

        With missing data (``None`` views or ``mask`` ``[N, M]``, True = observed): the mean of the
        mixture of the observed modalities' posteriors, i.e. the average of the observed means.
        """
        post, observed = self._posteriors(views, mask)
        if observed is None:
            return post.z_loc.mean(0).numpy()
        return masked_mean(post.z_loc, observed).numpy()

    # -- generation -------------------------------------------------------------------------
    def _sampling_args(self, n: Any, cluster: Any, seed: Any) -> tuple[int, int | None]:
        """Checked ``n``, ``cluster`` and ``seed`` of :meth:`sample` (ParameterError naming the argument)."""
        n = check_int("n", n, 1)
        if seed is not None:
            check_int("seed", seed, 0)
        if cluster is None:
            return n, None
        cluster = check_int("cluster", cluster, 0)
        n_clusters = getattr(self, "n_clusters", None)
        if n_clusters is not None and cluster >= n_clusters:
            raise ParameterError(f"cluster must be a cluster id in 0..{n_clusters - 1}, got {cluster}")
        return n, cluster

    @torch.no_grad()
    def sample_latents(self, n: int, cluster: int | None = None, *, seed: int | None = None) -> np.ndarray:
        """Shared latents ``[n, shared_dim]`` drawn from the prior p(z) (CMVAE: c ~ pi, z ~ p(z|c);
        ``cluster`` fixes c). :meth:`sample` decodes exactly these draws."""
        module, _ = self._fitted()
        n, cluster = self._sampling_args(n, cluster, seed)
        with _seeded(seed):
            return module.sample_prior_z(n, cluster).cpu().numpy()

    @torch.no_grad()
    def sample(self, n: int, cluster: int | None = None, *, seed: int | None = None) -> list[np.ndarray]:
        """Unconditional samples: c ~ pi (or ``cluster``), z ~ p(z|c), w_m ~ p(w_m), x_m = decoder mean.

        Returns M arrays ``[n, *shape_m]`` (images in the units of [0, 1]; tabular data in its original
        units). The ``arch="paper"`` image decoders are not squashed, so their means can leave [0, 1] a
        little: they are returned as they are (clip them for display, as :mod:`cmvae.plots` does).
        """
        module, schema = self._fitted()
        n, cluster = self._sampling_args(n, cluster, seed)
        module.eval()
        with _seeded(seed):
            z = module.sample_prior_z(n, cluster)
            decoded = module.generate_from_z(z, range(module.n_modalities))
        return [schema.from_model_output(m, decoded[m]) for m in range(module.n_modalities)]

    def _partial_views(self, views: Sequence[ArrayLike | None]) -> list[torch.Tensor | None]:
        """Check views with ``None`` for unobserved modalities against the schema (one modality at a time)."""
        _, schema = self._fitted()
        views = views_of(views)
        if isinstance(views, (np.ndarray, torch.Tensor)) or not isinstance(views, Sequence):
            raise DataValidationError(
                f"views must be a list with one entry per modality ({schema.n_modalities}; None for the "
                f"unobserved ones), got {type(views).__name__}"
            )
        if len(views) != schema.n_modalities:
            raise DataValidationError(
                f"views must have one entry per modality ({schema.n_modalities}, None for the unobserved ones), "
                f"got {len(views)}"
            )
        out: list[torch.Tensor | None] = []
        for m, x in enumerate(views):
            if x is None:
                out.append(None)
                continue
            try:
                (t,) = as_views([x], name="views", min_modalities=1)
            except DataValidationError as err:
                raise DataValidationError(f"modality {m}: " + str(err).replace("views[0]", "the array")) from None
            try:
                DataSchema([schema.modalities[m]]).check([t])
            except DataValidationError as err:  # the one-modality schema calls it "modality 0"
                raise DataValidationError(str(err).replace("modality 0:", f"modality {m}:", 1)) from None
            out.append(t)
        observed = {m: int(t.shape[0]) for m, t in enumerate(out) if t is not None}
        if not observed:
            raise DataValidationError("need at least one observed modality; every entry of views is None")
        if len(set(observed.values())) != 1:
            raise DataValidationError(
                "the observed modalities have different numbers of samples "
                + ", ".join(f"modality {m}: {n}" for m, n in observed.items())
                + "; they must be paired"
            )
        return out

    @torch.no_grad()
    def generate(
        self,
        views: Sequence[ArrayLike | None],
        targets: Sequence[int] | None = None,
        *,
        use_mean: bool = False,
        batch_size: int = 512,
        seed: int | None = None,
        mask: ArrayLike | None = None,
    ) -> list[np.ndarray | None]:
        """Cross-modal generation from any subset of observed modalities.

        ``views``: one entry per modality, ``None`` for the unobserved ones (at least one
        observed, all observed with the same N). z comes from the mixture posterior of the
        observed modalities (per sample, an observed modality picked uniformly, then
        z ~ q(z | x_m); ``use_mean=True``: the mixture mean, i.e. the average of the observed
        unimodal means), w_m ~ p(w_m) for each target, and x_m is the decoder mean.
        ``targets`` defaults to the unobserved modalities (every modality when all are observed).
        ``mask`` ``[N, M]`` (True = observed) adds per-sample holes: each sample's z comes from
        the mixture of its own observed modalities.

        Returns a list of length M: ``[N, *shape_m]`` arrays at the target positions, None elsewhere.
        """
        module, schema = self._fitted()
        checked, observed = self._observed_views(views, mask)
        given = [m for m, x in enumerate(checked) if x is not None]
        holes = None if bool(observed[:, given].all()) else observed  # per-sample holes only
        n_mod = schema.n_modalities
        if targets is None:
            targets = [m for m, x in enumerate(checked) if x is None] or list(range(n_mod))
        targets = _checked_targets(targets, n_mod)
        if seed is not None:
            check_int("seed", seed, 0)
        check_int("batch_size", batch_size, 1)
        device = pick_device(self.accelerator)
        module.to(device).eval()
        n = next(int(t.shape[0]) for t in checked if t is not None)
        parts: dict[int, list[np.ndarray]] = {t: [] for t in targets}
        try:
            with _seeded(seed):
                for start in range(0, n, batch_size):
                    batch = self._model_batch(checked, start, batch_size, device)
                    hole = None if holes is None else holes[start : start + batch_size]
                    z = module.sample_subset_z(batch, use_mean=use_mean, mask=hole)
                    for t, x in module.generate_from_z(z, targets).items():
                        parts[t].append(schema.from_model_output(t, x))
        finally:
            module.to("cpu")
        return [np.concatenate(parts[m]) if m in parts else None for m in range(n_mod)]

    def decode_text(self, ids: ArrayLike, modality: int | None = None) -> list[str]:
        """Token ids ``[N, L]`` of a text modality (e.g. from :meth:`sample` or :meth:`generate`) as
        strings, each up to its first ``<eos>``. ``modality`` defaults to the only text modality."""
        from .data.text import Vocabulary

        _, schema = self._fitted()
        text = [m for m, spec in enumerate(schema.modalities) if spec.kind == "text"]
        if modality is None:
            if len(text) != 1:
                raise ValueError(f"the model has {len(text)} text modalities {text}: pass modality=")
            modality = text[0]
        return Vocabulary(schema.vocabulary(modality)).decode_batch(np.asarray(ids))

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``config.json`` (parameters, data schema, versions), ``weights.safetensors`` and
        ``SHA256SUMS`` (checked by :meth:`load`) into the folder ``path``.

        The folder is written next to ``path`` and moved into place, so an interrupted save never
        leaves a half-written model behind. ``save`` never deletes or hides what it did not write:
        an existing ``path`` that is not a saved model is refused (:class:`ModelFileError`), and a
        saved model there is replaced only with ``overwrite=True``.

        In the extra processes of a multi-process (DDP) run ``save`` writes nothing: rank 0 saves.
        """
        module, schema = self._fitted()
        if not is_global_zero():
            return Path(path)
        if self.encoders is not None:
            log.warning("custom networks are not serialised: pass the same encoders/decoders to load()")
        config = {
            "format_version": FORMAT_VERSION,
            "cmvae_version": __version__,
            "torch_version": torch.__version__,
            "model_type": self.model_type,
            "params": self.get_params(),
            "custom_networks": self.encoders is not None,
            "fit_epochs": self.epochs_,
            "schema": schema.to_dict(),
            "history": self.history_,
        }
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

        def write(folder: Path) -> None:
            (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            save_file(state, str(folder / WEIGHTS_FILE))

        return write_model_folder(Path(path), write, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        encoders: Sequence[nn.Module] | None = None,
        decoders: Sequence[nn.Module] | None = None,
        **overrides: Any,
    ) -> "MultimodalEstimator":
        """Load a model written by :meth:`save`. ``overrides`` change parameters (e.g. ``accelerator``).

        The files are checked against the SHA-256 sums recorded at save (models saved before
        checksums existed are checked for consistency only); a damaged, truncated or edited file
        raises :class:`ModelFileError` naming it.
        """
        path = Path(path)
        restore_interrupted_replacement(path)
        config_file = path / CONFIG_FILE
        if not config_file.exists():
            raise FileNotFoundError(f"no saved model at {path} (missing {CONFIG_FILE})")
        verify_checksums(path)
        config = read_config(path)
        klass = _model_class(cls, config, config_file)
        if config.get("custom_networks") and encoders is None:
            raise ValueError(f"{path} was trained with custom networks: pass encoders= and decoders= to load()")
        unknown = set(overrides) - set(klass._param_names())
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)} for {klass.__name__}")
        params = config.get("params")
        if not isinstance(params, dict):
            raise ModelFileError(f"{config_file} is damaged: 'params' must be an object")
        try:
            legacy = {k: v for k, v in LEGACY_PARAMS.items() if k in set(klass._param_names())}
            model = klass(**{**legacy, **params, **overrides}, encoders=encoders, decoders=decoders)
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"{config_file}: invalid params: {_one_line(err)}") from None
        model.schema_ = _schema_of(config, config_file)
        try:
            model.module_ = model._build_module(model.schema_)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ModelFileError(f"{config_file}: the recorded settings do not build a model: {_one_line(err)}") from None
        _load_weights(model.module_, path / WEIGHTS_FILE)
        model.module_.eval()
        history = config.get("history", {})
        model.history_ = history if isinstance(history, dict) else {}
        model.epochs_ = _resolved_epochs_of(config, model.epochs)
        return model


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (the first 300 characters)."""
    text = " ".join(str(err).split())
    return (text[:300] + " ...") if len(text) > 300 else text or type(err).__name__


def _resolved_epochs_of(config: dict[str, Any], epochs: int | None) -> int | None:
    """The epochs a saved model was fitted for (``fit_epochs``; models saved before it was
    recorded always had an explicit ``epochs``)."""
    value = config.get("fit_epochs")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return epochs


def _model_class(cls: type[MultimodalEstimator], config: dict[str, Any], file: Path) -> type[MultimodalEstimator]:
    """The estimator class a ``config.json`` names, after checking its format version."""
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{file}: format_version must be an integer, got {version!r}")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{file.parent} was saved in format {version}; this cmvae ({__version__}) reads format {FORMAT_VERSION}"
        )
    model_type = config.get("model_type")
    klass = cls if cls.model_type == model_type else _ESTIMATORS.get(model_type) if isinstance(model_type, str) else None
    if klass is None:
        raise ModelFileError(f"{file.parent} holds an unknown model type {model_type!r} ({file})")
    return klass


def _schema_of(config: dict[str, Any], file: Path) -> DataSchema:
    """The data schema recorded in ``config.json``, checked for what a hand edit can break."""
    try:
        schema = DataSchema.from_dict(config["schema"])
        for m, spec in enumerate(schema.modalities):
            dims = tuple(int(d) for d in spec.shape)
            if not dims or any(d < 1 for d in dims):
                raise ValueError(f"modality {m}: invalid shape {list(spec.shape)}")
            standardised = spec.kind == "tabular" and not spec.scale_uint8
            stats = [spec.mean, spec.std]
            if standardised and any(s is None or len(s) != dims[0] for s in stats):
                raise ValueError(f"modality {m}: the standardisation (mean and std, {dims[0]} values each) is missing")
            if standardised and not all(np.isfinite(v) and v > 0 for v in spec.std):  # type: ignore[union-attr]
                raise ValueError(f"modality {m}: std values must be positive")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        detail = f"missing key {err}" if isinstance(err, KeyError) else _one_line(err)
        raise ModelFileError(f"{file} is damaged or was edited: schema: {detail}") from None
    return schema


def _load_weights(module: nn.Module, file: Path) -> None:
    """Load ``weights.safetensors`` into ``module`` with errors naming the file and what is wrong."""
    if not file.is_file():
        raise ModelFileError(f"{file} is missing")
    try:
        state = load_file(str(file))
    except Exception as err:  # noqa: BLE001 -- safetensors raises its own error type for damaged files
        raise ModelFileError(f"{file} is damaged or truncated: {_one_line(err)}") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        parts += [f"{len(wrong)} with another shape (e.g. {wrong[0]}: {list(state[wrong[0]].shape)} vs "
                  f"{list(expected[wrong[0]].shape)})"] if wrong else []
        raise ModelFileError(f"{file} does not fit its {CONFIG_FILE}: tensors " + ", ".join(parts))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFileError(f"{file} is damaged: {len(bad)} tensor(s) hold NaN/inf values (e.g. {bad[0]})")
    module.load_state_dict(state, strict=True)


class CMVAE(MultimodalEstimator):
    """Clustering Multimodal VAE: clusters paired multimodal data and generates from each cluster.
    Trains on partially observed samples too (``fit(views, mask=...)``).

    Defaults follow the paper's PolyMNIST setting (Laplace posteriors, priors and
    likelihood with scale 0.75, 32 + 32 latent dimensions) with light networks sized for a
    CPU, except ``beta`` 1 (the plain ELBO, the paper's CUBICC value; its PolyMNIST value 2.5 keeps
    no cluster structure on small tabular data, see README) and ``epochs=None`` (at least
    :data:`DEFAULT_MIN_STEPS` optimiser steps). ``configs/polymnist.yaml`` has the paper's PolyMNIST
    settings; ``arch="paper"`` builds the authors' networks (22.2 M parameters for 5 PolyMNIST
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
        assignment: str = "evidence",
        posterior_samples: int = 16,
        scale_param: str = "softplus",
        encoder_branches: str = "separate",
        beta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        check_int("n_clusters", n_clusters, 1)
        check_choice("cluster_init", cluster_init, ("kmeans", "random", "uniform"))
        check_choice("assignment", assignment, ("evidence", "vote"))
        check_choice("cluster_init_when", cluster_init_when, ("ready", "epoch"))
        check_int("posterior_samples", posterior_samples, 0)
        if cluster_init_epoch is not None:
            check_int("cluster_init_epoch", cluster_init_epoch, 0)
        check_number("prior_mean_init_std", prior_mean_init_std, 0.0)
        if not isinstance(learn_prior_scales, (bool, np.bool_)):
            raise ParameterError(f"learn_prior_scales must be True or False, got {learn_prior_scales!r}")
        self.n_clusters = n_clusters
        self.learn_prior_scales = learn_prior_scales
        self.prior_mean_init_std = prior_mean_init_std
        self.cluster_init = cluster_init
        self.cluster_init_epoch = cluster_init_epoch
        self.cluster_init_when = cluster_init_when
        self.posterior_samples = posterior_samples
        self.assignment = assignment
        super().__init__(shared_dim=shared_dim, private_dim=private_dim, scale_param=scale_param,
                         encoder_branches=encoder_branches, beta=beta, **kwargs)

    @property
    def cluster_init_epoch_(self) -> int:
        """Epoch after which k-means places the cluster components (default: two thirds of the
        training epochs, resolved at fit when ``epochs`` is None: the shared latent must carry the
        cluster structure before it is clustered); with ``cluster_init_when="ready"`` the latest epoch:
        the placement comes from half of it on, as soon as k-means finds a stable partition of the
        latent (see :class:`~cmvae.callbacks.KMeansPriorInit`)."""
        if self.cluster_init_epoch is not None:
            return self.cluster_init_epoch
        epochs = self.epochs if self.epochs is not None else self.epochs_
        if epochs is None:
            raise NotFittedError(
                "cluster_init_epoch_ depends on the training epochs, which epochs=None resolves at fit from the data "
                "size: fit first, or pass epochs or cluster_init_epoch"
            )
        return max(1, (2 * epochs) // 3)

    def _fit_callbacks(self, train: list[torch.Tensor], mask: torch.Tensor | None = None) -> list[L.Callback]:
        if self.cluster_init == "kmeans" and self.n_clusters > 1:
            return [KMeansPriorInit(*self._fitted(), train, self.cluster_init_epoch_, self._fit_seed(), mask,
                                    when=self.cluster_init_when)]
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
        return self._cluster_log_posteriors(views, mask)[0]

    def _cluster_log_posteriors(
        self, views: Sequence[ArrayLike | None], mask: ArrayLike | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        module, _ = self._fitted()
        post, observed = self._posteriors(views, mask)
        prior = module.prior  # type: ignore[union-attr]
        log_post = prior.expected_log_posterior(post.z_loc, post.z_scale, self.posterior_samples, self._fit_seed())
        return log_post, observed

    def cluster_log_likelihoods(self, views: Sequence[ArrayLike], *, use_mean: bool = True) -> torch.Tensor:
        """log p(z_m | c) for each modality's latent (posterior mean or one sample): ``[M, N, n_clusters]``."""
        module, _ = self._fitted()
        post = self.encode(views)
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
        use_mean: bool = True,
        eval_views: Sequence[ArrayLike] | None = None,
        eval_labels: ArrayLike | None = None,
        progress: Any = None,
    ) -> "SelectionResult":
        """Post-hoc choice of the number of clusters (the paper's Algorithm 1); the model is unchanged.

        Prunes, one at a time, the cluster with the fewest points assigned on ``views`` and
        returns K_hat = argmin_k of the mean normalised entropy of p(c|z_m) (``criterion=
        "entropy"``) or of the released code's ``"entropy_loglik"`` score. ``use_mean``: z_m is
        the posterior mean (else one sample). With labels, NMI/ARI at each k are reported on
        ``eval_views``/``eval_labels`` (e.g. a test split), else on ``views``.
        Apply the result with :meth:`apply_selection`.
        """
        from .selection import select_clusters

        module, _ = self._fitted()
        log_lik = self.cluster_log_likelihoods(views, use_mean=use_mean)
        n = log_lik.shape[1]
        eval_lik = None
        if eval_views is not None:
            eval_lik = self.cluster_log_likelihoods(eval_views, use_mean=True)
            if eval_labels is None:
                raise ValueError("eval_views given without eval_labels")
            eval_labels = check_labels(eval_labels, eval_lik.shape[1])
        labels_arr = check_labels(labels, n) if labels is not None else None
        with torch.no_grad():
            log_pi = module.prior.log_weights().detach().cpu()  # type: ignore[union-attr]
        result = select_clusters(
            log_lik,
            log_pi,
            criterion=criterion,  # type: ignore[arg-type]
            beta=self.beta,
            dim_z=self.shared_dim,
            labels=labels_arr,
            eval_log_lik=eval_lik,
            eval_labels=eval_labels,
            progress=progress,
        )
        result.model_fingerprint = self._prior_fingerprint()
        return result

    def _prior_fingerprint(self) -> str:
        """SHA-256 of the cluster prior's means and scales (unchanged by pruning): identifies this model."""
        import hashlib

        module, _ = self._fitted()
        prior = module.prior  # type: ignore[union-attr]
        digest = hashlib.sha256()
        for t in (prior.means, prior.scales):
            digest.update(t.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def apply_selection(self, result: "SelectionResult") -> "CMVAE":
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
        log_post, observed = self._cluster_log_posteriors(views, mask)
        return assign_clusters(log_post, self._log_pi(), observed, self.assignment).numpy()  # type: ignore[arg-type]

    def predict_proba(self, views: Sequence[ArrayLike | None], *, mask: ArrayLike | None = None) -> np.ndarray:
        """Cluster probabilities ``[N, n_clusters]``: the normalised combined evidence of the observed
        modalities (``assignment="evidence"``), or p(c | z_m) averaged over them (``"vote"``)."""
        log_post, observed = self._cluster_log_posteriors(views, mask)
        if self.assignment == "evidence":
            return combined_evidence(log_post, self._log_pi(), observed).exp().numpy()
        if observed is None:
            return log_post.exp().mean(0).numpy()
        return masked_mean(log_post.exp(), observed).numpy()

    def score(
        self, views: Sequence[ArrayLike | None], y: ArrayLike, *, mask: ArrayLike | None = None
    ) -> dict[str, float]:
        """NMI, ARI and Hungarian accuracy of :meth:`predict` against labels ``y`` ``[N]``."""
        from .metrics import clustering_scores

        return clustering_scores(np.asarray(y), self.predict(views, mask=mask))


register_estimator(CMVAE)


def check_checkpoint(path: Path, plan: L.LightningModule, epochs: int) -> None:
    """Before resuming: ``path`` must be a readable Lightning checkpoint whose weights fit ``plan`` and
    that has trained fewer than ``epochs`` epochs (:class:`ModelFileError` / :class:`ParameterError`)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["state_dict"]
    except Exception as err:  # noqa: BLE001 -- torch raises many types for a damaged zip/pickle
        raise ModelFileError(f"{path} is damaged or truncated: {_one_line(err)}") from None
    expected = plan.state_dict()
    wrong = [k for k in expected if k not in state or tuple(state[k].shape) != tuple(expected[k].shape)]
    extra = [k for k in state if k not in expected]
    if wrong or extra:
        key = (wrong or extra)[0]
        got = list(state[key].shape) if key in state else "absent"
        want = list(expected[key].shape) if key in expected else "absent"
        raise ParameterError(
            f"{path} does not fit the model built from these settings ({len(wrong) + len(extra)} tensors differ, "
            f"e.g. {key}: checkpoint {got}, model {want}): resume with the settings the run was started with"
        )
    done = int(ckpt.get("epoch", -1)) + 1
    if epochs < done:
        raise ParameterError(f"epochs={epochs} is below the {done} epochs already trained in {path}: pass epochs >= {done}")


def _checked_targets(targets: Any, n_modalities: int) -> list[int]:
    """``targets`` of :meth:`~MultimodalEstimator.generate` as distinct modality ids (ParameterError otherwise)."""
    if not isinstance(targets, (list, tuple, np.ndarray, range)):
        raise ParameterError(f"targets must be a list of modality ids (e.g. [1]), got {targets!r}")
    ids = []
    for t in targets:
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
            raise ParameterError(f"targets must be integer modality ids, got {t!r} in {list(targets)!r}")
        ids.append(int(t))
    if not ids:
        raise ParameterError("targets is empty: name at least one modality to generate")
    bad = [t for t in ids if not 0 <= t < n_modalities]
    if bad:
        raise ParameterError(f"targets {bad} out of range: modalities are 0..{n_modalities - 1}")
    if len(set(ids)) != len(ids):
        raise ParameterError(f"targets {ids} repeat a modality")
    return ids


def _has_none(views: Any) -> bool:
    """Whether views mark missing data: ``None`` entries, or a dataset with a ``mask``."""
    if getattr(views, "mask", None) is not None:
        return True
    return isinstance(views, (list, tuple)) and any(x is None for x in views)


def _refuse_partial(model_name: str, supported: bool, name: str = "views") -> None:
    """DataValidationError unless the model can train on partially observed samples, naming those that can."""
    if supported:
        return
    able = sorted(k.__name__ for k in _ESTIMATORS.values() if k.partial_training)
    raise DataValidationError(
        f"{name} has missing modalities (None entries or a mask with False entries), but {model_name} trains on "
        f"fully observed samples only; the models that train on partially observed samples are {', '.join(able)} "
        "(predict/transform/generate of every model accept missing modalities)"
    )


def refuse_partial_training(
    model_name: str, views: Any, mask: ArrayLike | None = None, name: str = "views", modality: int | None = None
) -> None:
    """For estimators without partial training: refuse ``views`` with holes (None entries, ``mask`` or a
    dataset's ``mask`` with False entries) with a clear :class:`DataValidationError`. Unimodal
    estimators pass their ``modality``: holes in the other modalities do not matter to them."""
    if mask is None:
        mask = getattr(views, "mask", None)
    raw = views_of(views)
    columns = slice(None) if modality is None else slice(modality, modality + 1)
    if isinstance(raw, (list, tuple)) and any(x is None for x in raw[columns]):
        _refuse_partial(model_name, False, name)
    if mask is not None:
        observed = np.asarray(mask)
        if not bool((observed[:, columns] if observed.ndim == 2 else observed).all()):
            _refuse_partial(model_name, False, name)


def _n_samples(views: Sequence[ArrayLike | None]) -> int:
    """N of the first given view (for checking a mask before the views are validated)."""
    for x in views:
        if x is not None:
            return int(x.shape[0]) if hasattr(x, "shape") else len(x)
    raise DataValidationError("need at least one observed modality; every entry of views is None")


def check_labels(y: ArrayLike, n: int) -> np.ndarray:
    """Labels as a 1-D array of length ``n``, with a clear error otherwise."""
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataValidationError(f"labels must be 1-D with {n} entries, got shape {list(labels.shape)}")
    return labels
