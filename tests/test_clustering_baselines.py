"""VaDE, DeepCluster and CMC: objectives on tiny cases, helpers, and clustering on separable data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cmvae
from cmvae import CMC, CMVAE, DataValidationError, DeepCluster, NotFittedError, VaDE
from cmvae.clustering_baselines import PATIENCE
from cmvae.distributions import likelihood
from cmvae.metrics import clustering_accuracy, clustering_scores, hungarian_mapping, kmeans_baseline
from cmvae.models.cmc import CMCModule
from cmvae.models.deepcluster import ClusterBalancedSampler, WhitenNormalize, cluster_features, reassign_empty_clusters
from cmvae.models.vade import VaDEModule
from cmvae.objectives import info_nce, multiview_info_nce


def _blobs(n: int = 240, k: int = 3, dims: tuple[int, ...] = (8, 8), seed: int = 0):
    """Paired views where every view holds the cluster as well-separated Gaussian blobs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    views = []
    for d in dims:
        centres = rng.normal(0, 4, (k, d))
        views.append((centres[y] + rng.normal(0, 0.5, (n, d))).astype(np.float32))
    return views, y


# ----------------------------------------------------------------------------- VaDE


def _tiny_vade(beta_family: str = "gaussian") -> VaDEModule:
    torch.manual_seed(0)
    enc = torch.nn.Linear(3, 4)  # z loc (2) + z raw scale (2)
    dec = torch.nn.Linear(2, 3)
    module = VaDEModule(enc, dec, likelihood("gaussian", 0.5), n_clusters=3, shared_dim=2,
                        latent_family_name=beta_family, learn_prior_scales=True)
    with torch.no_grad():
        module.prior.means.copy_(torch.tensor([[0.0, 1.0], [-1.0, 0.5], [2.0, -1.0]]))
        module.prior.logits.copy_(torch.tensor([0.1, -0.3, 0.5]))
        module.prior.raw_scales.copy_(torch.tensor([[0.2, -0.1], [0.3, 0.0], [-0.5, 0.4]]))
    return module


def test_vade_elbo_matches_a_brute_force_gmm_elbo():
    module = _tiny_vade()
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    beta = 2.5
    torch.manual_seed(7)
    terms = module.objective([x], n_samples=4, beta=beta, keep_samples=True)
    z = terms.samples["z"][0]  # [K, B, 2]

    out = module.encoders[0](x)
    loc, scale = out[:, :2], torch.nn.functional.softplus(out[:, 2:]) + 1e-4
    normal = torch.distributions.Normal
    log_q = normal(loc, scale).log_prob(z).sum(-1)  # [K, B]
    pi = torch.softmax(module.prior.logits, 0)
    sig = module.prior.scales
    # log p(z) = log sum_c pi_c N(z; mu_c, sigma_c), one cluster at a time
    dens = sum(pi[c] * normal(module.prior.means[c], sig[c]).log_prob(z).sum(-1).exp() for c in range(3))
    log_lik = normal(module.decoders[0](z), 0.5).log_prob(x).sum(-1)
    expected = log_lik + beta * (dens.log() - log_q)  # [K, B]
    torch.testing.assert_close(terms.log_weights[0], expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.loss, -expected.mean(), rtol=1e-5, atol=1e-5)


def test_vade_cluster_term_is_the_exact_expectation_over_c():
    """VaDE's E_{q(c|x)}[log p(c) + log p(z|c) - log q(c|x)] with q(c|x) = p(c|z) equals log p(z)."""
    prior = _tiny_vade().prior
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(3))
    joint = prior.log_joint(z)  # [6, C]
    post = prior.log_posterior(z)
    expectation = (post.exp() * (joint - post)).sum(-1)
    torch.testing.assert_close(expectation, prior.log_prob(z), rtol=1e-5, atol=1e-5)


def test_vade_estimator_checks_its_parameters_and_views():
    with pytest.raises(ValueError, match="private_dim must be 0"):
        VaDE(private_dim=4)
    with pytest.raises(ValueError, match="modality"):
        VaDE(modality=-1)
    views, _ = _blobs(60)
    with pytest.raises(DataValidationError, match="modality=5 but views has 2"):
        VaDE(modality=5, epochs=1, progress=False).fit(views)
    with pytest.raises(NotFittedError):
        VaDE().predict(views)


def test_vade_save_and_load_predict_the_same(tmp_path):
    views, _ = _blobs(90)
    model = VaDE(n_clusters=3, shared_dim=2, modality=1, epochs=2, batch_size=32, progress=False).fit(views)
    model.save(tmp_path / "vade")
    loaded = CMVAE.load(tmp_path / "vade")
    assert isinstance(loaded, VaDE) and loaded.modality == 1 and loaded.private_dim == 0
    np.testing.assert_array_equal(loaded.predict(views), model.predict(views))
    assert model.transform(views).shape == (90, 2)


