"""The multimodal VAE baselines: expert math, objectives against brute force, estimators, config.

The brute-force references recompute every objective with explicit Python loops over
subsets, modalities, samples and datapoints, calling every encoder/decoder on one datapoint
at a time and using ``torch.distributions`` for densities and KL divergences. The
reparameterisation noise the objective drew is recorded (:class:`RecordingFamily`) so that
the reference evaluates the same samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Laplace, Normal, kl_divergence

import cmvae
from cmvae import CMVAE, MultimodalEstimator
from cmvae.baselines import estimator_class, estimator_defaults, make_estimator
from cmvae.cli import main as cli_main
from cmvae.config import ConfigError, RunConfig, config_from_dict, dump_config, load_config
from cmvae.distributions import LocScaleFamily, likelihood
from cmvae.experts import gaussian_kl, nonempty_subsets, product_of_experts
from cmvae.models.cmvae import CMVAEModule
from cmvae.models.mmjsd import MMJSDModule
from cmvae.models.mmvae import MMVAEModule
from cmvae.models.mmvae_plus import MMVAEPlusModule
from cmvae.models.mopoe import MoPoEModule
from cmvae.models.mvae import MVAEModule
from cmvae.models.mvtcae import MVTCAEModule
from cmvae.nets import TabularDecoder, TabularEncoder
from cmvae.objectives import mvae_objective

DZ = 2
DIMS = (4, 3, 2)
LIKS = ("gaussian", "laplace", "gaussian")
SCALES = (0.6, 0.9, 0.5)
LAM = (0.5, 2.0, 1.25)
DIST = {"gaussian": Normal, "laplace": Laplace}
BASELINES = [cmvae.MVAE, cmvae.MMVAE, cmvae.MoPoE, cmvae.MMJSD, cmvae.MVTCAE, cmvae.MMVAEPlus]


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordingFamily(LocScaleFamily):
    """A latent family that remembers every noise tensor it drew (in order)."""

    drawn: list = field(default_factory=list, compare=False)

    def noise(self, shape, like):
        eps = super().noise(shape, like)
        self.drawn.append(eps)
        return eps


def make_module(klass, *, family="gaussian", dw=0, seed=0, **options):
    """A tiny double-precision model: tabular modalities [B, 4], [B, 3], [B, 2]."""
    torch.manual_seed(seed)
    out = 2 * (DZ + dw)
    module = klass(
        [TabularEncoder(d, out, (8,)) for d in DIMS],
        [TabularDecoder(DZ + dw, d, (8,)) for d in DIMS],
        [likelihood(n, s) for n, s in zip(LIKS, SCALES)],
        shared_dim=DZ,
        private_dim=dw,
        latent_family_name=family,
        likelihood_weights=LAM,
        **options,
    ).double()
    module.z_family = RecordingFamily(family)
    return module


def make_views(batch=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, d, generator=g, dtype=torch.float64) for d in DIMS]


def posteriors_by_hand(module, views):
    """{(m, b): (z loc, z scale)} from one encoder call per datapoint."""
    out = {}
    with torch.no_grad():
        for m, x in enumerate(views):
            for b in range(x.shape[0]):
                raw = module.encoders[m](x[b : b + 1])[0]
                out[m, b] = (raw[:DZ], F.softplus(raw[DZ : 2 * DZ]) + 1e-4)
    return out


def log_lik_by_hand(module, views, n, b, z):
    """lambda_n log p(x_n[b] | z) with one decoder call."""
    with torch.no_grad():
        decoded = module.decoders[n](z[None])[0]
    return LAM[n] * float(DIST[LIKS[n]](decoded, torch.tensor(SCALES[n], dtype=torch.float64)).log_prob(views[n][b]).sum())


def poe_by_hand(experts, prior_weight=1.0, weights=None):
    """Precision-weighted fusion, one dimension at a time."""
    weights = weights or [1.0] * len(experts)
    loc, scale = [], []
    for i in range(DZ):
        precision = prior_weight + sum(w / float(s[i]) ** 2 for w, (_, s) in zip(weights, experts))
        mean = sum(w * float(mu[i]) / float(s[i]) ** 2 for w, (mu, s) in zip(weights, experts)) / precision
        loc.append(mean)
        scale.append(precision**-0.5)
    return torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64)


def kl_by_hand(q, p=None):
    p = p or (torch.zeros(DZ, dtype=torch.float64), torch.ones(DZ, dtype=torch.float64))
    return float(kl_divergence(Normal(*q), Normal(*p)).sum())


def expected_rec(module, views, b, q, eps, targets):
    """mean_k sum_{n in targets} lambda_n log p(x_n[b] | z_k), z_k = loc + scale * eps[k]."""
    return sum(
        sum(log_lik_by_hand(module, views, n, b, q[0] + q[1] * eps[k]) for n in targets) for k in range(eps.shape[0])
    ) / eps.shape[0]


def subsets_by_bitmask(m):
    subsets = [tuple(i for i in range(m) if mask >> i & 1) for mask in range(1, 2**m)]
    return sorted(subsets, key=lambda s: (len(s), s))


# ----------------------------------------------------------------------------------------
# expert math
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("prior_weight", [0.0, 1.0, 0.25])
def test_product_of_experts_matches_normalised_density_product(prior_weight):
    """1-D: the product of (weighted) densities, normalised on a grid, has the closed-form mean and variance."""
    loc = torch.tensor([[0.7], [-1.2], [2.0]], dtype=torch.float64)
    scale = torch.tensor([[0.5], [1.3], [0.8]], dtype=torch.float64)
    weights = [0.25, 0.25, 0.25] if prior_weight == 0.25 else None
    mean, std = product_of_experts(loc, scale, prior_weight=prior_weight, weights=weights)
    grid = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    w = weights or [1.0, 1.0, 1.0]
    log_dens = sum(wi * Normal(loc[i, 0], scale[i, 0]).log_prob(grid) for i, wi in enumerate(w))
    log_dens = log_dens + prior_weight * Normal(0.0, 1.0).log_prob(grid)
    dens = torch.exp(log_dens - log_dens.max())
    dens = dens / torch.trapezoid(dens, grid)
    num_mean = torch.trapezoid(grid * dens, grid)
    num_var = torch.trapezoid((grid - num_mean) ** 2 * dens, grid)
    assert float(mean[0]) == pytest.approx(float(num_mean), abs=1e-7)
    assert float(std[0]) ** 2 == pytest.approx(float(num_var), rel=1e-6)


def test_product_of_experts_batched_and_single_expert():
    g = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(4, 5, 3, generator=g), torch.rand(4, 5, 3, generator=g) + 0.2
    mean, std = product_of_experts(loc, scale)
    assert mean.shape == std.shape == (5, 3)
    for b, i in product(range(5), range(3)):
        prec = 1 + sum(1 / float(scale[e, b, i]) ** 2 for e in range(4))
        assert float(std[b, i]) == pytest.approx(prec**-0.5, rel=1e-5)
        assert float(mean[b, i]) == pytest.approx(sum(float(loc[e, b, i] / scale[e, b, i] ** 2) for e in range(4)) / prec, rel=1e-5, abs=1e-6)
    alone = product_of_experts(loc[:1], scale[:1], prior_weight=0.0)  # one expert, no prior: itself
    torch.testing.assert_close(alone[0], loc[0])
    torch.testing.assert_close(alone[1], scale[0])
    with pytest.raises(ValueError, match="at least one expert"):
        product_of_experts(loc[:0], scale[:0])


def test_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 6, 3, generator=g, dtype=torch.float64), torch.rand(2, 6, 3, generator=g, dtype=torch.float64) + 0.1
    ref = kl_divergence(Normal(a[0], b[0]), Normal(a[1], b[1])).sum(-1)
    torch.testing.assert_close(gaussian_kl(a[0], b[0], a[1], b[1]), ref)
    torch.testing.assert_close(gaussian_kl(a[0], b[0]), kl_divergence(Normal(a[0], b[0]), Normal(0.0, 1.0)).sum(-1))


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_nonempty_subsets(m):
    subsets = nonempty_subsets(m)
    assert len(subsets) == 2**m - 1 == len(set(subsets))
    assert subsets == subsets_by_bitmask(m)
    assert nonempty_subsets([4, 7]) == [(4,), (7,), (4, 7)]


# ----------------------------------------------------------------------------------------
# objectives against brute force
# ----------------------------------------------------------------------------------------
def test_mvae_objective_matches_brute_force():
    module = make_module(MVAEModule)
    views, beta, k = make_views(), 1.7, 2
    torch.manual_seed(0)
    terms = mvae_objective(module, views, n_samples=k, beta=beta, extra_subsets=[(0, 2)])
    noise = module.z_family.drawn
    subsets = [(0, 1, 2), (0,), (1,), (2,), (0, 2)]  # joint, unimodal, the sub-sampled one
    assert len(noise) == len(subsets)
    post = posteriors_by_hand(module, views)
    total = 0.0
    for b in range(3):
        for s, eps in zip(subsets, noise):
            q = poe_by_hand([post[m, b] for m in s], prior_weight=1.0)
            total += expected_rec(module, views, b, q, eps[:, b], s) - beta * kl_by_hand(q)
    assert float(terms.loss) == pytest.approx(-total / 3, rel=1e-10)
    assert float(terms.bound) == pytest.approx(total / 3, rel=1e-10)


def test_mvae_random_subsets_are_middle_sized_and_distinct():
    module = make_module(MVAEModule, subsampled_subsets=2)
    torch.manual_seed(0)
    for _ in range(5):
        subsets = module.random_subsets()
        assert len(subsets) == 2 == len(set(subsets)) and all(len(s) == 2 for s in subsets)
    with pytest.raises(ValueError, match="subsampled_subsets"):
        make_module(MVAEModule, subsampled_subsets=-1)


def test_mopoe_objective_matches_brute_force():
    module = make_module(MoPoEModule)
    views, beta, k = make_views(), 0.8, 2
    torch.manual_seed(1)
    terms = module.objective(views, n_samples=k, beta=beta)
    (eps,) = module.z_family.drawn  # [S, K, B, dz]
    subsets = subsets_by_bitmask(3)
    post = posteriors_by_hand(module, views)
    total = 0.0
    for b in range(3):
        per_subset = []
        for s, e in zip(subsets, eps):
            q = poe_by_hand([post[m, b] for m in s], prior_weight=0.0)
            per_subset.append(expected_rec(module, views, b, q, e[:, b], range(3)) - beta * kl_by_hand(q))
        total += sum(per_subset) / len(subsets)
    assert float(terms.loss) == pytest.approx(-total / 3, rel=1e-10)


def test_mopoe_with_subset_sampling_matches_brute_force():
    """One uniformly drawn subset per datapoint: that subset's ELBO."""
    module = make_module(MoPoEModule, subset_sampling=True)
    views, beta = make_views(6), 0.8
    torch.manual_seed(2)
    terms = module.objective(views, n_samples=2, beta=beta)
    (eps,) = module.z_family.drawn  # [K, B, dz]
    picks = terms.samples["subset"].tolist()
    assert len(set(picks)) > 1 and all(0 <= p < 7 for p in picks)
    subsets = subsets_by_bitmask(3)
    post = posteriors_by_hand(module, views)
    total = 0.0
    for b, p in enumerate(picks):
        q = poe_by_hand([post[m, b] for m in subsets[p]], prior_weight=0.0)
        total += expected_rec(module, views, b, q, eps[:, b], range(3)) - beta * kl_by_hand(q)
    assert float(terms.loss) == pytest.approx(-total / 6, rel=1e-10)


