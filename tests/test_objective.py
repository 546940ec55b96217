"""The CMVAE objective against an independent brute-force computation, the cluster prior,
gradient flow, the DReG estimator, and the majority vote.

The brute-force reference recomputes every log importance weight with explicit Python
loops over modalities, samples, datapoints and clusters, using ``torch.distributions``
and calling every encoder/decoder on one datapoint at a time, straight from

    log W_m = sum_n lambda_n log p(x_n | z, w_n)
              + beta * [ E_{p(c|z)}[log p(c) + log p(z|c) - log p(c|z)] + log p(w_m)
                         - log (1/M) sum_n q(z|x_n) - log q(w_m|x_m) ]
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Laplace, Normal

from cmvae.distributions import latent_family, likelihood
from cmvae.models.cmvae import CMVAEModule
from cmvae.nets import TabularDecoder, TabularEncoder, build_networks
from cmvae.objectives import mixture_log_prob, reduce_log_weights
from cmvae.priors import ClusterPrior
from cmvae.selection import majority_vote

DZ, DW = 2, 2
DIST = {"gaussian": Normal, "laplace": Laplace}


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def make_module(
    family: str,
    liks: tuple[str, ...],
    *,
    lik_scales: tuple[float, ...] | None = None,
    lik_weights: tuple[float, ...] | None = None,
    n_clusters: int = 3,
    with_image: bool = True,
    learn_prior_scales: bool = True,
    dz: int = DZ,
    dw: int = DW,
    tab_dims: tuple[int, int] = (4, 3),
    hidden: tuple[int, ...] = (8,),
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> CMVAEModule:
    """A tiny CMVAE: tabular [B, 4] and [B, 3] (+ image [B, 1, 8, 8]), non-trivial prior."""
    torch.manual_seed(seed)
    out = 2 * (dz + dw)
    encoders = [TabularEncoder(d, out, hidden) for d in tab_dims]
    decoders = [TabularDecoder(dz + dw, d, hidden) for d in tab_dims]
    if with_image:
        enc, dec = build_networks((1, 8, 8), dz, dw, likelihood=liks[2])
        encoders.append(enc)
        decoders.append(dec)
    n_mod = len(encoders)
    scales = lik_scales or tuple(0.6 + 0.2 * i for i in range(n_mod))
    module = CMVAEModule(
        encoders,
        decoders,
        [likelihood(name, s) for name, s in zip(liks[:n_mod], scales)],
        n_clusters=n_clusters,
        shared_dim=dz,
        private_dim=dw,
        latent_family_name=family,
        learn_prior_scales=learn_prior_scales,
        likelihood_weights=lik_weights,
    )
    with torch.no_grad():  # move every prior parameter away from its symmetric initial value
        module.prior.logits.copy_(torch.randn(n_clusters) * 0.5)
        module.prior.means.copy_(torch.randn(n_clusters, dz))
        module.prior.raw_scales.add_(torch.randn(n_clusters, dz) * 0.3)
        module.private_prior.raw_aux_scales.add_(torch.randn(n_mod, dw) * 0.3)
    return module.to(dtype)


def make_views(batch: int, *, with_image: bool = True, tab_dims=(4, 3), seed: int = 1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    views = [torch.randn(batch, d, generator=g, dtype=dtype) for d in tab_dims]
    if with_image:
        views.append(torch.rand(batch, 1, 8, 8, generator=g, dtype=dtype))
    return views


def brute_force_log_weights(module: CMVAEModule, views, samples, *, beta: float, lam, liks, lik_scales, family):
    """log W [M, K, B] with explicit loops (see the module docstring)."""
    Dist = DIST[family]
    n_mod = len(views)
    z_all, w_own, w_aux = samples["z"], samples["w_own"], samples["w_aux"]
    _, n_samples, batch, dz = z_all.shape
    dw = w_own.shape[-1]
    out = torch.empty(n_mod, n_samples, batch, dtype=torch.float64)
    prior = module.prior
    logits, means = prior.logits.detach(), prior.means.detach()
    active = [c for c in range(prior.n_clusters) if bool(prior.active[c])]
    total = sum(math.exp(float(logits[c])) for c in active)
    log_pi = {c: float(logits[c]) - math.log(total) for c in active}
    prior_scales = F.softplus(prior.raw_scales.detach()).clamp_min(1e-4)
    with torch.no_grad():
        # posterior parameters, one datapoint at a time
        post = {}
        for n in range(n_mod):
            for b in range(batch):
                raw = module.encoders[n](views[n][b : b + 1])[0]
                z_loc, z_raw = raw[:dz], raw[dz : 2 * dz]
                w_loc, w_raw = raw[2 * dz : 2 * dz + dw], raw[2 * dz + dw :]
                post[n, b] = (z_loc, F.softplus(z_raw) + 1e-4, w_loc, F.softplus(w_raw) + 1e-4)
        for m in range(n_mod):
            for k in range(n_samples):
                for b in range(batch):
                    z, w = z_all[m, k, b], w_own[m, k, b]
                    # likelihoods: own private latent for n == m, auxiliary sample otherwise
                    log_lik = 0.0
                    for n in range(n_mod):
                        w_n = w if n == m else w_aux[n, m, k, b]
                        decoded = module.decoders[n](torch.cat([z, w_n])[None])[0]
                        lik_dist = DIST[liks[n]](decoded, torch.tensor(lik_scales[n], dtype=torch.float64))
                        log_lik += lam[n] * float(lik_dist.log_prob(views[n][b]).sum())
                    # cluster part: E_{p(c|z)}[log p(c) + log p(z|c) - log p(c|z)], explicit sum over c
                    log_joint = {
                        c: log_pi[c] + float(Dist(means[c], prior_scales[c]).log_prob(z).sum()) for c in active
                    }
                    evidence = sum(math.exp(v) for v in log_joint.values())
                    cluster_term = 0.0
                    for c in active:
                        p_c = math.exp(log_joint[c]) / evidence
                        if p_c > 0:
                            cluster_term += p_c * (log_joint[c] - math.log(p_c))
                    std_prior = Dist(torch.zeros(dw, dtype=torch.float64), torch.ones(dw, dtype=torch.float64))
                    log_p_w = float(std_prior.log_prob(w).sum())
                    q_mix = sum(
                        math.exp(float(Dist(post[n, b][0], post[n, b][1]).log_prob(z).sum())) for n in range(n_mod)
                    ) / n_mod
                    log_q_w = float(Dist(post[m, b][2], post[m, b][3]).log_prob(w).sum())
                    out[m, k, b] = log_lik + beta * (cluster_term + log_p_w - math.log(q_mix) - log_q_w)
    return out


def log_mean_exp_loop(values: torch.Tensor) -> float:
    top = max(float(v) for v in values)
    return top + math.log(sum(math.exp(float(v) - top) for v in values) / len(values))


# ----------------------------------------------------------------------------------------
# 1. brute force
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gaussian", "laplace"])
@pytest.mark.parametrize("liks", [("gaussian", "laplace", "gaussian"), ("laplace", "gaussian", "laplace")])
@pytest.mark.parametrize("estimator", ["elbo", "iwae", "dreg"])
def test_log_weights_match_brute_force(family, liks, estimator):
    # likelihood weights exactly representable in float32: the module stores them in a float32
    # buffer at construction, so e.g. 1.3 would be 1.2999999523 even after .double()
    beta, lam, scales = 1.7, (0.5, 2.0, 1.25), (0.6, 0.9, 0.4)
    module = make_module(family, liks, lik_scales=scales, lik_weights=lam)
    views = make_views(4)
    torch.manual_seed(3)
    terms = module.objective(views, n_samples=3, estimator=estimator, beta=beta, keep_samples=True)
    s = terms.samples
    assert s["z"].shape == (3, 3, 4, DZ) and s["w_own"].shape == (3, 3, 4, DW)
    assert s["w_aux"].shape == (3, 3, 3, 4, DW)
    assert terms.log_weights.dtype == torch.float64
    ref = brute_force_log_weights(
        module, views, s, beta=beta, lam=lam, liks=liks, lik_scales=scales, family=family
    )
    torch.testing.assert_close(terms.log_weights, ref, rtol=1e-10, atol=1e-8)
    if estimator == "elbo":
        expected = float(ref.mean())
    else:  # iwae and dreg report the importance-weighted bound
        expected = sum(log_mean_exp_loop(ref[m, :, b]) for m in range(3) for b in range(4)) / 12
    assert float(terms.bound) == pytest.approx(expected, rel=1e-10, abs=1e-8)
    if estimator == "dreg":  # the loss is the surrogate -sum_k w~_k log W_k (w~ the normalised weights)
        surrogate = 0.0
        for m in range(3):
            for b in range(4):
                lse = log_mean_exp_loop(ref[m, :, b]) + math.log(3)
                surrogate += sum(math.exp(float(ref[m, k, b]) - lse) * float(ref[m, k, b]) for k in range(3))
        expected = surrogate / 12
    assert float(terms.loss.detach()) == pytest.approx(-expected, rel=1e-10, abs=1e-8)


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_log_weights_brute_force_with_pruned_cluster(family):
    liks, lam, scales = ("gaussian", "laplace"), (1.5, 0.75), (0.8, 0.5)
    module = make_module(family, liks, lik_scales=scales, lik_weights=lam, n_clusters=4, with_image=False)
    module.prior.set_active([0, 2, 3])
    views = make_views(3, with_image=False)
    torch.manual_seed(5)
    terms = module.objective(views, n_samples=2, estimator="iwae", beta=0.6, keep_samples=True)
    assert torch.isfinite(terms.log_weights).all()
    ref = brute_force_log_weights(
        module, views, terms.samples, beta=0.6, lam=lam, liks=liks, lik_scales=scales, family=family
    )
    torch.testing.assert_close(terms.log_weights, ref, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_samples_follow_posteriors_and_aux_distributions(family):
    """The returned samples come from q(z|x_m), q(w_m|x_m) and r_n (moments over many samples)."""
    module = make_module(family, ("gaussian", "gaussian"), with_image=False)
    views = make_views(2, with_image=False)
    torch.manual_seed(0)
    k = 20000
    with torch.no_grad():
        terms = module.objective(views, n_samples=k, keep_samples=True)
        post = module.encode(views)
    fam = latent_family(family)
    for name, loc, scale in (("z", post.z_loc, post.z_scale), ("w_own", post.w_loc, post.w_scale)):
        x = terms.samples[name]  # [M, K, B, d]
        std = fam.variance(scale).sqrt()
        torch.testing.assert_close(x.mean(1), loc, atol=float(5 * std.max() / math.sqrt(k)), rtol=0)
        torch.testing.assert_close(x.std(1), std, rtol=0.05, atol=0)
    aux = terms.samples["w_aux"]  # [M_tgt, M_src, K, B, dw]
    aux_std = fam.variance(module.private_prior.aux_scales()).sqrt()  # [M, dw]
    assert aux.mean(2).abs().max() < 5 * aux_std.max() / math.sqrt(k)
    torch.testing.assert_close(aux.std(2), aux_std[:, None, None, :].expand(-1, 2, 2, -1), rtol=0.05, atol=0)


def test_elbo_equals_iwae_for_one_sample():
    module = make_module("laplace", ("gaussian", "laplace"), with_image=False)
    views = make_views(5, with_image=False)
    results = {}
    for est in ("elbo", "iwae"):
        module.zero_grad()
        torch.manual_seed(11)
        terms = module.objective(views, n_samples=1, estimator=est, beta=2.5)
        terms.loss.backward()
        results[est] = (terms, [p.grad.clone() for p in module.parameters() if p.requires_grad])
    (te, ge), (ti, gi) = results["elbo"], results["iwae"]
    assert float(te.bound) == pytest.approx(float(ti.bound), rel=1e-12)
    assert float(te.loss.detach()) == pytest.approx(float(ti.loss.detach()), rel=1e-12)
    for a, b in zip(ge, gi):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_iwae_bound_is_at_least_elbo_on_same_samples():
    module = make_module("gaussian", ("gaussian", "laplace"), with_image=False)
    views = make_views(6, with_image=False)
    torch.manual_seed(2)
    terms = module.objective(views, n_samples=5, estimator="elbo")
    _, iw = reduce_log_weights(terms.log_weights, "iwae")
    assert float(iw) > float(terms.bound)  # Jensen, strict for non-constant weights
    with pytest.raises(ValueError, match="unknown estimator"):
        reduce_log_weights(terms.log_weights, "vimco")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# 2. cluster prior
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_cluster_posterior_is_bayes_rule(family):
    torch.manual_seed(0)
    prior = ClusterPrior(4, 3, family, learn_scales=True).double()
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.raw_scales.add_(torch.randn(4, 3) * 0.4)
    z = torch.randn(6, 3, dtype=torch.float64) * 2
    log_post = prior.log_posterior(z)
    assert log_post.shape == (6, 4)
    torch.testing.assert_close(log_post.exp().sum(-1), torch.ones(6, dtype=torch.float64), rtol=0, atol=1e-12)
    pi = torch.softmax(prior.logits, 0)
    scales = F.softplus(prior.raw_scales)
    for i in range(6):
        joint = torch.stack(
            [pi[c] * DIST[family](prior.means[c], scales[c]).log_prob(z[i]).sum().exp() for c in range(4)]
        )
        torch.testing.assert_close(log_post[i].exp(), joint / joint.sum(), rtol=1e-10, atol=1e-14)
        assert float(prior.log_prob(z[i])) == pytest.approx(math.log(float(joint.sum())), rel=1e-10)


def test_pruned_cluster_has_zero_probability_everywhere():
    torch.manual_seed(0)
    prior = ClusterPrior(3, 2, "gaussian")
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.2, 1.5, -0.4]))
    prior.set_active([0, 2])
    assert prior.active_ids() == [0, 2]
    pi = prior.weights()
    assert float(pi[1]) == 0.0
    assert float(pi.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(pi[0] / pi[2]) == pytest.approx(math.exp(0.6), rel=1e-5)  # renormalised over the rest
    # a point right on top of the pruned component still gets posterior exactly 0
    z = torch.cat([prior.means[1:2].detach(), torch.randn(4, 2)])
    post = prior.log_posterior(z).exp()
    assert (post[:, 1] == 0).all()
    torch.testing.assert_close(post.sum(-1), torch.ones(5))
    assert torch.isfinite(prior.log_prob(z)).all()
    # sampling never returns it
    _, c = prior.sample(3000)
    assert set(c.tolist()) == {0, 2}
    with pytest.raises(ValueError, match="pruned"):
        prior.sample(5, cluster=1)
    with pytest.raises(ValueError, match="cluster must be in"):
        prior.sample(5, cluster=3)
    z0, c0 = prior.sample(7, cluster=2)
    assert z0.shape == (7, 2) and (c0 == 2).all()
    # boolean masks work too, and re-activating restores it
    prior.set_active(torch.tensor([True, True, False]))
    assert prior.active_ids() == [0, 1] and float(prior.weights()[2]) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        prior.set_active([])


# ----------------------------------------------------------------------------------------
# 3. gradient flow
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["elbo", "dreg"])
@pytest.mark.parametrize("n_samples", [1, 3])
@pytest.mark.parametrize("learn_prior_scales", [False, True])
def test_gradients_reach_every_trainable_parameter(estimator, n_samples, learn_prior_scales):
    module = make_module(
        "laplace", ("gaussian", "laplace", "laplace"), learn_prior_scales=learn_prior_scales, dtype=torch.float32
    )
    assert module.prior.raw_scales.requires_grad == learn_prior_scales
    views = make_views(4, dtype=torch.float32)
    torch.manual_seed(0)
    module.objective(views, n_samples=n_samples, estimator=estimator, beta=2.0).loss.backward()
    for name, p in module.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name
            continue
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, f"zero gradient for {name}"
    # every cluster mean, every modality's aux scale, every encoder head row receives signal
    assert (module.prior.means.grad.abs().sum(-1) > 0).all()
    assert (module.private_prior.raw_aux_scales.grad.abs().sum(-1) > 0).all()
    for enc in module.encoders[:2]:
        assert (enc.net[-1].weight.grad.abs().sum(-1) > 0).all()


# ----------------------------------------------------------------------------------------
# 4. DReG
# ----------------------------------------------------------------------------------------
def _grads(module, views, estimator, seed, n_samples, beta=1.5):
    module.zero_grad()
    torch.manual_seed(seed)
    terms = module.objective(views, n_samples=n_samples, estimator=estimator, beta=beta, keep_samples=True)
    terms.loss.backward()
    return terms, {n: p.grad.clone() for n, p in module.named_parameters() if p.requires_grad}


def test_dreg_same_samples_gives_iwae_value_and_decoder_prior_gradients():
    module = make_module("gaussian", ("gaussian", "laplace", "gaussian"))
    views = make_views(4)
    ti, gi = _grads(module, views, "iwae", 7, 4)
    td, gd = _grads(module, views, "dreg", 7, 4)
    for key in ("z", "w_own", "w_aux"):
        assert torch.equal(ti.samples[key], td.samples[key]), key
    torch.testing.assert_close(ti.log_weights, td.log_weights, rtol=0, atol=0)
    assert float(ti.bound) == float(td.bound)
    non_encoder = [n for n in gi if not n.startswith("encoders.")]
    assert {"prior.logits", "prior.means", "prior.raw_scales", "private_prior.raw_aux_scales"} <= set(non_encoder)
    assert any(n.startswith("decoders.2.") for n in non_encoder)
    for n in non_encoder:
        torch.testing.assert_close(gd[n], gi[n], rtol=1e-9, atol=1e-12, msg=n)
    # ... while the encoders really get a different (doubly-reparameterised) gradient
    enc = [n for n in gi if n.startswith("encoders.")]
    assert any(not torch.allclose(gd[n], gi[n], rtol=1e-3, atol=1e-8) for n in enc)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
def test_dreg_sample_gradient_uses_beta_weighted_squared_weights(beta):
    """d loss / d z_k = -[(1 - beta) w~_k + beta w~_k^2] d log W_k / d z_k / (M B)."""
    g = torch.Generator().manual_seed(0)
    m, k, b, d = 2, 4, 3, 2
    z = torch.randn(m, k, b, d, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(m, 1, b, d, generator=g, dtype=torch.float64) + 0.5
    log_w = -(scale * z**2).sum(-1)  # d log W / d z = -2 scale z
    loss, bound = reduce_log_weights(log_w, "dreg", (z,), beta=beta)
    loss.backward()
    w = torch.softmax(log_w.detach(), dim=1).unsqueeze(-1)
    expected = -((1 - beta) * w + beta * w**2) * (-2 * scale * z.detach()) / (m * b)
    torch.testing.assert_close(z.grad, expected, rtol=1e-12, atol=1e-14)
    assert float(bound) == pytest.approx(float((torch.logsumexp(log_w, 1) - math.log(k)).mean()))


_MC_CHUNKS, _MC_REPLICATES = 50, 2000


@functools.lru_cache(maxsize=None)
def _mc_encoder_gradients(n_samples: int, beta: float, family: str = "gaussian"):
    """Encoder gradients of iwae and dreg on one datapoint, each chunk averaging
    ``_MC_REPLICATES`` independent replicates (the batch axis): ``[chunks, n_params]`` each."""
    module = make_module(family, ("gaussian", "gaussian"), with_image=False, dz=2, dw=1, tab_dims=(3, 2),
                         hidden=(4,), n_clusters=2, seed=4)
    x = make_views(1, with_image=False, tab_dims=(3, 2), seed=9)
    views = [v.expand(_MC_REPLICATES, -1) for v in x]
    names = [n for n, _ in module.named_parameters() if n.startswith("encoders.")]
    out = {}
    for est in ("iwae", "dreg"):
        rows = []
        for seed in range(_MC_CHUNKS):
            _, g = _grads(module, views, est, seed, n_samples, beta)
            rows.append(torch.cat([g[n].flatten() for n in names]))
        out[est] = torch.stack(rows)
    index, start = {}, 0
    for n, p in module.named_parameters():
        if n.startswith("encoders."):
            index[n] = (start, p.shape)
            start += p.numel()
    return out["iwae"], out["dreg"], index


def _paired_z(gi: torch.Tensor, gd: torch.Tensor) -> torch.Tensor:
    diff = gi - gd  # same seeds: paired
    se = diff.std(0) / math.sqrt(diff.shape[0])
    return diff.mean(0) / (se + 1e-12)


def _head_columns(index, rows: slice) -> list[int]:
    """Flat positions of the given output rows of every encoder's last layer (weight and bias)."""
    cols = []
    for e in range(2):
        for part in ("weight", "bias"):
            start, shape = index[f"encoders.{e}.net.2.{part}"]
            per_row = shape[1] if len(shape) == 2 else 1
            for r in range(*rows.indices(shape[0])):
                cols += list(range(start + r * per_row, start + (r + 1) * per_row))
    return cols


