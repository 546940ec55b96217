"""``weight_decay``: decoupled decay (AdamW) on the encoders' and decoders' weights, none on the mixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmvae import CMVAE
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
