"""Lightning training of the multimodal VAEs: data loading, the training plan and the trainer.

The estimator (:mod:`cmvae.estimator`) owns the lifecycle; this module only knows how
to feed batches and step the objective. Lightning provides the loop, checkpoints
(written atomically), resume, CSV/TensorBoard logging, progress bars and multi-GPU (DDP).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger
from torch.utils.data import DataLoader, Dataset

from .models.base import MultimodalVAE
from .objectives import EstimatorName, info_nce, multiview_info_nce
from .schema import DataSchema

log = logging.getLogger(__name__)

#: Temperature of the contrastive warm-up's InfoNCE (CMC's value for unit vectors, as :class:`~cmvae.CMC`'s default).
CONTRASTIVE_TEMPERATURE = 0.1


class NonFiniteLossError(FloatingPointError):
    """The objective became NaN/inf; the message names the terms and modalities affected."""


class ViewsDataset(Dataset):
    """Paired views ``[N, *shape_m]`` (raw: uint8 stays uint8) served as whole batches.

    ``__getitems__`` lets the DataLoader fetch a batch with one indexing operation per
    modality instead of N Python calls. With ``mask`` ``[N, M]`` (bool, True = observed) a
    batch carries the batch's mask as an extra last element (see :func:`split_batch`).
    With ``rows`` ``[n]`` (row ids) the dataset is those rows only (nothing is copied).
    """

    def __init__(self, views: Sequence[torch.Tensor], mask: torch.Tensor | None = None,
                 rows: torch.Tensor | None = None) -> None:
        self.views = list(views) + ([mask] if mask is not None else [])
        self.rows = rows

    def __len__(self) -> int:
        return int(self.views[0].shape[0] if self.rows is None else self.rows.shape[0])

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        row = index if self.rows is None else int(self.rows[index])
        return [x[row] for x in self.views]

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        if self.rows is not None:
            idx = self.rows[idx]
        return [x[idx] for x in self.views]


def split_batch(batch: Sequence[torch.Tensor], n_modalities: int) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """(views, observed mask ``[B, M]`` or None) of a batch of :class:`ViewsDataset`."""
    return list(batch[:n_modalities]), (batch[n_modalities] if len(batch) > n_modalities else None)


def _identity_collate(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    return batch


def make_loader(
    views: Sequence[torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    mask: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> DataLoader:
    """A DataLoader of raw batches (list of M tensors, plus the ``[B, M]`` mask when ``mask``
    ``[N, M]`` is given) of all rows, or of ``rows`` ``[n]`` only; conversion happens on the device."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ViewsDataset(views, mask, rows),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=_identity_collate,
        generator=generator,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


#: Training rows over which :meth:`TrainingPlan.standardise_codes` measures the codes after the warm-up.
STANDARDISE_ROWS = 2048


