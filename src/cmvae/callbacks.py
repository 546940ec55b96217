"""Lightning callbacks that the estimators add to ``fit``: the k-means initialisation of the
cluster prior, the per-epoch clustering scores on labelled validation data, the learning-rate
schedule and the compilation of the networks for training.

They receive what they act on (the torch module, its data schema, the views, the seed, the
assignment rule), not the estimator that builds them: :meth:`~cmvae.estimator.MultimodalEstimator.fit`
creates the module and schema before the callbacks (a resumed fit too), and Lightning loads a
checkpoint's weights into that same module."""

from __future__ import annotations

import copy
import logging
import math

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from .missing import masked_mean
from .models.base import MultimodalVAE
from .schema import DataSchema
from .selection import AssignmentRule, assign_clusters

log = logging.getLogger(__name__)


#: The k-means placement clusters the codes of at most this many training samples (a seeded random subset
#: above it), so its memory does not grow with N.
KMEANS_MAX_POINTS = 20000
#: With held-out rows (``cluster_init_when="plateau"``) the placement clusters their codes when they number at least
#: this many per cluster: once the networks memorise the training rows, those rows' codes cluster worse than new data's.
KMEANS_HELD_OUT_PER_CLUSTER = 20
#: Rows encoded (and read from the views) at a time by the placement and the readiness check.
ENCODE_ROWS = 1024


@torch.no_grad()
def _mixture_means(module: MultimodalVAE, schema: DataSchema, views: list[torch.Tensor], device: torch.device,
                   max_points: int | None = None, batch_size: int | None = None, mask: torch.Tensor | None = None,
                   seed: int = 0, rows: torch.Tensor | None = None) -> torch.Tensor:
    """Means of q(z|X) (average of the unimodal means) for at most ``max_points`` (:data:`KMEANS_MAX_POINTS`)
    samples, or for the sorted ``rows`` ``[n]`` when given: ``[n, shared_dim]``; with ``mask`` ``[N, M]``
    (True = observed) the average of each sample's observed modalities' means. Above ``max_points``
    samples a seeded random subset (in data order) is encoded, so data sorted by class still give every
    class its share. The views are read ``batch_size`` (:data:`ENCODE_ROWS`) rows at a time: views on
    disk (memory maps, :class:`~cmvae.lazyrows.LazyRows`) are never read whole.

    The mixture mean rather than the stacked unimodal means: early in training the unimodal
    codes still differ by modality, and k-means would then find the modalities, not the clusters.
    """
    max_points = KMEANS_MAX_POINTS if max_points is None else max_points
    batch_size = ENCODE_ROWS if batch_size is None else batch_size
    total = views[0].shape[0]
    if rows is None and total > max_points:
        rows = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:max_points].sort().values
    n = total if rows is None else rows.shape[0]
    was_training = module.training
    module.eval()
    codes = []
    for start in range(0, n, batch_size):
        take = slice(start, min(start + batch_size, n)) if rows is None else rows[start : start + batch_size]
        batch = schema.to_model_input([x[take] for x in views], device)
        z_loc = module.encode(batch).z_loc.cpu()
        codes.append(z_loc.mean(0) if mask is None else masked_mean(z_loc, mask[take]))
    module.train(was_training)
    return torch.cat(codes)


def _forget_optimiser_state(trainer: L.Trainer, parameters) -> None:
    """Drop the optimisers' running moments of ``parameters`` (they restart from step 0): after the
    components jump onto k-means centroids, moments gathered at the old positions would steer them."""
    ids = {id(p) for p in parameters}
    for optimiser in trainer.optimizers:
        for p in [p for p in optimiser.state if id(p) in ids]:
            del optimiser.state[p]


def _copy_from_rank_zero(trainer: L.Trainer, prior: torch.nn.Module) -> None:
    """Every rank takes rank 0's ``prior`` (parameters and buffers, copied in place: the optimiser
    keeps its references)."""
    state = {k: v.detach().cpu() for k, v in prior.state_dict().items()} if trainer.is_global_zero else None
    state = trainer.strategy.broadcast(state, src=0)
    with torch.no_grad():
        for name, value in prior.state_dict().items():
            value.copy_(state[name].to(value.device))


