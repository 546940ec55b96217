"""Probe: how well would the model's clusters do if the mixture were fitted on codes of rows never trained on?

    python benchmarks/held_out_readout.py NAME --data polymnist --config polymnist_cpu --seed 0 \
        --set '{"epochs": 28, "cluster_init_epoch": 19, "max_time_minutes": null}' --out DIR

Trains CMVAE on the training split less a held-out share (``--held-out`` rows, never stepped on) and after
every epoch from ``--from-epoch`` on scores on the test split (NMI):

* ``kmeans_test``: k-means on the test codes (the mixture means, what ``transform`` returns);
* ``kmeans_train_to_test`` / ``kmeans_held_to_test``: k-means fitted on training / held-out codes, test codes
  assigned to the nearest centroid;
* ``model``: the model's own clusters (``predict``; 0 before the placement);
* ``held_readout``: the model's readout (``assignment``, per-modality q(c|x_m)) with the components placed by
  k-means on the held-out codes at this epoch (the trained networks unchanged);
* ``held_em``: the same after EM steps of the prior's means and weights on the held-out unimodal codes
  (pooled posterior samples), the objective's prior term maximised with the networks fixed;
* ``agreement`` (no labels): mean over pairs of modalities of the NMI between k-means partitions of each
  modality's own codes of the held-out rows. Only what the modalities share can make two modalities' codes fall
  into the same groups, so it measures how much shared content the codes hold, as labels would;
* ``held_bound`` (no labels): the model's held-out bound of this epoch, when it keeps one
  (``cluster_init_when="plateau"``);
* ``grad_norm`` / ``grad_norm_max``: the mean and the largest L2 norm of the training gradient in the epoch
  (before any clipping).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering_diagnostics import append_row, load, params_from  # noqa: E402

from cmvae import CMVAE  # noqa: E402
from cmvae.callbacks import _mixture_means  # noqa: E402
from cmvae.selection import assign_clusters  # noqa: E402


@torch.no_grad()
def unimodal(model: CMVAE, views: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Unimodal posterior locations and scales ``[M, N, dim]``."""
    module, schema = model.module_, model.schema_
    was = module.training
    module.eval()
    locs, scales = [], []
    for start in range(0, views[0].shape[0], 1024):
        post = module.encode(schema.to_model_input([v[start : start + 1024] for v in views], device))
        locs.append(post.z_loc.cpu())
        scales.append(post.z_scale.cpu())
    module.train(was)
    return torch.cat(locs, 1), torch.cat(scales, 1)


def readout(prior, locs, scales, rule: str, samples: int = 16, seed: int = 0) -> np.ndarray:
    log_post = prior.expected_log_posterior(locs, scales, samples, seed)
    return assign_clusters(log_post, prior.log_weights().detach(), None, rule).numpy()


@torch.no_grad()
def em_refit(prior, locs, scales, steps: int = 20, seed: int = 0) -> None:
    """EM of the means and weights (unit scales fixed) on pooled draws of the unimodal posteriors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = [(locs + scales * prior.family.noise(locs.shape, locs)).reshape(-1, locs.shape[-1]) for _ in range(4)]
    z = torch.cat(draws).to(prior.means)
    for _ in range(steps):
        resp = prior.log_posterior(z).exp()  # [n, C]
        weight = resp.sum(0).clamp_min(1e-6)
        means = (resp.T @ z) / weight[:, None]  # Gaussian M-step (for Laplace components a proxy of the median)
        prior.means.copy_(means)
        prior.logits.copy_(weight.log())


def agreement(locs: np.ndarray, k: int, seed: int) -> float:
    """Mean pairwise NMI of k-means partitions of each modality's codes ``locs`` ``[M, n, dim]`` (no labels)."""
    parts = [KMeans(k, n_init=4, random_state=seed).fit_predict(z) for z in locs.astype(np.float64)]
    pairs = [(a, b) for a in range(len(parts)) for b in range(a + 1, len(parts))]
    return float(np.mean([normalized_mutual_info_score(parts[a], parts[b]) for a, b in pairs]))


