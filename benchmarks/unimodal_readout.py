"""How much of the shared content does each modality's code carry alone? Offline, on a saved run.

    python benchmarks/unimodal_readout.py RUN_DIR [RUN_DIR ...] [--split test] [--threads 2]

CMVAE's objective (and the paper's) places the cluster components on single-modality codes
z ~ q(z | x_m); ``transform`` returns their average z-bar. When each modality's code holds the
shared content only weakly, z-bar (an average of M noisy codes) clusters far better than any
z_m, and the model's clusters, which are fitted to and read from the z_m, trail k-means on
z-bar. This script puts numbers on that, for each run folder (``cmvae train --out RUN_DIR``
with a labelled split):

* NMI of each modality's clusters alone (argmax of q(c | x_m)), of the combined assignment
  (evidence and majority vote), of p(c | z-bar) under the model's prior, and of k-means on z-bar;
* accuracy of a linear probe (logistic regression on half of the split, scored on the other
  half) that reads the label from each z_m, from z_m with its modality's mean removed, and from
  z-bar: how linearly decodable the shared content is from one modality vs from all;
* the spread of the modality means per latent dimension next to the posterior scales (offsets
  between modalities, in posterior scales).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def readout(run_dir: Path, split: str, seed: int = 0) -> dict[str, object]:
    """Every number of the module docstring for one run folder."""
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression

    from cmvae import MultimodalEstimator, load_config
    from cmvae.config import load_data
    from cmvae.metrics import clustering_scores
    from cmvae.selection import assign_clusters

    if not (run_dir / "model").is_dir() or not (run_dir / "config.yaml").is_file():
        raise SystemExit(f"{run_dir}: not a finished run folder (needs model/ and config.yaml from `cmvae train --out`)")
    model = MultimodalEstimator.load(run_dir / "model")
    views, labels = load_data(load_config(run_dir / "config.yaml").data).split(split)
    if labels is None:
        raise SystemExit(f"{run_dir}: the {split} split has no labels")
    labels = np.asarray(labels)
    post = model.encode(views)
    prior = model.module_.prior
    log_post = model.module_.prior.expected_log_posterior(post.z_loc, post.z_scale, 16)  # [M, N, C]
    log_pi = prior.log_weights().detach()

    def nmi(predicted) -> float:
        return round(float(clustering_scores(labels, np.asarray(predicted))["nmi"]), 3)

    z = post.z_loc.double()  # [M, N, d]
    z_bar = z.mean(0)
    centred = z - z.mean(1, keepdim=True)
    half = len(labels) // 2

    def probe(codes: torch.Tensor) -> float:
        clf = LogisticRegression(max_iter=3000).fit(codes[:half].numpy(), labels[:half])
        return round(float(clf.score(codes[half:].numpy(), labels[half:])), 3)

    offsets = z.mean(1).std(0)  # [d] spread of the modality means
    scales = post.z_scale.double().median(1).values.median(0).values  # [d] typical posterior scale
    order = offsets.argsort(descending=True)[:5]
    k = len(np.unique(labels))
    return {
        "run": str(run_dir),
        "modality NMI (q(c|x_m) alone)": [nmi(log_post[m].argmax(-1)) for m in range(log_post.shape[0])],
        "evidence NMI": nmi(assign_clusters(log_post, log_pi, None, "evidence")),
        "vote NMI": nmi(assign_clusters(log_post, log_pi, None, "vote")),
        "p(c|z-bar) NMI": nmi(prior.log_posterior(z_bar.to(prior.means)).argmax(-1)),
        "k-means on z-bar NMI": nmi(KMeans(k, n_init=3, random_state=seed).fit_predict(z_bar.numpy())),
        "probe accuracy z_m": [probe(z[m]) for m in range(z.shape[0])],
        "probe accuracy z_m, modality mean removed": [probe(centred[m]) for m in range(z.shape[0])],
        "probe accuracy z-bar": probe(z_bar),
        "largest modality-mean spreads (dims)": [round(float(offsets[i]), 2) for i in order],
        "posterior scale there": [round(float(scales[i]), 2) for i in order],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="test", choices=("train", "test"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for run in args.runs:
        for key, value in readout(run, args.split).items():
            print(f"{key:45s} {value}")
        print()


if __name__ == "__main__":
    main()
