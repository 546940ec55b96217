"""CMC + k-means against the clock: test NMI / ARI after each epoch, next to its training minutes.

    python benchmarks/cmc_clock.py --data polymnist --minutes 20 --seed 0 --threads 2 --out DIR

Trains :class:`cmvae.CMC` (the clustering benchmark's setting: light networks, 32 dims, temperature 0.1,
lr 1e-3, batch 128) on the whole training split of ``--data`` (as ``cmvae quickstart`` trains CMVAE) for at
most ``--minutes`` of training (scoring not counted). After every epoch, with the clock stopped, k-means
(``n_init=10``) is fitted on the training representation and the test split is scored by its nearest
centroid, as ``CMC.predict`` does after a fit. Writes ``DIR/cmc_clock_sSEED.csv`` (epoch, minutes, nmi, ari,
acc) epoch by epoch; compare with CMVAE's result at the same minutes (e.g. the quickstart's 20), one run at a
time on an idle machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sklearn.cluster import KMeans

sys.path.insert(0, str(Path(__file__).resolve().parent))
from clustering_diagnostics import append_row, load  # noqa: E402

from cmvae import CMC  # noqa: E402
from cmvae.metrics import clustering_scores  # noqa: E402


class EpochScores(L.Callback):
    """Training seconds (scoring excluded) and test scores of the k-means readout after every epoch."""

    def __init__(self, model: CMC, train: list[np.ndarray], test: list[np.ndarray], y_test: np.ndarray,
                 csv_path: Path, seed: int, minutes: float) -> None:
        self.model, self.y_test, self.csv_path, self.seed = model, y_test, csv_path, seed
        # checked model inputs (transform() needs a fitted model; these do not)
        self.train = model._input(train, training=True).tensors
        self.test = model._input(test, training=True).tensors
        self.budget, self.elapsed = minutes * 60, 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.elapsed += time.perf_counter() - self.start
        model = self.model
        kmeans = KMeans(n_clusters=model.n_clusters, n_init=10, random_state=self.seed)
        kmeans.fit(model._represent(self.train))
        scores = clustering_scores(self.y_test, kmeans.predict(model._represent(self.test)))
        trainer.should_stop = self.elapsed >= self.budget  # the budget counts training only, not this scoring
        row = {"epoch": trainer.current_epoch + 1, "minutes": round(self.elapsed / 60, 3),
               **{k: round(float(scores[k]), 4) for k in ("nmi", "ari", "acc")}}
        append_row(self.csv_path, row)
        print(f"  CMC seed {self.seed} epoch {row['epoch']} {row['minutes']:.1f} min: NMI {row['nmi']:.3f} "
              f"ARI {row['ari']:.3f}", flush=True)


class ClockedCMC(CMC):
    """CMC whose training loop carries :class:`EpochScores`."""

    scores: EpochScores | None = None

    def _train(self, train: list[torch.Tensor]) -> None:
        from cmvae.clustering_baselines import _LossPlan
        from cmvae.training import make_loader

        module, schema = self.module_, self.schema_
        loader = make_loader(train, self.batch_size, shuffle=True, seed=self._fit_seed())
        plan = _LossPlan(module, schema, lambda views, _extra: module.loss(views), self.lr)
        self._run(plan, loader, callbacks=[self.scores] if self.scores is not None else ())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="polymnist")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=1000, help="at most this many epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train, _, test, y_test = load(args.data, args.seed)
    model = ClockedCMC(10, 32, temperature=0.1, arch="light", epochs=args.epochs, batch_size=128, lr=1e-3,
                       seed=args.seed, accelerator="cpu", progress=False)
    model.scores = EpochScores(model, train, test, y_test, args.out / f"cmc_clock_s{args.seed}.csv", args.seed,
                               args.minutes)
    model.fit(train)
    final = model.score(test, y_test)
    print(f"CMC seed {args.seed}: final NMI {final['nmi']:.3f} ARI {final['ari']:.3f} after "
          f"{model.scores.elapsed / 60:.1f} min of training", flush=True)


if __name__ == "__main__":
    main()
