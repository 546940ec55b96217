"""``compile_networks=True``: training with torch.compile'd networks gives the eager model, or falls back cleanly."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from cmvae import CMVAE, callbacks
from cmvae.estimator import ParameterError


def views(n: int = 96, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 5)).astype(np.float32), rng.normal(size=(n, 3)).astype(np.float32)]


def fit(compile_networks: bool) -> CMVAE:
    return CMVAE(n_clusters=2, shared_dim=4, private_dim=2, epochs=2, batch_size=40, progress=False,
                 accelerator="cpu", seed=0, compile_networks=compile_networks).fit(views())


def test_compiled_training_matches_eager_training_and_leaves_eager_networks():
    eager, compiled = fit(False), fit(True)
    np.testing.assert_allclose(compiled.history_["train/loss_epoch"], eager.history_["train/loss_epoch"], rtol=1e-4)
    state, reference = compiled.module_.state_dict(), eager.module_.state_dict()
    assert state.keys() == reference.keys()  # compiled in place: no "_orig_mod." names in checkpoints or saves
    for name in reference:
        torch.testing.assert_close(state[name], reference[name], rtol=1e-3, atol=1e-4)
    networks = [*compiled.module_.encoders, *compiled.module_.decoders]
    assert all(net._compiled_call_impl is None for net in networks)  # inference runs eagerly afterwards
    np.testing.assert_allclose(compiled.transform(views(seed=1)), eager.transform(views(seed=1)), rtol=1e-3, atol=1e-4)


def test_without_a_working_compiler_training_goes_on_eagerly_after_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(callbacks, "compiler_works", lambda device: "no C++ compiler found")
    with caplog.at_level(logging.WARNING, logger="cmvae.callbacks"):
        model = fit(True)
    assert [r.getMessage() for r in caplog.records if "compile_networks" in r.getMessage()] == [
        "compile_networks: torch.compile is unavailable here (no C++ compiler found); training without it"]
    np.testing.assert_allclose(model.history_["train/loss_epoch"], fit(False).history_["train/loss_epoch"], rtol=1e-6)


def test_the_compiler_check_runs_a_kernel_on_the_cpu():
    assert callbacks.compiler_works(torch.device("cpu")) is None


def test_a_non_boolean_compile_networks_is_refused_by_name():
    with pytest.raises(ParameterError, match="compile_networks must be True or False, got 'yes'"):
        CMVAE(n_clusters=2, epochs=1, progress=False, accelerator="cpu", compile_networks="yes").fit(views())
