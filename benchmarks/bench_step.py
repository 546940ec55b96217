"""Training-step throughput and peak memory of CMVAE on PolyMNIST-shaped data.

Each configuration runs in its own subprocess so that peak memory is measured cleanly
(peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA).

    python benchmarks/bench_step.py                       # light + resnet, K = 1 and 10, CPU, 2 threads
    python benchmarks/bench_step.py --device cuda --steps 20
    python benchmarks/bench_step.py --configs light:1 --threads 2

Prints one row per configuration: samples/s, seconds/step, peak memory, and the ratio
to the light K=1 row.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

PAPER_SETTINGS = dict(n_clusters=40, shared_dim=32, private_dim=32, latent_family_name="laplace")


def run_one(arch: str, k: int, device: str, steps: int, batch: int, threads: int, low_memory: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    from cmvae.distributions import likelihood
    from cmvae.models.cmvae import CMVAEModule
    from cmvae.nets import build_networks

    torch.manual_seed(0)
    m = 5
    nets = [build_networks((3, 28, 28), 32, 32, arch=arch) for _ in range(m)]
    module = CMVAEModule(
        [n[0] for n in nets], [n[1] for n in nets], [likelihood("laplace", 0.75)] * m, **PAPER_SETTINGS,
        low_memory=low_memory,
    ).to(device)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, amsgrad=True)
    views = [torch.rand(batch, 3, 28, 28, device=device) for _ in range(m)]
    estimator = "elbo" if k == 1 else "dreg"

    def step() -> None:
        terms = module.objective(views, n_samples=k, estimator=estimator, beta=2.5)
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        opt.step()

    step()  # warm-up (allocations, kernels)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "arch": arch,
        "K": k,
        "device": device,
        "batch": batch,
        "low_memory": low_memory,
        "threads": threads,
        "params_M": sum(p.numel() for p in module.parameters()) / 1e6,
        "sec_per_step": seconds,
        "samples_per_s": batch / seconds,
        "peak_mem_MiB": peak_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configs", default="light:1,light:10,resnet:1,resnet:10", help="arch:K pairs")
    parser.add_argument("--low-memory", action="store_true", help="recompute decoder activations in backward")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        arch, k = args.one.split(":")
        print(json.dumps(run_one(arch, int(k), args.device, args.steps, args.batch, args.threads, args.low_memory)))
        return
    rows = []
    for item in args.configs.split(","):
        cmd = [sys.executable, __file__, "--one", item, "--device", args.device, "--steps", str(args.steps),
               "--batch", str(args.batch), "--threads", str(args.threads)] + (["--low-memory"] if args.low_memory else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            arch, k = item.split(":")
            rows.append({"arch": arch, "K": int(k), "error": proc.stderr.strip().splitlines()[-1:]})
        else:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r.get("arch") == "light" and r.get("K") == 1 and "samples_per_s" in r), None)
    print(f"\n| arch | K | device | threads | low_memory | params (M) | samples/s | s/step | peak memory (MiB) | speed vs light K=1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['arch']} | {r['K']} | {args.device} | {args.threads} | {args.low_memory} | - | failed: {r['error']} | | | |")
            continue
        ratio = r["samples_per_s"] / base["samples_per_s"] if base else float("nan")
        print(f"| {r['arch']} | {r['K']} | {r['device']} | {r['threads']} | {r['low_memory']} | {r['params_M']:.1f} | "
              f"{r['samples_per_s']:.1f} | {r['sec_per_step']:.3f} | {r['peak_mem_MiB']:.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