def test_mmjsd_objective_matches_brute_force():
    module = make_module(MMJSDModule)
    views, beta, k = make_views(), 1.3, 2
    torch.manual_seed(2)
    terms = module.objective(views, n_samples=k, beta=beta)
    (eps,) = module.z_family.drawn  # [M, K, B, dz]
    post = posteriors_by_hand(module, views)
    pi = 1 / 4
    total = 0.0
    for b in range(3):
        rec = sum(expected_rec(module, views, b, post[m, b], eps[m, :, b], range(3)) for m in range(3)) / 3
        f = poe_by_hand([post[m, b] for m in range(3)], prior_weight=pi, weights=[pi] * 3)
        js = sum(pi * kl_by_hand(post[m, b], f) for m in range(3))
        js += pi * kl_by_hand((torch.zeros(DZ, dtype=torch.float64), torch.ones(DZ, dtype=torch.float64)), f)
        total += rec - beta * js
    assert float(terms.loss) == pytest.approx(-total / 3, rel=1e-10)


def test_mvtcae_objective_matches_brute_force():
    alpha, beta, k = 0.3, 2.0, 3
    module = make_module(MVTCAEModule, alpha=alpha)
    views = make_views()
    torch.manual_seed(3)
    terms = module.objective(views, n_samples=k, beta=beta)
    (eps,) = module.z_family.drawn  # [K, B, dz]
    post = posteriors_by_hand(module, views)
    total = 0.0
    for b in range(3):
        q = poe_by_hand([post[m, b] for m in range(3)], prior_weight=0.0)
        rec = expected_rec(module, views, b, q, eps[:, b], range(3))
        cvib = sum(kl_by_hand(q, post[m, b]) for m in range(3))
        total += (3 - alpha) / 3 * rec - beta * ((1 - alpha) * kl_by_hand(q) + alpha / 3 * cvib)
    assert float(terms.loss) == pytest.approx(-total / 3, rel=1e-10)


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_mmvae_objective_matches_brute_force(estimator):
    """log W_mk = sum_n lambda_n log p(x_n | z_mk) + beta [log p(z_mk) - log (1/M) sum_n q(z_mk | x_n)],
    z_mk ~ q(z | x_m) (Laplace); the bound is mean_{m,b} log mean_k W."""
    module = make_module(MMVAEModule, family="laplace")
    views, beta, k = make_views(), 1.0, 3
    torch.manual_seed(4)
    terms = module.objective(views, n_samples=k, estimator=estimator, beta=beta, keep_samples=True)
    z_all = terms.samples["z"]
    post = posteriors_by_hand(module, views)
    bound = 0.0
    for m, b in product(range(3), range(3)):
        log_w = []
        for kk in range(k):
            z = z_all[m, kk, b].detach()
            lik = sum(log_lik_by_hand(module, views, n, b, z) for n in range(3))
            prior = float(Laplace(torch.zeros(DZ, dtype=torch.float64), torch.ones(DZ, dtype=torch.float64)).log_prob(z).sum())
            mix = sum(math.exp(float(Laplace(*post[n, b]).log_prob(z).sum())) for n in range(3)) / 3
            log_w.append(lik + beta * (prior - math.log(mix)))
        top = max(log_w)
        bound += top + math.log(sum(math.exp(v - top) for v in log_w) / k)
    assert float(terms.bound) == pytest.approx(bound / 9, rel=1e-10)
    if estimator == "iwae":
        assert float(terms.loss) == pytest.approx(-bound / 9, rel=1e-10)


