"""Missing modalities: None views and per-sample masks in predict / transform / generate."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cmvae import CMVAE, DataValidationError
from cmvae.data import ArrayDataset
from cmvae.metrics import clustering_scores
from cmvae.selection import combined_evidence, majority_vote
from test_estimator import FAST, N, make_data


@pytest.fixture(scope="module")
def data():
    """test_estimator's 3 clusters, with extra noise so the modalities differ in how well they
    separate them: view 0 (tabular) weak, view 1 (tabular) strong, view 2 (8x8 image) medium."""
    views, y = make_data()
    rng = np.random.default_rng(1)
    views = [
        (views[0] + rng.normal(0, 2.5, views[0].shape)).astype(np.float32),
        (views[1] + rng.normal(0, 2.0, views[1].shape)).astype(np.float32),
        np.clip(views[2] + rng.normal(0, 0.4, views[2].shape), 0, 1).astype(np.float32),
    ]
    return views, y


@pytest.fixture(scope="module")
def fitted(data):
    views, _ = data
    return CMVAE(epochs=10, **FAST).fit(views)


def random_mask(n: int, m: int, seed: int = 1) -> np.ndarray:
    """Random [n, m] observed mask with at least one True per row, every pattern present."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n, m)) < 0.6
    mask[~mask.any(1), rng.integers(m)] = True
    return mask


# ------------------------------------------------------------------------------------------
def test_majority_vote_with_mask_equals_vote_over_observed_subset():
    gen = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(4, 50, 5, generator=gen), -1)
    mask = torch.as_tensor(random_mask(50, 4))
    lp_nan = lp.masked_fill(~mask.t().unsqueeze(-1), float("nan"))  # unobserved entries may be NaN
    got = majority_vote(lp_nan, mask)
    for i in range(50):
        obs = torch.nonzero(mask[i]).flatten()
        assert int(got[i]) == int(majority_vote(lp[obs, i : i + 1])[0])
    assert torch.equal(majority_vote(lp, torch.ones(50, 4, dtype=torch.bool)), majority_vote(lp))
    with pytest.raises(ValueError, match="mask must be"):
        majority_vote(lp, mask.t())


