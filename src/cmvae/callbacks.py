"""Lightning callbacks that the estimators add to ``fit``: the k-means initialisation of the
cluster prior and the per-epoch clustering scores on labelled validation data."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from .missing import masked_mean
from .models.base import MultimodalVAE
from .schema import DataSchema
from .selection import assign_clusters

if TYPE_CHECKING:  # pragma: no cover
    from .estimator import CMVAE, MultimodalEstimator

log = logging.getLogger(__name__)


@torch.no_grad()
def _mixture_means(module: MultimodalVAE, schema: DataSchema, views: list[torch.Tensor], device: torch.device,
                   max_points: int = 20000, batch_size: int = 1024, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Means of q(z|X) (average of the unimodal means) for at most ``max_points`` samples: ``[n, shared_dim]``;
    with ``mask`` ``[N, M]`` (True = observed) the average of each sample's observed modalities' means.

    The mixture mean rather than the stacked unimodal means: early in training the unimodal
    codes still differ by modality, and k-means would then find the modalities, not the clusters.
    """
    n = min(views[0].shape[0], max_points)
    was_training = module.training
    module.eval()
    codes = []
    for start in range(0, n, batch_size):
        batch = schema.to_model_input([x[start : min(start + batch_size, n)] for x in views], device)
        z_loc = module.encode(batch).z_loc.cpu()
        codes.append(z_loc.mean(0) if mask is None else masked_mean(z_loc, mask[start : min(start + batch_size, n)]))
    module.train(was_training)
    return torch.cat(codes)


def _forget_optimiser_state(trainer: L.Trainer, parameters) -> None:
    """Drop the optimisers' running moments of ``parameters`` (they restart from step 0): after the
    components jump onto k-means centroids, moments gathered at the old positions would steer them."""
    ids = {id(p) for p in parameters}
    for optimiser in trainer.optimizers:
        for p in [p for p in optimiser.state if id(p) in ids]:
            del optimiser.state[p]


class KMeansPriorInit(L.Callback):
    """Place the cluster components on k-means centroids of the posterior means (VaDE's
    initialisation, without a separate pre-training run) once warm-up is over.

    Warm-up ends after ``epoch`` epochs or, when training has a time limit, after the same
    fraction (``epoch / max_epochs``) of that time, whichever comes first. If training stops
    before that, the components are placed at the end so the model still clusters.
    ``mask`` ``[N, M]`` (True = observed): partially observed ``views``.
    """

    def __init__(self, estimator: "CMVAE", views: list[torch.Tensor], epoch: int, seed: int,
                 mask: torch.Tensor | None = None) -> None:
        self.estimator = estimator
        self.views = views
        self.mask = mask
        self.epoch = epoch
        self.seed = seed
        self.done = False

    def _init(self, trainer: L.Trainer, pl_module: L.LightningModule, reason: str) -> None:
        module, schema = self.estimator._fitted()
        codes = _mixture_means(module, schema, self.views, pl_module.device, mask=self.mask)
        prior = module.prior  # type: ignore[union-attr]
        prior.init_from_codes(codes, seed=self.seed)
        _forget_optimiser_state(trainer, prior.parameters())
        self.done = True
        log.info("cluster prior initialised by k-means on %d latent codes (%s)", codes.shape[0], reason)

    def _time_fraction(self, trainer: L.Trainer) -> float | None:
        timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)  # type: ignore[attr-defined]
        if timer is None or timer._duration is None:
            return None
        return timer.time_elapsed("train") / timer._duration

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epoch == 0 and trainer.current_epoch == 0:
            self._init(trainer, pl_module, "before training")
        elif trainer.current_epoch >= self.epoch:
            self.done = True  # resumed after the initialisation: keep the trained components

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.done:
            return
        if trainer.current_epoch + 1 >= self.epoch:
            self._init(trainer, pl_module, f"after {trainer.current_epoch + 1} epochs")
            return
        fraction = self._time_fraction(trainer)
        max_epochs = trainer.max_epochs or 0
        if fraction is not None and max_epochs > 0 and fraction >= self.epoch / max_epochs:
            self._init(trainer, pl_module, f"after {fraction:.0%} of the time limit")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.done:
            log.warning("training stopped before the cluster initialisation epoch: initialising at the end")
            self._init(trainer, pl_module, "at the end of training")


class ClusteringMonitor(L.Callback):
    """Logs NMI/ARI/ACC of the model's clusters (its ``assignment`` rule) on labelled validation views at
    the end of every epoch (only the observed modalities count where ``mask`` ``[N, M]`` marks holes). With ``diagnostics`` (fully observed
    views of a clustering model) it also logs :func:`~cmvae.diagnostics.latent_diagnostics`:
    k-means on the latent, modality offsets, clusters used, entropy of pi, ... as ``val/<name>``."""

    def __init__(self, estimator: "MultimodalEstimator", views: list[torch.Tensor], labels: np.ndarray,
                 mask: torch.Tensor | None = None, diagnostics: bool = True) -> None:
        self.estimator = estimator
        self.views = views
        self.labels = labels
        self.mask = mask
        self.diagnostics = diagnostics and mask is None

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not hasattr(self.estimator.module_, "cluster_log_posteriors"):
            return
        from .metrics import clustering_scores

        module, schema = self.estimator._fitted()
        device = pl_module.device
        log_posts, codes = [], []
        for start in range(0, self.views[0].shape[0], 1024):
            batch = schema.to_model_input([x[start : start + 1024] for x in self.views], device)
            z_loc = module.encode(batch).z_loc
            codes.append(z_loc.cpu())
            log_posts.append(module.prior.log_posterior(z_loc).cpu())  # type: ignore[union-attr]
        log_post = torch.cat(log_posts, dim=1)
        prior = module.prior  # type: ignore[union-attr]
        rule = getattr(self.estimator, "assignment", "vote")
        labels = assign_clusters(log_post, prior.log_weights().detach().cpu(), self.mask, rule).numpy()
        scores = {k: float(v) for k, v in clustering_scores(self.labels, labels).items() if k in ("nmi", "ari", "acc")}
        if self.diagnostics:
            from .diagnostics import latent_diagnostics

            extra = latent_diagnostics(torch.cat(codes, dim=1), log_post, prior.log_weights().detach().cpu(),
                                       prior.means.detach().cpu(), self.labels, seed=self.estimator.seed, rule=rule)
            scores.update({k: v for k, v in extra.items() if k not in scores})
        headline = ("nmi", "ari", "acc")
        pl_module.log_dict({f"val/{k}": scores[k] for k in headline}, prog_bar=True)
        pl_module.log_dict({f"val/{k}": v for k, v in scores.items() if k not in headline})