def test_dreg_encoder_gradient_unbiased_for_one_sample():
    """K = 1: DReG (path-only gradient) has the ELBO/IWAE gradient as expectation, for every encoder parameter."""
    gi, gd, _ = _mc_encoder_gradients(1, 1.5)
    z = _paired_z(gi, gd)
    assert z.abs().max() < 4.5, z
    # the comparison has power: the estimators do differ sample by sample
    assert (gi - gd).abs().max() > 20 * (gi.mean(0) - gd.mean(0)).abs().max() / math.sqrt(_MC_CHUNKS)


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_dreg_private_encoder_gradient_unbiased_for_several_samples(beta):
    """K = 3: for the private latents (sampled from, and weighted by, the same q(w_m|x_m)) DReG's
    encoder gradient matches IWAE's in expectation (w loc/scale rows of the encoder heads),
    also for beta != 1 (where the encoder weights are (1 - beta) w~ + beta w~^2)."""
    gi, gd, index = _mc_encoder_gradients(3, beta)
    cols = _head_columns(index, slice(4, 6))  # rows: z loc (2), z raw scale (2), w loc (1), w raw scale (1)
    z = _paired_z(gi[:, cols], gd[:, cols])
    assert z.abs().max() < 4.5, z


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_dreg_shared_encoder_gradient_unbiased_for_several_samples(beta):
    """With K > 1 the mixture-of-experts q(z|X) needs the score correction
    (log q_mix - log q_m) on top of DReG's path gradient; with it, z's encoder gradient
    matches IWAE's in expectation."""
    gi, gd, index = _mc_encoder_gradients(3, beta)
    cols = _head_columns(index, slice(0, 4))  # z loc and z raw scale rows
    z = _paired_z(gi[:, cols], gd[:, cols])
    assert z.abs().max() < 4.5, z