def _placed(pl_module: L.LightningModule, trainer: L.Trainer) -> None:
    """Tell the training plan that the components are placed (it may start its networks' weight decay)."""
    hook = getattr(pl_module, "on_components_placed", None)
    if hook is not None:
        hook(trainer)


def training_progress(trainer: L.Trainer, epochs_done: float | None = None) -> float:
    """Fraction of training done, in [0, 1]: of the epochs (``epochs_done``, by default the optimiser
    steps taken over the steps of all epochs), or of the time limit when that is further on."""
    max_epochs = trainer.max_epochs or 0
    if epochs_done is None:
        per_epoch = trainer.num_training_batches
        per_epoch = per_epoch if isinstance(per_epoch, int) and per_epoch > 0 else 0
        epochs_done = trainer.global_step / per_epoch if per_epoch else float(trainer.current_epoch)
    by_epochs = epochs_done / max_epochs if max_epochs > 0 else 0.0
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)  # type: ignore[attr-defined]
    if timer is None or timer._duration is None:
        return min(1.0, by_epochs)
    return min(1.0, max(by_epochs, timer.time_elapsed("train") / timer._duration))


class LearningRateDecay(L.Callback):
    """Keeps the learning rate at ``lr`` for the first ``1 - fraction`` of training, then lowers it
    along a half cosine to ``lr * final_ratio`` at the end (a "stable, then decay" schedule).

    Training's end is the end of its epochs or of its time limit, whichever comes first
    (:func:`training_progress`), so a run cut by ``max_time_minutes`` still ends its decay when the
    time runs out. The rate is set before every optimiser step; nothing is stored, so a resumed run
    continues the same schedule. ``fraction`` 0 keeps the rate constant.
    """

    def __init__(self, lr: float, fraction: float, final_ratio: float = 0.0) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        self.lr = lr
        self.fraction = fraction
        self.final_ratio = final_ratio

    def rate(self, progress: float) -> float:
        """The learning rate at ``progress`` (fraction of training done)."""
        start = 1.0 - self.fraction
        if self.fraction <= 0.0 or progress <= start:
            return self.lr
        phase = min(1.0, (progress - start) / self.fraction)
        floor = self.lr * self.final_ratio
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * phase))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        lr = self.rate(training_progress(trainer))
        for optimiser in trainer.optimizers:
            for group in optimiser.param_groups:
                group["lr"] = lr
        pl_module.log("train/lr", lr, on_step=False, on_epoch=True, reduce_fx="min", batch_size=1)


def compiler_works(device: torch.device) -> str | None:
    """None when ``torch.compile`` can build and run a kernel on ``device``, else why not (one line)."""
    try:
        out = torch.compile(lambda x: x * 2.0 + 1.0, dynamic=False)(torch.ones(4, device=device))
        return None if float(out[0]) == 3.0 else f"a compiled test kernel returned {float(out[0])}, not 3"
    except Exception as err:  # noqa: BLE001 -- a missing compiler fails in many ways (no C++ toolchain, Triton)
        return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


