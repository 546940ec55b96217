"""A new user's checks on small multi-view data with the library's defaults (no tuning).

    python benchmarks/separable_checks.py [--data blobs digits-views] [--seeds 0 1 2] [--epochs N] [--set JSON]

For each data set (see ``clustering_diagnostics.py``: 4 separable clusters in 3 noisy views of
10 / 20 / 5 features, and scikit-learn's digits as 3 tabular views) and seed, on the held-out
split: k-means on the concatenated standardised views (the floor to beat), CMVAE with the true
number of clusters, CMVAE with 3x too many clusters then Algorithm 1 (the selected K), and VaDE
on each single view. Prints one Markdown table (mean +- std over seeds).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler

from clustering_diagnostics import load
from cmvae import CMVAE, VaDE
from cmvae.metrics import clustering_scores


def kmeans_concat(train: list, test: list, k: int, seed: int) -> np.ndarray:
    scalers = [StandardScaler().fit(v) for v in train]
    x_train = np.concatenate([s.transform(v) for s, v in zip(scalers, train)], 1)
    x_test = np.concatenate([s.transform(v) for s, v in zip(scalers, test)], 1)
    return KMeans(k, n_init=10, random_state=seed).fit(x_train).predict(x_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["blobs", "digits-views"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the default number of epochs")
    parser.add_argument("--set", default="{}", help="JSON dict of other parameters overriding the defaults")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[], help="methods to skip: selection, vade")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = ({} if args.epochs is None else {"epochs": args.epochs}) | json.loads(args.set)
    common = {"progress": False, "accelerator": "cpu", **extra}
    results: dict[tuple[str, str], list[float]] = {}
    for data in args.data:
        for seed in args.seeds:
            train, _, test, y = load(data, seed)
            k = len(np.unique(y))
            start = time.time()
            row = {"k-means on concatenated views": clustering_scores(y, kmeans_concat(train, test, k, seed))["nmi"]}
            model = CMVAE(n_clusters=k, seed=seed, **common).fit(train)
            row[f"CMVAE, {k} clusters"] = model.score(test, y)["nmi"]
            row["k-means on CMVAE's latent"] = clustering_scores(
                y, KMeans(k, n_init=10, random_state=seed).fit(model.transform(train)).predict(model.transform(test)))["nmi"]
            if "selection" not in args.skip:
                over = CMVAE(n_clusters=3 * k, seed=seed, **common).fit(train)
                result = over.select_clusters(train)
                row[f"selected K (true {k})"] = result.n_clusters
                row["NMI after selection"] = over.apply_selection(result).score(test, y)["nmi"]
            if "vade" not in args.skip:
                for m in range(len(train)):
                    vade = VaDE(n_clusters=k, modality=m, seed=seed, **common).fit(train)
                    row[f"VaDE on view {m}"] = vade.score(test, y)["nmi"]
            print(data, seed, f"{time.time() - start:.0f}s", {key: round(float(v), 3) for key, v in row.items()}, flush=True)
            for key, value in row.items():
                results.setdefault((data, key), []).append(float(value))
    print("\n| data | method | NMI (mean +- std over seeds) |\n|---|---|---|")
    for (data, key), values in results.items():
        print(f"| {data} | {key} | {np.mean(values):.3f} +- {np.std(values):.3f} ({', '.join(f'{v:.3g}' for v in values)}) |")


if __name__ == "__main__":
    main()
