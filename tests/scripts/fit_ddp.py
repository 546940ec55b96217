"""Fit CMVAE on small separable data with N processes (or 1) and record, per rank, what the DDP test
(tests/test_ddp.py) checks: the first steps' losses, the prior after training, the k-means placements.

    python fit_ddp.py OUT --devices 2 [--resume] [--epochs E]          (Lightning launches the extra process)
    torchrun --standalone --nproc_per_node 2 fit_ddp.py OUT --devices 2  (torchrun launches them)
    python fit_ddp.py OUT --devices 1 --reference-of 2                  (1 process, batches = the union of
                                                                          2 ranks' batches, for comparison)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

import cmvae
from cmvae import training

N, PER_RANK_BATCH, SEED = 192, 16, 3


def make_views(n: int = N, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Two tabular modalities sharing 4 well separated clusters."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centers = rng.normal(0, 4, (4, 6))
    views = [(centers[labels] @ rng.normal(0, 1, (6, d)) + rng.normal(0, 0.3, (n, d))).astype(np.float32)
             for d in (8, 5)]
    return views, labels


class Record(L.Callback):
    """Per-rank losses of every step and the cluster prior at the end, written to OUT/ranks/."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.losses: list[float] = []
        self.batches: list[list[float]] = []  # per step: the sum of modality 0 and the batch size

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
        self.batches.append([float(batch[0].double().sum()), int(batch[0].shape[0])])

    def on_train_end(self, trainer, pl_module) -> None:
        rank = trainer.global_rank
        folder = self.out / "ranks"
        folder.mkdir(parents=True, exist_ok=True)
        prior = pl_module.module.prior
        kmeans = next(cb for cb in trainer.callbacks if type(cb).__name__ == "KMeansPriorInit")
        weights = torch.cat([p.detach().double().flatten() for p in pl_module.module.parameters()])
        state = {"losses": self.losses, "batches": self.batches, "weights_sum": float(weights.sum()),
                 "weights_abs_sum": float(weights.abs().sum()), "world_size": trainer.world_size, "means": prior.means.tolist(),
                 "logits": prior.logits.tolist(), "placements": kmeans.placements,
                 "epoch": trainer.current_epoch, "global_step": trainer.global_step}
        (folder / f"rank{rank}.{os.getpid()}.json").write_text(json.dumps(state))


def union_loader(world: int, seed: int):
    """make_loader for the 1-process reference: batch k is the union of batch k of every rank of a
    ``world``-process run (Lightning's DistributedSampler: one permutation seeded by the global seed and the
    epoch, padded to a multiple of ``world``, rank r takes every world-th index from r)."""

    def make(views, batch_size, *, shuffle, num_workers=0, seed=0, mask=None):
        dataset = training.ViewsDataset(views, mask)
        per_rank = batch_size // world

        class Batches:
            epoch = 0

            def __iter__(self):
                n = len(dataset)
                g = torch.Generator().manual_seed(SEED + Batches.epoch)
                Batches.epoch += 1
                perm = torch.randperm(n, generator=g).tolist() if shuffle else list(range(n))
                total = -(-n // world) * world
                perm = perm + perm[: total - n]
                ranks = [perm[r:total:world] for r in range(world)]
                for start in range(0, len(ranks[0]), per_rank):
                    yield [i for r in ranks for i in r[start:start + per_rank]]

            def __len__(self):
                return -(-(-(-len(dataset) // world)) // per_rank)

        return DataLoader(dataset, batch_sampler=Batches(), collate_fn=training._identity_collate)

    return make


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--reference-of", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    views, labels = make_views()
    world = args.reference_of or args.devices
    if args.reference_of:
        from cmvae.estimator import fitting  # where fit looks up make_loader

        fitting.make_loader = union_loader(args.reference_of, SEED)
    model = cmvae.CMVAE(n_clusters=4, shared_dim=4, private_dim=2, epochs=args.epochs, cluster_init_epoch=2,
                        batch_size=PER_RANK_BATCH * (world if args.reference_of else 1), seed=SEED,
                        accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
                        progress=False, arch="light")
    model.fit(views, out_dir=out / "run", resume=args.resume, callbacks=[Record(out)])
    model.save(out / "model", overwrite=True)  # writes on rank 0 only


if __name__ == "__main__":
    main()
