"""The clustering diagnostics, the scale parametrisations, separate encoder branches and the
prior's mean initialisations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmvae.diagnostics import latent_diagnostics, variance_shares
from cmvae.distributions import normalised_scale, scale_transform
from cmvae.nets import BranchedEncoder, build_networks
from cmvae.priors import ClusterPrior, PrivatePriors


def _codes(offset: float, n_per: int = 50, k: int = 4, m: int = 3, d: int = 6, seed: int = 0):
    """Unimodal codes ``[M, N, d]``: k tight clusters, each modality shifted by ``offset`` along its own axis."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(k), n_per)
    centres = rng.normal(0, 5, (k, d))
    codes = np.stack([centres[labels] + rng.normal(0, 0.1, (len(labels), d)) + offset * np.eye(d)[mod]
                      for mod in range(m)])
    return torch.as_tensor(codes), labels, torch.as_tensor(centres)


def test_variance_shares_separate_modality_offsets_from_clusters():
    aligned, labels, _ = _codes(0.0)
    modality, cluster = variance_shares(aligned, labels)
    assert modality < 0.01 and cluster > 0.98
    shifted, labels, _ = _codes(40.0)
    modality, cluster = variance_shares(shifted, labels)
    assert modality > 0.5 and cluster < 0.5
    assert 0.0 <= modality + cluster <= 1.0 + 1e-9


def test_latent_diagnostics_on_a_perfect_prior_and_on_a_prior_that_found_the_modalities():
    codes, labels, centres = _codes(0.0)
    prior = ClusterPrior(4, 6, "gaussian")
    with torch.no_grad():
        prior.means.copy_(centres.float())
    log_post = prior.log_posterior(codes.float())
    out = latent_diagnostics(codes, log_post, prior.log_weights().detach(), prior.means.detach(), labels)
    assert out["nmi"] == pytest.approx(1.0) and out["kmeans_mean_nmi"] == pytest.approx(1.0)
    assert out["kmeans_vote_nmi"] == pytest.approx(1.0)
    assert out["clusters_used"] == 4 and out["pi_entropy"] == pytest.approx(1.0)
    assert out["prior_gap"] < 0.5
    assert out["kmeans_r2"] > 0.95  # well-separated clusters explain almost all the variance
    assert out["modality_nmi_min"] == pytest.approx(1.0) and out["modality_nmi_mean"] == pytest.approx(1.0)
    structureless = latent_diagnostics(torch.randn(3, len(labels), 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)),
                                       log_post, prior.log_weights().detach(), prior.means.detach(), labels)
    assert structureless["kmeans_r2"] < 0.6

    # far apart modalities: k-means on the pooled codes finds them, while the mixture mean keeps the clusters
    shifted, labels, _ = _codes(400.0)
    out = latent_diagnostics(shifted, log_post, prior.log_weights().detach(), prior.means.detach(), labels)
    assert out["kmeans_mean_nmi"] == pytest.approx(1.0)
    assert out["kmeans_vote_nmi"] < 0.8
    assert out["modality_share"] > 0.9

    # one modality's posteriors carry no information: its NMI is 0, the others' stay 1
    blind = log_post.clone()
    blind[1] = torch.log_softmax(torch.zeros_like(blind[1]), -1)
    out = latent_diagnostics(codes, blind, prior.log_weights().detach(), prior.means.detach(), labels)
    assert out["modality_nmi_min"] == pytest.approx(0.0, abs=1e-9) and out["modality_nmi_max"] == pytest.approx(1.0)
    assert out["modality_nmi_mean"] == pytest.approx((log_post.shape[0] - 1) / log_post.shape[0])


def test_normalised_scales_average_one_and_softplus_stays_the_default():
    raw = torch.randn(5, 7, 8) * 3
    scale = normalised_scale(raw)
    assert torch.all(scale > 0)
    assert torch.allclose(scale.mean(-1), torch.ones(5, 7), atol=1e-5)
    assert scale_transform("softplus")(torch.zeros(3)).allclose(torch.full((3,), np.log(2) + 1e-4))
    with pytest.raises(ValueError, match="scale_param"):
        scale_transform("exp")


def test_auxiliary_scales_start_at_one_in_both_parametrisations():
    for name in ("softplus", "softmax"):
        priors = PrivatePriors(3, 4, "laplace", scale_param=name)
        assert torch.allclose(priors.aux_scales(), torch.ones(3, 4), atol=1e-3)


def test_separate_branches_keep_the_private_features_out_of_the_shared_code():
    encoder, decoder = build_networks((1, 12, 12), 3, 2, branches="separate")
    assert isinstance(encoder, BranchedEncoder)
    x = torch.rand(4, 1, 12, 12)
    out = encoder(x)
    assert out.shape == (4, 2 * (3 + 2))
    assert decoder(torch.randn(4, 5)).shape == (4, 1, 12, 12)
    out[:, 6:].sum().backward()  # the private latent's parameters only
    assert all(p.grad is None or torch.all(p.grad == 0) for p in encoder.shared.parameters())
    assert any(p.grad is not None and torch.any(p.grad != 0) for p in encoder.private.parameters())
    tabular, _ = build_networks((9,), 3, 0, branches="separate")  # nothing to separate
    assert not isinstance(tabular, BranchedEncoder)


def test_uniform_mean_initialisation_draws_within_its_range():
    torch.manual_seed(0)
    prior = ClusterPrior(40, 16, "laplace", mean_init="uniform")
    assert float(prior.means.abs().max()) <= 1.0
    assert float(prior.means.std()) == pytest.approx(1 / np.sqrt(3), abs=0.05)


def test_combined_evidence_lets_a_confident_modality_outweigh_two_unsure_ones():
    from cmvae.selection import assign_clusters, combined_evidence

    probs = torch.tensor([[[0.98, 0.01, 0.01]], [[0.30, 0.40, 0.30]], [[0.30, 0.40, 0.30]]])  # [M=3, N=1, C=3]
    log_pi = torch.log(torch.full((3,), 1 / 3))
    assert assign_clusters(probs.log(), log_pi, rule="vote").tolist() == [1]
    assert assign_clusters(probs.log(), log_pi, rule="evidence").tolist() == [0]
    # by hand: pi * prod_m p(c|z_m) / pi, normalised
    expected = probs.prod(0)[0] / (1 / 3) ** 2
    expected = expected / expected.sum()
    assert torch.allclose(combined_evidence(probs.log(), log_pi).exp()[0], expected, atol=1e-6)


def test_combined_evidence_keeps_pruned_clusters_at_zero_and_skips_unobserved_modalities():
    from cmvae.selection import combined_evidence

    log_pi = torch.log(torch.tensor([0.5, 0.0, 0.5]))  # cluster 1 pruned
    log_post = torch.log(torch.tensor([[[0.9, 0.0, 0.1], [0.2, 0.0, 0.8]],
                                       [[float("nan")] * 3, [0.6, 0.0, 0.4]]]))  # [M=2, N=2, C=3]
    mask = torch.tensor([[True, False], [True, True]])
    out = combined_evidence(log_post, log_pi, mask).exp()
    assert torch.isfinite(out).all() and torch.allclose(out.sum(1), torch.ones(2))
    assert torch.all(out[:, 1] == 0)
    assert torch.allclose(out[0], torch.tensor([0.9, 0.0, 0.1]), atol=1e-6)  # only modality 0 observed
    joint = torch.tensor([0.2 * 0.6, 0.0, 0.8 * 0.4])
    assert torch.allclose(out[1], joint / joint.sum(), atol=1e-6)
