"""Training CMVAE on partially observed samples: synthetic 3-view data, clustering accuracy on
fully observed test data when a fraction of the training entries is missing.

Data: 3 well-separated clusters seen through two tabular views (6 and 5 features, extra noise
of std 2.5 and 2.0: view 0 weak, view 1 strong) and one 8x8 image view; 1000 training and
1000 test samples. Each training entry (sample, modality) is missing with probability
``rate`` (a sample left with none gets one back at random). Compared: training on every
sample with ``fit(views, mask=...)``, on the samples with >= 2 observed modalities only,
and on the complete samples only. Hungarian accuracy of ``predict`` on the test data.

    python benchmarks/partial_training.py [--seeds 0 1 2] [--epochs 20]
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np

from cmvae import CMVAE
from cmvae.metrics import clustering_scores
from cmvae.missing import random_mask


def make_views(n: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Views [n, 6], [n, 5], [n, 1, 8, 8] (float32) and labels [n] of 3 clusters."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 3)
    c1, c2 = rng.normal(0, 3, (3, 6)), rng.normal(0, 3, (3, 5))
    patterns = rng.uniform(0, 1, (3, 1, 8, 8))
    views = [
        c1[y] + rng.normal(0, 1, (n, 6)) + rng.normal(0, 2.5, (n, 6)),
        c2[y] + rng.normal(0, 1, (n, 5)) + rng.normal(0, 2.0, (n, 5)),
        np.clip(patterns[y] + rng.normal(0, 0.1, (n, 1, 8, 8)) + rng.normal(0, 0.4, (n, 1, 8, 8)), 0, 1),
    ]
    return [v.astype(np.float32) for v in views], y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.3, 0.6])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    views, y = make_views(2000)
    train, test, y_test = [v[:1000] for v in views], [v[1000:] for v in views], y[1000:]
    params = dict(n_clusters=3, shared_dim=4, private_dim=2, batch_size=64, lr=5e-3, epochs=args.epochs, beta=2.5,
                  cluster_init_epoch=args.epochs // 2, likelihood="gaussian", accelerator="cpu", progress=False)
    print("| missing entries | trained on | samples | test ACC per seed | mean |")
    print("|---|---|---|---|---|")
    for rate in args.rates:
        mask = random_mask(1000, 3, rate, seed=7)
        variants = {"every sample (mask=)": np.ones(1000, bool), ">= 2 modalities": mask.sum(1) >= 2,
                    "complete samples": mask.all(1)}
        for name, rows in variants.items():
            if mask.all() and name != "every sample (mask=)":
                continue
            accs = []
            for seed in args.seeds:
                model = CMVAE(**params, seed=seed).fit([v[rows] for v in train], mask=mask[rows])
                accs.append(clustering_scores(y_test, model.predict(test))["acc"])
            print(f"| {1 - mask.mean():.0%} | {name} | {int(rows.sum())} | {' '.join(f'{a:.3f}' for a in accs)} "
                  f"| {np.mean(accs):.3f} |", flush=True)


if __name__ == "__main__":
    main()
