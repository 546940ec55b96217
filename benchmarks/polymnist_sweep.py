"""Clustering quality over training for one CMVAE configuration on PolyMNIST.

    python benchmarks/polymnist_sweep.py NAME '{"beta": 0.5, "cluster_init_epoch": 25}' [--epochs 36]

After every epoch it records, on the test split: NMI/ARI/ACC of the model's clusters
(majority vote over modalities), NMI of argmax p(c | mean of q(z|X)), and every third
epoch the NMI of k-means (k = 10) on the mixture means -- i.e. how much digit information
the shared latent holds, whatever the prior does. Rows go to ``$OUT/NAME.json`` (``OUT``
defaults to the current folder). Several configurations can run side by side on one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightning as L
import torch
from sklearn.cluster import KMeans

from cmvae import CMVAE
from cmvae.data import build_polymnist
from cmvae.metrics import clustering_scores
from cmvae.selection import majority_vote


class Probe(L.Callback):
    def __init__(self, name: str, kwargs: dict, estimator: CMVAE, test_views, test_labels, out: Path) -> None:
        self.name, self.kwargs, self.estimator = name, kwargs, estimator
        self.views = [torch.as_tensor(v) for v in test_views]
        self.labels = test_labels
        self.out = out
        self.rows: list[dict] = []
        self.start = time.time()

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        module, schema = self.estimator._fitted()
        module.eval()
        post = module.encode(schema.to_model_input(self.views, pl_module.device))
        log_post = module.prior.log_posterior(post.z_loc)
        mixture_mean = post.z_loc.mean(0)
        row = {"epoch": epoch, "time": time.time() - self.start}
        scores = clustering_scores(self.labels, majority_vote(log_post.cpu()).numpy())
        row.update({f"cl_{k}": v for k, v in scores.items()})
        row["mx_nmi"] = clustering_scores(self.labels, module.prior.log_posterior(mixture_mean).argmax(-1).cpu().numpy())["nmi"]
        if epoch % 3 == 2 or epoch == 0:
            km = KMeans(10, n_init=3, random_state=0).fit(mixture_mean.cpu().numpy())
            row["km_nmi"] = clustering_scores(self.labels, km.labels_)["nmi"]
        module.train()
        self.rows.append(row)
        print(self.name, row, flush=True)
        (self.out / f"{self.name}.json").write_text(json.dumps({"name": self.name, "kw": self.kwargs, "rows": self.rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("kwargs", nargs="?", default="{}", help="JSON dict of CMVAE parameters")
    parser.add_argument("--epochs", type=int, default=36)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kwargs = json.loads(args.kwargs)
    ds = build_polymnist(root=os.environ.get("CMVAE_CACHE"))
    out = Path(os.environ.get("OUT", "."))
    estimator = CMVAE(**{"n_clusters": 10, "epochs": args.epochs, "progress": False, **kwargs})
    probe = Probe(args.name, kwargs, estimator, ds.test_views, ds.test_labels, out)
    estimator.fit(ds.train_views, callbacks=[probe])


if __name__ == "__main__":
    main()