# ----------------------------------------------------------------------- DeepCluster


def test_reassign_empty_clusters_splits_a_donor_and_fills_every_cluster():
    features = np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0]])
    centroids = np.array([[0.03, 0.03], [5.05, 5.0], [100.0, 100.0]])
    labels = np.array([0, 0, 0, 1, 1])  # cluster 2 is empty
    new_c, new_l = reassign_empty_clusters(features, centroids, labels, np.random.default_rng(0))
    assert set(new_l.tolist()) == {0, 1, 2}
    donor = 0 if (new_l[:3] == 2).any() else 1  # the new cluster took points from one donor only
    moved = np.flatnonzero(new_l == 2)
    assert set(moved.tolist()) <= set(np.flatnonzero(labels == donor).tolist())
    assert np.allclose(new_c[2], new_c[donor], atol=1e-3)  # split at the donor's centroid
    kept = labels != donor
    np.testing.assert_array_equal(new_l[kept], labels[kept])


def test_cluster_features_never_leaves_a_cluster_empty():
    feats = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0]]), 5, axis=0)  # 2 distinct points, 4 clusters
    labels, centroids = cluster_features(feats, 4, seed=0)
    assert np.bincount(labels, minlength=4).min() >= 1 and centroids.shape == (4, 2)


def test_whitening_gives_unit_rows_and_caps_the_dimension():
    x = np.random.default_rng(0).normal(size=(20, 6)) @ np.diag([10, 5, 1, 1, 0.1, 0.1])
    w = WhitenNormalize(pca_dim=256)
    out = w.fit_transform(x)
    assert out.shape == (20, 6)  # capped by the data's 6 dims
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-10)
    assert WhitenNormalize(pca_dim=3).fit_transform(x).shape == (20, 3)


def test_balanced_sampler_draws_pseudo_classes_uniformly():
    labels = torch.tensor([0] * 900 + [1] * 100)
    idx = torch.tensor(list(ClusterBalancedSampler(lambda: labels, 1000, seed=0)))
    assert idx.shape == (1000,)
    share = float((labels[idx] == 1).float().mean())
    assert 0.45 < share < 0.55  # 0.1 under uniform sampling over points


def test_deepcluster_loss_is_cross_entropy_on_the_pseudo_labels():
    views, _ = _blobs(40)
    model = DeepCluster(n_clusters=3, shared_dim=4, epochs=1, batch_size=16, progress=False).fit(views)
    module = model.module_
    x = torch.as_tensor(views[0][:5])
    logits = module(x)
    targets = torch.tensor([0, 1, 2, 0, 1])
    manual = -torch.log_softmax(logits, 1)[torch.arange(5), targets].mean()
    torch.testing.assert_close(torch.nn.functional.cross_entropy(logits, targets), manual)
    assert logits.shape == (5, 3) and module.features(x).shape == (5, 4)


# ------------------------------------------------------------------------------- CMC


def test_info_nce_matches_a_brute_force_sum():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=1)
    t = 0.3
    manual = 0.0
    for i in range(4):
        num = math.exp(float(a[i] @ b[i]) / t)
        den = sum(math.exp(float(a[i] @ b[j]) / t) for j in range(4))
        manual -= math.log(num / den) / 4
    assert float(info_nce(a, b, t)) == pytest.approx(manual, rel=1e-5)


def test_multiview_info_nce_averages_every_ordered_pair_and_rewards_agreement():
    g = torch.Generator().manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(3, 8, 4, generator=g), dim=-1)
    pairs = [info_nce(emb[i], emb[j], 0.5) for i in range(3) for j in range(3) if i != j]
    torch.testing.assert_close(multiview_info_nce(emb, 0.5), torch.stack(pairs).mean())
    aligned = torch.eye(4).repeat(3, 1, 1)  # every view embeds sample i on axis i
    assert float(multiview_info_nce(aligned, 0.05)) < 1e-6
    assert float(multiview_info_nce(emb, 0.5)) > 1.0  # ~log 8 = 2.08 for unrelated embeddings
    with pytest.raises(ValueError, match="at least 2 views"):
        multiview_info_nce(emb[:1], 0.5)


def test_cmc_module_embeds_on_the_unit_sphere():
    module = CMCModule([torch.nn.Linear(5, 6), torch.nn.Linear(7, 6)], embed_dim=3)
    emb = module.embed([torch.randn(4, 5), torch.randn(4, 7)])
    assert emb.shape == (2, 4, 3)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2, 4))


# ----------------------------------------------------------------- metrics and the end to end


