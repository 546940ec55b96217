"""Training on partially observed samples: the masked multimodal objective and ``fit(..., mask=)``.

The masked objective is checked against an explicit per-datapoint loop over each sample's
observed modalities S_b, with the samples the objective drew (``keep_samples``):

    log W_m = sum_{n in S_b} lambda_n log p(x_n | z, w_n)
              + beta [ log p(z) + log p(w_m) - log (1/|S_b|) sum_{n in S_b} q(z|x_n) - log q(w_m|x_m) ],
    bound_b = (1/|S_b|) sum_{m in S_b} reduce_k(log W_m),   bound = mean_b bound_b.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmvae import CMVAE, MMVAE, MVAE, CMC, DataValidationError, DeepCluster, MMVAEPlus, MoPoE, VaDE
from cmvae.data import ArrayDataset
from cmvae.metrics import clustering_scores
from cmvae.missing import random_mask
from cmvae.models.cmvae import CMVAEModule
from cmvae.objectives import reduce_log_weights
from cmvae.schema import DataSchema
from test_estimator import FAST, make_data
from test_objective import DIST, DZ, DW, _paired_z, brute_force_log_weights, make_module, make_views

LIKS, SCALES, LAM = ("gaussian", "laplace", "gaussian"), (0.6, 0.9, 0.4), (0.5, 2.0, 1.25)
# observed sets {0, 1, 2}, {0, 2}, {1}, {2}: every modality is a source somewhere and absent somewhere
MASK = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [False, False, True]])


def module3(family: str = "gaussian") -> CMVAEModule:
    return make_module(family, LIKS, lik_scales=SCALES, lik_weights=LAM)


def objective(module, views, estimator, observed, *, seed=3, n_samples=3, beta=1.7):
    torch.manual_seed(seed)
    return module.objective(views, n_samples=n_samples, estimator=estimator, beta=beta, keep_samples=True,
                            observed=observed)


def gradients(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in module.named_parameters()}


def masked_brute_force(module, views, samples, observed, *, beta, family) -> dict[tuple[int, int], list[float]]:
    """{(m, b): [log W_m for each sample k]} for the observed sources m of each datapoint b, with loops."""
    Dist = DIST[family]
    z_all, w_own, w_aux = samples["z"], samples["w_own"], samples["w_aux"]
    n_samples, batch = z_all.shape[1], z_all.shape[2]
    out: dict[tuple[int, int], list[float]] = {}
    with torch.no_grad():
        for b in range(batch):
            seen = [n for n in range(len(views)) if bool(observed[b, n])]
            post = {}
            for n in seen:  # posteriors of the observed modalities only, one datapoint at a time
                raw = module.encoders[n](views[n][b : b + 1])[0]
                post[n] = (raw[:DZ], F.softplus(raw[DZ : 2 * DZ]) + 1e-4, raw[2 * DZ : 2 * DZ + DW],
                           F.softplus(raw[2 * DZ + DW :]) + 1e-4)
            for m in seen:
                values = []
                for k in range(n_samples):
                    z, w = z_all[m, k, b], w_own[m, k, b]
                    log_lik = 0.0
                    for n in seen:
                        w_n = w if n == m else w_aux[n, m, k, b]
                        decoded = module.decoders[n](torch.cat([z, w_n])[None])[0]
                        dist = DIST[LIKS[n]](decoded, torch.tensor(SCALES[n], dtype=torch.float64))
                        log_lik += LAM[n] * float(dist.log_prob(views[n][b]).sum())
                    log_p_z = float(module.log_prior_z(z))
                    log_p_w = float(Dist(torch.zeros(DW, dtype=torch.float64), 1.0).log_prob(w).sum())
                    q_mix = sum(math.exp(float(Dist(post[n][0], post[n][1]).log_prob(z).sum()))
                                for n in seen) / len(seen)
                    log_q_w = float(Dist(post[m][2], post[m][3]).log_prob(w).sum())
                    values.append(log_lik + beta * (log_p_z + log_p_w - math.log(q_mix) - log_q_w))
                out[m, b] = values
    return out


def log_mean_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


# ----------------------------------------------------------------------------------------
# the objective
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["elbo", "iwae", "dreg"])
def test_all_true_mask_is_exactly_the_fully_observed_objective(estimator):
    module, views = module3(), make_views(4)
    plain = objective(module, views, estimator, None)
    plain.loss.backward()
    g_plain = gradients(module)
    module.zero_grad()
    masked = objective(module, views, estimator, torch.ones(4, 3, dtype=torch.bool))
    masked.loss.backward()
    assert torch.equal(plain.loss, masked.loss) and torch.equal(plain.bound, masked.bound)
    assert plain.as_dict() == masked.as_dict()
    for name, g in gradients(module).items():
        assert torch.equal(g, g_plain[name]), name


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
@pytest.mark.parametrize("estimator", ["elbo", "iwae", "dreg"])
def test_masked_objective_matches_per_sample_loops(family, estimator):
    module, views = module3(family), make_views(4)
    terms = objective(module, views, estimator, MASK)
    ref = masked_brute_force(module, views, terms.samples, MASK, beta=1.7, family=family)
    for (m, b), values in ref.items():
        torch.testing.assert_close(terms.log_weights[m, :, b], torch.tensor(values, dtype=torch.float64),
                                   rtol=1e-10, atol=1e-8)
    reduce = (lambda v: sum(v) / len(v)) if estimator == "elbo" else log_mean_exp
    per_sample = []
    for b in range(4):
        sources = [m for m in range(3) if bool(MASK[b, m])]
        per_sample.append(sum(reduce(ref[m, b]) for m in sources) / len(sources))
    expected = sum(per_sample) / 4
    assert float(terms.bound) == pytest.approx(expected, rel=1e-10, abs=1e-8)
    if estimator != "dreg":
        assert float(terms.loss.detach()) == pytest.approx(-expected, rel=1e-10, abs=1e-8)
    else:  # the surrogate -sum_k w~_k log W_k, averaged like the bound
        surrogate = []
        for b in range(4):
            sources = [m for m in range(3) if bool(MASK[b, m])]
            total = 0.0
            for m in sources:
                lse = log_mean_exp(ref[m, b]) + math.log(3)
                total += sum(math.exp(v - lse) * v for v in ref[m, b])
            surrogate.append(total / len(sources))
        assert float(terms.loss.detach()) == pytest.approx(-sum(surrogate) / 4, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("estimator", ["elbo", "iwae", "dreg"])
def test_placeholders_reach_no_value_and_no_gradient(estimator):
    module, views = module3(), make_views(4)
    results = []
    for placeholder in (0.0, 1.0e3):
        noisy = [torch.where(MASK[:, n].view(-1, *[1] * (x.dim() - 1)), x, torch.full_like(x, placeholder))
                 for n, x in enumerate(views)]
        module.zero_grad()
        terms = objective(module, noisy, estimator, MASK)
        terms.loss.backward()
        results.append((terms, gradients(module)))
    (t0, g0), (t1, g1) = results
    assert torch.equal(t0.loss, t1.loss) and torch.equal(t0.bound, t1.bound)
    assert t0.as_dict() == t1.as_dict()
    for name in g0:
        assert torch.equal(g0[name], g1[name]), name


@pytest.mark.parametrize("estimator", ["elbo", "iwae", "dreg"])
def test_modality_missing_from_the_batch_is_the_smaller_objective(estimator):
    """Modality 2 unobserved everywhere: the (M-1)-modality objective of modalities 0 and 1
    (test_objective's fully observed brute force on a 2-modality CMVAE with the same networks and
    prior), and no gradient at all for modality 2's encoder, decoder and auxiliary scale."""
    module, views = module3(), make_views(4)
    observed = torch.tensor([[True, True, False]] * 4)
    terms = objective(module, views, estimator, observed)
    terms.loss.backward()
    small = make_module("gaussian", LIKS[:2], lik_scales=SCALES[:2], lik_weights=LAM[:2], with_image=False)
    shared = {k: v for k, v in module.state_dict().items()
              if not k.startswith(("encoders.2", "decoders.2")) and "aux" not in k and k != "likelihood_weights"}
    small.load_state_dict(shared, strict=False)
    with torch.no_grad():
        small.private_prior.raw_aux_scales.copy_(module.private_prior.raw_aux_scales[:2])
    s = terms.samples
    two = {"z": s["z"][:2], "w_own": s["w_own"][:2], "w_aux": s["w_aux"][:2, :2]}
    ref = brute_force_log_weights(small, views[:2], two, beta=1.7, lam=LAM[:2], liks=LIKS[:2],
                                  lik_scales=SCALES[:2], family="gaussian")
    torch.testing.assert_close(terms.log_weights[:2], ref, rtol=1e-10, atol=1e-8)
    if estimator == "elbo":
        expected = float(ref.mean())
    else:
        expected = sum(log_mean_exp(ref[m, :, b].tolist()) for m in range(2) for b in range(4)) / 8
    assert float(terms.bound) == pytest.approx(expected, rel=1e-10, abs=1e-8)
    grads = gradients(module)
    for name, g in grads.items():
        if name.startswith(("encoders.2.", "decoders.2.")):
            assert not g.any(), name
        elif name.startswith(("encoders.0.", "decoders.1.")) and name.endswith("weight"):
            assert g.abs().sum() > 0, name
    assert not grads["private_prior.raw_aux_scales"][2].any()
    assert grads["private_prior.raw_aux_scales"][:2].abs().sum() > 0


