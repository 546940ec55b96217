"""``contrastive_warmup_epochs``: the first epochs train the shared-code encoders by CMC's InfoNCE, then the
objective (an initialisation of the encoders; the model and its objective unchanged)."""

from __future__ import annotations

import csv
import logging
from unittest.mock import PropertyMock, patch

import lightning as L
import numpy as np
import pytest
import torch

from cmvae import CMVAE
from cmvae.clustering_baselines import VaDE
from cmvae.config import ModelConfig
from cmvae.estimator.params import ParameterError, resolve_warmup
from cmvae.training import TrainingPlan

TINY = dict(n_clusters=2, shared_dim=4, private_dim=2, batch_size=32, progress=False, accelerator="cpu", seed=0)


def two_views(n: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Two views sharing a binary class; each view adds a large constant offset of its own."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return [(offset + 3.0 * y[:, None] + rng.normal(size=(n, d))).astype(np.float32)
            for offset, d in ((5.0, 5), (-4.0, 3))]


def snapshot(nets) -> list[torch.Tensor]:
    return [p.detach().clone() for net in nets for p in net.parameters()]


def changed(before: list[torch.Tensor], nets) -> bool:
    return any(not torch.equal(a, p) for a, p in zip(before, (p for net in nets for p in net.parameters())))


def metric_rows(path, key: str) -> list[float]:
    with (path / "logs" / "metrics.csv").open() as f:
        return [float(r[key]) for r in csv.DictReader(f) if r.get(key)]


def test_warmup_trains_only_the_encoders_then_the_objective_takes_over(tmp_path, caplog):
    views = two_views()
    with caplog.at_level(logging.WARNING, logger="cmvae"):
        model = CMVAE(epochs=2, contrastive_warmup_epochs=2, **TINY).fit(views)  # all epochs are warm-up
    assert "training ended within the contrastive warm-up" in caplog.text  # a model that never met the objective
    # the networks a fit with this seed starts from (built under the same seed as fit builds them)
    torch.manual_seed(0)
    start = CMVAE(**TINY)
    start.schema_ = model.schema_
    start.module_ = start._build_networks_within_memory(model.schema_)
    assert not changed(snapshot(start.module_.decoders), model.module_.decoders)
    assert changed(snapshot(start.module_.encoders), model.module_.encoders)
    # after the warm-up the objective trains the decoders too
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cmvae"):
        after = CMVAE(epochs=3, contrastive_warmup_epochs=2, **TINY).fit(views, out_dir=tmp_path / "run")
    assert "contrastive warm-up" not in caplog.text
    assert changed(snapshot(start.module_.decoders), after.module_.decoders)
    contrastive = metric_rows(tmp_path / "run", "train/contrastive_epoch")
    assert len(contrastive) == 2  # logged in the two warm-up epochs only
    assert len(metric_rows(tmp_path / "run", "train/loss_epoch")) >= 1


def test_warmup_separates_the_shared_content_across_modalities():
    """On views with large offsets of their own, the InfoNCE falls to near its best and the classes part."""
    views = two_views(n=256)
    model = CMVAE(epochs=6, contrastive_warmup_epochs=6, lr=1e-2, **{**TINY, "batch_size": 64})
    model.fit(views)
    plan = TrainingPlan(model.module_, model.schema_, lr=1e-2, contrastive_warmup_epochs=6)
    batch = [torch.as_tensor(v[:64]) for v in views]
    untrained = CMVAE(**TINY)
    untrained_module = untrained._build_networks_within_memory(model.schema_)
    before = float(TrainingPlan(untrained_module, model.schema_, lr=1e-2).contrastive_loss(batch).detach())
    after = float(plan.contrastive_loss(batch).detach())
    assert after < before
    # codes that carry nothing shared score log 64; the views share only a binary class, so the best possible is
    # log 32 (each anchor's positive is one of the 32 rows of its class)
    assert np.log(32) - 0.1 < after < np.log(64) - 0.5
    # the two classes are apart in the trained shared codes (the mixture means, as transform returns them)
    codes = model.transform(views)
    y = np.arange(256) % 2
    gap = np.linalg.norm(codes[y == 0].mean(0) - codes[y == 1].mean(0))
    assert gap > 2.0 * codes[y == 0].std(0).mean()


