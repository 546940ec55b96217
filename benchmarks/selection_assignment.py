"""Algorithm 1 with the paper's majority vote against the model's evidence rule in the pruning step.

    python benchmarks/selection_assignment.py --models RUN/model [RUN/model ...]   # saved PolyMNIST models
    python benchmarks/selection_assignment.py --data blobs digits-views [--seeds 0 1 2]   # fits 3 x K clusters

For each model (saved ones are reset to all clusters active first, so a pruned save can be studied
again) Algorithm 1 runs on the training split twice, counting each cluster's points by ``vote`` and
by ``evidence``; printed: K_hat, NMI/ARI on the test split at K_hat (with the model's own predict rule
along the path, i.e. the same rule as the pruning) and NMI at the true K.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from clustering_diagnostics import load
from cmvae import CMVAE


def compare(model: CMVAE, train: list, test: list, y: np.ndarray, label: str) -> None:
    module, _ = model._fitted()
    module.prior.set_active(list(range(module.prior.n_clusters)))
    true_k = len(np.unique(y))
    for rule in ("vote", "evidence"):
        res = model.select_clusters(train, assignment=rule, eval_views=test, eval_labels=y)
        print(f"| {label} | {rule} | {res.n_clusters} | {res.nmi[res.n_clusters]:.3f} | {res.ari[res.n_clusters]:.3f} "
              f"| {res.nmi.get(true_k, float('nan')):.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=[], help="saved CMVAE models trained on offline PolyMNIST")
    parser.add_argument("--data", nargs="*", default=[], help="tabular sets of clustering_diagnostics.py to fit")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| model | pruning by | K_hat | NMI at K_hat | ARI at K_hat | NMI at the true K |\n|---|---|---|---|---|---|")
    if args.models:
        train, _, test, y = load("polymnist")
        for path in args.models:
            compare(CMVAE.load(path), train, test, y, path)
    for data in args.data:
        for seed in args.seeds:
            train, _, test, y = load(data, seed)
            k = len(np.unique(y))
            model = CMVAE(n_clusters=3 * k, seed=seed, progress=False, accelerator="cpu").fit(train)
            compare(model, train, test, y, f"{data} seed {seed}")


if __name__ == "__main__":
    main()