# ----------------------------------------------------------------------------------------
# 6. mixture density and majority vote
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gaussian", "laplace"])
def test_mixture_log_prob_matches_direct_computation(family):
    g = torch.Generator().manual_seed(0)
    m, k, b, d = 3, 2, 4, 2
    z = torch.randn(m, k, b, d, generator=g, dtype=torch.float64)
    loc = torch.randn(m, b, d, generator=g, dtype=torch.float64)
    scale = torch.rand(m, b, d, generator=g, dtype=torch.float64) + 0.3
    got = mixture_log_prob(latent_family(family), z, loc, scale)
    assert got.shape == (m, k, b)
    for src in range(m):
        for kk in range(k):
            for bb in range(b):
                dens = sum(
                    math.exp(float(DIST[family](loc[n, bb], scale[n, bb]).log_prob(z[src, kk, bb]).sum()))
                    for n in range(m)
                )
                assert float(got[src, kk, bb]) == pytest.approx(math.log(dens / m), rel=1e-12)


def _log(probs) -> torch.Tensor:
    return torch.tensor(probs, dtype=torch.float64).log()


def test_majority_vote_tie_goes_to_larger_summed_probability():
    # two modalities, one vote each for clusters 0 and 1: cluster 1 has more mass (0.05 + 0.9 vs 0.5 + 0.05)
    point_a = [[0.5, 0.45, 0.05], [0.05, 0.9, 0.05]]
    # mirror case: now the lower id has more mass
    point_b = [[0.9, 0.05, 0.05], [0.3, 0.4, 0.3]]
    # a tie in votes and in mass (0.75 each) -> the lowest id
    point_c = [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]
    log_post = _log([point_a, point_b, point_c]).transpose(0, 1)  # [M=2, N=3, C=3]
    assert majority_vote(log_post).tolist() == [1, 0, 0]


