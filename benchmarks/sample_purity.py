"""How many of a trained model's clusters draw one class, at several sampling temperatures.

    python benchmarks/sample_purity.py RUN_DIR [RUN_DIR ...] --temperatures 1,0.8,0.6 --per-cluster 200

For each run folder (a finished ``cmvae train`` / ``cmvae quickstart`` run with labelled data): one classifier
per modality (:func:`cmvae.metrics.coherence.train_modality_classifiers`, trained on the run's training split,
accuracy on its test split printed), then ``--per-cluster`` unconditional samples of every active cluster at
each temperature (:meth:`cmvae.CMVAE.sample`). Per temperature it prints:

* ``purity``: mean over clusters of the share of the cluster's samples (all modalities pooled) that get its
  most frequent class;
* ``one-class clusters``: clusters whose most frequent class takes at least ``--one-class`` of the samples;
* ``classes``: distinct most frequent classes over the clusters (10 = every digit has a cluster);
* ``coherence``: share of sampled tuples whose modalities all get the same class.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from cmvae.generation import active_clusters
from cmvae.metrics.coherence import train_modality_classifiers
from cmvae.runs.folder import load_run


def cluster_classes(model, classifiers, clusters: list[int], n: int, temperature: float) -> np.ndarray:
    """Predicted classes of ``n`` samples per cluster: ``[clusters, M, n]``."""
    out = []
    for r, c in enumerate(clusters):
        views = model.sample(n, cluster=c, seed=r, temperature=temperature)
        out.append([np.asarray(classifiers.predict(m, x)) for m, x in enumerate(views)])
    return np.asarray(out)


def summary(pred: np.ndarray, one_class: float) -> dict[str, float]:
    shares, tops = [], []
    for per_cluster in pred:
        values, counts = np.unique(per_cluster.ravel(), return_counts=True)
        tops.append(values[counts.argmax()])
        shares.append(counts.max() / counts.sum())
    coherent = np.all(pred == pred[:, :1], axis=1)  # [clusters, n]
    return {"purity": float(np.mean(shares)), "one_class": int(np.sum(np.asarray(shares) >= one_class)),
            "classes": len(set(tops)), "coherence": float(coherent.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--temperatures", default="1,0.8,0.6,0.4")
    parser.add_argument("--per-cluster", type=int, default=200)
    parser.add_argument("--one-class", type=float, default=0.8, help="share that makes a cluster one-class")
    parser.add_argument("--classifier-epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    temperatures = [float(t) for t in args.temperatures.split(",")]
    classifiers = None
    print("| run | temperature | purity | one-class clusters | classes | coherence |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        _, model, data = load_run(run, "cpu")
        if classifiers is None:  # the runs share their data: one set of classifiers
            classifiers = train_modality_classifiers(data.train_views, data.train_labels, args.classifier_epochs,
                                                     test_views=data.test_views, test_labels=data.test_labels)
            print(f"classifier test accuracy: {[round(a, 3) for a in classifiers.test_accuracy]}", flush=True)
        clusters = active_clusters(model) or []
        for t in temperatures:
            s = summary(cluster_classes(model, classifiers, clusters, args.per_cluster, t), args.one_class)
            print(f"| {run.name} | {t:g} | {s['purity']:.3f} | {s['one_class']} / {len(clusters)} | {s['classes']} | "
                  f"{s['coherence']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
