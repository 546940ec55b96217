"""Algorithm 1's tie rule on data other than the quickstart's: a 40-cluster fit, then the selection with the
paper's exact argmin (``tie_tolerance=0``) and with the default tolerance.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/selection_tie_probe.py SEED [DATA]

The quickstart's 40-cluster config (``configs/polymnist_cpu_k40.yaml``, no time limit) on DATA (a name of
``clustering_diagnostics.load``, default polymnist-other); selection on the training rows, scores of the pruned
model on the test split. Prints one JSON line per tolerance.
"""
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering_diagnostics import load, params_from  # noqa: E402

from cmvae import CMVAE  # noqa: E402
from cmvae.metrics import clustering_scores  # noqa: E402
from cmvae.selection import DEFAULT_TIE_TOLERANCE  # noqa: E402

torch.set_num_threads(1)
if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
seed, data = int(sys.argv[1]), sys.argv[2] if len(sys.argv) == 3 else "polymnist-other"
tr, _, te, te_y = load(data)
start = time.time()
config = str(Path(__file__).resolve().parents[1] / "configs" / "polymnist_cpu_k40.yaml")
model = CMVAE(**params_from(config, {"max_time_minutes": None, "seed": seed, "progress": False})).fit(tr)
seconds = round(time.time() - start)
for tolerance in (0.0, DEFAULT_TIE_TOLERANCE):
    model.module_.prior.set_active(list(range(model.n_clusters)))
    result = model.select_clusters(tr, eval_views=te, eval_labels=te_y, tie_tolerance=tolerance)
    scores = clustering_scores(te_y, model.apply_selection(result).predict(te))
    best_k = max(result.nmi, key=result.nmi.get)
    print(json.dumps({"data": data, "seed": seed, "fit_seconds": seconds, "tie_tolerance": tolerance,
                      "lowest_score_k": result.minimum_k, "K_hat": result.n_clusters,
                      **{k: round(float(scores[k]), 3) for k in ("nmi", "ari", "acc")},
                      "best_k_by_test_nmi": best_k, "its_nmi": round(result.nmi[best_k], 3)}), flush=True)