@pytest.mark.parametrize("estimator", ["elbo", "dreg"])
def test_mmvae_plus_equals_cmvae_with_one_standard_cluster(estimator):
    plus = make_module(MMVAEPlusModule, family="laplace", dw=2)
    ref = make_module(CMVAEModule, family="laplace", dw=2, n_clusters=1, learn_prior_means=False)
    ref.load_state_dict({**ref.state_dict(), **plus.state_dict()})  # same networks and aux scales
    with torch.no_grad():  # scale exactly 1 in double precision (float32 init rounds softplus^-1(1))
        ref.prior.raw_scales.fill_(math.log(math.e - 1))
    views = make_views(4)
    losses, grads = [], []
    for module in (plus, ref):
        module.zero_grad()
        torch.manual_seed(7)
        terms = module.objective(views, n_samples=3, estimator=estimator, beta=2.5)
        terms.loss.backward()
        losses.append((float(terms.loss), float(terms.bound)))
        grads.append(torch.cat([p.grad.flatten() for p in module.encoders.parameters()]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    torch.testing.assert_close(grads[0], grads[1])
    assert float(ref.prior.means.abs().max()) == 0.0


def test_poe_models_refuse_laplace_private_latents_and_other_estimators():
    with pytest.raises(ValueError, match="Gaussian"):
        make_module(MoPoEModule, family="laplace")
    with pytest.raises(ValueError, match="private_dim"):
        make_module(MVAEModule, dw=2)
    with pytest.raises(ValueError, match="private_dim"):
        make_module(MMVAEModule, dw=2)
    with pytest.raises(ValueError, match="estimator must be 'elbo'"):
        make_module(MMJSDModule).objective(make_views(), estimator="iwae")


def test_subset_posteriors_for_generation():
    """MVAE: PoE of the observed experts and the prior; MVTCAE: without the prior; MoPoE: the
    mixture over the observed subsets' PoEs (mean: average of the subset means); mmJSD: the MoE."""
    views = make_views(2)
    partial = [views[0], None, views[2]]
    for klass, prior in ((MVAEModule, 1.0), (MVTCAEModule, 0.0)):
        module = make_module(klass)
        post = posteriors_by_hand(module, views)
        with torch.no_grad():
            z = module.sample_subset_z(partial, use_mean=True)
            joint = module.joint_mean(module.encode(views))
        for b in range(2):
            torch.testing.assert_close(z[b], poe_by_hand([post[0, b], post[2, b]], prior_weight=prior)[0])
            torch.testing.assert_close(joint[b], poe_by_hand([post[m, b] for m in range(3)], prior_weight=prior)[0])
    module = make_module(MoPoEModule)
    post = posteriors_by_hand(module, views)
    with torch.no_grad():
        z = module.sample_subset_z(partial, use_mean=True)
        torch.manual_seed(0)
        draws = module.sample_subset_z(partial)
    for b in range(2):
        comps = [poe_by_hand([post[m, b] for m in s], prior_weight=0.0)[0] for s in ((0,), (2,), (0, 2))]
        torch.testing.assert_close(z[b], sum(comps) / 3)
    assert draws.shape == (2, DZ)
    module = make_module(MMJSDModule)
    post = posteriors_by_hand(module, views)
    with torch.no_grad():
        z = module.sample_subset_z(partial, use_mean=True)
    torch.testing.assert_close(z[1], (post[0, 1][0] + post[2, 1][0]) / 2)


# ----------------------------------------------------------------------------------------
# estimators
# ----------------------------------------------------------------------------------------
def make_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)
    centres = [rng.normal(0, 3, (3, d)) for d in (6, 5)]
    views = [(c[y] + rng.normal(0, 1, (n, c.shape[1]))).astype(np.float32) for c in centres]
    views.append(np.clip(rng.uniform(0, 1, (3, 1, 8, 8))[y] + rng.normal(0, 0.1, (n, 1, 8, 8)), 0, 1).astype(np.float32))
    return views, y


FAST = dict(n_clusters=3, shared_dim=3, epochs=1, batch_size=32, progress=False, accelerator="cpu", likelihood="gaussian")


@pytest.mark.parametrize("klass", BASELINES, ids=lambda k: k.model_type)
def test_estimator_fit_save_load_generate_predict(klass, tmp_path):
    views, y = make_data()
    extra = {"n_samples": 2} if klass is cmvae.MMVAE else {}
    if klass is cmvae.MMVAEPlus:
        extra["private_dim"] = 2
    model = klass(**FAST, **extra).fit(views)
    assert isinstance(model, MultimodalEstimator) and np.isfinite(model.history_["train/loss_epoch"]).all()
    codes = model.transform(views)
    assert codes.shape == (60, 3)
    loaded = MultimodalEstimator.load(model.save(tmp_path / "m"))
    assert type(loaded) is klass and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.transform(views), codes)
    out = loaded.generate([None, views[1], None], seed=0)
    assert out[1] is None and out[0].shape == (60, 6) and out[2].shape == (60, 1, 8, 8)
    np.testing.assert_array_equal(out[0], model.generate([None, views[1], None], seed=0)[0])
    labels = model.predict(views)
    assert labels.shape == (60,) and set(labels) <= {0, 1, 2}
    np.testing.assert_array_equal(labels, loaded.predict(views))  # seeded k-means
    assert set(model.score(views, y)) >= {"nmi", "ari", "acc"}
    assert [s.shape for s in model.sample(4, seed=0)] == [(4, 6), (4, 5), (4, 1, 8, 8)]
    with pytest.raises(ValueError, match="no clusters"):
        model.sample(2, cluster=0)
    with pytest.raises(NotImplementedError, match="k-means"):
        model.predict_proba(views)


