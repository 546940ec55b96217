"""Probe: the quickstart config (held-out placement) with ``early_stopping`` true or false on a named data set.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/early_stop_probe.py SEED true|false [DATA]

24 epochs (no time limit, latest placement after 19); prints one JSON line: seed, the flag, epochs trained,
seconds, test NMI / ARI / ACC. DATA: a name of ``clustering_diagnostics.load`` (default polymnist-other).
"""
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering_diagnostics import load, params_from  # noqa: E402

from cmvae import CMVAE  # noqa: E402

torch.set_num_threads(1)
if len(sys.argv) not in (3, 4) or sys.argv[2] not in ("true", "false"):
    sys.exit(__doc__)
seed, es = int(sys.argv[1]), sys.argv[2] == "true"
tr, _, te, te_y = load(sys.argv[3] if len(sys.argv) == 4 else "polymnist-other")
p = params_from("polymnist_cpu", {"epochs": 24, "cluster_init_epoch": 19, "max_time_minutes": None,
                                  "seed": seed, "early_stopping": es, "progress": False})
start = time.time()
m = CMVAE(**p).fit(tr)
s = m.score(te, te_y)
print(json.dumps({"seed": seed, "early_stopping": es, "epochs": len(m.history_["epoch"]), "seconds": round(time.time() - start),
                  **{k: round(float(s[k]), 3) for k in ("nmi", "ari", "acc")}}))
