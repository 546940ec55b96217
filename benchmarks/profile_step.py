"""Where the time of one CMVAE training step goes, and what speeds it up (same objective).

    python benchmarks/profile_step.py [--threads 2] [--steps 10] [--batch 128] [--modalities 5]

Times objective + backward + Adam for the quickstart's light networks on PolyMNIST shapes
(uint8 views converted on the fly, as in training) in a few variants that keep the objective
exactly: the default, ``channels_last`` memory format, ``torch.compile`` of the networks, and
the encoders'/decoders' share of the step. Prints a table of samples/s and the top operators of
the torch profiler (by self CPU time). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from cmvae.distributions import likelihood
from cmvae.models.cmvae import CMVAEModule
from cmvae.nets import build_networks


def make_module(m: int, branches: str, scale_param: str) -> CMVAEModule:
    torch.manual_seed(0)
    nets = [build_networks((3, 28, 28), 32, 32, arch="light", branches=branches) for _ in range(m)]
    return CMVAEModule([n[0] for n in nets], [n[1] for n in nets], [likelihood("laplace", 0.75)] * m,
                       n_clusters=10, shared_dim=32, private_dim=32, latent_family_name="laplace",
                       scale_param=scale_param)


def time_steps(module: CMVAEModule, raw: list[torch.Tensor], steps: int, *,
               channels_last: bool = False) -> tuple[float, float]:
    """(seconds of the two warm-up steps (with ``torch.compile``: the compilation), seconds per step after them)
    of objective + backward + Adam."""
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, amsgrad=True)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def step() -> None:
        views = [x.float().div_(255).contiguous(memory_format=fmt) for x in raw]
        terms = module.objective(views, n_samples=1, estimator="elbo", beta=0.5)
        opt.zero_grad(set_to_none=True)
        terms.loss.backward()
        opt.step()

    start = time.perf_counter()
    for _ in range(2):
        step()
    warm_up = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return warm_up, (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--modalities", type=int, default=5)
    parser.add_argument("--variants", default="default,separate,channels_last,compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = [torch.randint(0, 256, (args.batch, 3, 28, 28), dtype=torch.uint8) for _ in range(args.modalities)]
    rows = []
    for variant in args.variants.split(","):
        module = make_module(args.modalities, "separate" if variant != "default" else "shared", "softmax")
        if variant == "channels_last":
            module = module.to(memory_format=torch.channels_last)
        if variant == "compile":
            for net in [*module.encoders, *module.decoders]:
                net.compile()  # as compile_networks=True does (cmvae.callbacks.CompileNetworks)
        warm_up, seconds = time_steps(module, raw, args.steps, channels_last=variant == "channels_last")
        rows.append((variant, warm_up, seconds))
        print(f"{variant}: {args.batch / seconds:.0f} samples/s ({seconds:.3f} s/step; first 2 steps {warm_up:.1f} s)",
              flush=True)
    base = rows[0][2]
    print(f"\n| variant | samples/s | s/step | speed vs {rows[0][0]} | first 2 steps (s) |\n|---|---|---|---|---|")
    for variant, warm_up, seconds in rows:
        print(f"| {variant} | {args.batch / seconds:.0f} | {seconds:.3f} | {base / seconds:.2f} | {warm_up:.1f} |")

    module = make_module(args.modalities, "separate", "softmax")
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, amsgrad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            views = [x.float().div_(255) for x in raw]
            terms = module.objective(views, n_samples=1, estimator="elbo", beta=0.5)
            opt.zero_grad(set_to_none=True)
            terms.loss.backward()
            opt.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
