"""Is VaDE's failure on a PolyMNIST modality in its mixture or in its latent?

Trains unimodal VaDE on one modality and prints its clustering scores next to k-means on its
own latent codes (if both are near 0, the latent does not carry the digit).

    CMVAE_CACHE=/tmp/cmvae_cache OMP_NUM_THREADS=1 python benchmarks/vade_latent_probe.py --modality 4 --epochs 5 --beta 2.5
"""

from __future__ import annotations

import argparse
import time

from sklearn.cluster import KMeans

from cmvae import VaDE
from cmvae.data import build_polymnist
from cmvae.metrics import clustering_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--beta", type=float, default=2.5)
    parser.add_argument("--fixed-scales", action="store_true", help="do not learn the mixture scales")
    parser.add_argument("--max-train", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ds = build_polymnist(max_train=args.max_train, max_test=2000)
    start = time.time()
    model = VaDE(n_clusters=10, modality=args.modality, beta=args.beta, learn_prior_scales=not args.fixed_scales,
                 epochs=args.epochs, progress=False, accelerator="cpu", seed=args.seed)
    model.fit(ds.train_views)
    vade = clustering_scores(ds.test_labels, model.predict(ds.test_views))
    codes = model.transform(ds.test_views)
    latent = clustering_scores(ds.test_labels, KMeans(10, n_init=10, random_state=args.seed).fit_predict(codes))
    print(f"modality {args.modality}, {args.epochs} epochs, beta {args.beta}, learned scales {not args.fixed_scales}: "
          f"VaDE NMI {vade['nmi']:.3f} ({vade['n_clusters_used']} clusters used); "
          f"k-means on its latent NMI {latent['nmi']:.3f}; pi {[round(float(p), 2) for p in model.cluster_weights_]}; "
          f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