@pytest.mark.parametrize("klass", BASELINES, ids=lambda k: k.model_type)
def test_estimator_missing_modalities(klass):
    """None views and per-sample masks use each model's posterior of the observed modalities:
    a masked row gets exactly the code of the same row given with None for its holes."""
    views, _ = make_data()
    extra = {"private_dim": 2} if klass is cmvae.MMVAEPlus else {}
    model = klass(**FAST, **extra).fit(views)
    full = model.transform(views)
    np.testing.assert_array_equal(model.transform(views, mask=np.ones((60, 3), bool)), full)
    only_1 = model.transform([None, views[1], None])
    assert np.isfinite(only_1).all() and not np.allclose(only_1, full)
    mask = np.ones((60, 3), bool)
    mask[::2, 0] = False  # even rows: modality 0 missing
    mask[1::4, 2] = False  # rows 1, 5, ...: modality 2 missing
    codes = model.transform(views, mask=mask)
    np.testing.assert_allclose(codes[::2][mask[::2, 2]], model.transform([None, views[1], views[2]])[::2][mask[::2, 2]],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes[1::4], model.transform([views[0], views[1], None])[1::4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes[3::4], full[3::4], rtol=1e-5, atol=1e-6)
    assert model.predict([None, views[1], None]).shape == (60,)
    generated = model.generate(views, targets=[0], mask=mask, seed=0, use_mean=True)[0]
    np.testing.assert_allclose(generated[3::4], model.generate(views, targets=[0], seed=0, use_mean=True)[0][3::4],
                               rtol=1e-5, atol=1e-6)


def test_poe_model_validates_with_several_samples():
    """Validation uses the IWAE bound for K > 1 only where the model has one."""
    views, y = make_data()
    model = cmvae.MoPoE(**{**FAST, "n_samples": 2}).fit(views, val_views=views, val_labels=y)
    assert np.isfinite(model.history_["val/bound"]).all()


def test_estimator_parameter_checks():
    with pytest.raises(ValueError, match="Gaussian"):
        cmvae.MoPoE(latent_family="laplace")
    with pytest.raises(ValueError, match="private latents"):
        cmvae.MVAE(private_dim=4)
    with pytest.raises(ValueError, match="estimator must be 'elbo'"):
        cmvae.MVTCAE(estimator="dreg")
    with pytest.raises(ValueError, match="alpha"):
        cmvae.MVTCAE(alpha=1.5)
    with pytest.raises(ValueError, match="n_clusters"):
        cmvae.MMJSD(n_clusters=0)
    assert cmvae.MMVAE().get_params()["estimator"] == "dreg"
    assert cmvae.MMVAEPlus().get_params()["private_dim"] == 32
    assert cmvae.MoPoE().get_params()["subset_sampling"] is True


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("klass", BASELINES, ids=lambda k: k.model_type)
def test_config_type_selects_the_estimator_with_its_defaults(klass, tmp_path):
    cfg = config_from_dict({"model": {"type": klass.model_type, "n_clusters": 4}, "training": {"epochs": 2}})
    model = make_estimator(cfg)
    assert type(model) is klass and estimator_class(klass.model_type) is klass
    expected = {**estimator_defaults(klass), "n_clusters": 4, "epochs": 2}
    assert model.get_params() == {k: expected[k] for k in klass._param_names()}
    again = load_config(dump_config(cfg, tmp_path / "run.yaml"))  # every key written, defaults included
    assert make_estimator(again).get_params() == model.get_params()
    assert type(make_estimator({"type": klass.model_type})) is klass


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"model\.type.*'mvae'"):
        config_from_dict({"model": {"type": "mvea"}})
    with pytest.raises(ConfigError, match="cluster_init: not a parameter of model type 'mvae'"):
        config_from_dict({"model": {"type": "mvae", "cluster_init": "random"}})
    with pytest.raises(ConfigError, match="alpha: not a parameter of model type 'cmvae'"):
        config_from_dict({"model": {"alpha": 0.5}})
    with pytest.raises(ConfigError, match="Gaussian|gaussian"):
        make_estimator({"type": "mopoe", "latent_family": "laplace"})
    with pytest.raises(ConfigError, match="no parameter"):
        make_estimator({"type": "mopoe"}, cluster_init="kmeans")
    cfg = config_from_dict({"model": {"type": "mvtcae", "alpha": 0.4, "cluster_init": "kmeans"}})  # at its default
    assert make_estimator(cfg).alpha == 0.4
    assert type(make_estimator(RunConfig())) is CMVAE


def test_cli_train_and_evaluate_a_baseline(tmp_path):
    import yaml

    views, y = make_data(90)
    np.savez(tmp_path / "d.npz", view0=views[0], view1=views[1], labels=y, test_view0=views[0][:30],
             test_view1=views[1][:30], test_labels=y[:30])
    config = {"data": {"name": "arrays", "path": "d.npz"},
              "model": {"type": "mvtcae", "n_clusters": 3, "shared_dim": 3, "likelihood": "gaussian"},
              "training": {"epochs": 2, "batch_size": 32, "progress": False, "accelerator": "cpu"}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert cli_main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(run)]) == 0
    assert type(MultimodalEstimator.load(run / "model")) is cmvae.MVTCAE
    assert cli_main(["evaluate", str(run), "--split", "train"]) == 0
    import json

    report = json.loads((run / "evaluation.json").read_text())
    assert report["model"] == "MVTCAE + k-means" and "MVTCAE + k-means" in report["scores"]
    assert cli_main(["select-clusters", str(run)]) == 2
