"""``weight_decay``: decoupled decay (AdamW) on the encoders' and decoders' weights, none on the mixture."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch

from cmvae import CMVAE
from cmvae.callbacks import KMeansPriorInit
from cmvae.estimator.params import ParameterError
from cmvae.config import TrainingConfig
from cmvae.training import TrainingPlan

TINY = dict(n_clusters=2, shared_dim=4, private_dim=2, batch_size=32, progress=False, accelerator="cpu", seed=0)


def two_views(n: int = 96, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return [(3.0 * y[:, None] + rng.normal(size=(n, d))).astype(np.float32) for d in (5, 3)]


def network_norm(model: CMVAE) -> float:
    nets = [*model.module_.encoders, *model.module_.decoders]
    return float(sum(p.detach().pow(2).sum() for net in nets for p in net.parameters()) ** 0.5)


def test_decay_goes_to_the_networks_and_not_to_the_mixture():
    model = CMVAE(epochs=1, **TINY).fit(two_views())
    plan = TrainingPlan(model.module_, model.schema_, lr=1e-3, weight_decay=0.05)
    optimiser = plan.configure_optimizers()
    assert isinstance(optimiser, torch.optim.AdamW)
    decayed = {id(p) for g in optimiser.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    networks = {id(p) for net in (*model.module_.encoders, *model.module_.decoders) for p in net.parameters()}
    assert decayed == networks
    undecayed = {id(p) for g in optimiser.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert {id(model.module_.prior.means), id(model.module_.prior.logits)} <= undecayed
    assert decayed | undecayed == {id(p) for p in model.module_.parameters()}
    plain = TrainingPlan(model.module_, model.schema_, lr=1e-3).configure_optimizers()
    assert type(plain) is torch.optim.Adam  # no decay: Adam as before, bit for bit


def test_decay_shrinks_the_networks_weights_and_leaves_a_model_that_clusters():
    views = two_views()
    plain = CMVAE(epochs=3, lr=1e-2, **TINY).fit(views)
    decayed = CMVAE(epochs=3, lr=1e-2, weight_decay=5.0, **TINY).fit(views)
    assert network_norm(decayed) < 0.8 * network_norm(plain)
    assert np.isfinite(decayed.predict_proba(views)).all()


def test_config_passes_weight_decay_to_the_estimator_and_refuses_non_finite_values():
    assert TrainingConfig(weight_decay=1e-4).weight_decay == 1e-4
    for bad in (float("inf"), float("nan"), -0.5):
        with pytest.raises(ValueError, match="weight_decay"):
            TrainingConfig(weight_decay=bad)
    assert CMVAE(weight_decay=1e-4).get_params()["weight_decay"] == 1e-4


class NetworkNorms(L.Callback):
    """The networks' weight norm at the end of every training epoch."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nets = [*pl_module.module.encoders, *pl_module.module.decoders]
        self.norms.append(float(sum(p.detach().pow(2).sum() for net in nets for p in net.parameters()) ** 0.5))


def test_decay_from_the_placement_leaves_training_untouched_until_the_components_are_placed():
    views = two_views()
    settings = dict(epochs=4, cluster_init_epoch=2, lr=1e-2, **TINY)
    plain, late, early = NetworkNorms(), NetworkNorms(), NetworkNorms()
    CMVAE(**settings).fit(views, callbacks=[plain])
    CMVAE(weight_decay=5.0, weight_decay_from="placement", **settings).fit(views, callbacks=[late])
    CMVAE(weight_decay=5.0, **settings).fit(views, callbacks=[early])
    # the placement comes at the end of epoch 2: AdamW without decay steps exactly as Adam until then
    assert late.norms[:2] == pytest.approx(plain.norms[:2], rel=1e-6)
    assert early.norms[0] < 0.95 * plain.norms[0]
    # then the decay shrinks the networks
    assert late.norms[-1] < 0.8 * plain.norms[-1]


def test_decay_from_the_placement_starts_in_the_optimiser_and_again_on_resume():
    model = CMVAE(epochs=1, **TINY).fit(two_views())
    plan = TrainingPlan(model.module_, model.schema_, lr=1e-3, weight_decay=0.3, weight_decay_from="placement")
    optimiser = plan.configure_optimizers()
    assert isinstance(optimiser, torch.optim.AdamW) and optimiser.param_groups[0]["weight_decay"] == 0.0
    trainer = SimpleNamespace(optimizers=[optimiser], current_epoch=3, is_global_zero=True, world_size=1)
    callback = KMeansPriorInit(model.module_, model.schema_, [torch.as_tensor(v) for v in two_views()], epoch=2, seed=0)
    callback.load_state_dict({"done": True, "placements": ["after 2 epochs"]})  # a run resumed after the placement
    callback.on_train_start(trainer, plan)
    assert plan.components_placed and optimiser.param_groups[0]["weight_decay"] == 0.3
    assert optimiser.param_groups[1]["weight_decay"] == 0.0  # the mixture is never decayed


def test_decay_from_the_placement_needs_a_placement_and_a_known_choice():
    with pytest.raises(ParameterError, match="weight_decay_from"):
        CMVAE(weight_decay_from="later")
    with pytest.raises(ParameterError, match="weight_decay_from='placement'.*cluster_init='kmeans'"):
        CMVAE(epochs=1, cluster_init="uniform", weight_decay=0.1, weight_decay_from="placement", **TINY).fit(two_views())
    with pytest.raises(ValueError, match="weight_decay_from"):
        TrainingConfig(weight_decay_from="later")
    assert TrainingConfig(weight_decay_from="placement").weight_decay_from == "placement"