def test_observed_mask_is_checked():
    module, views = module3(), make_views(4)
    for bad in (MASK[:, :2], torch.tensor([[True, True, True], [False, False, False]] * 2)):
        with pytest.raises(ValueError, match=r"observed must be \[B, M\] = \[4, 3\]"):
            module.objective(views, observed=bad)


def test_reduce_log_weights_with_weights_is_the_weighted_average():
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    weights = torch.rand(3, 5, generator=g, dtype=torch.float64)
    for estimator, per_point in (("elbo", log_w.mean(1)), ("iwae", torch.logsumexp(log_w, 1) - math.log(4))):
        loss, bound = reduce_log_weights(log_w, estimator, weights=weights)
        assert float(bound) == pytest.approx(float((weights * per_point).sum()), rel=1e-12)
        assert float(loss) == pytest.approx(-float(bound), rel=1e-12)


def test_masked_dreg_shared_encoder_gradient_unbiased():
    """With per-sample holes, DReG's encoder gradient (path gradient + the score correction of the
    masked mixture q(z|X_S)) matches IWAE's in expectation (paired over 40 seeds x 600 replicates
    of one datapoint whose observed set cycles through {0, 1}, {0, 2}, {0, 1, 2}, {1, 2})."""
    module = make_module("gaussian", ("gaussian",) * 3, with_image=False, dz=2, dw=1, tab_dims=(3, 2, 2),
                         hidden=(4,), n_clusters=2, seed=4)
    x = make_views(1, with_image=False, tab_dims=(3, 2, 2), seed=9)
    reps = 600
    views = [v.expand(reps, -1) for v in x]
    patterns = torch.tensor([[True, True, False], [True, False, True], [True, True, True], [False, True, True]])
    observed = patterns[torch.arange(reps) % 4]
    names = [n for n, _ in module.named_parameters() if n.startswith("encoders.")]
    rows = {"iwae": [], "dreg": []}
    for est in rows:
        for seed in range(40):
            module.zero_grad()
            torch.manual_seed(seed)
            module.objective(views, n_samples=3, estimator=est, beta=1.0, observed=observed).loss.backward()
            rows[est].append(torch.cat([dict(module.named_parameters())[n].grad.flatten() for n in names]))
    gi, gd = torch.stack(rows["iwae"]), torch.stack(rows["dreg"])
    z = _paired_z(gi, gd)
    assert z.abs().max() < 4.5, z
    assert (gi - gd).abs().max() > 10 * (gi.mean(0) - gd.mean(0)).abs().max() / math.sqrt(40)  # the test has power