def test_partially_observed_rows_contrast_only_pairs_seen_together():
    views = two_views()
    plan_model = CMVAE(epochs=1, contrastive_warmup_epochs=1, **TINY)
    mask = np.ones((96, 2), dtype=bool)
    mask[::3, 1] = False
    plan_model.fit(views, mask=mask)
    plan = TrainingPlan(plan_model.module_, plan_model.schema_, lr=1e-3, contrastive_warmup_epochs=1)
    batch = [torch.as_tensor(v[:32]) for v in views]
    observed = torch.as_tensor(mask[:32])
    loss = plan.contrastive_loss([*batch, observed])
    assert torch.isfinite(loss) and loss.requires_grad
    # the unobserved rows do not enter: garbage in them leaves the loss as it was
    spoiled = batch[1].clone()
    spoiled[~observed[:, 1]] = 1e3
    assert float(plan.contrastive_loss([batch[0], spoiled, observed]).detach()) == pytest.approx(float(loss.detach()), rel=1e-5)
    none_together = torch.stack([torch.ones(32, dtype=torch.bool), torch.zeros(32, dtype=torch.bool)], 1)
    assert float(plan.contrastive_loss([*batch, none_together]).detach()) == 0.0


def test_one_modality_is_refused_with_one_clear_error():
    """VaDE fits one modality: there is nothing to contrast it with."""
    with pytest.raises(ParameterError, match="contrastive_warmup_epochs=2") as err:
        VaDE(epochs=3, contrastive_warmup_epochs=2, **{**TINY, "private_dim": 0}).fit(two_views())
    assert "\n" not in str(err.value)


def test_config_accepts_the_warmup_and_beta_warmup_starts_after_it():
    assert ModelConfig(contrastive_warmup_epochs=3).contrastive_warmup_epochs == 3
    assert ModelConfig().contrastive_warmup_epochs == "auto"  # CMVAE's default (configs of the paper set 0)
    with pytest.raises(ValueError, match="contrastive_warmup_epochs"):
        ModelConfig(contrastive_warmup_epochs=-1)
    model = CMVAE(epochs=1, **TINY).fit(two_views())
    plan = TrainingPlan(model.module_, model.schema_, lr=1e-3, beta=2.0, beta_warmup_epochs=4,
                        contrastive_warmup_epochs=3)
    epochs = {}
    with patch.object(TrainingPlan, "current_epoch", new_callable=PropertyMock) as current_epoch:
        for epoch in range(9):
            current_epoch.return_value = epoch
            epochs[epoch] = (plan.in_contrastive_warmup(), plan.current_beta())
    assert [epochs[e][0] for e in range(9)] == [True] * 3 + [False] * 6
    assert [epochs[e][1] for e in range(3, 8)] == [0.5, 1.0, 1.5, 2.0, 2.0]