def _standardised_directions(codes: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """``codes`` (``[..., B, dim]``) standardised per dimension over the batch (over ``rows``, a ``[B]`` bool mask,
    when given), then L2-normalised; the same shape."""
    fitted = codes if rows is None else codes[..., rows, :]
    if fitted.shape[-2] < 2:  # one row or none: no spread to standardise by
        return torch.nn.functional.normalize(codes, dim=-1)
    mean = fitted.mean(-2, keepdim=True)
    std = fitted.std(-2, keepdim=True).clamp_min(1e-6)
    return torch.nn.functional.normalize((codes - mean) / std, dim=-1)


class TrainingPlan(L.LightningModule):
    """Optimises a :class:`MultimodalVAE` objective; logs every named term."""

    def __init__(
        self,
        module: MultimodalVAE,
        schema: DataSchema,
        *,
        lr: float = 1e-3,
        amsgrad: bool = True,
        weight_decay: float = 0.0,
        weight_decay_from: str = "start",
        n_samples: int = 1,
        estimator: EstimatorName = "elbo",
        beta: float = 1.0,
        beta_warmup_epochs: int = 0,
        contrastive_warmup_epochs: int = 0,
        contrastive_warmup_lr: float | None = None,
        warmup_freeze_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.module = module
        self.schema = schema
        self.lr = lr
        self.amsgrad = amsgrad
        self.weight_decay = weight_decay
        self.weight_decay_from = weight_decay_from
        #: Set by :class:`~cmvae.callbacks.KMeansPriorInit` when the cluster components are placed.
        self.components_placed = False
        self.n_samples = n_samples
        self.estimator: EstimatorName = estimator
        self.beta = beta
        self.beta_warmup_epochs = beta_warmup_epochs
        self.contrastive_warmup_epochs = contrastive_warmup_epochs
        self.contrastive_warmup_lr = contrastive_warmup_lr
        self.warmup_freeze_epochs = warmup_freeze_epochs

    def in_contrastive_warmup(self) -> bool:
        """True during the first ``contrastive_warmup_epochs`` epochs, which train by :meth:`contrastive_loss`."""
        return self.current_epoch < self.contrastive_warmup_epochs

    def current_beta(self) -> float:
        """beta, warmed up linearly over ``beta_warmup_epochs`` epochs of the objective (after any contrastive
        warm-up)."""
        if self.beta_warmup_epochs <= 0:
            return self.beta
        epochs = self.current_epoch - self.contrastive_warmup_epochs + 1
        return self.beta * min(1.0, max(epochs, 1) / self.beta_warmup_epochs)

    def contrastive_loss(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """The warm-up's loss (a scalar): CMC's full-graph InfoNCE between the modalities' shared-code means
        (``z_loc`` of q(z | x_m), ``[M, B, shared_dim]``; temperature :data:`CONTRASTIVE_TEMPERATURE`, in-batch
        negatives), averaged over the ordered pairs of modalities. Each modality's codes are standardised over the
        batch before the L2 normalisation (a projection head of a batch norm without parameters): freshly
        initialised encoders give nearly the same code to every input, with a modality-specific offset, and on
        raw codes the loss sits at its collapsed value log B. With partially observed data a pair contrasts the
        rows where both modalities are observed (standardised over each modality's observed rows)."""
        raw, observed = split_batch(batch, self.schema.n_modalities)
        views = self.schema.to_model_input(raw, self.device)
        codes = torch.stack([self.module.encode_modality(m, x)[0] for m, x in enumerate(views)])
        if observed is None:
            return multiview_info_nce(_standardised_directions(codes), CONTRASTIVE_TEMPERATURE)
        both = observed.to(self.device, torch.bool)
        codes = torch.stack([_standardised_directions(codes[m], both[:, m]) for m in range(len(views))])
        losses = []
        for i, j in ((i, j) for i in range(len(views)) for j in range(len(views)) if i != j):
            rows = both[:, i] & both[:, j]
            if int(rows.sum()) >= 2:
                losses.append(info_nce(codes[i][rows], codes[j][rows], CONTRASTIVE_TEMPERATURE))
        if not losses:  # no row with two observed modalities in this batch: nothing to contrast
            return codes.sum() * 0.0
        return torch.stack(losses).mean()

    def _terms(self, batch: list[torch.Tensor], estimator: EstimatorName):
        raw, observed = split_batch(batch, self.schema.n_modalities)
        views = self.schema.to_model_input(raw, self.device)
        partial = {} if observed is None else {"observed": observed.to(self.device)}  # holes: see multimodal_objective
        return self.module.objective(
            views, n_samples=self.n_samples, estimator=estimator, beta=self.current_beta(), **partial
        )

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.in_contrastive_warmup():
            loss = self.contrastive_loss(batch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite contrastive warm-up loss at epoch {self.current_epoch}, batch "
                                         f"{batch_idx}. Likely causes: learning rate too high, un-normalised inputs.")
            self.log("train/contrastive", loss, prog_bar=True, batch_size=int(batch[0].shape[0]), on_step=True,
                     on_epoch=True, sync_dist=True)
            return loss
        terms = self._terms(batch, self.estimator)
        if not torch.isfinite(terms.loss):
            bad = terms.non_finite() or ["loss"]
            raise NonFiniteLossError(
                f"non-finite objective at epoch {self.current_epoch}, batch {batch_idx}: {', '.join(bad)}. "
                "Likely causes: learning rate too high, un-normalised inputs, likelihood scale too small."
            )
        batch_size = int(batch[0].shape[0])
        values = terms.as_dict()
        # the step value is this process's; epoch values are averaged over the processes (DDP)
        self.log("train/loss", terms.loss, prog_bar=True, batch_size=batch_size, on_step=True, on_epoch=True,
                 sync_dist=True)
        self.log_dict(
            {f"train/{k}": v for k, v in values.items() if k != "loss"},
            batch_size=batch_size,
            on_step=False,
            on_epoch=True,
            sync_dist=True,
        )
        return terms.loss

    def on_train_epoch_start(self) -> None:
        """At the switch from the contrastive warm-up to the objective, the optimiser starts afresh, at training's
        learning rate: Adam's moments of the warm-up's gradients (~500 times smaller than the objective's) would make
        the objective's first steps many times the learning rate; with them carried over, one probed seed had learned
        no digit 12 epochs later, restarted it had from the 4th (RESULTS round 15)."""
        if self.contrastive_warmup_epochs > 0 and self.current_epoch == self.contrastive_warmup_epochs:
            self.standardise_codes()
            for optimizer in self.trainer.optimizers:
                optimizer.state.clear()
                for group in optimizer.param_groups:
                    group["lr"] = self.lr

    @torch.no_grad()
    def standardise_codes(self, rows: int = STANDARDISE_ROWS) -> None:
        """At the switch to the objective, rescale each encoder so that its shared-code locations have mean 0 and
        standard deviation 1 per dimension over (up to) ``rows`` training rows, as the contrastive loss saw them
        (:func:`_standardised_directions`) and as the standard prior on z has them. The warm-up trains directions
        only, so their scale is arbitrary: on the other image set with the estimator's defaults it ended at a
        standard deviation of 0.03 under posterior scales of 0.69, a code the decoders cannot read, and the
        objective's first epoch erased it (RESULTS, round 19). The rows are a fixed random subset of the training
        set, read from the dataset itself (the epoch's loader is left alone): under DDP every rank measures the
        same rows and makes the same change."""
        module, n_modalities = self.module, self.schema.n_modalities
        dataset = self.trainer.train_dataloader.dataset
        pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:rows].sort().values
        was_training = module.training
        module.eval()
        codes: list[list[torch.Tensor]] = [[] for _ in range(n_modalities)]  # per modality: [B_m, shared_dim] chunks
        probes: list[torch.Tensor | None] = [None] * n_modalities
        for chunk in pick.split(512):
            raw, observed = split_batch(dataset.__getitems__(chunk.tolist()), n_modalities)
            views = self.schema.to_model_input(raw, self.device)
            for m, x in enumerate(views):
                if observed is not None:
                    x = x[observed[:, m].to(self.device, torch.bool)]
                if x.shape[0] > 0:
                    codes[m].append(module.encode_modality(m, x)[0])
                    probes[m] = x if probes[m] is None else probes[m]
        unchanged = []
        for m, probe in enumerate(probes):
            loc = torch.cat(codes[m]) if codes[m] else None
            if probe is None or loc is None or loc.shape[0] < 2 or not module.standardise_shared_codes(
                    m, probe, loc.mean(0), loc.std(0).clamp_min(1e-6)):
                unchanged.append(m)
        module.train(was_training)
        if unchanged:
            log.warning("the shared codes of modalities %s were not standardised after the contrastive warm-up: their "
                        "encoders do not end in a linear layer giving the code locations", unchanged)

    def on_train_batch_start(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        """During the contrastive warm-up the optimiser steps at ``contrastive_warmup_lr`` (when given), over any
        learning-rate schedule (Lightning calls this after the callbacks' hook). The warm-up's rate matters and has a
        cliff: on PolyMNIST after 4 warm-up epochs (AMSGrad, batch 128, 3 seeds) k-means on the codes scored NMI
        0.27-0.34 at 1e-3, 0.60-0.76 at 3e-3 and 0.01-0.03 (collapsed codes) at 6e-3 and 1e-2 (RESULTS round 16)."""
        if self.contrastive_warmup_lr is not None and self.in_contrastive_warmup():
            for optimizer in self.trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = self.contrastive_warmup_lr

    def codes_frozen(self) -> bool:
        """True in the ``warmup_freeze_epochs`` epochs right after the contrastive warm-up."""
        start = self.contrastive_warmup_epochs
        return start <= self.current_epoch < start + self.warmup_freeze_epochs

    def frozen_parameters(self) -> list[torch.nn.Parameter]:
        """The encoders' shared-code branches (with ``encoder_branches="shared"``, the whole encoders)."""
        return [p for encoder in self.module.encoders for p in getattr(encoder, "shared", encoder).parameters()]

    def on_after_backward(self) -> None:
        """While the codes are frozen the shared-code branches get no gradient, so the optimiser skips them: without
        it the objective's first epoch, with decoders that cannot use z yet, erased the warm-up's digit (NMI 0.83 ->
        0.02 on the other image set, RESULTS round 15)."""
        if self.codes_frozen():
            for parameter in self.frozen_parameters():
                parameter.grad = None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Logs the gradient's global L2 norm before any clipping: ``train/grad_norm`` (the epoch's mean) and
        ``train/grad_norm_max`` (its largest step), to see the spikes of a run."""
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.nn.utils.get_total_norm(grads).detach()
        self.log("train/grad_norm", norm, on_step=False, on_epoch=True, batch_size=1, sync_dist=True)  # plain mean
        self.log("train/grad_norm_max", norm, on_step=False, on_epoch=True, reduce_fx="max", batch_size=1,
                 sync_dist=True)

    @torch.no_grad()
    def bound(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """The objective's value (the bound training maximises, at the current beta; IWAE with ``n_samples``
        > 1) on a raw batch (M views ``[B, ...]``, plus the ``[B, M]`` mask of partial data), averaged over it."""
        iwae = self.n_samples > 1 and getattr(self.module, "importance_weighted", True)
        return self._terms(batch, "iwae" if iwae else "elbo").bound

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val/bound", self.bound(batch), prog_bar=True, batch_size=int(batch[0].shape[0]), sync_dist=True)

    def network_decay(self) -> float:
        """The weight decay the networks train with now: ``weight_decay``, or with ``weight_decay_from="placement"``
        0 until the cluster components are placed."""
        if self.weight_decay_from == "placement" and not self.components_placed:
            return 0.0
        return self.weight_decay

    def on_components_placed(self, trainer: L.Trainer) -> None:
        """Called when the cluster components are placed (also when a run resumes after the placement): from now
        on the networks' weight decay is ``weight_decay`` (with ``weight_decay_from="placement"`` it starts here)."""
        self.components_placed = True
        if self.weight_decay > 0:
            for optimiser in trainer.optimizers:
                optimiser.param_groups[0]["weight_decay"] = self.network_decay()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam; with ``weight_decay`` > 0, AdamW (decoupled decay) on the encoders' and decoders' weights only
        (the first parameter group): the cluster prior (means, weights, scales) and the auxiliary scales of the
        private latents keep no decay, so the decay shrinks what the networks can memorise, not the mixture. With
        ``weight_decay_from="placement"`` the networks' decay is 0 until the components are placed (AdamW with 0 decay
        steps exactly as Adam)."""
        if self.weight_decay <= 0:
            return torch.optim.Adam(self.module.parameters(), lr=self.lr, amsgrad=self.amsgrad)
        networks = [p for net in (*self.module.encoders, *getattr(self.module, "decoders", ())) for p in net.parameters()]
        chosen = {id(p) for p in networks}
        others = [p for p in self.module.parameters() if id(p) not in chosen]
        groups = [{"params": networks, "weight_decay": self.network_decay()}, {"params": others, "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=self.lr, amsgrad=self.amsgrad)


def sanity_check(
    plan: TrainingPlan, views: Sequence[torch.Tensor], batch_size: int, mask: torch.Tensor | None = None
) -> None:
    """Fail before epoch 1: push one small batch through the objective and a backward pass
    (``mask`` ``[N, M]``: the observed entries of partially observed ``views``)."""
    batch = [x[: min(batch_size, 8)] for x in [*views, *([mask] if mask is not None else [])]]
    plan.module.train()
    try:
        terms = plan._terms(batch, plan.estimator)
        terms.loss.backward()
    except NonFiniteLossError:
        raise
    except Exception as err:  # re-raised with the likely causes
        raise RuntimeError(
            f"the first batch failed before training started ({type(err).__name__}: {err}). Likely causes: a "
            "custom encoder/decoder whose output shape does not follow the protocol in cmvae.nets, data of an "
            "unexpected shape, or a likelihood that does not fit the data type."
        ) from err
    finally:
        plan.module.zero_grad(set_to_none=True)
    bad = terms.non_finite()
    if bad:
        raise NonFiniteLossError(
            f"non-finite objective on the first batch, before training: {', '.join(bad)}. Likely causes: "
            "likelihood_scale too small or too large, un-normalised inputs, learning rate too high."
        )


class EpochHistory(Callback):
    """Keeps the epoch-level metrics in memory (``estimator.history_``)."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("_epoch") or k.startswith("val/")}
        self.history.setdefault("epoch", []).append(float(trainer.current_epoch))
        for k, v in metrics.items():
            self.history.setdefault(k, []).append(v)


