"""Clustering from subsets of PolyMNIST modalities with a trained CMVAE (missing modalities).

    CMVAE_CACHE=/tmp/cmvae_cache OMP_NUM_THREADS=1 python benchmarks/missing_modalities.py \
        [--model runs/quickstart/model] [--out benchmarks/missing_modalities.md]

On the test split (data seed 0) it scores ``model.predict`` with every subset of observed
modalities: each single modality, and for k = 1..M the mean (and min/max) over all subsets of
size k. Only the observed modalities vote (see :meth:`cmvae.CMVAE.predict`). The per-subset
predictions are computed from one pass of the encoders (majority vote restricted by a mask,
exactly what ``predict`` does); the single-modality rows and the full set are also computed
through ``predict`` with ``None`` for the unobserved modalities and checked to agree.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np
import torch

from cmvae import CMVAE
from cmvae.data import build_polymnist
from cmvae.metrics import clustering_scores
from cmvae.selection import majority_vote

METRICS = ("nmi", "ari", "acc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/quickstart/model", help="a saved CMVAE (default: the `cmvae quickstart` run)")
    parser.add_argument("--seed", type=int, default=0, help="PolyMNIST data seed (the model's)")
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/missing_modalities.md")
    args = parser.parse_args()

    start = time.time()
    model = CMVAE.load(args.model, accelerator="auto")
    ds = build_polymnist(seed=args.seed, max_test=args.max_test)
    views, labels = ds.test_views, ds.test_labels
    n_mod, n = len(views), len(labels)

    log_post = model.cluster_log_posteriors(views)  # [M, N, C], one encoder pass
    rows: list[tuple[str, dict[str, float]]] = []
    by_k: dict[int, list[dict[str, float]]] = {k: [] for k in range(1, n_mod + 1)}
    for k in range(1, n_mod + 1):
        for subset in itertools.combinations(range(n_mod), k):
            mask = torch.zeros(n, n_mod, dtype=torch.bool)
            mask[:, list(subset)] = True
            pred = majority_vote(log_post, mask).numpy()
            if k == 1 or k == n_mod:  # the public API with None for unobserved modalities agrees
                api = model.predict([v if m in subset else None for m, v in enumerate(views)])
                assert np.array_equal(api, pred), f"predict with None disagrees for subset {subset}"
            scores = {m: float(v) for m, v in clustering_scores(labels, pred).items() if m in METRICS}
            by_k[k].append(scores)
            if k == 1:
                rows.append((f"modality {subset[0]} only", scores))

    lines = [
        f"Model: `{args.model}`; PolyMNIST test split ({n} samples, data seed {args.seed}).",
        "",
        "| observed | subsets | NMI | ARI | ACC |",
        "|---|---|---|---|---|",
    ]
    for name, s in rows:
        lines.append(f"| {name} | 1 | {s['nmi']:.3f} | {s['ari']:.3f} | {s['acc']:.3f} |")
    for k, items in by_k.items():
        cells = []
        for metric in METRICS:
            vals = np.array([s[metric] for s in items])
            cell = f"{vals.mean():.3f}"
            if len(vals) > 1:
                cell += f" ({vals.min():.3f}-{vals.max():.3f})"
            cells.append(cell)
        lines.append(f"| any {k} of {n_mod} (mean, min-max) | {len(items)} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    print(f"({time.time() - start:.0f} s)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(table)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