class OptimiserStateAtEpochStart(L.Callback):
    """How many parameters have optimiser state when each epoch's first step is about to be taken."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.sizes.append(sum(len(opt.state) for opt in trainer.optimizers))


def test_the_objective_starts_with_a_fresh_optimiser_state():
    """Adam's moments of the warm-up's gradients do not carry into the objective; without a warm-up the state
    carries from epoch to epoch as always."""
    warm, plain = OptimiserStateAtEpochStart(), OptimiserStateAtEpochStart()
    CMVAE(epochs=3, contrastive_warmup_epochs=2, **TINY).fit(two_views(), callbacks=[warm])
    CMVAE(epochs=3, **TINY).fit(two_views(), callbacks=[plain])
    assert warm.sizes[0] == 0 and warm.sizes[1] > 0  # the warm-up's own state carries within the warm-up
    assert warm.sizes[2] == 0
    assert plain.sizes[0] == 0 and plain.sizes[2] > 0


def shared_branches(model: CMVAE) -> list[torch.Tensor]:
    return [p.detach().clone() for enc in model.module_.encoders for p in getattr(enc, "shared", enc).parameters()]


def shared_codes(model: CMVAE, views: list[np.ndarray]) -> torch.Tensor:
    """The shared-code locations of every row, in eval mode: ``[M, N, shared_dim]``."""
    module, schema = model.module_, model.schema_
    module.eval()
    with torch.no_grad():
        return module.encode(schema.to_model_input([torch.as_tensor(v) for v in views], "cpu")).z_loc


def test_frozen_epochs_keep_the_warmup_codes_and_train_the_rest():
    """Warm-up 1 epoch, then 2 frozen epochs: the shared codes end as the warm-up left them (standardised at the
    switch), while the decoders and the private branches train; a third objective epoch moves them again."""
    views = two_views()
    warm = CMVAE(epochs=1, contrastive_warmup_epochs=1, **TINY).fit(views)
    frozen = CMVAE(epochs=3, contrastive_warmup_epochs=1, warmup_freeze_epochs=2, **TINY).fit(views)
    before = shared_codes(warm, views)  # all 96 rows: the rows the switch measured
    expected = (before - before.mean(1, keepdim=True)) / before.std(1, keepdim=True)
    torch.testing.assert_close(shared_codes(frozen, views), expected, atol=1e-3, rtol=1e-3)
    assert expected.std(1).min() > 0.99  # ...which the warm-up alone did not give
    assert before.std(1).max() < 0.9 or before.mean(1).abs().max() > 0.1
    assert changed(snapshot(warm.module_.decoders), frozen.module_.decoders)
    private_before = [p.detach().clone() for enc in warm.module_.encoders for p in enc.private.parameters()]
    assert any(not torch.equal(a, p) for a, p in
               zip(private_before, (p for enc in frozen.module_.encoders for p in enc.private.parameters())))
    thawed = CMVAE(epochs=4, contrastive_warmup_epochs=1, warmup_freeze_epochs=2, **TINY).fit(views)
    assert any(not torch.equal(a, b) for a, b in zip(shared_branches(warm), shared_branches(thawed)))


def test_freezing_without_a_warmup_is_refused_and_the_config_takes_it():
    with pytest.raises(ParameterError, match="warmup_freeze_epochs=2"):
        CMVAE(epochs=3, warmup_freeze_epochs=2, **TINY).fit(two_views())
    assert ModelConfig(warmup_freeze_epochs=2).warmup_freeze_epochs == 2
    with pytest.raises(ValueError, match="warmup_freeze_epochs"):
        ModelConfig(warmup_freeze_epochs=-1)


class LearningRateAtSteps(L.Callback):
    """The learning rate of every optimiser step, as the optimiser takes it (after every hook has set it)."""

    def __init__(self) -> None:
        self.rates: list[tuple[int, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append((trainer.current_epoch, optimizer.param_groups[0]["lr"]))


def test_the_warmup_steps_at_its_own_learning_rate_then_training_at_its_own():
    """With ``contrastive_warmup_lr`` the warm-up's steps take that rate and the objective's take ``lr`` (also
    under a learning-rate schedule); without it every step takes ``lr``."""
    seen, plain, scheduled = LearningRateAtSteps(), LearningRateAtSteps(), LearningRateAtSteps()
    CMVAE(epochs=3, contrastive_warmup_epochs=2, contrastive_warmup_lr=1e-4, lr=3e-3, **TINY).fit(
        two_views(), callbacks=[seen])
    assert {lr for epoch, lr in seen.rates if epoch < 2} == {1e-4}
    assert {lr for epoch, lr in seen.rates if epoch == 2} == {3e-3}
    CMVAE(epochs=3, contrastive_warmup_epochs=2, lr=3e-3, **TINY).fit(two_views(), callbacks=[plain])
    assert {lr for _, lr in plain.rates} == {3e-3}
    CMVAE(epochs=4, contrastive_warmup_epochs=2, contrastive_warmup_lr=1e-4, lr=3e-3, lr_decay=0.5, **TINY).fit(
        two_views(), callbacks=[scheduled])
    assert {lr for epoch, lr in scheduled.rates if epoch < 2} == {1e-4}
    assert max(lr for epoch, lr in scheduled.rates if epoch >= 2) <= 3e-3
    assert min(lr for epoch, lr in scheduled.rates if epoch >= 2) < 3e-3  # the decay still runs after the warm-up


def test_the_config_takes_the_warmup_learning_rate():
    assert ModelConfig(contrastive_warmup_lr=1e-3).contrastive_warmup_lr == 1e-3
    assert ModelConfig().contrastive_warmup_lr is None
    with pytest.raises(ValueError, match="contrastive_warmup_lr"):
        ModelConfig(contrastive_warmup_lr=0.0)


class CodeStatisticsAtEpochStart(L.Callback):
    """Per-dimension mean and standard deviation of each modality's shared codes before every epoch's first step
    (after the module's own epoch-start hook, which Lightning calls after the callbacks')."""

    def __init__(self, views: list[np.ndarray]) -> None:
        self.views, self.stats = views, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx:
            return
        module, schema = pl_module.module, pl_module.schema
        was = module.training
        module.eval()
        with torch.no_grad():
            loc = module.encode(schema.to_model_input([torch.as_tensor(v) for v in self.views], "cpu")).z_loc
        module.train(was)
        self.stats.append((loc.mean(1), loc.std(1)))


def test_the_objective_starts_from_standardised_codes():
    """The warm-up trains directions only: at the switch each modality's codes are rescaled to mean 0 and
    standard deviation 1 per dimension (over the training rows), before the objective's first step, with one
    encoder trunk as with separate branches; the z scales and private codes are left as they were."""
    views = two_views()
    for branches in ("separate", "shared"):
        seen = CodeStatisticsAtEpochStart(views)
        model = CMVAE(epochs=3, contrastive_warmup_epochs=2, encoder_branches=branches, **TINY)
        model.fit(views, callbacks=[seen])
        mean_before, std_before = seen.stats[1]  # after the first warm-up epoch: not standardised
        mean_after, std_after = seen.stats[2]  # the objective's first epoch, after the switch
        assert float((std_before - 1).abs().max()) > 0.05 or float(mean_before.abs().max()) > 0.05
        torch.testing.assert_close(mean_after, torch.zeros_like(mean_after), atol=1e-3, rtol=0)
        torch.testing.assert_close(std_after, torch.ones_like(std_after), atol=1e-3, rtol=0)


def test_standardising_changes_only_the_code_locations():
    """The layer rescaled gives the codes (loc - mean) / std; the z scales and the private latent's outputs of
    the same encoder are unchanged."""
    model = CMVAE(epochs=1, encoder_branches="shared", **TINY).fit(two_views())
    module, x = model.module_, torch.as_tensor(two_views()[0])
    module.eval()
    with torch.no_grad():
        before = module.encode_modality(0, x)
        mean, std = torch.full((4,), 0.5), torch.tensor([0.1, 2.0, 1.0, 0.3])
        assert module.standardise_shared_codes(0, x, mean, std)
        after = module.encode_modality(0, x)
    torch.testing.assert_close(after[0], (before[0] - mean) / std, atol=1e-4, rtol=1e-4)
    for a, b in zip(before[1:], after[1:]):
        torch.testing.assert_close(a, b)


def test_an_encoder_of_another_design_is_left_unchanged_with_a_warning(caplog):
    """Codes that come out of a nonlinearity cannot be rescaled by their last linear layer: the encoder is left as
    it was and the fit says so, naming the modality."""
    from torch import nn

    def squashed(d_in: int) -> nn.Module:  # [B, d_in] -> [B, 2 * (4 + 2)], every output through tanh
        return nn.Sequential(nn.Linear(d_in, 16), nn.SiLU(), nn.Linear(16, 12), nn.Tanh())

    views = two_views()
    decoders = [nn.Sequential(nn.Linear(6, 16), nn.SiLU(), nn.Linear(16, d)) for d in (5, 3)]
    model = CMVAE(epochs=1, encoders=[squashed(5), squashed(3)], decoders=decoders, **TINY)
    model.fit(views)
    x = torch.as_tensor(views[0])
    snapshot_before = snapshot([model.module_.encoders[0]])
    model.module_.eval()
    with torch.no_grad():
        assert not model.module_.standardise_shared_codes(0, x, torch.full((4,), 0.5), torch.full((4,), 0.1))
    assert not changed(snapshot_before, [model.module_.encoders[0]])
    with caplog.at_level(logging.WARNING, logger="cmvae"):
        CMVAE(epochs=2, contrastive_warmup_epochs=1, encoders=[squashed(5), squashed(3)], decoders=decoders,
              **TINY).fit(views)
    assert "modalities [0, 1] were not standardised" in caplog.text


def test_auto_warmup_is_four_epochs_or_one_in_six_then_half_as_many_frozen():
    assert resolve_warmup("auto", "auto", 30) == (4, 2)
    assert resolve_warmup("auto", "auto", 100) == (4, 2)
    assert resolve_warmup("auto", "auto", 12) == (2, 1)
    assert resolve_warmup("auto", "auto", 5) == (0, 0)
    assert resolve_warmup(3, "auto", 30) == (3, 1)
    assert resolve_warmup("auto", 0, 30) == (4, 0)
    assert resolve_warmup(0, "auto", 30) == (0, 0)
    assert resolve_warmup("auto", "auto", 30, n_modalities=1) == (0, 0)  # one modality: nothing to contrast


def test_cmvae_warms_up_by_default_and_zero_starts_with_the_objective(tmp_path):
    """CMVAE's default resolves at fit from the epochs it trains (12 here: 2 warm-up epochs, 1 frozen); 0 keeps the
    paper's start; the baselines keep 0; a config takes "auto"; saved models from before load with 0."""
    views = two_views()
    model = CMVAE(epochs=12, **TINY)
    assert (model.contrastive_warmup_epochs, model.warmup_freeze_epochs) == ("auto", "auto")
    model.fit(views, out_dir=tmp_path / "auto")
    assert model.warmup_epochs_ == (2, 1)
    assert len(metric_rows(tmp_path / "auto", "train/contrastive_epoch")) == 2
    plain = CMVAE(epochs=12, contrastive_warmup_epochs=0, **TINY).fit(views, out_dir=tmp_path / "plain")
    assert plain.warmup_epochs_ == (0, 0)
    assert metric_rows(tmp_path / "plain", "train/contrastive_epoch") == []
    assert VaDE(**{**TINY, "private_dim": 0}).contrastive_warmup_epochs == 0
    assert ModelConfig(contrastive_warmup_epochs="auto", warmup_freeze_epochs="auto").warmup_freeze_epochs == "auto"
    with pytest.raises(ValueError, match="contrastive_warmup_epochs"):
        ModelConfig(contrastive_warmup_epochs="sometimes")
    from cmvae.estimator import LEGACY_PARAMS

    assert LEGACY_PARAMS["contrastive_warmup_epochs"] == 0 and LEGACY_PARAMS["warmup_freeze_epochs"] == 0