def test_all_ones_mask_equals_fully_observed_exactly(fitted, data):
    views, _ = data
    ones = np.ones((N, 3), bool)
    np.testing.assert_array_equal(fitted.predict(views, mask=ones), fitted.predict(views))
    np.testing.assert_array_equal(fitted.predict_proba(views, mask=ones), fitted.predict_proba(views))
    np.testing.assert_array_equal(fitted.transform(views, mask=ones), fitted.transform(views))
    assert torch.equal(fitted.cluster_log_posteriors(views, mask=ones), fitted.cluster_log_posteriors(views))
    a = fitted.generate(views, seed=3, mask=ones)
    b = fitted.generate(views, seed=3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("missing", [0, 2])
def test_none_view_equals_masking_it_out(fitted, data, missing):
    views, _ = data
    with_none = [None if m == missing else v for m, v in enumerate(views)]
    mask = np.ones((N, 3), bool)
    mask[:, missing] = False
    placeholder = [np.zeros_like(v) if m == missing else v for m, v in enumerate(views)]
    np.testing.assert_array_equal(fitted.predict(with_none), fitted.predict(placeholder, mask=mask))
    np.testing.assert_allclose(fitted.predict_proba(with_none), fitted.predict_proba(views, mask=mask), atol=1e-6)
    np.testing.assert_allclose(fitted.transform(with_none), fitted.transform(placeholder, mask=mask), atol=1e-6)
    # semantics: the mean over the observed modalities of the fully observed quantities
    obs = [m for m in range(3) if m != missing]
    full_post = fitted.encode(views)
    np.testing.assert_allclose(fitted.transform(with_none), full_post.z_loc[obs].mean(0).numpy(), atol=1e-6)
    lp_full = fitted.cluster_log_posteriors(views)
    evidence = combined_evidence(lp_full[obs], torch.log(torch.as_tensor(fitted.cluster_weights_)))
    np.testing.assert_allclose(fitted.predict_proba(with_none), evidence.exp().numpy(), atol=1e-6)
    np.testing.assert_array_equal(fitted.predict(with_none), evidence.argmax(-1).numpy())
    lp = fitted.cluster_log_posteriors(with_none)
    assert torch.isnan(lp[missing]).all() and torch.isfinite(lp[obs]).all()
    # generation from the mean of the mixture: same z either way, same w draws with the same seed
    g_none = fitted.generate(with_none, targets=[missing], use_mean=True, seed=0)
    g_mask = fitted.generate(placeholder, targets=[missing], use_mean=True, seed=0, mask=mask)
    np.testing.assert_allclose(g_none[missing], g_mask[missing], atol=1e-5)


def test_per_sample_mask_matches_each_samples_observed_subset(fitted, data):
    views, _ = data
    mask = random_mask(N, 3)
    # the placeholder values of masked-out entries do not matter (NaN in floats is allowed there)
    noisy = [np.where(mask[:, m].reshape(-1, *[1] * (v.ndim - 1)), v, np.nan).astype(np.float32)
             for m, v in enumerate(views)]
    pred = fitted.predict(noisy, mask=mask)
    proba = fitted.predict_proba(noisy, mask=mask)
    codes = fitted.transform(noisy, mask=mask)
    for pattern in {tuple(r) for r in mask.tolist()}:
        rows = np.nonzero((mask == np.array(pattern)).all(1))[0]
        sub = [v[rows] if keep else None for v, keep in zip(views, pattern)]
        np.testing.assert_array_equal(pred[rows], fitted.predict(sub))
        np.testing.assert_allclose(proba[rows], fitted.predict_proba(sub), atol=1e-6)
        np.testing.assert_allclose(codes[rows], fitted.transform(sub), atol=1e-6)
    # generate: per-sample z from that sample's observed modalities
    gen = fitted.generate(noisy, targets=[0, 1, 2], use_mean=True, seed=0, mask=mask)
    assert [g.shape for g in gen] == [(N, 6), (N, 5), (N, 1, 8, 8)]
    assert all(np.isfinite(g).all() for g in gen)
    # a dataset carrying a mask passes it on (fit trains on it too: see test_partial_training)
    ds = ArrayDataset(noisy, mask=mask)
    np.testing.assert_array_equal(fitted.predict(ds), pred)


def test_missing_data_errors(fitted, data):
    views, _ = data
    mask = np.ones((N, 3), bool)
    mask[[4, 9], :] = False
    with pytest.raises(DataValidationError, match=r"2 sample\(s\) have no observed modality \(samples 4, 9\)"):
        fitted.predict(views, mask=mask)
    mask = np.ones((N, 3), bool)
    mask[7, 0] = False
    with pytest.raises(DataValidationError, match="samples 7"):
        fitted.transform([views[0], None, None], mask=mask)
    with pytest.raises(DataValidationError, match="no observed modality|at least one observed"):
        fitted.predict([None, None, None])
    with pytest.raises(DataValidationError, match=rf"mask must have shape \[N, M\] = \[{N}, 3\]"):
        fitted.predict(views, mask=np.ones((N, 2), bool))
    with pytest.raises(DataValidationError, match="mask must be boolean"):
        fitted.predict(views, mask=np.full((N, 3), 0.5))
    bad = [v.copy() for v in views]
    bad[1][3, 0] = np.nan  # NaN in an *observed* entry stays an error
    with pytest.raises(DataValidationError, match="NaN"):
        fitted.predict(bad, mask=np.ones((N, 3), bool))
    with pytest.raises(DataValidationError, match="different numbers of samples"):
        fitted.predict([views[0], views[1][:10], None])


def test_single_modality_prediction_and_more_modalities_help(fitted, data):
    """Each single modality clusters the data; accuracy grows with the number of observed
    modalities (mean over subsets of each size; fixed seed, synthetic clusters)."""
    views, y = data
    acc = {}
    for k in range(1, 4):
        for subset in itertools.combinations(range(3), k):
            sub = [v if m in subset else None for m, v in enumerate(views)]
            acc[subset] = clustering_scores(y, fitted.predict(sub))["acc"]
    singles = [acc[(m,)] for m in range(3)]
    assert min(singles) > 0.5, acc  # chance is about 1/3
    by_k = [np.mean([a for s, a in acc.items() if len(s) == k]) for k in (1, 2, 3)]
    assert by_k[0] < by_k[1] < by_k[2], acc  # more observed modalities, better on average
    assert acc[(0, 1, 2)] > 0.9, acc
