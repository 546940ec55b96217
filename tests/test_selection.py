"""Post-hoc selection of the number of clusters (Algorithm 1), step by step on hand-set models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cmvae import CMVAE
from cmvae.estimator.params import ParameterError
from cmvae.schema import DataSchema
from cmvae.selection import mean_normalised_entropy, paired_standard_errors, select_clusters


def _log_lik_from_posteriors(post: torch.Tensor) -> torch.Tensor:
    """With uniform pi, log p(z|c) = log p(c|z) + const: hand-set posteriors as likelihoods."""
    return post.clamp_min(1e-12).log()


def test_entropy_is_normalised_by_the_number_of_active_clusters():
    uniform3 = torch.full((2, 5, 3), 1 / 3).log()
    uniform2 = torch.full((2, 5, 2), 1 / 2).log()
    assert mean_normalised_entropy(uniform3) == pytest.approx(1.0)
    assert mean_normalised_entropy(uniform2) == pytest.approx(1.0)
    peaked = torch.tensor([[[0.9, 0.05, 0.05]]]).log()
    h = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05)) / math.log(3)
    assert mean_normalised_entropy(peaked) == pytest.approx(h)


def test_pruning_order_renormalisation_vote_and_argmin():
    # 2 modalities, 6 points, 4 clusters. Clusters 0 and 1 are real (3 points each, peaked
    # posteriors); cluster 2 takes one modality's vote of point 5 only; cluster 3 none.
    p = torch.zeros(2, 6, 4)
    for i in range(3):
        p[:, i] = torch.tensor([0.7, 0.1, 0.1, 0.1])
        p[:, i + 3] = torch.tensor([0.1, 0.7, 0.1, 0.1])
    p[1, 5] = torch.tensor([0.05, 0.3, 0.6, 0.05])
    log_lik = _log_lik_from_posteriors(p)
    log_pi = torch.full((4,), math.log(0.25))
    labels = np.array([0, 0, 0, 1, 1, 1])
    res = select_clusters(log_lik, log_pi, labels=labels)

    ks = [s.k for s in res.steps]
    assert ks == [4, 3, 2]
    # k = 4: point 5 has votes {1, 2} -> tie -> larger summed probability: 1 (0.7 + 0.3) vs 2 (0.1 + 0.6)
    assert res.steps[0].counts == {0: 3, 1: 3, 2: 0, 3: 0}
    # fewest points: clusters 2 and 3 both 0 -> tie broken by pi (equal) then the lower id
    assert res.steps[0].removed == 2
    assert res.steps[1].active == [0, 1, 3] and res.steps[1].removed == 3
    assert res.steps[2].active == [0, 1] and res.steps[2].removed is None
    # entropies computed with pi renormalised over the active clusters and log k normalisation
    for step in res.steps:
        ids = torch.tensor(step.active)
        post = p[..., ids] / p[..., ids].sum(-1, keepdim=True)
        expected = float((-(post * post.log()).sum(-1) / math.log(len(ids))).mean())
        assert step.entropy == pytest.approx(expected, rel=1e-6)
    assert res.n_clusters == 2 == min(res.entropy, key=res.entropy.get)
    assert res.kept == [0, 1]
    assert res.nmi[2] == pytest.approx(1.0)


def test_pruning_counts_points_by_the_chosen_assignment_rule():
    # 3 modalities, 4 clusters. Points 0-2 are clearly cluster 0, points 3-5 cluster 1. Point 6: one
    # modality is sure of cluster 1, two lean weakly to cluster 2. The paper's vote gives it to 2
    # (2 votes of 3); the combined evidence to 1 (0.97 x 0.3 x 0.3 beats 0.01 x 0.4 x 0.4).
    p = torch.full((3, 7, 4), 0.01)
    p[:, :3, 0] = 0.97
    p[:, 3:6, 1] = 0.97
    p[0, 6] = torch.tensor([0.01, 0.97, 0.01, 0.01])
    p[1:, 6] = torch.tensor([0.2, 0.3, 0.4, 0.1])
    log_lik = _log_lik_from_posteriors(p)
    log_pi = torch.full((4,), math.log(0.25))
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    vote = select_clusters(log_lik, log_pi, labels=labels, assignment="vote")
    evidence = select_clusters(log_lik, log_pi, labels=labels, assignment="evidence")
    assert vote.steps[0].counts == {0: 3, 1: 3, 2: 1, 3: 0}
    assert evidence.steps[0].counts == {0: 3, 1: 4, 2: 0, 3: 0}
    # the emptiest cluster goes first: 3 under the vote; under the evidence 2 and 3 tie at 0 -> lower id
    assert vote.steps[0].removed == 3 and evidence.steps[0].removed == 2
    # NMI along the path uses the same rule: at k = 3 the vote still puts point 6 in cluster 2
    assert vote.nmi[3] < 1.0 and evidence.nmi[3] == pytest.approx(1.0)
    assert (vote.assignment, evidence.assignment) == ("vote", "evidence")
    assert vote.to_dict()["assignment"] == "vote"
    with pytest.raises(ValueError, match="assignment"):
        select_clusters(log_lik, log_pi, assignment="majority")


def test_prior_weights_enter_the_posterior_and_the_pruned_cluster_is_excluded():
    p = torch.tensor([[[0.5, 0.5, 0.0 + 1e-9]] * 4])  # [1, 4, 3]
    log_lik = p.log()
    log_pi = torch.tensor([math.log(0.8), math.log(0.2), float("-inf")])  # cluster 2 already pruned
    res = select_clusters(log_lik, log_pi)
    assert [s.k for s in res.steps] == [2]
    assert res.steps[0].active == [0, 1]
    post = torch.tensor([0.8, 0.2])
    assert res.entropy[2] == pytest.approx(float(-(post * post.log()).sum() / math.log(2)), rel=1e-6)


def test_ties_in_the_score_go_to_the_larger_k_and_k_one_is_never_chosen():
    log_lik = torch.zeros(1, 4, 3)  # every cluster equally likely: h_k = 1 for every k
    res = select_clusters(log_lik, torch.full((3,), math.log(1 / 3)))
    assert set(res.entropy) == {3, 2}
    assert res.n_clusters == 3


def test_paired_standard_errors_by_hand():
    base = torch.tensor([0.3, 0.1, 0.4, 0.2])
    scores = {4: base + torch.tensor([1.0, 0.0, 1.0, 0.0]), 3: base, 2: base + 0.5, 1: base.clone()}
    se = paired_standard_errors(scores, best=3)
    # differences [1, 0, 1, 0]: mean 0.5, sample std 0.5774, standard error 0.2887 -> 1.732 standard errors
    assert se[4] == pytest.approx(0.5 / (math.sqrt(1 / 3) / 2), rel=1e-6)
    assert se[3] == 0.0 and se[1] == 0.0  # the minimum itself, and a k equal on every point
    assert se[2] > 1e6  # above on every point by the same amount: no noise, a real difference


def test_a_lowest_score_within_its_noise_is_a_tie_won_by_the_larger_k():
    torch.manual_seed(2)
    # 60 diffuse posteriors over 5 clusters: h_k falls as clusters go whatever the data, by amounts of
    # the order of its noise over 60 points
    post = torch.distributions.Dirichlet(torch.full((5,), 0.3)).sample((1, 60))
    log_lik, log_pi = _log_lik_from_posteriors(post), torch.full((5,), math.log(0.2))
    exact = select_clusters(log_lik, log_pi, tie_tolerance=0.0)
    tied = select_clusters(log_lik, log_pi)  # the default tolerance, 2 standard errors
    assert exact.n_clusters == min(exact.scores, key=lambda k: (exact.scores[k], -k)) == 2  # the paper's argmin
    assert tied.minimum_k == 2 and tied.tie_tolerance == 2.0
    chosen = next(s for s in tied.steps if s.k == tied.n_clusters)
    assert tied.n_clusters > 2 and chosen.score > tied.scores[2] and 0 < chosen.se_above_min <= 2.0
    assert all(s.se_above_min > 2.0 for s in tied.steps if s.k > tied.n_clusters)
    # the reported distances are the paired ones, recomputed here from each point's normalised entropy
    for step in tied.steps:
        ids = torch.tensor(step.active)
        def point_entropy(ids: torch.Tensor) -> torch.Tensor:
            q = post[..., ids] / post[..., ids].sum(-1, keepdim=True)
            return (-(q * q.clamp_min(1e-30).log()).sum(-1) / math.log(len(ids)))[0]
        diff = (point_entropy(ids) - point_entropy(torch.tensor(tied.steps[-1].active))).double()
        expected = 0.0 if step.k == 2 else float(diff.mean() / (diff.std() / math.sqrt(60)))
        assert step.se_above_min == pytest.approx(expected, rel=1e-3, abs=1e-6)
    assert select_clusters(log_lik, log_pi, tie_tolerance=1e9).n_clusters == 5
    for bad in (-1.0, float("nan"), float("inf"), "2"):
        with pytest.raises(ValueError, match="tie_tolerance"):
            select_clusters(log_lik, log_pi, tie_tolerance=bad)  # type: ignore[arg-type]


def test_entropy_loglik_criterion_and_bad_arguments():
    p = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])
    log_lik = p.log() - 3.0
    log_pi = torch.full((2,), math.log(0.5))
    res = select_clusters(log_lik, log_pi, criterion="entropy_loglik", beta=2.0, dim_z=4)
    log_pz = torch.logsumexp(log_lik + log_pi, -1)
    assert res.scores[2] == pytest.approx(2.0 * res.entropy[2] - float(log_pz.mean()) / 4, rel=1e-6)
    with pytest.raises(ValueError, match="criterion"):
        select_clusters(log_lik, log_pi, criterion="bic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 active"):
        select_clusters(log_lik, torch.tensor([0.0, float("-inf")]))


class _ShiftEncoder(nn.Module):
    """z = x (posterior mean), fixed scales; w = 0."""

    def __init__(self, shared: int, private: int) -> None:
        super().__init__()
        self.pad = 2 * private + shared

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.zeros(x.shape[0], self.pad)], dim=1)


def _hand_set_model(means: torch.Tensor, pi: torch.Tensor) -> CMVAE:
    c, d = means.shape
    model = CMVAE(
        n_clusters=c, shared_dim=d, private_dim=1, latent_family="gaussian", likelihood="gaussian",
        encoders=[_ShiftEncoder(d, 1), _ShiftEncoder(d, 1)],
        decoders=[nn.Linear(d + 1, d), nn.Linear(d + 1, d)],
    )
    views = [torch.zeros(2, d), torch.zeros(2, d)]
    model.schema_ = DataSchema.infer(views, standardize_tabular=False)
    model.module_ = model._build_module(model.schema_)
    with torch.no_grad():
        model.module_.prior.means.copy_(means)
        model.module_.prior.logits.copy_(pi.log())
    return model


def test_estimator_selection_on_a_hand_set_model_and_apply():
    # 3 true clusters on a triangle (orphans of a removed cluster are equidistant from the
    # other two: uncertain), two spurious near-duplicates (they split a true cluster:
    # uncertain) and one empty component; 2 identical views.
    means = torch.tensor([[0.0, 0.0], [6.0, 0.0], [3.0, 5.196], [0.7, 0.0], [6.0, 0.7], [-20.0, -20.0]])
    pi = torch.tensor([0.3, 0.3, 0.3, 0.04, 0.03, 0.03])
    model = _hand_set_model(means, pi)
    g = torch.Generator().manual_seed(0)
    labels = np.repeat([0, 1, 2], 50)
    x = means[torch.as_tensor(labels)] + 0.7 * torch.randn(150, 2, generator=g)
    res = model.select_clusters([x, x], labels)
    assert res.n_clusters == 3
    assert sorted(res.kept) == [0, 1, 2]
    assert res.nmi[3] == pytest.approx(1.0)
    before = model.cluster_weights_.copy()
    model.apply_selection(res)
    after = model.cluster_weights_
    assert np.all(after[[3, 4, 5]] == 0.0)
    np.testing.assert_allclose(after[[0, 1, 2]], before[[0, 1, 2]] / before[[0, 1, 2]].sum(), rtol=1e-5)
    assert set(np.unique(model.predict([x, x]))) <= {0, 1, 2}
    # selection itself did not change the model: a second run on the pruned model starts at k = 3
    res2 = model.select_clusters([x, x])
    assert max(res2.entropy) == 3


def test_estimator_selection_assigns_points_as_its_predict_does():
    means = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.7, 0.0]])
    model = _hand_set_model(means, torch.tensor([0.45, 0.45, 0.1]))
    x = means[torch.as_tensor(np.repeat([0, 1], 20))] + 0.5 * torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    assert model.assignment == "evidence"
    assert model.select_clusters([x, x]).assignment == "evidence"
    assert model.select_clusters([x, x], assignment="vote").assignment == "vote"
    model.assignment = "vote"
    assert model.select_clusters([x, x]).assignment == "vote"
    with pytest.raises(ParameterError, match="assignment"):
        model.select_clusters([x, x], assignment="majority")


def test_apply_selection_rejects_invalid_ids():
    model = _hand_set_model(torch.zeros(3, 2), torch.full((3,), 1 / 3))
    from cmvae.selection import SelectionResult

    with pytest.raises(ValueError, match="invalid cluster ids"):
        model.apply_selection(SelectionResult(2, {}, [0, 7], "entropy", {}))


def test_training_with_three_times_the_clusters_then_selecting_recovers_the_true_number():
    """4 well-separated clusters seen through 3 views; CMVAE with K = 12, then Algorithm 1."""
    rng = np.random.default_rng(0)
    n_true, n = 4, 600
    labels = rng.integers(0, n_true, n)
    views = []
    for dim in (8, 6, 10):
        centers = rng.normal(0, 3, size=(n_true, dim))
        views.append((centers[labels] + rng.normal(0, 1, size=(n, dim))).astype(np.float32))
    model = CMVAE(
        n_clusters=3 * n_true, shared_dim=4, private_dim=2, latent_family="gaussian", likelihood="gaussian",
        likelihood_scale=1.0, beta=1.0, epochs=30, batch_size=64, lr=3e-3, seed=0, progress=False,
        accelerator="cpu",
    )
    model.fit(views)
    res = model.select_clusters(views, labels)
    assert res.n_clusters == n_true
    assert len(res.kept) == n_true
    assert sorted(res.entropy) == list(range(2, 3 * n_true + 1))
    assert res.nmi[n_true] > 0.95
    model.apply_selection(res)
    assert len(np.unique(model.predict(views))) <= n_true
    assert model.score(views, labels)["nmi"] > 0.95
