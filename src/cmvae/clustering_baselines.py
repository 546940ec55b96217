"""Clustering baselines of the paper's comparison, with CMVAE's fit/predict API.

>>> VaDE(n_clusters=10, modality=0, beta=2.5).fit(views).predict(views)    # unimodal, one view
>>> DeepCluster(n_clusters=100, modality=3).fit(views).score(views, y)      # unimodal, one view
>>> CMC(n_clusters=10).fit(views).transform(views)                          # all views, [N, shared_dim]

All three use the networks of :mod:`cmvae.nets` (``shared_dim`` = the representation size,
``arch`` light/resnet/paper) and no pre-training. ``views`` is always the full list of M views; the
unimodal methods read ``views[modality]``.

* :class:`VaDE` -- the CMVAE estimator on one modality without private latents (see
  :mod:`cmvae.models.vade`); predict = argmax_c p(c|z) at the posterior mean. Saves/loads.
* :class:`DeepCluster` -- :mod:`cmvae.models.deepcluster`; predict = nearest centroid of the
  final k-means (fitted on the training features after the last epoch, in the whitened space).
* :class:`CMC` -- :mod:`cmvae.models.cmc`; the representation is the average over modalities
  of the normalised embeddings, re-normalised; predict = nearest centroid of k-means (k =
  ``n_clusters``) fitted on the training representation.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn
from torch.utils.data import DataLoader

from .callbacks import HeldOutBound, HeldOutEarlyStopping, KMeansPriorInit
from .estimator import CMVAE, NotFittedError, check_choice, check_int, check_number, fit_seed, pick_device
from .estimator.cmvae import HELD_OUT_FRACTION, HELD_OUT_MAX, held_out_pick
from .inputs import Input, TrainingRules, prepare_input, select_modality
from .metrics import clustering_scores
from .models.cmc import CMCModule
from .models.deepcluster import ClusterBalancedSampler, DeepClusterModule, WhitenNormalize, cluster_features
from .models.vade import VaDEModule
from .nets import WEIGHT_INITS, build_networks
from .registry import register_estimator
from .schema import ArrayLike, DataSchema, DataValidationError
from .training import ViewsDataset, _identity_collate, make_loader, make_trainer, quiet_lightning_warnings

__all__ = ["CMC", "DeepCluster", "VaDE", "select_modality"]

log = logging.getLogger(__name__)

#: Epochs without a lower held-out InfoNCE before :class:`CMC` stops (as CMVAE's early stopping).
PATIENCE = KMeansPriorInit.PATIENCE


# ------------------------------------------------------------------------------ VaDE


@register_estimator
class VaDE(CMVAE):
    """VaDE (Jiang et al., 2016) on ``views[modality]``: a VAE with a mixture prior on z.

    Defaults: Gaussian latents with mixture scales fixed at 1 (VaDE's GMM learns them; here that let every
    component shrink to scale ~0.07 and one component take every point: NMI 0.00 vs 0.72 on the
    separable views of ``benchmarks/separable_checks.py``; ``learn_prior_scales=True`` restores it), beta 1, the
    CMVAE defaults otherwise (Laplace pixel likelihood with scale 0.75, light networks, k-means
    initialisation of the mixture on the posterior means after two thirds of the epochs --
    VaDE's initialisation without its separate auto-encoder pre-training).
    All :class:`~cmvae.CMVAE` parameters apply except ``private_dim`` (always 0).
    """

    model_type = "vade"
    min_fit_modalities = 1
    partial_training = False

    def __init__(
        self,
        n_clusters: int = 10,
        shared_dim: int = 32,
        private_dim: int = 0,
        *,
        modality: int = 0,
        latent_family: str = "gaussian",
        learn_prior_scales: bool = False,
        beta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if private_dim != 0:
            raise ValueError(f"VaDE has no private latent: private_dim must be 0, got {private_dim}")
        if modality < 0:
            raise ValueError(f"modality must be >= 0, got {modality}")
        self.modality = modality
        kwargs.setdefault("contrastive_warmup_epochs", 0)  # one modality: nothing to contrast
        kwargs.setdefault("warmup_freeze_epochs", 0)
        super().__init__(
            n_clusters,
            shared_dim,
            0,
            latent_family=latent_family,
            learn_prior_scales=learn_prior_scales,
            beta=beta,
            **kwargs,
        )

    def _input_modality(self) -> int | None:
        """VaDE reads ``views[modality]`` (and ``mask[:, modality]``) of every method's data."""
        return self.modality

    def _build_module(self, schema: DataSchema) -> VaDEModule:
        encoders, decoders = self._networks(schema)
        likelihoods = self._make_likelihoods(schema)
        return VaDEModule.from_lists(
            encoders,
            decoders,
            likelihoods,
            n_clusters=self.n_clusters,
            shared_dim=self.shared_dim,
            latent_family_name=self.latent_family,
            learn_prior_scales=self.learn_prior_scales,
            prior_mean_init_std=self.prior_mean_init_std,
            scale_param=self.scale_param,
            mean_init=self._mean_init(),
        )


# ---------------------------------------------------- representation + k-means baselines


class _LossPlan(L.LightningModule):
    """Minimises ``loss_fn(model inputs, raw batch)`` with Adam; logs ``train/loss``."""

    def __init__(self, module: nn.Module, schema: DataSchema, loss_fn: Callable[..., torch.Tensor], lr: float) -> None:
        super().__init__()
        self.module = module
        self.schema = schema
        self.loss_fn = loss_fn
        self.lr = lr

    def _loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        n_views = self.schema.n_modalities
        views = self.schema.to_model_input(batch[:n_views], self.device)
        return self.loss_fn(views, [t.to(self.device) for t in batch[n_views:]])

    def bound(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """Minus the loss on ``batch`` (a scalar): what :class:`~cmvae.callbacks.HeldOutBound` maximises."""
        return -self._loss(batch)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at epoch {self.current_epoch}, batch {batch_idx}: lower lr")
        self.log("train/loss", loss, prog_bar=True, batch_size=int(batch[0].shape[0]), on_step=True, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.module.parameters(), lr=self.lr)


class _RepresentationClusterer:
    """fit/transform/predict/score of a representation learner followed by k-means.

    Subclasses define :meth:`_build`, :meth:`_train` and :meth:`_representation` (``[N, d]``) and
    :meth:`_cluster_space`; the unimodal ones a ``modality`` attribute (they read ``views[modality]``).
    """

    #: Fewest views ``fit`` and ``predict`` accept (after the selection of ``modality``).
    min_modalities: ClassVar[int] = 1

    def __init__(
        self,
        n_clusters: int = 10,
        shared_dim: int = 32,
        *,
        arch: str = "light",
        epochs: int = 30,
        batch_size: int = 128,
        lr: float = 1e-3,
        seed: int = 0,
        accelerator: str = "auto",
        progress: bool = True,
        max_time_minutes: float | None = None,
        weight_init: str = "torch",
    ) -> None:
        check_choice("weight_init", weight_init, WEIGHT_INITS)
        for name, value in (("n_clusters", n_clusters), ("shared_dim", shared_dim), ("epochs", epochs),
                            ("batch_size", batch_size)):
            check_int(name, value, 1)
        check_number("lr", lr, 0.0, strict=True)
        if seed is not None:
            check_int("seed", seed, 0)
        self.n_clusters = n_clusters
        self.shared_dim = shared_dim
        self.arch = arch
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.seed = seed
        self.accelerator = accelerator
        self.progress = progress
        self.max_time_minutes = max_time_minutes
        self.weight_init = weight_init
        self.module_: nn.Module | None = None
        self.schema_: DataSchema | None = None
        self.kmeans_: KMeans | None = None
        self.history_: dict[str, list[float]] = {}

    def _fit_seed(self) -> int:
        return fit_seed(self)

    def _input(self, views: Any, mask: ArrayLike | None = None, *, training: bool = False) -> Input:
        """Every method's data through :func:`~cmvae.inputs.prepare_input`: training views (holes refused)
        or views checked against the fitted schema (every modality observed)."""
        modality = getattr(self, "modality", None)
        if training:
            rules = TrainingRules(type(self).__name__, min_modalities=self.min_modalities)
            return prepare_input(views, mask, training=rules, modality=modality)
        _, schema = self._fitted()
        return prepare_input(views, schema=schema, min_modalities=self.min_modalities, modality=modality, missing=False)

    # -- to define --------------------------------------------------------------------
    def _build(self, schema: DataSchema) -> nn.Module:
        raise NotImplementedError

    def _train(self, train: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _representation(self, views: list[torch.Tensor]) -> torch.Tensor:
        """Model inputs (a batch) -> representation ``[B, d]``."""
        raise NotImplementedError

    def _cluster_space(self, rep: np.ndarray, *, fit: bool) -> np.ndarray:
        """Where k-means runs: the representation itself by default."""
        return rep

    # -- shared machinery --------------------------------------------------------------
    def _encoders(self, schema: DataSchema) -> list[nn.Module]:
        """One encoder of :mod:`cmvae.nets` per view, with ``private_dim = 0``."""
        return [build_networks(spec.shape, self.shared_dim, 0, arch=self.arch, weight_init=self.weight_init)[0]
                for spec in schema.modalities]

    def _fitted(self) -> tuple[nn.Module, DataSchema]:
        if self.module_ is None or self.schema_ is None or self.kmeans_ is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit() first")
        return self.module_, self.schema_

    def _trainer(self, callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
        return make_trainer(epochs=self.epochs, out_dir=None, accelerator=self.accelerator, devices=1,
                            progress=self.progress, max_time_minutes=self.max_time_minutes,
                            extra_callbacks=callbacks)

    def _run(self, plan: _LossPlan, loader: DataLoader, callbacks: Sequence[L.Callback] = ()) -> None:
        trainer = self._trainer(callbacks)
        with warnings.catch_warnings():
            quiet_lightning_warnings()
            trainer.fit(plan, train_dataloaders=loader)
        self.history_ = {"train/loss": [float(trainer.callback_metrics.get("train/loss_epoch", float("nan")))]}

    @torch.no_grad()
    def _represent(self, views: list[torch.Tensor], batch_size: int = 512) -> np.ndarray:
        """Representation of checked raw views: ``[N, d]``."""
        module, schema = self.module_, self.schema_
        assert module is not None and schema is not None
        device = pick_device(self.accelerator)
        was_training = module.training
        module.to(device).eval()
        parts = []
        for start in range(0, views[0].shape[0], batch_size):
            batch = schema.to_model_input([x[start : start + batch_size] for x in views], device)
            parts.append(self._representation(batch).cpu())
        module.train(was_training)
        return torch.cat(parts).double().numpy()

    def fit(
        self, views: Sequence[ArrayLike], y: ArrayLike | None = None, *, mask: ArrayLike | None = None
    ) -> "_RepresentationClusterer":
        """Train on ``views`` (list of M arrays ``[N, ...]``; ``y`` is ignored), then fit the final k-means.
        Fully observed samples only: a ``mask`` (or dataset ``mask``) with holes is refused."""
        train = self._input(views, mask, training=True).tensors
        if train[0].shape[0] < self.n_clusters:
            raise DataValidationError(f"{train[0].shape[0]} samples cannot fill n_clusters={self.n_clusters}")
        L.seed_everything(self._fit_seed(), workers=True, verbose=False)
        self.schema_ = DataSchema.infer(train)
        self.module_ = self._build(self.schema_)
        self._train(train)
        self.module_.to("cpu").eval()
        space = self._cluster_space(self._represent(train), fit=True)
        self.kmeans_ = KMeans(n_clusters=self.n_clusters, n_init=10, random_state=self._fit_seed()).fit(space)
        return self

    def transform(self, views: Sequence[ArrayLike]) -> np.ndarray:
        """The learned representation ``[N, d]`` (float64)."""
        return self._represent(self._input(views).tensors)

    def predict(self, views: Sequence[ArrayLike]) -> np.ndarray:
        """Cluster ids ``[N]``: the nearest centroid of the final k-means."""
        self._fitted()
        assert self.kmeans_ is not None
        return self.kmeans_.predict(self._cluster_space(self.transform(views), fit=False))

    def score(self, views: Sequence[ArrayLike], y: ArrayLike) -> dict[str, float]:
        """NMI, ARI and Hungarian accuracy of :meth:`predict` against labels ``y`` ``[N]``."""
        return clustering_scores(np.asarray(y), self.predict(views))  # type: ignore[return-value]


# ------------------------------------------------------------------------ DeepCluster


class _ReCluster(L.Callback):
    """Before the first epoch and after every epoch but the last: new pseudo-labels and a fresh head."""

    def __init__(self, owner: "DeepCluster", train: list[torch.Tensor]) -> None:
        self.owner = owner
        self.train = train

    def _recluster(self, trainer: L.Trainer, epoch: int) -> None:
        owner = self.owner
        space = WhitenNormalize(owner.pca_dim, owner.seed + epoch).fit_transform(owner._represent(self.train))
        labels, _ = cluster_features(space, owner.n_clusters, owner.seed + epoch)
        new = torch.as_tensor(labels, dtype=torch.long)
        if owner.labels_ is not None:
            from sklearn.metrics import normalized_mutual_info_score

            owner.history_.setdefault("nmi_t_t-1", []).append(
                float(normalized_mutual_info_score(owner.labels_.numpy(), labels)))
        owner.labels_ = new
        module = owner.module_
        assert isinstance(module, DeepClusterModule)
        module.reset_head()
        for opt in trainer.optimizers:  # a fresh head starts without stale Adam moments
            for p in module.head.parameters():
                opt.state.pop(p, None)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._recluster(trainer, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 < (trainer.max_epochs or 0):
            self._recluster(trainer, trainer.current_epoch + 1)


class DeepCluster(_RepresentationClusterer):
    """DeepCluster (Caron et al., 2018) on ``views[modality]`` with K = ``n_clusters`` pseudo-classes.

    Every epoch: k-means (K clusters, empty ones re-assigned) on the PCA-whitened (to at most
    ``pca_dim`` dims), L2-normalised features ``[N, shared_dim]`` of the training set, a
    re-initialised linear head, then cross-entropy on the pseudo-labels with clusters sampled
    uniformly. ``transform`` returns the raw features; ``predict`` the nearest centroid of the
    final k-means in the whitened space. ``history_["nmi_t_t-1"]``: NMI between consecutive
    pseudo-labellings (the paper's stability curve).
    """

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, *, modality: int = 0, pca_dim: int = 256,
                 **kwargs: Any) -> None:
        if modality < 0:
            raise ValueError(f"modality must be >= 0, got {modality}")
        if pca_dim < 1:
            raise ValueError(f"pca_dim must be >= 1, got {pca_dim}")
        super().__init__(n_clusters, shared_dim, **kwargs)
        self.modality = modality
        self.pca_dim = pca_dim
        self.labels_: torch.Tensor | None = None
        self.whitening_: WhitenNormalize | None = None

    def _build(self, schema: DataSchema) -> DeepClusterModule:
        return DeepClusterModule(self._encoders(schema)[0], self.shared_dim, self.n_clusters)

    def _representation(self, views: list[torch.Tensor]) -> torch.Tensor:
        assert isinstance(self.module_, DeepClusterModule)
        return self.module_.features(views[0])

    def _cluster_space(self, rep: np.ndarray, *, fit: bool) -> np.ndarray:
        if fit:
            self.whitening_ = WhitenNormalize(self.pca_dim, self._fit_seed())
            return self.whitening_.fit_transform(rep)
        assert self.whitening_ is not None
        return self.whitening_.transform(rep)

    def _train(self, train: list[torch.Tensor]) -> None:
        module, schema = self.module_, self.schema_
        assert isinstance(module, DeepClusterModule) and schema is not None
        self.labels_ = None
        self.history_ = {}
        index = torch.arange(train[0].shape[0])

        def pseudo_labels() -> torch.Tensor:
            assert self.labels_ is not None
            return self.labels_

        def loss(views: list[torch.Tensor], extra: list[torch.Tensor]) -> torch.Tensor:
            targets = pseudo_labels().to(extra[0].device)[extra[0]]
            return torch.nn.functional.cross_entropy(module(views[0]), targets)

        loader = DataLoader(ViewsDataset([*train, index]), batch_size=self.batch_size,
                            sampler=ClusterBalancedSampler(pseudo_labels, len(index), self._fit_seed()), collate_fn=_identity_collate)
        history = self.history_
        self._run(_LossPlan(module, schema, loss, self.lr), loader, [_ReCluster(self, train)])
        self.history_ = {**history, **self.history_}


# -------------------------------------------------------------------------------- CMC


class CMC(_RepresentationClusterer):
    """Contrastive Multiview Coding (Tian et al., 2020) on all M views, then k-means.

    One encoder per modality, embeddings of size ``shared_dim`` on the unit sphere, the
    full-graph InfoNCE with in-batch negatives at ``temperature``. ``transform`` returns the
    average over modalities of the normalised embeddings, re-normalised (``[N, shared_dim]``);
    ``predict`` the nearest centroid of k-means (``n_clusters``) fitted on it after training.

    With ``early_stopping`` (the default) :data:`HELD_OUT_FRACTION` of the training rows (at most
    :data:`HELD_OUT_MAX`) are kept out of the steps; training stops once their InfoNCE has not fallen for
    :data:`PATIENCE` epochs and keeps the weights of its best epoch (``best_epoch_``, counted from 1;
    ``history_["held_out/info_nce"]`` per epoch); k-means then runs on every training row. Without it the
    networks memorise which views were paired: on PolyMNIST (8,000 tuples, lr 1e-3) the held-out loss is
    lowest at epoch 9-10, the training loss falls on far below what the shared digit alone allows, and the
    test NMI, 0.99-1.00 from epoch 6 to 50, collapses from epoch 55 (0.12-0.61; benchmarks/RESULTS.md,
    round 23). Data too small to hold out 2 rows and keep 2 trains on every row, without early stopping.
    """

    min_modalities = 2

    def __init__(self, n_clusters: int = 10, shared_dim: int = 32, *, temperature: float = 0.1,
                 early_stopping: bool = True, **kwargs: Any) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not isinstance(early_stopping, bool):
            raise TypeError(f"early_stopping must be True or False, got {early_stopping!r}")
        super().__init__(n_clusters, shared_dim, **kwargs)
        self.temperature = temperature
        self.early_stopping = early_stopping
        self.best_epoch_: int | None = None

    def _held_out_rows(self, n_samples: int) -> torch.Tensor | None:
        """Sorted ids ``[n]`` of the rows the early stopping holds out (a seeded pick), or None."""
        n_held = min(HELD_OUT_MAX, round(HELD_OUT_FRACTION * n_samples))
        if not self.early_stopping or n_held < 2 or n_samples - n_held < 2:
            return None
        return held_out_pick(n_samples, n_held, self._fit_seed())

    def _build(self, schema: DataSchema) -> CMCModule:
        return CMCModule(self._encoders(schema), self.shared_dim, self.temperature)

    def _representation(self, views: list[torch.Tensor]) -> torch.Tensor:
        assert isinstance(self.module_, CMCModule)
        return torch.nn.functional.normalize(self.module_.embed(views).mean(0), dim=-1)

    def _train(self, train: list[torch.Tensor]) -> None:
        module, schema = self.module_, self.schema_
        assert isinstance(module, CMCModule) and schema is not None
        if train[0].shape[0] < 2:
            raise DataValidationError("CMC needs at least 2 samples (in-batch negatives)")
        held = self._held_out_rows(train[0].shape[0])
        stopping = None if held is None else HeldOutEarlyStopping(HeldOutBound(train, held, self._fit_seed()), PATIENCE)
        steps_on = train
        if held is not None:
            kept = torch.ones(train[0].shape[0], dtype=torch.bool)
            kept[held] = False
            steps_on = [x[kept] for x in train]
        loader = make_loader(steps_on, self.batch_size, shuffle=True, seed=self._fit_seed())
        plan = _LossPlan(module, schema, lambda views, _extra: module.loss(views), self.lr)
        self._run(plan, loader, [stopping] if stopping is not None else [])
        self.best_epoch_ = None
        if stopping is not None:
            best = stopping.held_out.best_epoch
            self.best_epoch_ = None if best is None else best + 1
            self.history_["held_out/info_nce"] = [-v for v in stopping.values]