class CompileNetworks(L.Callback):
    """Trains with every encoder and decoder compiled by ``torch.compile`` (the same functions, fused kernels).

    The networks are compiled in place (:meth:`torch.nn.Module.compile`), so parameter names, checkpoints and the
    saved model do not change; when ``fit`` ends they are eager again (inference on new batch sizes does not
    recompile). Where the compiler cannot run on this machine (no C++ compiler, no Triton), training goes on
    without it after one warning. The first steps pay the compilation (36 s for the quickstart's networks on
    2 CPU cores).
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        problem = compiler_works(pl_module.device)
        if problem is not None:
            log.warning("compile_networks: torch.compile is unavailable here (%s); training without it", problem)
            return
        for net in self._networks(pl_module):
            net.compile()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for net in self._networks(pl_module):
            net._compiled_call_impl = None  # nn.Module.compile's own slot: back to the eager forward

    @staticmethod
    def _networks(pl_module: L.LightningModule) -> list[torch.nn.Module]:
        module = pl_module.module  # type: ignore[attr-defined]
        return [*module.encoders, *module.decoders]


class HeldOutBound:
    """The training objective (the bound, as :meth:`~cmvae.training.TrainingPlan.bound`) on ``rows`` ``[n]`` of
    ``views`` that training never steps on, with the best value seen and a CPU copy of the module's weights there.

    The rows are encoded :data:`ENCODE_ROWS` at a time with the same random draws at every evaluation (seeded by
    ``seed``; the training's random state is left as it was), so two epochs' values differ by the weights only.
    It is what a validation split tells: where the networks stop learning what generalises and start memorising
    the training rows, the held-out bound stops rising (``mask`` ``[N, M]``: partially observed ``views``).
    """

    def __init__(self, views: list[torch.Tensor], rows: torch.Tensor, seed: int,
                 mask: torch.Tensor | None = None) -> None:
        self.views = views
        self.rows = rows
        self.mask = mask
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget the best value (the objective changes when the components are placed)."""
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def evaluate(self, plan: L.LightningModule) -> float:
        """The mean bound over the held-out rows (``plan``: the :class:`~cmvae.training.TrainingPlan`)."""
        module = plan.module  # type: ignore[attr-defined]
        was_training = module.training
        module.eval()
        device = plan.device
        total, count = 0.0, 0
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.seed)
            for start in range(0, self.rows.shape[0], ENCODE_ROWS):
                take = self.rows[start : start + ENCODE_ROWS]
                batch = [x[take] for x in self.views] + ([self.mask[take]] if self.mask is not None else [])
                total += float(plan.bound(batch)) * take.shape[0]  # type: ignore[attr-defined]
                count += take.shape[0]
        module.train(was_training)
        return total / count

    def update(self, plan: L.LightningModule, epoch: int) -> float:
        """Evaluate after ``epoch``; keep the weights when the bound is the best since the last :meth:`reset`."""
        value = self.evaluate(plan)
        if self.best is None or value > self.best:
            self.best, self.best_epoch = value, epoch
            module = plan.module  # type: ignore[attr-defined]
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        return value

    def restore(self, module: torch.nn.Module) -> None:
        """Put the best weights back into ``module`` (in place: the optimiser keeps its references)."""
        if self.best_state is not None:
            with torch.no_grad():
                for name, value in module.state_dict().items():
                    value.copy_(self.best_state[name].to(value.device))

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.best_state = state.get("best"), state.get("best_epoch"), state.get("best_state")


class HeldOutEarlyStopping(L.Callback):
    """Early stopping on a held-out bound: after every epoch :meth:`HeldOutBound.update` on ``held_out``; training
    stops once the bound has not risen for ``patience`` epochs and, however it ends (its epochs, its time limit or
    this stop), ends with the weights of its best epoch. For one-process plans with ``module`` and ``bound(batch)``
    (higher is better), e.g. :class:`cmvae.CMC`'s; ``values`` holds the bound after each epoch."""

    def __init__(self, held_out: HeldOutBound, patience: int = 3) -> None:
        self.held_out = held_out
        self.patience = patience
        self.values: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.values.append(self.held_out.update(pl_module, trainer.current_epoch))
        best_epoch = self.held_out.best_epoch
        if best_epoch is not None and trainer.current_epoch - best_epoch >= self.patience:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.held_out.restore(pl_module.module)  # type: ignore[arg-type]


