"""The CMVAE estimator API on small synthetic paired data (3 well-separated clusters)."""

from __future__ import annotations

import copy
import logging
import warnings
import json

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.metrics import normalized_mutual_info_score

from cmvae import CMVAE, DataValidationError, ModelFileError, NotFittedError
from cmvae.saving import write_checksums
from cmvae.selection import combined_evidence, majority_vote

N = 300
SHAPES = [(6,), (5,), (1, 8, 8)]
FAST = dict(
    n_clusters=3,
    shared_dim=4,
    private_dim=2,
    batch_size=64,
    lr=5e-3,
    cluster_init_epoch=3,
    progress=False,
    accelerator="cpu",
    likelihood="gaussian",
    seed=0,
)


def make_data(n: int = N, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Two tabular views (cluster mean + noise) and one 8x8 image view (cluster pattern + noise)."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)
    c1, c2 = rng.normal(0, 3, (3, 6)), rng.normal(0, 3, (3, 5))
    patterns = rng.uniform(0, 1, (3, 1, 8, 8))
    views = [
        (c1[y] + rng.normal(0, 1, (n, 6))).astype(np.float32),
        (c2[y] + rng.normal(0, 1, (n, 5))).astype(np.float32),
        np.clip(patterns[y] + rng.normal(0, 0.1, (n, 1, 8, 8)), 0, 1).astype(np.float32),
    ]
    return views, y


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture(scope="module")
def fitted(data):
    views, _ = data
    return CMVAE(epochs=10, **FAST).fit(views)


# ----------------------------------------------------------------------------------------
# fit / predict / transform
# ----------------------------------------------------------------------------------------
def test_outputs_have_documented_shapes_and_dtypes(fitted, data):
    views, _ = data
    labels = fitted.predict(views)
    assert labels.shape == (N,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < 3
    proba = fitted.predict_proba(views)
    assert proba.shape == (N, 3) and proba.dtype == np.float32
    assert (proba >= 0).all()
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    codes = fitted.transform(views)
    assert codes.shape == (N, 4) and codes.dtype == np.float32 and np.isfinite(codes).all()
    np.testing.assert_allclose(codes, fitted.encode(views).z_loc.mean(0).numpy())
    log_post = fitted.cluster_log_posteriors(views)
    assert log_post.shape == (3, N, 3)
    evidence = combined_evidence(log_post, torch.log(torch.as_tensor(fitted.cluster_weights_)))
    np.testing.assert_array_equal(labels, evidence.argmax(-1).numpy())
    np.testing.assert_allclose(proba, evidence.exp().numpy(), rtol=1e-5, atol=1e-7)
    weights = fitted.cluster_weights_
    assert weights.shape == (3,) and weights.sum() == pytest.approx(1.0, abs=1e-6)
    assert fitted.history_["epoch"] == [float(e) for e in range(10)]
    # a batch of one works (no batch-size dependence in inference)
    one = [v[:1] for v in views]
    assert fitted.predict(one)[0] == labels[0]


def test_predict_combines_the_modalities_evidence(fitted, data):
    """Recompute log pi + sum_m [log p(c|z_m) - log pi] by hand; the probabilities sum to 1."""
    views, _ = data
    log_post = fitted.cluster_log_posteriors(views).numpy().astype(np.float64)  # [M, N, C]
    log_pi = np.log(fitted.cluster_weights_.astype(np.float64))
    joint = (log_post - log_pi).sum(0) + log_pi
    np.testing.assert_array_equal(fitted.predict(views), joint.argmax(1))
    expected = np.exp(joint - joint.max(1, keepdims=True))
    np.testing.assert_allclose(fitted.predict_proba(views), expected / expected.sum(1, keepdims=True), atol=1e-5)


def test_predict_is_majority_vote_of_modalities_with_assignment_vote(fitted, data):
    """Recompute the vote by hand from the per-modality posteriors."""
    views, _ = data
    fitted.assignment = "vote"
    try:
        labels, proba = fitted.predict(views), fitted.predict_proba(views)
    finally:
        fitted.assignment = "evidence"
    log_post = fitted.cluster_log_posteriors(views).numpy()  # [M, N, C]
    np.testing.assert_allclose(proba, np.exp(log_post).mean(0), rtol=1e-6)
    votes = np.stack([np.bincount(col, minlength=3) for col in log_post.argmax(-1).T])  # [N, C]
    mass = np.exp(log_post).sum(0)
    expected = []
    for v, s in zip(votes, mass):
        top = np.flatnonzero(v == v.max())
        expected.append(top[np.argmax(s[top])])
    np.testing.assert_array_equal(labels, np.array(expected))


def test_recovers_well_separated_clusters(fitted, data):
    views, y = data
    assert normalized_mutual_info_score(y, fitted.predict(views)) > 0.8
    scores = fitted.score(views, y)
    assert scores["nmi"] > 0.8 and set(scores) >= {"nmi", "ari", "acc"}


# ----------------------------------------------------------------------------------------
# persistence
# ----------------------------------------------------------------------------------------
def test_save_load_round_trip(fitted, data, tmp_path):
    views, _ = data
    path = fitted.save(tmp_path / "model")
    assert (path / "config.json").exists() and (path / "weights.safetensors").exists()
    loaded = CMVAE.load(path)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict(views), fitted.predict(views))
    np.testing.assert_array_equal(loaded.transform(views), fitted.transform(views))
    np.testing.assert_array_equal(loaded.predict_proba(views), fitted.predict_proba(views))
    np.testing.assert_array_equal(loaded.cluster_weights_, fitted.cluster_weights_)
    # saving over a saved model needs overwrite=True and leaves no temporary folders behind
    with pytest.raises(ModelFileError, match="overwrite=True"):
        fitted.save(path)
    fitted.save(path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in path.iterdir()) == ["SHA256SUMS", "config.json", "weights.safetensors"]
    np.testing.assert_array_equal(CMVAE.load(path).predict(views), fitted.predict(views))
    # a file the user put into the folder makes it something save did not write: never replaced
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not a saved cmvae model"):
        fitted.save(path, overwrite=True)
    assert (path / "notes.txt").read_text() == "mine"


def test_load_missing_path_raises(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CMVAE.load(missing)


def test_load_wrong_format_version_raises(fitted, tmp_path):
    path = fitted.save(tmp_path / "model")
    config = json.loads((path / "config.json").read_text())
    config["format_version"] = 999
    (path / "config.json").write_text(json.dumps(config))
    write_checksums(path)  # as a future cmvae would have saved it
    with pytest.raises(ValueError, match="format 999"):
        CMVAE.load(path)


# ----------------------------------------------------------------------------------------
# input validation
# ----------------------------------------------------------------------------------------
def test_fit_rejects_bad_views(data):
    views, _ = data
    model = CMVAE(epochs=1, **FAST)
    with pytest.raises(DataValidationError, match="different numbers of samples"):
        model.fit([views[0], views[1][:-1], views[2]])
    with pytest.raises(DataValidationError, match="list"):
        model.fit(views[0])
    with pytest.raises(DataValidationError, match=r"\[N, C, H, W\]"):
        model.fit([views[0][:, :, None], views[1]])
    with_nan = views[1].copy()
    with_nan[7, 2] = np.nan
    with pytest.raises(DataValidationError, match=r"NaN.*sample 7"):
        model.fit([views[0], with_nan, views[2]])
    with pytest.raises(DataValidationError, match="at least 2 modalities"):
        model.fit([views[0]])
    assert model.module_ is None  # nothing was built


def test_predict_rejects_mismatched_views(fitted, data):
    views, _ = data
    with pytest.raises(DataValidationError, match=r"modality 1.*\[4\].*\[5\]"):
        fitted.predict([views[0], views[1][:, :4], views[2]])
    with pytest.raises(DataValidationError, match="modality 2"):
        fitted.transform([views[0], views[1], np.zeros((N, 1, 6, 6), np.float32)])
    with pytest.raises(DataValidationError, match="expected 3 modalities"):
        fitted.predict(views[:2])
    bad = views[0].copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataValidationError, match="NaN/inf"):
        fitted.predict_proba([bad, views[1], views[2]])
    with pytest.raises(DataValidationError, match="list"):
        fitted.predict(views[0])


def test_constructor_rejects_bad_parameters():
    with pytest.raises(ValueError, match="estimator"):
        CMVAE(estimator="reinforce")
    with pytest.raises(ValueError, match="n_clusters"):
        CMVAE(n_clusters=0)
    with pytest.raises(ValueError, match="latent_family"):
        CMVAE(latent_family="student")


def test_not_fitted_errors():
    model = CMVAE(**FAST)
    views, _ = make_data(9)
    for call in (
        lambda: model.predict(views),
        lambda: model.predict_proba(views),
        lambda: model.transform(views),
        lambda: model.sample(2),
        lambda: model.save("unused"),
        lambda: model.cluster_weights_,
    ):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


# ----------------------------------------------------------------------------------------
# checkpoints and resume
# ----------------------------------------------------------------------------------------
def test_resume_continues_from_last_checkpoint(tmp_path):
    views, _ = make_data(128, seed=1)
    out = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        CMVAE(epochs=1, **FAST).fit(views, out_dir=out, resume=True)
    first = CMVAE(epochs=1, **FAST).fit(views, out_dir=out)
    last = out / "checkpoints" / "last.ckpt"
    assert last.exists()
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2  # 128 / 64
    second = CMVAE(epochs=3, **FAST).fit(views, out_dir=out, resume=True)
    # only the two new epochs ran, starting where the first run stopped
    assert second.history_["epoch"] == [1.0, 2.0]
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 6
    assert first.history_["epoch"] == [0.0]
    assert second.predict(views).shape == (128,)


# ----------------------------------------------------------------------------------------
# generation
# ----------------------------------------------------------------------------------------
def test_sample_shapes_and_pruned_cluster(fitted, data):
    views, _ = data
    samples = fitted.sample(5)
    assert [s.shape for s in samples] == [(5, *shape) for shape in SHAPES]
    assert all(np.isfinite(s).all() for s in samples)
    assert samples[2].min() >= 0 and samples[2].max() <= 1  # sigmoid image means
    per_cluster = fitted.sample(4, cluster=1)
    assert [s.shape for s in per_cluster] == [(4, *shape) for shape in SHAPES]

    pruned = copy.deepcopy(fitted)
    pruned.module_.prior.set_active([0, 2])
    assert pruned.cluster_weights_[1] == 0.0
    with pytest.raises(ValueError, match="pruned"):
        pruned.sample(3, cluster=1)
    assert [s.shape for s in pruned.sample(3, cluster=2)] == [(3, *shape) for shape in SHAPES]
    assert 1 not in set(pruned.predict(views).tolist())
    assert (pruned.predict_proba(views)[:, 1] == 0).all()
    assert fitted.cluster_weights_[1] > 0  # the original is untouched


def test_pruned_state_survives_save_load(fitted, tmp_path):
    pruned = copy.deepcopy(fitted)
    pruned.module_.prior.set_active([1, 2])
    loaded = CMVAE.load(pruned.save(tmp_path / "pruned"))
    assert loaded.cluster_weights_[0] == 0.0
    with pytest.raises(ValueError, match="pruned"):
        loaded.sample(2, cluster=0)


# ----------------------------------------------------------------------------------------
# checkpoints during training and the cluster initialisation schedule
# ----------------------------------------------------------------------------------------
class _StopAfterFirstEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise KeyboardInterrupt


def test_interrupted_training_keeps_a_checkpoint_per_epoch(tmp_path):
    views, _ = make_data(128, seed=2)
    out = tmp_path / "run"
    model = CMVAE(epochs=5, **FAST)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C into an exit
        model.fit(views, out_dir=out, callbacks=[_StopAfterFirstEpoch()])
    last = out / "checkpoints" / "last.ckpt"
    assert last.exists(), "a checkpoint must exist after the first finished epoch"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    assert not list((out / "checkpoints").glob("*.tmp*"))


def test_cluster_components_are_initialised_even_if_training_stops_early():
    views, y = make_data(192, seed=3)
    model = CMVAE(epochs=2, **{**FAST, "cluster_init_epoch": 50})  # never reached by epoch count
    torch.manual_seed(0)
    model.fit(views)
    means = model.module_.prior.means.detach()
    codes = model.transform(views)
    # the k-means placement puts every component within the cloud of codes
    nearest = torch.cdist(means, torch.as_tensor(codes)).min(1).values
    assert float(nearest.max()) < 1.0


def test_default_initialisation_epoch_is_two_thirds_of_training():
    assert CMVAE(epochs=24).cluster_init_epoch_ == 16
    assert CMVAE(epochs=1).cluster_init_epoch_ == 1
    assert CMVAE(epochs=30, cluster_init_epoch=5).cluster_init_epoch_ == 5


def test_components_start_together_then_k_means_places_them_and_their_optimiser_state_restarts():
    """Before the placement the prior is the standard one (every component at 0, pi uniform); after it
    the components sit apart and Adam's moments of the prior restarted at the placement."""
    views, _ = make_data(192, seed=4)
    seen: dict[str, object] = {}

    class Spy(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            prior = pl_module.module.prior
            seen.setdefault("means", []).append(prior.means.detach().clone())
            seen.setdefault("pi", []).append(prior.weights().detach().clone())

        def on_train_end(self, trainer, pl_module):
            state = trainer.optimizers[0].state
            seen["prior_steps"] = float(state[pl_module.module.prior.means]["step"])
            seen["encoder_steps"] = float(state[next(pl_module.module.encoders[0].parameters())]["step"])

    model = CMVAE(epochs=4, **{**FAST, "cluster_init_epoch": 2})  # 192 / 64 = 3 steps per epoch
    model.fit(views, callbacks=[Spy()])
    first = seen["means"][0]  # the components move, but together: one standard-shaped prior
    assert torch.allclose(first, first[:1].expand_as(first)) and torch.allclose(seen["pi"][0], torch.full((3,), 1 / 3))
    assert torch.cdist(seen["means"][1], seen["means"][1]).max() > 0.1  # placed at the end of epoch 2
    assert seen["encoder_steps"] == 12 and seen["prior_steps"] == 6


def test_lightning_product_tips_are_not_shown(caplog):
    from cmvae.training import make_trainer

    with caplog.at_level(logging.INFO):
        make_trainer(epochs=1, out_dir=None, accelerator="cpu", devices=1, progress=False)
    assert not [r for r in caplog.records if "litlogger" in r.getMessage()]


def test_a_fit_without_validation_data_gives_no_lightning_warning():
    views, _ = make_data(64, seed=7)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        CMVAE(epochs=1, **FAST).fit(views)
    assert not [w for w in seen if "validation_step" in str(w.message)], [str(w.message) for w in seen]


class _FakeTrainer:
    """What :class:`KMeansPriorInit` reads of a trainer: the epoch counter, the planned epochs, callbacks, the rank."""

    def __init__(self, max_epochs: int) -> None:
        self.current_epoch, self.max_epochs, self.callbacks, self.optimizers = 0, max_epochs, [], []
        self.is_global_zero, self.world_size = True, 1


def _scripted_placement(checks: dict[int, tuple[bool, float | None]], max_epochs: int = 12, deadline: int = 8):
    """Run KMeansPriorInit(when="ready") over ``max_epochs`` epochs with scripted readiness checks
    (epoch -> (stable, ARI of the model's clusters with the latent's)); returns the epochs it placed at
    and the epochs it checked."""
    from cmvae.callbacks import KMeansPriorInit

    callback = KMeansPriorInit(None, None, [torch.zeros(10, 2)], deadline, seed=0, when="ready")  # type: ignore[arg-type]
    trainer, placed, checked = _FakeTrainer(max_epochs), [], []

    def check(pl_module):
        checked.append(trainer.current_epoch + 1)
        return checks.get(trainer.current_epoch + 1, (False, 1.0 if callback.done else None))

    def init(trainer_, pl_module, reason):
        placed.append(trainer.current_epoch + 1)
        callback.done = True
        callback.placements.append(reason)

    callback._check, callback._init = check, init  # type: ignore[method-assign]
    for epoch in range(max_epochs):
        trainer.current_epoch = epoch
        callback.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    return placed, checked


def test_ready_placement_waits_for_a_stable_latent_and_follows_it_when_it_moves():
    # a stable partition at epoch 5 (checks start at half the deadline, epoch 4): placed then, not at 8
    placed, checked = _scripted_placement({5: (True, None)})
    assert placed == [5] and checked[0] == 4
    # never stable: placed at the deadline
    placed, _ = _scripted_placement({})
    assert placed == [8]
    # placed at 5; at 7 the latent is stable on a partition the model does not follow: placed again;
    # a stable partition it follows (ARI 0.9) changes nothing; no checks after 90 % of training
    placed, checked = _scripted_placement({5: (True, None), 6: (True, 0.9), 7: (True, 0.2)})
    assert placed == [5, 7] and max(checked) <= 10
    # at most MAX_REPLACEMENTS placements after the first
    placed, _ = _scripted_placement({4: (True, None), 5: (True, 0.1), 6: (True, 0.1), 7: (True, 0.1), 8: (True, 0.1)})
    assert placed == [4, 5, 6]


def test_ready_placement_on_separable_data_comes_before_the_deadline_and_is_kept_in_checkpoints(tmp_path):
    from cmvae.callbacks import KMeansPriorInit

    views, y = make_data(192, seed=5)
    seen = {}

    class Grab(L.Callback):
        def on_train_end(self, trainer, pl_module):
            seen["callback"] = next(cb for cb in trainer.callbacks if isinstance(cb, KMeansPriorInit))

    model = CMVAE(epochs=6, **{**FAST, "cluster_init_epoch": 6, "lr": 1e-2, "cluster_init_when": "ready"})
    model.fit(views, out_dir=tmp_path / "run", callbacks=[Grab()])
    placements = seen["callback"].placements
    assert placements and "is stable" in placements[0], placements
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    saved = [v for k, v in state["callbacks"].items() if "KMeansPriorInit" in k]
    assert saved and saved[0]["done"] and saved[0]["placements"] == placements


def test_cluster_posteriors_average_over_the_posterior_and_are_reproducible():
    """predict reads log E_{q(z|x_m)} p(c|z) (posterior_samples draws, own generator): repeated calls agree,
    the global random state is untouched, and an uncertain code is less confident than at its mean."""
    from cmvae.priors import ClusterPrior

    prior = ClusterPrior(2, 1, "gaussian")
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-2.0], [2.0]]))
    loc, wide, narrow = torch.tensor([[1.0]]), torch.tensor([[3.0]]), torch.tensor([[1e-4]])
    at_mean = prior.log_posterior(loc).exp()[0, 1]
    averaged = prior.expected_log_posterior(loc, wide, 256, seed=0).exp()
    assert torch.allclose(averaged.sum(-1), torch.ones(1), atol=1e-5)
    assert 0.5 < float(averaged[0, 1]) < float(at_mean) - 0.05  # a wide posterior: less sure than its mean
    assert torch.allclose(prior.expected_log_posterior(loc, narrow, 8).exp(), prior.log_posterior(loc).exp(), atol=1e-3)

    views, _ = make_data(192, seed=6)
    model = CMVAE(epochs=2, **{**FAST, "cluster_init_epoch": 1}).fit(views)
    state = torch.random.get_rng_state()
    first = model.predict_proba(views)
    assert torch.equal(state, torch.random.get_rng_state())
    np.testing.assert_array_equal(first, model.predict_proba(views))
    model.posterior_samples = 0
    at_means = model.predict_proba(views)
    assert not np.allclose(first, at_means)
    np.testing.assert_allclose(first.sum(1), 1.0, atol=1e-5)