def test_hungarian_accuracy_and_kmeans_on_hand_made_labels():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_accuracy(y, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    assert clustering_accuracy(y, np.array([1, 1, 1, 0, 0, 2])) == pytest.approx(4 / 6)
    assert hungarian_mapping(y, np.array([1, 1, 1, 0, 0, 2])) == {1: 0, 0: 1, 2: 2}
    views, labels = _blobs(150)
    assert kmeans_baseline(views, labels, 3, seed=0)["nmi"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VaDE(n_clusters=3, shared_dim=4, modality=1, epochs=15, batch_size=64, seed=0, progress=False),
        lambda: DeepCluster(n_clusters=3, shared_dim=4, modality=1, epochs=5, batch_size=64, seed=0, progress=False),
        lambda: CMC(n_clusters=3, shared_dim=4, epochs=5, batch_size=64, seed=0, progress=False),
    ],
    ids=["vade", "deepcluster", "cmc"],
)
def test_each_method_beats_chance_on_separable_multiview_data(make):
    all_views, all_y = _blobs(450, seed=3)
    views, y = [v[:300] for v in all_views], all_y[:300]
    test_views, test_y = [v[300:] for v in all_views], all_y[300:]  # held-out points of the same blobs
    model = make().fit(views)
    scores = model.score(test_views, test_y)
    chance = np.mean([clustering_scores(test_y, np.random.default_rng(100 + s).integers(0, 3, 150))["nmi"]
                      for s in range(5)])
    assert chance < 0.05
    assert scores["nmi"] > 0.4, scores
    assert model.predict(views).shape == (300,)
    assert model.transform(views).shape == (300, 4)


def test_baselines_are_exported_and_unfitted_use_is_an_error():
    assert {"VaDE", "DeepCluster", "CMC"} <= set(cmvae.__all__)
    views, _ = _blobs(30)
    for model in (DeepCluster(), CMC()):
        with pytest.raises(NotFittedError):
            model.predict(views)
    with pytest.raises(DataValidationError, match="modality=3"):
        DeepCluster(modality=3, epochs=1).fit(views)
    with pytest.raises(DataValidationError, match="at least 2 modalities"):
        CMC(epochs=1).fit(views[:1])


def test_vade_default_mixture_does_not_collapse_into_one_cluster():
    """With learnable mixture scales every component shrank and one took every point (NMI 0);
    the default keeps the scales at 1. Separable blobs in one view, the defaults but a short budget."""
    views, y = _blobs(n=600, k=3, dims=(8, 4), seed=2)
    model = VaDE(n_clusters=3, modality=0, epochs=60, lr=3e-3, seed=0, progress=False, accelerator="cpu")
    model.fit(views)
    labels = model.predict(views)
    assert len(np.unique(labels)) == 3
    assert clustering_scores(y, labels)["nmi"] > 0.8


def test_cmc_stops_when_its_held_out_info_nce_stops_falling_and_keeps_that_epochs_weights():
    """Views that share nothing but their pairing: the training rows can only be memorised, so the held-out
    InfoNCE cannot keep falling and the fit stops PATIENCE epochs after its best, with the best epoch's weights."""
    rng = np.random.default_rng(0)
    views = [rng.normal(size=(400, 8)).astype(np.float32), rng.normal(size=(400, 6)).astype(np.float32)]
    model = CMC(n_clusters=3, shared_dim=4, epochs=60, batch_size=32, lr=3e-3, seed=0, progress=False,
                accelerator="cpu").fit(views)
    held_losses = model.history_["held_out/info_nce"]
    assert len(held_losses) < 60
    assert model.best_epoch_ is not None and len(held_losses) == model.best_epoch_ + PATIENCE
    assert held_losses[model.best_epoch_ - 1] == min(held_losses)
    rows = model._held_out_rows(400)
    assert rows is not None and rows.shape == (40,)
    module, schema = model._fitted()
    with torch.no_grad():
        final = float(module.loss(schema.to_model_input([torch.as_tensor(v)[rows] for v in views], "cpu")))
    assert final == pytest.approx(min(held_losses), rel=1e-5)


def test_cmc_without_early_stopping_or_with_too_few_rows_trains_every_epoch():
    views, _ = _blobs(300)
    model = CMC(n_clusters=3, shared_dim=4, epochs=3, batch_size=64, seed=0, progress=False,
                early_stopping=False).fit(views)
    assert model.best_epoch_ is None and "held_out/info_nce" not in model.history_
    assert model._held_out_rows(300) is None
    small = CMC(n_clusters=3, shared_dim=4, epochs=2, seed=0, progress=False)
    assert small._held_out_rows(14) is None and small._held_out_rows(20) is not None
    with pytest.raises(TypeError, match="early_stopping"):
        CMC(early_stopping="yes")
