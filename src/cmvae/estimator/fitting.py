"""``fit``: training views in, a trained torch module, its data schema and the training history out.

The loop itself lives in :mod:`cmvae.training` (the Lightning plan, loaders, trainer); this mixin
checks the data (:meth:`~cmvae.estimator.base.MultimodalEstimator._training_input`), builds the
module from the recorded schema, wires the callbacks and restores the previous state when a fit fails.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
import numpy as np
import torch

from ..callbacks import ClusteringMonitor, CompileNetworks, KMeansPriorInit, LearningRateDecay
from ..saving import ModelFileError
from ..schema import ArrayLike, DataSchema, DataValidationError
from ..training import EpochHistory, TrainingPlan, make_loader, make_trainer, quiet_lightning_warnings, sanity_check
from .params import ParameterError, fit_seed, resolve_epochs, resolve_warmup
from .persistence import one_line

log = logging.getLogger(__name__)


E = TypeVar("E", bound="FittingMixin")


class FittingMixin:
    """``fit`` of :class:`~cmvae.estimator.base.MultimodalEstimator`."""

    def fit(
        self: E,
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
    ) -> E:
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
        previous = (self.module_, self.schema_, self.history_, self.epochs_, self.warmup_epochs_)
        try:
            return self._fit(views, val_views=val_views, val_labels=val_labels, out_dir=out_dir, resume=resume,
                             callbacks=callbacks, vocabularies=vocabularies, mask=mask, val_mask=val_mask)
        except Exception:
            # a failed fit leaves the estimator as it was (not "fitted" with a half-built model);
            # an interrupted one (Ctrl-C) keeps what it trained
            self.module_, self.schema_, self.history_, self.epochs_, self.warmup_epochs_ = previous
            raise

    def _fit(
        self: E,
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
    ) -> E:
        """:meth:`fit` (which restores the previous state when this raises)."""
        data = self._training_input(views, mask)
        train, train_mask = data.tensors, data.mask
        self._check_fit_settings(data.n_samples)
        self.epochs_ = resolve_epochs(self.epochs, data.n_samples, self.batch_size)
        warmup_epochs, freeze_epochs = resolve_warmup(self.contrastive_warmup_epochs, self.warmup_freeze_epochs,
                                                      self.epochs_, len(train))
        if warmup_epochs > 0 and len(train) < 2:
            raise ParameterError(
                f"contrastive_warmup_epochs={self.contrastive_warmup_epochs} contrasts the modalities' shared codes, and "
                f"the data has {len(train)} modality: use contrastive_warmup_epochs=0"
            )
        if freeze_epochs > 0 and warmup_epochs == 0:
            raise ParameterError(
                f"warmup_freeze_epochs={self.warmup_freeze_epochs} keeps the codes of the contrastive warm-up, and "
                f"the warm-up has 0 epochs (contrastive_warmup_epochs={self.contrastive_warmup_epochs!r}, "
                f"{self.epochs_} epochs): set contrastive_warmup_epochs > 0 or warmup_freeze_epochs=0"
            )
        #: The warm-up and frozen-code epochs of the last fit (``"auto"`` resolved).
        self.warmup_epochs_ = (warmup_epochs, freeze_epochs)
        seed = self._fit_seed()
        L.seed_everything(seed, workers=True, verbose=False)
        if self.module_ is None or not resume:
            self.schema_ = DataSchema.infer(train, vocabularies=vocabularies, mask=train_mask)
            self.module_ = self._build_networks_within_memory(self.schema_)
        assert self.schema_ is not None and self.module_ is not None
        val, val_observed = None, None
        if val_views is not None:  # checked against the schema just recorded
            val_data = self._training_input(val_views, val_mask, validation=True)
            val, val_observed = val_data.tensors, val_data.mask
        plan = TrainingPlan(
            self.module_,
            self.schema_,
            lr=self.lr,
            amsgrad=self.amsgrad,
            weight_decay=self.weight_decay,
            weight_decay_from=self.weight_decay_from,
            n_samples=self.n_samples,
            estimator=self.estimator,  # type: ignore[arg-type]
            beta=self.beta,
            beta_warmup_epochs=self.beta_warmup_epochs,
            contrastive_warmup_epochs=warmup_epochs,
            contrastive_warmup_lr=self.contrastive_warmup_lr,
            warmup_freeze_epochs=freeze_epochs,
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
        held_out = self._held_out_rows(data.n_samples)
        fit_rows = None
        if held_out is not None:
            keep = torch.ones(data.n_samples, dtype=torch.bool)
            keep[held_out] = False
            fit_rows = keep.nonzero().squeeze(1)
        extra: list[L.Callback] = [history, *self._fit_callbacks(train, train_mask, held_out), *callbacks]
        if self.weight_decay_from == "placement" and not any(isinstance(c, KMeansPriorInit) for c in extra):
            raise ParameterError(
                "weight_decay_from='placement' starts the decay when k-means places the cluster components, and this "
                "model has no such placement (it needs CMVAE with cluster_init='kmeans' and n_clusters > 1): use "
                "weight_decay_from='start'"
            )
        if self.lr_decay > 0:
            extra.append(LearningRateDecay(self.lr, self.lr_decay))
        if self.compile_networks:
            extra.append(CompileNetworks())
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
            gradient_clip_norm=self.gradient_clip_norm,
            extra_callbacks=extra,
        )
        train_loader = make_loader(train, self.batch_size, shuffle=True, num_workers=self.num_workers, seed=seed,
                                   mask=train_mask, rows=fit_rows)
        val_loader = (
            make_loader(val, self.batch_size, shuffle=False, num_workers=self.num_workers, mask=val_observed)
            if val is not None else None
        )
        with warnings.catch_warnings():
            quiet_lightning_warnings()
            trainer.fit(plan, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt_path)
        if 0 < warmup_epochs and trainer.current_epoch <= warmup_epochs:
            log.warning(
                "training ended within the contrastive warm-up (contrastive_warmup_epochs=%d, %d epoch(s) done): the "
                "decoders and the cluster prior never trained by the objective, so samples and clusters are not "
                "meaningful yet; train for more epochs or minutes (or resume)",
                warmup_epochs, trainer.current_epoch,
            )
        self.module_.to("cpu").eval()
        self.history_ = history.history
        return self

    def _fit_seed(self) -> int:
        return fit_seed(self)

    def _build_networks_within_memory(self, schema: DataSchema):
        """:meth:`_build_module`; networks that this machine cannot allocate (latent sizes such as
        ``private_dim=10**9``: out of memory, or a tensor size that overflows) are a :class:`ParameterError`
        naming the sizes, not an allocator traceback."""
        try:
            return self._build_module(schema)
        except (RuntimeError, MemoryError, OverflowError) as err:
            text = str(err)
            if isinstance(err, RuntimeError) and not any(w in text for w in ("allocat", "out of memory", "overflow")):
                raise
            sizes = ", ".join(f"{name}={getattr(self, name)!r}" for name in ("shared_dim", "private_dim", "n_clusters")
                              if hasattr(self, name))
            raise ParameterError(f"the networks cannot be allocated with {sizes} (arch={self.arch!r}): use smaller "
                                 f"latent sizes ({one_line(err)})") from None

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


def check_checkpoint(path: Path, plan: L.LightningModule, epochs: int) -> None:
    """Before resuming: ``path`` must be a readable Lightning checkpoint whose weights fit ``plan`` and
    that has trained fewer than ``epochs`` epochs (:class:`ModelFileError` / :class:`ParameterError`)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["state_dict"]
    except Exception as err:  # noqa: BLE001 -- torch raises many types for a damaged zip/pickle
        raise ModelFileError(f"{path} is damaged or truncated: {one_line(err)}") from None
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

