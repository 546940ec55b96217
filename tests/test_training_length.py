"""The default training length (``epochs=None``: a number of optimiser steps, resolved at fit) and the
defaults on small separable tabular data."""

from __future__ import annotations

import csv
import json

import lightning as L
import numpy as np
import pytest
import torch
import yaml

from cmvae import CMVAE, NotFittedError, cli
from cmvae.estimator import params as estimator_module  # where the training length is resolved
from cmvae.config import TrainingConfig, load_config
from cmvae.estimator import DEFAULT_MIN_EPOCHS, DEFAULT_MIN_STEPS, resolve_epochs

TINY = dict(n_clusters=2, shared_dim=4, private_dim=2, batch_size=64, progress=False, accelerator="cpu", seed=0)


def two_views(n: int = 128, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return [(3.0 * y[:, None] + rng.normal(size=(n, d))).astype(np.float32) for d in (5, 3)]


@pytest.fixture
def short_default(monkeypatch):
    """The default length scaled down for speed: 6 optimiser steps, at least 2 epochs."""
    monkeypatch.setattr(estimator_module, "DEFAULT_MIN_STEPS", 6)
    monkeypatch.setattr(estimator_module, "DEFAULT_MIN_EPOCHS", 2)


def test_resolution_counts_optimiser_steps_and_keeps_explicit_epochs():
    assert (DEFAULT_MIN_STEPS, DEFAULT_MIN_EPOCHS) == (1000, 30)
    assert resolve_epochs(None, 1200, 128) == 100  # 10 steps per epoch
    assert resolve_epochs(None, 300, 64) == 200  # 5 steps per epoch
    assert resolve_epochs(None, 8000, 128) == 30  # large data: the former default of 30 epochs
    assert resolve_epochs(None, 10, 128) == 1000  # one (partial) batch per epoch
    for explicit in (1, 7, 30, 250):
        assert resolve_epochs(explicit, 1200, 128) == explicit


def test_epochs_default_is_resolved_at_fit(short_default):
    model = CMVAE(**TINY)
    assert model.epochs is None and model.epochs_ is None
    with pytest.raises(NotFittedError, match="epochs=None"):
        model.cluster_init_epoch_
    model.fit(two_views(128))  # 2 steps per epoch -> 3 epochs
    assert model.epochs is None and model.epochs_ == 3
    assert model.history_["epoch"] == [0.0, 1.0, 2.0]
    assert model.cluster_init_epoch_ == 2
    assert model.get_params()["epochs"] is None  # the parameter stays "default" for a refit on other data
    model.fit(two_views(320))  # 5 steps per epoch -> the 2-epoch floor
    assert model.epochs_ == 2


def test_explicit_epochs_mean_what_they_did(short_default):
    model = CMVAE(epochs=1, **TINY).fit(two_views(128))
    assert model.epochs_ == 1 and model.history_["epoch"] == [0.0]
    assert CMVAE(epochs=24).cluster_init_epoch_ == 16
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        CMVAE(epochs=0)


def test_saved_model_keeps_the_resolved_epochs(short_default, tmp_path):
    model = CMVAE(**TINY).fit(two_views(128))
    folder = model.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["params"]["epochs"] is None and config["fit_epochs"] == 3
    loaded = CMVAE.load(folder)
    assert loaded.epochs is None and loaded.epochs_ == 3 and loaded.cluster_init_epoch_ == 2
    np.testing.assert_array_equal(loaded.predict(two_views(128)), model.predict(two_views(128)))


def test_models_saved_before_the_default_changed_load_with_their_explicit_epochs():
    from pathlib import Path

    model = CMVAE.load(Path(__file__).parent / "fixtures" / "model_format1")
    assert model.epochs == 2 and model.epochs_ == 2 and model.beta == 2.5  # the values it was trained with


class _StopInSecondEpoch(L.Callback):
    """Ctrl-C at the end of the second epoch, before its checkpoint: the first one is on disk."""

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_resume_uses_the_resolved_epochs(short_default, tmp_path):
    views = two_views(128)
    out = tmp_path / "run"
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        CMVAE(**TINY).fit(views, out_dir=out, callbacks=[_StopInSecondEpoch()])
    resumed = CMVAE(**TINY).fit(views, out_dir=out, resume=True)
    assert resumed.epochs_ == 3 and resumed.history_["epoch"] == [1.0, 2.0]  # finishes the 3 resolved epochs
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    with pytest.raises(ValueError, match="below the 3 epochs already trained"):
        CMVAE(epochs=2, **TINY).fit(views, out_dir=out, resume=True)


def test_config_training_epochs_defaults_to_null_and_a_run_records_the_resolved_number(short_default, tmp_path, capsys):
    assert TrainingConfig().epochs is None
    views = two_views(128)
    np.savez(tmp_path / "tab.npz", view0=views[0], view1=views[1], labels=np.arange(128) % 2)
    config = {
        "data": {"name": "arrays", "path": "tab.npz"},
        "model": {"n_clusters": 2, "shared_dim": 4, "private_dim": 2},
        "training": {"batch_size": 64, "accelerator": "cpu", "devices": 1, "progress": False},
    }
    (tmp_path / "tab.yaml").write_text(yaml.safe_dump(config))
    cfg = load_config(tmp_path / "tab.yaml")
    assert cfg.training.epochs is None and cfg.estimator_kwargs()["epochs"] is None
    run = tmp_path / "run"
    assert cli.main(["train", "--config", str(tmp_path / "tab.yaml"), "--out", str(run)]) == 0
    assert "for 3 epochs" in capsys.readouterr().out
    assert load_config(run / "config.yaml").training.epochs == 3  # what the run trained for, for its resume
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["params"]["epochs"] == 3 and saved["fit_epochs"] == 3
    # resuming the finished run with its own config trains nothing more and still succeeds
    assert cli.main(["train", "--out", str(run), "--resume"]) == 0


def blobs(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """4 clusters seen through 3 noisy views of 10 / 20 / 5 features on scales 1, 100 and 0.01
    (``benchmarks/clustering_diagnostics.py``'s blobs with the centres a third further apart)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 4)
    views = []
    for d, unit in ((10, 1.0), (20, 100.0), (5, 0.01)):
        centres = rng.normal(0, 0.8, (4, d))
        views.append((unit * (centres[y] + rng.normal(0, 1.0, (n, d)))).astype(np.float32))
    return views, y


def test_defaults_cluster_small_separable_tabular_data(monkeypatch):
    """Every default of the estimator (beta, likelihood and its scale, standardisation, k-means placement
    at two thirds of the resolved epochs), with the default length shortened to 200 optimiser steps to
    keep the test fast. k-means on the standardised concatenated views: NMI 1.00; the former beta
    default (2.5) with the same length: 0.26."""
    from sklearn.metrics import normalized_mutual_info_score

    monkeypatch.setattr(estimator_module, "DEFAULT_MIN_STEPS", 200)
    views, y = blobs(256, seed=0)
    model = CMVAE(n_clusters=4, progress=False, accelerator="cpu", seed=0).fit(views)
    assert model.epochs_ == 100  # 2 steps per epoch
    nmi = normalized_mutual_info_score(y, model.predict(views))
    assert nmi > 0.9, nmi  # 0.946 (0.985 with posterior_samples=0)


class _LearningRates(L.Callback):
    """The optimiser's learning rate at every step, read after the step."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_lr_decay_keeps_the_rate_then_lowers_it_to_the_end_of_training(tmp_path):
    """lr_decay=0.5 over 4 epochs of 2 steps: the first half at lr, then strictly falling towards 0; the
    per-epoch rate is logged; lr_decay=0 keeps the rate constant."""
    recorded = _LearningRates()
    CMVAE(epochs=4, lr=2e-3, lr_decay=0.5, **TINY).fit(two_views(), callbacks=[recorded], out_dir=tmp_path / "run")
    rates = recorded.rates
    assert len(rates) == 8
    assert rates[:5] == [2e-3] * 5  # set before each step: step 5 starts at half of training
    assert all(later < earlier for earlier, later in zip(rates[4:], rates[5:]))
    assert rates[-1] < 0.2 * 2e-3
    logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "train/lr" in logged.split(",")
    constant = _LearningRates()
    CMVAE(epochs=2, lr=2e-3, **TINY).fit(two_views(), callbacks=[constant])
    assert constant.rates == [2e-3] * 4


def test_lr_decay_follows_the_time_limit_when_it_ends_training_first():
    """With a time limit the schedule's end is the end of the time: half the time gone means half of training."""
    from cmvae.callbacks import LearningRateDecay, training_progress

    class Timer_(L.pytorch.callbacks.Timer):
        def time_elapsed(self, stage="train"):  # noqa: ARG002 -- a fixed clock
            return 30.0

    class FakeTrainer:
        max_epochs, num_training_batches, global_step, current_epoch = 100, 10, 10, 1
        callbacks = [Timer_(duration={"seconds": 60})]

    assert training_progress(FakeTrainer()) == pytest.approx(0.5)  # type: ignore[arg-type]
    schedule = LearningRateDecay(1.0, fraction=0.5)
    assert schedule.rate(0.5) == 1.0 and schedule.rate(0.75) == pytest.approx(0.5) and schedule.rate(1.0) == 0.0
    with pytest.raises(ValueError, match="fraction"):
        LearningRateDecay(1.0, fraction=1.5)


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", float("nan")])
def test_lr_decay_outside_zero_one_is_refused_with_its_name(bad):
    with pytest.raises(Exception, match="lr_decay"):
        CMVAE(lr_decay=bad)
    with pytest.raises(Exception, match="lr_decay"):
        TrainingConfig(lr_decay=bad)


class StepGradients(L.Callback):
    """The global L2 norm of the gradient each optimiser step applied (read after the step: Lightning clears the
    gradients at the start of the next one)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
        self.norms.append(float(torch.nn.utils.get_total_norm(grads)))


def test_gradient_clip_norm_scales_large_steps_down_and_the_raw_norm_is_logged(tmp_path):
    """The logged norm is the gradient's before clipping; with gradient_clip_norm every applied step is at most that
    norm, although the raw gradients are larger; without it the applied norms are the raw ones."""
    clipped, free = StepGradients(), StepGradients()
    CMVAE(epochs=2, gradient_clip_norm=0.05, **TINY).fit(two_views(), callbacks=[clipped], out_dir=tmp_path / "a")
    model = CMVAE(epochs=2, **TINY).fit(two_views(), callbacks=[free], out_dir=tmp_path / "b")
    assert len(clipped.norms) == len(free.norms) == 4
    assert max(clipped.norms) <= 0.05 * (1 + 1e-4)
    assert min(free.norms) > 0.05  # so the clipping above had work to do
    with (tmp_path / "b" / "logs" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/grad_norm_max")]
    assert len(rows) == 2  # one per epoch
    for epoch, row in enumerate(rows):  # the epoch's mean and max of the applied (unclipped) norms
        steps = free.norms[2 * epoch : 2 * epoch + 2]
        assert float(row["train/grad_norm_max"]) == pytest.approx(max(steps), rel=1e-4)
        assert float(row["train/grad_norm"]) == pytest.approx(sum(steps) / 2, rel=1e-4)
    assert model.gradient_clip_norm is None


def test_gradient_clip_norm_is_a_training_setting_of_the_config():
    assert TrainingConfig(gradient_clip_norm=5.0).gradient_clip_norm == 5.0
    assert TrainingConfig().gradient_clip_norm is None
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(Exception, match="gradient_clip_norm"):
            TrainingConfig(gradient_clip_norm=bad)
