"""Label-free signals along Algorithm 1's pruning, and which k each would choose.

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/selection_signals.py --run RUN_DIR [--compose]
    PYTHONPATH=src:benchmarks OMP_NUM_THREADS=1 python benchmarks/selection_signals.py --data digits-views --seed S

``--run``: a trained run folder (e.g. of ``configs/polymnist_cpu_k40.yaml``; a pruned model gets all its clusters
back first). ``--data``: a set of ``clustering_diagnostics.load``, fitted here with the estimator's defaults and
3x the true number of clusters. The pruning is the library's (fewest points by the model's evidence rule, on the
training rows); at every k it scores, per point, on the training rows:

* ``h``: the paper's mean normalised entropy H(p(c|z_m)) / log k (averaged over the modalities);
* ``h_mix``: the normalised entropy of the modality-averaged posterior (1/M) sum_m p(c|z_m): ``h`` plus the
  modalities' disagreement;
* ``disagree``: 1 - the probability that two different modalities draw the same cluster;
* ``-log p(z)/dim``: minus the mixture's log-density of the codes per latent dimension;
* ``h+loglik``: the authors' released score, beta * h - log p(z) / dim;
* ``share-vs-pi``: KL(share of assigned points || renormalised pi) (one number per k, no per-point value).

and prints for each signal the k of its lowest mean, the k the default tie rule takes (the largest k within
2 paired standard errors of the lowest), and the test NMI there; then a table per k with the test NMI.
``--compose``: which labels the points assigned to each kept cluster carry, for k near the truth (a
diagnosis of merges; uses the labels, for reading only).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cmvae.metrics import clustering_scores  # noqa: E402
from cmvae.selection import (  # noqa: E402
    DEFAULT_TIE_TOLERANCE,
    _log_posterior_restricted,
    assign_clusters,
    normalised_entropies,
    paired_standard_errors,
    select_clusters,
)

SIGNALS = ("h", "h_mix", "disagree", "-log p(z)/dim", "h+loglik")


def point_signals(log_lik: torch.Tensor, log_pi_k: torch.Tensor, ids: torch.Tensor, beta: float,
                  dim_z: int) -> dict[str, torch.Tensor]:
    """Each signal per point ``{name: [N]}`` with the clusters ``ids`` active (``log_lik`` ``[M, N, C]``,
    ``log_pi_k`` ``[C]`` renormalised over ``ids``)."""
    log_post = _log_posterior_restricted(log_lik, log_pi_k, ids)  # [M, N, k]
    post, k, n_mod = log_post.exp(), int(ids.numel()), log_lik.shape[0]
    h = normalised_entropies(log_post)
    mix = post.mean(0)  # [N, k]
    h_mix = -(mix * mix.clamp_min(1e-30).log()).sum(-1) / math.log(k)
    agree = sum((post[i] * post[j]).sum(-1) for i in range(n_mod) for j in range(n_mod) if i != j)
    neg_log_pz = -torch.logsumexp(log_lik[..., ids] + log_pi_k[ids], dim=-1).mean(0) / dim_z  # [N]
    return {"h": h, "h_mix": h_mix, "disagree": 1 - agree / (n_mod * (n_mod - 1)),
            "-log p(z)/dim": neg_log_pz, "h+loglik": beta * h + neg_log_pz}


def report(model, views, test_views, test_labels, compose: bool = False) -> None:
    """Prune as Algorithm 1 does and print every signal's choice and the per-k table."""
    log_lik = model.cluster_log_likelihoods(views)
    test_lik = model.cluster_log_likelihoods(test_views)
    log_pi = model.module_.prior.log_weights().detach().cpu()
    result = select_clusters(log_lik, log_pi, assignment=model.assignment, eval_log_lik=test_lik,
                             eval_labels=test_labels, tie_tolerance=0)
    pi, n = log_pi.exp(), log_lik.shape[1]
    per_k: dict[str, dict[int, torch.Tensor]] = {name: {} for name in SIGNALS}
    share_kl: dict[int, float] = {}
    for step in result.steps:
        ids = torch.tensor(step.active)
        log_pi_k = torch.full_like(log_pi, float("-inf"))
        log_pi_k[ids] = torch.log(pi[ids] / pi[ids].sum())
        for name, values in point_signals(log_lik, log_pi_k, ids, model.beta, model.shared_dim).items():
            per_k[name][step.k] = values
        share = torch.tensor([step.counts[int(c)] for c in ids], dtype=torch.float64) / n
        share_kl[step.k] = float((share * (share.clamp_min(1e-12) / log_pi_k[ids].exp()).log()).sum())
        if compose and 6 <= step.k <= 14:
            post = _log_posterior_restricted(test_lik, log_pi_k, ids)
            assigned = ids[assign_clusters(post, log_pi_k[ids], rule=model.assignment)].numpy()
            parts = []
            for c in step.active:
                counts = np.bincount(np.asarray(test_labels)[assigned == c], minlength=int(np.max(test_labels)) + 1)
                parts.append(f"c{c}: " + ",".join(f"{y}x{m}" for y, m in enumerate(counts) if m >= 0.1 * counts.sum()))
            print(f"k = {step.k} (removes c{step.removed}): " + " | ".join(parts))
    nmi = {s.k: s.nmi for s in result.steps}
    means = {name: {k: float(v.mean()) for k, v in values.items()} for name, values in per_k.items()}
    print("\n| signal | lowest at k (test NMI) | tie rule's k (test NMI) |\n|---|---|---|")
    for name in SIGNALS:
        lowest = min(means[name], key=lambda k: (means[name][k], -k))
        above = paired_standard_errors(per_k[name], lowest)
        tied = max(k for k in above if above[k] <= DEFAULT_TIE_TOLERANCE)
        print(f"| {name} | {lowest} ({nmi[lowest]:.3f}) | {tied} ({nmi[tied]:.3f}) |")
    lowest = min(share_kl, key=lambda k: (share_kl[k], -k))
    print(f"| share-vs-pi | {lowest} ({nmi[lowest]:.3f}) | - |")
    best = max(nmi, key=lambda k: (nmi[k], k))
    print(f"| (test NMI itself, uses labels) | {best} ({nmi[best]:.3f}) | |")
    print("\n| k | test NMI | " + " | ".join(SIGNALS) + " | share-vs-pi |\n" + "|---" * (len(SIGNALS) + 3) + "|")
    for k in sorted(nmi, reverse=True):
        if k <= 20:
            values = " | ".join(f"{means[s][k]:.4f}" for s in SIGNALS)
            print(f"| {k} | {nmi[k]:.3f} | {values} | {share_kl[k]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a trained run folder")
    source.add_argument("--data", help="a data set of clustering_diagnostics.load (fitted here)")
    parser.add_argument("--seed", type=int, default=0, help="with --data: the data's and the fit's seed")
    parser.add_argument("--compose", action="store_true", help="print the labels inside each cluster for k 6-14")
    args = parser.parse_args()
    if args.run:
        from cmvae.runs.folder import RunError, load_run

        try:
            _, model, data = load_run(args.run, "cpu")
        except RunError as error:
            sys.exit(f"selection_signals.py: {error}")
        model.module_.prior.set_active(range(model.n_clusters))
        views, _ = data.split("train")
        test_views, test_labels = data.split("test")
    else:
        from clustering_diagnostics import load

        from cmvae import CMVAE

        views, _, test_views, test_labels = load(args.data, args.seed)
        k = len(np.unique(test_labels))
        model = CMVAE(n_clusters=3 * k, seed=args.seed, progress=False, accelerator="cpu").fit(views)
    report(model, views, test_views, np.asarray(test_labels), compose=args.compose)


if __name__ == "__main__":
    main()