def is_global_zero() -> bool:
    """False in the extra processes of a multi-process (DDP) run, launched by Lightning, ``torchrun`` or
    SLURM (rank from ``RANK``/``LOCAL_RANK``/``SLURM_PROCID``): only rank 0 writes files."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def make_trainer(
    *,
    epochs: int,
    out_dir: str | Path | None,
    accelerator: str = "auto",
    devices: Any = "auto",
    strategy: str = "auto",
    num_nodes: int = 1,
    precision: Any = "32-true",
    progress: bool = True,
    max_time_minutes: float | None = None,
    log_every_n_steps: int = 20,
    extra_callbacks: Sequence[Callback] = (),
    checkpoint_every_n_epochs: int = 1,
    gradient_clip_norm: float | None = None,
) -> L.Trainer:
    """A Lightning Trainer with atomic checkpoints (``last.ckpt``) and CSV (+TensorBoard) logs in ``out_dir``; with
    ``gradient_clip_norm`` a step's gradient is scaled down to that global L2 norm when it is larger."""
    callbacks: list[Callback] = list(extra_callbacks)
    loggers: list[Logger] | bool = False
    if out_dir is not None:
        out = Path(out_dir)
        callbacks.append(
            ModelCheckpoint(  # checkpoints/last.ckpt after every epoch, replaced atomically
                dirpath=out / "checkpoints",
                filename="last",
                save_top_k=1,
                every_n_epochs=checkpoint_every_n_epochs,
                enable_version_counter=False,
            )
        )
        if is_global_zero():  # the other processes of a DDP run write nothing
            _keep_previous_metrics(out / "logs")
        loggers = [CSVLogger(out, name="logs", version="")]
        try:
            from lightning.pytorch.loggers import TensorBoardLogger

            import tensorboard  # noqa: F401

            loggers.append(TensorBoardLogger(out, name="logs", version="", default_hp_metric=False))
        except ImportError:
            log.debug("tensorboard not installed: logging to CSV only")
    drop_lightning_tips()
    max_time = None
    if max_time_minutes is not None:
        max_time = {"minutes": float(max_time_minutes)}
    return L.Trainer(
        max_epochs=epochs,
        max_time=max_time,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        precision=precision,
        logger=loggers,
        callbacks=callbacks,
        enable_checkpointing=out_dir is not None,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=log_every_n_steps,
        default_root_dir=str(out_dir) if out_dir is not None else None,
        num_sanity_val_steps=0,
        gradient_clip_val=gradient_clip_norm,
        gradient_clip_algorithm="norm",
    )


def _keep_previous_metrics(log_dir: Path) -> None:
    """Lightning's CSV logger rewrites ``metrics.csv``; keep an earlier run's file (e.g. before
    a resume) as ``metrics.<n>.csv`` next to it."""
    current = log_dir / "metrics.csv"
    if current.exists():
        n = 1
        while (log_dir / f"metrics.{n}.csv").exists():
            n += 1
        current.rename(log_dir / f"metrics.{n}.csv")


class _DropAdvertisements(logging.Filter):
    """Drops Lightning's product tips (e.g. the "litlogger" advertisement at every fit)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("\N{ELECTRIC LIGHT BULB} Tip")


_TIP_FILTER = _DropAdvertisements()


def drop_lightning_tips() -> None:
    """Filter Lightning's product tips out of its loggers (idempotent; no handler is added)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if _TIP_FILTER not in logger.filters:
            logger.addFilter(_TIP_FILTER)


def quiet_lightning_warnings() -> None:
    """Silence Lightning's advice that does not apply to in-memory tensor datasets, and its product tips."""
    drop_lightning_tips()
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*You defined a `validation_step` but have no `val_dataloader`.*")