class Probe(L.Callback):
    def __init__(self, model, held, test, y_held, y_test, train_pick, y_pick, out, name, seed, start, rule):
        self.model, self.held, self.test, self.train_pick = model, held, test, train_pick
        self.y_test, self.y_pick, self.y_held = y_test, y_pick, y_held
        self.out, self.name, self.seed, self.start, self.rule = out, name, seed, start, rule

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        epoch = trainer.current_epoch + 1
        if epoch < self.start:
            return
        model, dev = self.model, pl_module.device
        k = model.n_clusters
        zt = _mixture_means(model.module_, model.schema_, self.test, dev).double().numpy()
        zh = _mixture_means(model.module_, model.schema_, self.held, dev).double().numpy()
        zr = _mixture_means(model.module_, model.schema_, self.train_pick, dev).double().numpy()
        nmi = lambda y, p: float(normalized_mutual_info_score(y, p))  # noqa: E731
        row = {"name": self.name, "seed": self.seed, "epoch": epoch}

        def on_test(key: str, labels: np.ndarray) -> None:  # NMI and ARI of test labels under ``key``
            row[key], row[f"{key}_ari"] = nmi(self.y_test, labels), float(adjusted_rand_score(self.y_test, labels))

        row["kmeans_test"] = nmi(self.y_test, KMeans(k, n_init=4, random_state=0).fit_predict(zt))
        km_train = KMeans(k, n_init=4, random_state=0).fit(zr)
        row["kmeans_train"] = nmi(self.y_pick, km_train.labels_)
        row["kmeans_train_to_test"] = nmi(self.y_test, km_train.predict(zt))
        km_held = KMeans(k, n_init=4, random_state=0).fit(zh)
        row["kmeans_held"] = nmi(self.y_held, km_held.labels_)
        row["kmeans_held_to_test"] = nmi(self.y_test, km_held.predict(zt))
        locs, scales = unimodal(model, self.test, dev)
        prior = copy.deepcopy(model.module_.prior).cpu().double()
        placed = bool(prior.means.abs().sum() > 0)  # cluster_init="kmeans": the components start together at 0
        own = readout(prior, locs.double(), scales.double(), self.rule) if placed else np.zeros_like(self.y_test)
        on_test("model", own)
        prior.init_from_codes(torch.as_tensor(zh), seed=0)
        on_test("held_readout", readout(prior, locs.double(), scales.double(), self.rule))
        hl, hs = unimodal(model, self.held, dev)
        em_refit(prior, hl.double(), hs.double())
        on_test("held_em", readout(prior, locs.double(), scales.double(), self.rule))
        # the same EM on the training codes: what an end-of-training refit of the objective's prior term gives
        prior2 = copy.deepcopy(model.module_.prior).cpu().double()
        if placed:
            tl, ts = unimodal(model, self.train_pick, dev)
            em_refit(prior2, tl.double(), ts.double())
            row["train_em"] = nmi(self.y_test, readout(prior2, locs.double(), scales.double(), self.rule))
            prior3 = copy.deepcopy(model.module_.prior).cpu().double()
            em_refit(prior3, hl.double(), hs.double())
            on_test("trained_held_em", readout(prior3, locs.double(), scales.double(), self.rule))
        row["agreement"] = agreement(hl.numpy(), k, self.seed)
        bound = trainer.callback_metrics.get("held_out/bound")
        row["held_bound"] = float(bound) if bound is not None else float("nan")
        for key in ("grad_norm", "grad_norm_max"):  # the training gradient's L2 norm (before clipping): mean, max
            value = trainer.callback_metrics.get(f"train/{key}")
            row[key] = float(value) if value is not None else float("nan")
        append_row(self.out / f"{self.name}.csv", row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("name")
    p.add_argument("--data", default="polymnist")
    p.add_argument("--config", default="polymnist_cpu")
    p.add_argument("--set", default="{}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out", type=int, default=800)
    p.add_argument("--from-epoch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="held_out_probe")
    p.add_argument("--save", default=None, help="save the trained model to this folder (CMVAE.load reads it)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / f"{a.name}.csv").exists():
        p.error(f"{out / a.name}.csv exists: pick another NAME or --out (rows would be appended to it)")
    train, y_train, test, y_test = load(a.data, a.seed)
    order = np.random.default_rng(1000 + a.seed).permutation(len(y_train))
    held_ids, fit_ids = np.sort(order[: a.held_out]), np.sort(order[a.held_out :])
    pick = fit_ids[np.random.default_rng(a.seed).permutation(len(fit_ids))[:2000]]
    params = params_from(a.config, json.loads(a.set))
    model = CMVAE(**{**params, "seed": a.seed, "progress": False})
    t = lambda vs, ids: [torch.as_tensor(np.ascontiguousarray(v[ids])) for v in vs]  # noqa: E731
    probe = Probe(model, t(train, held_ids), [torch.as_tensor(v) for v in test], y_train[held_ids], y_test,
                  t(train, pick), y_train[pick], out, a.name, a.seed, a.from_epoch, params.get("assignment", "evidence"))
    model.fit([v[fit_ids] for v in train], callbacks=[probe])
    print(json.dumps(model.score(test, y_test)))
    if a.save:
        model.save(a.save)


if __name__ == "__main__":
    main()