def test_majority_vote_three_against_two():
    confident = [0.98, 0.01, 0.01]  # votes for 0 with a lot of mass
    hesitant = [0.3, 0.3, 0.4]  # votes for 2 with little mass
    log_post = _log([[confident], [confident], [hesitant], [hesitant], [hesitant]])  # [5, 1, 3]
    # cluster 0 has more summed probability (2.86 vs 1.22) but cluster 2 has 3 votes against 2
    assert log_post.exp().sum(0)[0, 0] > log_post.exp().sum(0)[0, 2]
    assert majority_vote(log_post).tolist() == [2]
    assert majority_vote(log_post).dtype == torch.int64
    with pytest.raises(ValueError, match=r"\[M, N, C\]"):
        majority_vote(log_post[0])


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_low_memory_chunks_give_the_same_loss_and_gradients(estimator):
    """low_memory recomputes the decoders in backward, in chunks of whole batches: same values, same gradients."""
    module = make_module("laplace", ("gaussian", "laplace", "laplace"))
    views = make_views(5)
    plain, grads = _grads(module, views, estimator, seed=3, n_samples=4)
    module.low_memory = True
    module.low_memory_rows = 7  # one batch of 5 per chunk: 3 x 4 (source, sample) pairs -> 12 chunks per target
    chunked, chunked_grads = _grads(module, views, estimator, seed=3, n_samples=4)
    torch.testing.assert_close(chunked.loss, plain.loss)
    for name, g in grads.items():
        torch.testing.assert_close(chunked_grads[name], g, msg=name)
