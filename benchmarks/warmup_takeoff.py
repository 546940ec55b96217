"""Probe: does the contrastive warm-up alone find the shared content, and at which learning rate?

    python benchmarks/warmup_takeoff.py --data polymnist --seed 1 --threads 1 --set '{"contrastive_warmup_lr": 1e-3}'

Trains CMVAE with the quickstart config (``--config``) for ``--epochs`` epochs that are all contrastive warm-up
(``contrastive_warmup_epochs`` = ``epochs``: only the encoders' shared codes train, by CMC's InfoNCE), then scores
k-means (the true number of classes) on ``transform`` of the test split. Prints one JSON line: data, seed, the
overrides, ``kmeans_nmi`` and the wall time in seconds. ``--set`` takes estimator overrides as JSON (e.g.
``contrastive_warmup_lr``, ``amsgrad``, ``batch_size``). Nothing after the warm-up is trained, so the decoders
are the initial ones: only the codes are scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering_diagnostics import load, params_from  # noqa: E402

from cmvae import CMVAE  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="polymnist", help="polymnist, polymnist-other, blobs, digits-views")
    parser.add_argument("--config", default="polymnist_cpu", help="config file or packaged name (default polymnist_cpu)")
    parser.add_argument("--epochs", type=int, default=4, help="warm-up epochs, the whole training (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--set", default="{}", help="estimator overrides as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        overrides = json.loads(args.set)
    except json.JSONDecodeError as err:
        parser.error(f"--set must be a JSON object of estimator overrides: {err}")
    if not isinstance(overrides, dict):
        parser.error(f"--set must be a JSON object of estimator overrides, got {args.set!r}")
    train_views, _, test_views, test_labels = load(args.data)
    params = params_from(args.config, {"epochs": args.epochs, "contrastive_warmup_epochs": args.epochs,
                                       "warmup_freeze_epochs": 0, "max_time_minutes": None, "progress": False,
                                       "seed": args.seed, **overrides})
    start = time.perf_counter()
    model = CMVAE(**params).fit(train_views)
    codes = np.asarray(model.transform(test_views), dtype=np.float64)
    n_classes = len(np.unique(test_labels))
    labels = KMeans(n_classes, n_init=4, random_state=0).fit_predict(codes)
    row = {"data": args.data, "seed": args.seed, "set": overrides,
           "kmeans_nmi": round(float(normalized_mutual_info_score(test_labels, labels)), 3),
           "seconds": round(time.perf_counter() - start)}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