# ----------------------------------------------------------------------------------------
# fit on partially observed samples
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split():
    views, y = make_data(600)
    return [v[:300] for v in views], y[:300], [v[300:] for v in views], y[300:], random_mask(300, 3, 0.3, seed=1)


def with_placeholders(views, mask, value):
    return [np.where(mask[:, m].reshape(-1, *[1] * (v.ndim - 1)), v, np.float32(value)) for m, v in enumerate(views)]


def test_fit_with_holes_clusters_like_fit_on_full_data(split):
    """30% of the entries missing: the model still clusters the fully observed test data (fixed
    seeds; chance is ~0.4) about as well as one trained on the full data, and the training data
    with holes through predict(mask=)."""
    train, ytr, test, yte, mask = split
    assert 0.25 < 1 - mask.mean() < 0.35 and mask.any(1).all() and not mask.all(1).all()
    options = {**FAST, "seed": 1}
    full = CMVAE(epochs=10, **options).fit(train)
    partial = CMVAE(epochs=10, **options).fit(with_placeholders(train, mask, np.nan), mask=mask)
    acc_full = clustering_scores(yte, full.predict(test))["acc"]
    acc_partial = clustering_scores(yte, partial.predict(test))["acc"]
    assert acc_partial > 0.8 and acc_partial >= acc_full - 0.1, (acc_partial, acc_full)
    assert clustering_scores(ytr, partial.predict(train, mask=mask))["acc"] > 0.8
    assert all(np.isfinite(v).all() for k, v in partial.history_.items())