class KMeansPriorInit(L.Callback):
    """Place the cluster components on k-means centroids of the posterior means (VaDE's
    initialisation, without a separate pre-training run) once the shared latent holds clusters.

    ``when="epoch"``: after ``epoch`` epochs or, when training has a time limit, after the same
    fraction (``epoch / max_epochs``) of that time, whichever comes first.

    ``when="ready"`` (an option of :class:`~cmvae.CMVAE`, not its default): the same time is the deadline, and from
    half of it on the placement comes as soon as the latent is *ready*: k-means on the mixture means
    of a fixed subsample of ``check_points`` training samples gives the same partition at two
    consecutive epochs (adjusted Rand index >= ``STABLE_ARI``). After the placement and until 90 % of
    training, the same check runs every epoch; when the latent has moved to a stable partition that
    the model's own clusters no longer follow (their ARI with it < ``FOLLOW_ARI``) the components are
    placed again, at most ``MAX_REPLACEMENTS`` times. No labels are used. The idea: the latent learns
    the shared content at a speed that varies between seeds and data sets, so a clock may place the
    components on a latent that does not hold the clusters yet.

    ``when="plateau"``: the same time is the deadline, and from half of it on (from the end of the contrastive
    warm-up on, when the plan has one: :meth:`_stall_floor`) the placement comes as soon
    as the bound on ``held_out`` (:class:`HeldOutBound`: rows that training never steps on) has not risen for
    ``PATIENCE`` epochs; the weights of its best epoch are put back before k-means. After the placement the
    best held-out bound is tracked again, and training ends with the weights of its best epoch (early stopping,
    with the components placed: with ``early_stopping`` training stops once that bound has not risen for
    ``PATIENCE`` epochs, else it trains on to the end of its epochs or time); with enough held-out rows the
    components are then placed again on the held-out rows' codes of those weights, by k-means started from the
    trained means (:meth:`_final_placement`). The idea: with few training tuples the networks start to memorise
    them once the shared content is learned; the training codes then spread out by tuple and cluster worse than
    new data's codes, and the held-out bound, with no labels, shows when that starts. For the same reason k-means
    then runs on the held-out rows' codes when there are at least :data:`KMEANS_HELD_OUT_PER_CLUSTER` per cluster
    (the training rows' codes can be memorised before the held-out bound turns down). Measured on the quickstart
    (3 seeds): the bound's best after the placement came 1-2 epochs after it and the model's NMI fell every epoch
    after that; stopping early ended the runs in 11-12 minutes instead of 20 at the same scores (RESULTS, round 17).

    If training stops before the placement, the components are placed at the end so the model
    still clusters. ``module``: the model being trained (its ``prior`` is a cluster prior), ``schema``
    its data schema; ``mask`` ``[N, M]`` (True = observed): partially observed ``views``.

    Measured (benchmarks/RESULTS.md): on small separable tabular data the stability check fired at
    the first possible epoch, on a latent whose partition was stable but not yet the clusters', and
    scored lower than the clock (3 seeds: 0.92 / 0.64 / 0.72 vs 0.99 / 0.86 / 0.83 NMI), so
    ``"epoch"`` stays the default. ``"plateau"`` with patience 1 placed on the bound's first wobble, on a latent still
    improving (0.65 and 0.74 vs 0.72 and 0.79 NMI for the clock at 20 epochs); with patience 3 at 28 epochs,
    where the networks memorise the training tuples, it scored 0.833 vs 0.707 (one seed), and on data that is
    not memorised it loses the held-out share of the steps (0.51 vs 0.58 over 3 seeds). Placing on the held-out
    rows' codes instead of the training rows' lifted a 28-epoch run whose training codes were already memorised at
    the placement from 0.669 to 0.735 NMI (one seed) and changed nothing at 20 epochs, where they had only begun to
    spread (0.733 vs 0.745 one epoch after the placement). Placing again at the end, on the held-out codes of the
    final weights, lifted the quickstart config at 28 epochs from 0.862 to 0.892 (seed 0) and from 0.726 to 0.778
    (seed 1) NMI (benchmarks/RESULTS.md, round 11).
    """

    STABLE_ARI = 0.8
    FOLLOW_ARI = 0.5
    MAX_REPLACEMENTS = 2
    LATEST_REPLACEMENT = 0.9
    PATIENCE = 3

    def __init__(self, module: MultimodalVAE, schema: DataSchema, views: list[torch.Tensor], epoch: int, seed: int,
                 mask: torch.Tensor | None = None, when: str = "epoch", check_points: int = 2000,
                 held_out: HeldOutBound | None = None, early_stopping: bool = True) -> None:
        if when not in ("epoch", "ready", "plateau"):
            raise ValueError(f"when must be 'epoch', 'ready' or 'plateau', got {when!r}")
        if (when == "plateau") != (held_out is not None):
            raise ValueError("when='plateau' needs held_out rows, and only it uses them")
        self.held_out = held_out
        self.early_stopping = early_stopping
        self.module = module
        self.schema = schema
        self.views = views
        self.mask = mask
        self.epoch = epoch
        self.seed = seed
        self.when = when
        n = views[0].shape[0]
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(n, check_points)]
        self.check_ids = pick.sort().values
        self.done = False
        self.placements: list[str] = []
        self._previous: np.ndarray | None = None

    # -- state kept in checkpoints (a resumed run knows whether the components were placed) --------
    def state_dict(self) -> dict:
        state = {"done": self.done, "placements": list(self.placements)}
        if self.held_out is not None:
            state["held_out"] = self.held_out.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        self.done = bool(state_dict.get("done", self.done))
        self.placements = list(state_dict.get("placements", self.placements))
        if self.held_out is not None and "held_out" in state_dict:
            self.held_out.load_state_dict(state_dict["held_out"])

    # -- the placement ------------------------------------------------------------------------------
    def _init(self, trainer: L.Trainer, pl_module: L.LightningModule, reason: str) -> None:
        """Place the components; under DDP rank 0 runs k-means and every rank takes its prior."""
        module = self.module
        prior = module.prior  # type: ignore[union-attr]
        n_codes = 0
        if self.held_out is not None:
            reason = self._back_to_best(trainer, reason)
            self.held_out.reset()
        if trainer.is_global_zero:
            # with held-out rows, their codes: the training rows' codes spread out once the nets memorise them
            rows = self.held_out.rows if self.held_out is not None and self.held_out.rows.shape[0] >= (
                KMEANS_HELD_OUT_PER_CLUSTER * len(prior.active_ids())) else None
            codes = _mixture_means(module, self.schema, self.views, pl_module.device, mask=self.mask, seed=self.seed,
                                   rows=rows)
            prior.init_from_codes(codes, seed=self.seed)
            n_codes = codes.shape[0]
        if trainer.world_size > 1:
            _copy_from_rank_zero(trainer, prior)
        _forget_optimiser_state(trainer, prior.parameters())
        self.done = True
        _placed(pl_module, trainer)
        self.placements.append(reason)
        log.info("cluster prior placed by k-means on %d latent codes (%s)", n_codes, reason)

    def _back_to_best(self, trainer: L.Trainer, reason: str, latest: int | None = None) -> str:
        """Put back the weights of the best held-out epoch when epochs after it trained on (``reason`` says so;
        ``latest``: index of the last epoch trained, by default the current one); the optimiser's moments
        restart (they were gathered at the weights left behind)."""
        held_out = self.held_out
        assert held_out is not None
        best = (held_out.best_epoch, held_out.best) if trainer.is_global_zero else None  # rank 0 evaluates
        if trainer.world_size > 1:
            best = trainer.strategy.broadcast(best, src=0)
        assert best is not None
        if best[0] is None or best[0] >= (trainer.current_epoch if latest is None else latest):
            return reason
        if trainer.is_global_zero:
            held_out.restore(self.module)
        if trainer.world_size > 1:
            _copy_from_rank_zero(trainer, self.module)
        _forget_optimiser_state(trainer, self.module.parameters())
        return f"{reason}, with the weights of epoch {best[0] + 1} (best held-out bound {best[1]:.1f})"

    def _progress(self, trainer: L.Trainer) -> float:
        return training_progress(trainer, epochs_done=trainer.current_epoch + 1)

    def _check(self, pl_module: L.LightningModule) -> tuple[bool, float | None]:
        """(the latent's k-means partition is stable since the last check, ARI of the model's own
        clusters with that partition) on the check subsample; labels of this check are kept."""
        from sklearn.cluster import KMeans
        from sklearn.metrics import adjusted_rand_score

        module = self.module
        codes = _mixture_means(module, self.schema, self.views, pl_module.device, mask=self.mask,
                               rows=self.check_ids).double()
        prior = module.prior  # type: ignore[union-attr]
        k = len(prior.active_ids())
        labels = KMeans(n_clusters=k, n_init=2, random_state=self.seed).fit(codes.numpy()).labels_
        stable = self._previous is not None and adjusted_rand_score(self._previous, labels) >= self.STABLE_ARI
        self._previous = labels
        if not self.done:
            return stable, None
        with torch.no_grad():
            own = prior.log_posterior(codes.to(prior.means)).argmax(-1).cpu().numpy()
        return stable, float(adjusted_rand_score(labels, own))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epoch == 0 and trainer.current_epoch == 0 and not self.done:
            self._init(trainer, pl_module, "before training")
        elif trainer.current_epoch >= self.epoch:
            self.done = True  # resumed after the deadline: keep the trained components
        if self.done:  # resumed after the placement
            _placed(pl_module, trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "in_contrastive_warmup", lambda: False)():
            return  # the objective has not been trained yet: no held-out bound to track, nothing to place
        if self.held_out is not None and trainer.is_global_zero:
            value = self.held_out.update(pl_module, trainer.current_epoch)
            pl_module.log("held_out/bound", value, rank_zero_only=True)
        # Under DDP rank 0 decides (its clock, its k-means) and every rank follows: the ranks' models stay equal.
        decision = (self._placement_due(trainer, pl_module), self._stalled_since_placement(trainer)) \
            if trainer.is_global_zero else None
        if trainer.world_size > 1:
            decision = trainer.strategy.broadcast(decision, src=0)
        assert decision is not None
        reason, stop = decision
        if reason is not None:
            self._init(trainer, pl_module, reason)
        elif stop:
            trainer.should_stop = True
            log.info("training stops after %d epochs: the held-out bound has not risen for %d epochs since the "
                     "placement (early_stopping)", trainer.current_epoch + 1, self.PATIENCE)

    def _bound_stalled(self, trainer: L.Trainer) -> bool:
        """The held-out bound has not risen for :attr:`PATIENCE` epochs (since its last :meth:`HeldOutBound.reset`)."""
        held_out = self.held_out
        return held_out is not None and held_out.best_epoch is not None and (
            trainer.current_epoch - held_out.best_epoch >= self.PATIENCE)

    def _stalled_since_placement(self, trainer: L.Trainer) -> bool:
        """With ``early_stopping``: the components are placed and the held-out bound has not risen for
        :attr:`PATIENCE` epochs since (training on would only train weights that are not kept)."""
        return self.early_stopping and self.done and self._bound_stalled(trainer)

    @staticmethod
    def _stall_floor(pl_module: L.LightningModule, deadline: float) -> float:
        """Share of training from which a stalled held-out bound places the components (``when="plateau"``).

        Without a contrastive warm-up, half the deadline: the bound can be flat before the shared content's onset
        (the cross-modal terms learn nothing until the codes hold it), and a placement then would cluster a latent
        without it. After a warm-up the objective starts from codes that already hold it (the bound is tracked
        from its first epoch on), so a stall places at once: with the floor the 40-cluster runs trained about 9
        epochs past the bound's best and threw them away (benchmarks/RESULTS.md, rounds 19-20)."""
        return 0.0 if getattr(pl_module, "contrastive_warmup_epochs", 0) > 0 else deadline / 2

    def _placement_due(self, trainer: L.Trainer, pl_module: L.LightningModule) -> str | None:
        """Why the components are placed (again) at the end of this epoch, or None."""
        progress = self._progress(trainer)
        max_epochs = trainer.max_epochs or 0
        deadline = self.epoch / max_epochs if max_epochs > 0 else 1.0
        due = trainer.current_epoch + 1 >= self.epoch or progress >= deadline
        where = f"after {trainer.current_epoch + 1} epochs ({progress:.0%} of training)"
        if self.when == "epoch":
            return where if not self.done and due else None
        if self.when == "plateau":
            held_out = self.held_out
            assert held_out is not None and held_out.best_epoch is not None
            if self.done:
                return None
            if due:
                return f"{where}: the deadline"
            if progress >= self._stall_floor(pl_module, deadline) and self._bound_stalled(trainer):
                return f"{where}: the held-out bound has not risen since epoch {held_out.best_epoch + 1}"
            return None
        if not self.done and progress < deadline / 2:
            return None
        replacements = len(self.placements) - 1
        if self.done and (replacements >= self.MAX_REPLACEMENTS or progress >= self.LATEST_REPLACEMENT):
            return None
        stable, follows = self._check(pl_module)
        if not self.done and (stable or due):
            return f"{where}: " + ("the latent's k-means partition is stable" if stable else "the deadline")
        if self.done and stable and follows is not None and follows < self.FOLLOW_ARI:
            return f"{where}: again, the model's clusters no longer follow the latent's (ARI {follows:.2f})"
        return None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.done:
            log.warning("training stopped before the cluster placement: placing the components at the end")
            self._init(trainer, pl_module, "at the end of training")
        elif self.held_out is not None:
            # at the end of training current_epoch counts the epochs done
            restored = self._back_to_best(trainer, "training ends", latest=trainer.current_epoch - 1)
            if restored != "training ends":
                # the progress bar's last val/* scores are of the last epoch trained, not of the model kept
                log.info("%s (since the placement); the progress bar's last scores are of epoch %d, not of "
                         "this model", restored, trainer.current_epoch)
            self._final_placement(trainer, pl_module)

    def _final_placement(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """With held-out rows: the trained components are moved, by k-means started from their means, onto the
        held-out rows' codes of the weights training ends with (when there are enough of them per cluster).

        After the placement the objective's prior term fits the components to the *training* rows' unimodal
        posteriors; once the networks memorise those rows, and wherever the unimodal codes differ by modality, the
        components drift off the clusters of new data's codes. Started from the trained means, each component keeps
        its identity (and its samples) and moves to the centroid of the new data's codes nearest to it."""
        held_out = self.held_out
        assert held_out is not None
        prior = self.module.prior  # type: ignore[union-attr]
        if held_out.rows.shape[0] < KMEANS_HELD_OUT_PER_CLUSTER * len(prior.active_ids()):
            return
        if trainer.is_global_zero:
            codes = _mixture_means(self.module, self.schema, self.views, pl_module.device, mask=self.mask,
                                   seed=self.seed, rows=held_out.rows)
            prior.init_from_codes(codes, seed=self.seed, from_means=True)
        if trainer.world_size > 1:
            _copy_from_rank_zero(trainer, prior)
        self.placements.append("training ends: placed again on the held-out rows' codes")
        log.info("cluster prior placed again by k-means on the %d held-out rows' codes", held_out.rows.shape[0])


class ClusteringMonitor(L.Callback):
    """Logs NMI/ARI/ACC of the clusters of ``module`` (by the estimator's ``assignment`` rule, from each
    modality's q(c|x_m) averaged over ``posterior_samples`` draws, as ``predict``) on labelled
    validation views at the end of every epoch (only the observed modalities count where ``mask`` ``[N, M]`` marks
    holes); a module without clusters logs nothing. With ``diagnostics`` (fully observed views) it also logs
    :func:`~cmvae.diagnostics.latent_diagnostics` (seeded by ``seed``): k-means on the latent, modality offsets,
    clusters used, entropy of pi, ... as ``val/<name>``."""

    def __init__(self, module: MultimodalVAE, schema: DataSchema, views: list[torch.Tensor], labels: np.ndarray,
                 mask: torch.Tensor | None = None, diagnostics: bool = True, *,
                 assignment: AssignmentRule = "vote", seed: int | None = None, posterior_samples: int = 0) -> None:
        self.module = module
        self.posterior_samples = posterior_samples
        self.schema = schema
        self.assignment = assignment
        self.seed = seed
        self.views = views
        self.labels = labels
        self.mask = mask
        self.diagnostics = diagnostics and mask is None

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not hasattr(self.module, "cluster_log_posteriors"):
            return
        from .metrics import clustering_scores

        module, schema = self.module, self.schema
        device = pl_module.device
        log_posts, codes = [], []
        prior_on_cpu = copy.deepcopy(module.prior).cpu()  # type: ignore[arg-type]  # draws on the CPU's seeded generator
        for start in range(0, self.views[0].shape[0], 1024):
            batch = schema.to_model_input([x[start : start + 1024] for x in self.views], device)
            post = module.encode(batch)
            z_loc, z_scale = post.z_loc.cpu(), post.z_scale.cpu()
            codes.append(z_loc)
            log_posts.append(prior_on_cpu.expected_log_posterior(z_loc, z_scale, self.posterior_samples, self.seed or 0))
        log_post = torch.cat(log_posts, dim=1)
        prior = module.prior  # type: ignore[union-attr]
        rule = self.assignment
        labels = assign_clusters(log_post, prior.log_weights().detach().cpu(), self.mask, rule).numpy()
        scores = {k: float(v) for k, v in clustering_scores(self.labels, labels).items() if k in ("nmi", "ari", "acc")}
        if self.diagnostics:
            from .diagnostics import latent_diagnostics

            extra = latent_diagnostics(torch.cat(codes, dim=1), log_post, prior.log_weights().detach().cpu(),
                                       prior.means.detach().cpu(), self.labels, seed=self.seed, rule=rule)
            scores.update({k: v for k, v in extra.items() if k not in scores})
        headline = ("nmi", "ari", "acc")
        pl_module.log_dict({f"val/{k}": scores[k] for k in headline}, prog_bar=True)
        pl_module.log_dict({f"val/{k}": v for k, v in scores.items() if k not in headline})
