"""Seconds per training step of CMVAE and the baselines at their defaults on PolyMNIST
(5 modalities, batch 128, light networks): objective + backward + Adam step.

    CMVAE_CACHE=/tmp/cmvae_cache python benchmarks/bench_baselines_step.py [--threads 1] [--steps 3]
"""

from __future__ import annotations

import argparse
import time

import torch

import cmvae
from cmvae.data import build_polymnist
from cmvae.schema import DataSchema, as_views

MODELS = [
    (cmvae.CMVAE, {}),
    (cmvae.MMVAEPlus, {}),
    (cmvae.MMVAE, {}),
    (cmvae.MMVAE, {"n_samples": 1}),
    (cmvae.MVAE, {}),
    (cmvae.MoPoE, {}),
    (cmvae.MoPoE, {"subset_sampling": False}),
    (cmvae.MMJSD, {}),
    (cmvae.MVTCAE, {}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ds = build_polymnist(max_train=args.batch, max_test=10)
    views = as_views(ds.train_views)
    schema = DataSchema.infer(views)
    batch = schema.to_model_input(views, torch.device("cpu"))
    print("| model | options | K, estimator | s / step |\n|---|---|---|---|")
    for klass, options in MODELS:
        est = klass(seed=0, **options)
        torch.manual_seed(0)
        module = est._build_module(schema)
        opt = torch.optim.Adam(module.parameters(), 1e-3)
        times = []
        for _ in range(args.steps + 1):
            start = time.perf_counter()
            terms = module.objective(batch, n_samples=est.n_samples, estimator=est.estimator, beta=est.beta)
            opt.zero_grad()
            terms.loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        label = ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"
        print(f"| {klass.__name__} | {label} | {est.n_samples}, {est.estimator} | {min(times[1:]):.2f} |")


if __name__ == "__main__":
    main()