def test_placeholders_and_dataset_masks_give_the_same_fit(split):
    """NaN or 0 placeholders, mask= or a dataset's mask: the same training run, weight for weight
    (schema statistics, k-means initialisation and objective never read the placeholders)."""
    train, _, _, _, mask = split
    options = {**FAST, "cluster_init_epoch": 1}
    a = CMVAE(epochs=2, **options).fit(with_placeholders(train, mask, np.nan), mask=mask)
    b = CMVAE(epochs=2, **options).fit(ArrayDataset(with_placeholders(train, mask, 7.0), mask=mask))
    assert a.schema_.to_dict() == b.schema_.to_dict()
    for key, value in a.module_.state_dict().items():
        assert torch.equal(value, b.module_.state_dict()[key]), key
    c = CMVAE(epochs=2, **options).fit(train)  # ... and the holes do change the run
    assert not torch.equal(a.module_.prior.means, c.module_.prior.means)


def test_schema_statistics_use_observed_rows_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g) * 2 + 5
    mask = torch.rand(50, 2, generator=g) > 0.3
    mask[:, 0] = True
    spec = DataSchema.infer([torch.zeros(50, 1), x], mask=mask).modalities[1]
    np.testing.assert_allclose(spec.mean, x[mask[:, 1]].double().mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(spec.std, x[mask[:, 1]].double().std(0).numpy(), rtol=1e-12)
    assert DataSchema.infer([torch.zeros(50, 1), x]).to_dict() == DataSchema.infer(
        [torch.zeros(50, 1), x], mask=torch.ones(50, 2, dtype=torch.bool)).to_dict()


def test_validation_with_holes_and_resume(split, tmp_path):
    train, _, test, yte, mask = split
    val_mask = random_mask(300, 3, 0.3, seed=2)
    options = {**FAST, "cluster_init_epoch": 1}
    model = MMVAEPlus(epochs=2, **{k: v for k, v in options.items() if k != "cluster_init_epoch"})
    model.fit(train, mask=mask, val_views=test, val_labels=yte, val_mask=val_mask, out_dir=tmp_path)
    assert len(model.history_["val/bound"]) == 2 and np.isfinite(model.history_["val/bound"]).all()
    model.epochs = 3
    model.fit(train, mask=mask, val_views=test, val_mask=val_mask, out_dir=tmp_path, resume=True)
    assert model.history_["epoch"] == [2.0]
    cm = CMVAE(epochs=1, **options).fit(train, mask=mask, val_views=ArrayDataset(test, mask=val_mask), val_labels=yte)
    assert 0.0 <= cm.history_["val/acc"][0] <= 1.0  # ClusteringMonitor votes with the observed modalities


def test_mmvae_trains_with_holes(split):
    train, _, test, _, mask = split
    model = MMVAE(epochs=1, n_clusters=3, shared_dim=4, batch_size=64, n_samples=2, progress=False,
                  accelerator="cpu", likelihood="gaussian").fit(train, mask=mask)
    assert np.isfinite(model.history_["train/loss_epoch"]).all()
    assert model.predict(test).shape == (300,)


@pytest.mark.parametrize("klass", [MVAE, MoPoE, VaDE, DeepCluster, CMC])
def test_models_without_partial_training_refuse_holes(klass, split):
    train, _, _, _, mask = split
    model = klass(n_clusters=3, epochs=1)
    pattern = rf"{klass.__name__} trains on fully observed samples only.*CMVAE, MMVAE, MMVAEPlus"
    with pytest.raises(DataValidationError, match=pattern):
        model.fit(train, mask=mask)
    if klass is not VaDE and klass is not DeepCluster:  # they take one view of a list, not a dataset
        with pytest.raises(DataValidationError, match=pattern):
            model.fit(ArrayDataset(train, mask=mask))
    with pytest.raises(DataValidationError, match=pattern):  # (the unimodal VaDE/DeepCluster read views[0])
        model.fit([None, train[1], train[2]])


def test_fit_errors_for_unusable_holes(split):
    train, _, _, _, mask = split
    model = CMVAE(epochs=1, **FAST)
    never = mask.copy()
    never[:, 2] = False
    never[~never.any(1), 0] = True
    with pytest.raises(DataValidationError, match="modality 2 is observed for no sample"):
        model.fit(train, mask=never)
    with pytest.raises(DataValidationError, match=r"views\[1\] is None.*every modality observed"):
        model.fit([train[0], None, train[2]])
    empty = mask.copy()
    empty[5] = False
    with pytest.raises(DataValidationError, match="no observed modality"):
        model.fit(train, mask=empty)
    for bad in (mask[:, :2], np.ones((300, 2), bool)):  # checked even when it has no holes
        with pytest.raises(DataValidationError, match=r"mask must have shape \[N, M\]"):
            model.fit(train, mask=bad)
    nan_observed = with_placeholders(train, mask, 0.0)
    nan_observed[0][np.nonzero(mask[:, 0])[0][0], 0] = np.nan
    with pytest.raises(DataValidationError, match="NaN"):
        model.fit(nan_observed, mask=mask)