def test_posterior_draws_make_no_row_depend_on_the_others():
    from cmvae.priors import ClusterPrior

    prior = ClusterPrior(3, 4, "laplace")
    loc, scale = torch.randn(50, 4), torch.rand(50, 4) + 0.5
    full = prior.expected_log_posterior(loc, scale, 16, seed=3)
    assert torch.allclose(full[7:9], prior.expected_log_posterior(loc[7:9], scale[7:9], 16, seed=3), atol=1e-6)


def test_codes_for_the_placement_are_a_random_subset_when_data_exceed_the_budget():
    """Data sorted by class: the bounded sample for k-means must not be the first rows (one class)."""
    from types import SimpleNamespace

    from cmvae.callbacks import _mixture_means

    class Identity(torch.nn.Module):  # z_loc of every modality = its input
        def encode(self, batch):
            return SimpleNamespace(z_loc=torch.stack(batch))

    schema = SimpleNamespace(to_model_input=lambda views, device: [v.float() for v in views])
    sorted_labels = torch.arange(4).repeat_interleave(500)[:, None].float()  # 2,000 rows, classes in blocks
    codes = _mixture_means(Identity(), schema, [sorted_labels, sorted_labels], torch.device("cpu"),
                           max_points=400, batch_size=64, seed=1)
    assert codes.shape == (400, 1)
    assert set(codes[:, 0].tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert torch.equal(codes, _mixture_means(Identity(), schema, [sorted_labels, sorted_labels], torch.device("cpu"),
                                             max_points=400, batch_size=64, seed=1))
