"""One training step of CMVAE, cmvae against MultiVae's CMVAE: same networks, batch and objective.

A step is the objective on one batch of 5-modality PolyMNIST-shaped data (3x28x28, 40 clusters, z and w of
32 dimensions, Laplace posteriors/priors/likelihood with scale 0.75, the paper's networks: ``arch="paper"``
here, ``EncoderResnetMMNIST``/``DecoderResnetMMNIST`` there, 22.16 M parameters on both sides), backward and
one Adam (AMSGrad) step. K = 1: the ELBO (MultiVae: "iwae_looser" with K = 1, the same objective), beta 2.5.
K > 1: DReG (MultiVae: "dreg_looser"), beta 1.0, where both sides compute the same DReG gradient (for
beta != 1 MultiVae keeps the beta = 1 weights).

Every (side, K) runs in its own subprocess, so peak memory is that run's alone: peak RSS of the process on
CPU (it includes the ~0.3 GiB of Python + torch), ``torch.cuda.max_memory_allocated`` on CUDA.
MultiVae (PyPI ``multivae``, 1.0.x) runs from a separate virtual environment that this script creates on
first use (``--peer-venv``), never in cmvae's: the local CPU torch wheel pinned to this torch's version,
multivae and pythae without their dependencies (which would pull a CUDA torch and torchvision), their
light dependencies, and a stub ``torchvision`` (in a folder of that venv put on its PYTHONPATH): MultiVae
imports torchvision only for datasets, transforms and image saving, which the step never uses.

    python benchmarks/vs_peer.py --threads 2 --steps 3 --batch 128 --k 1,10   # low_memory for K > 1 (auto)
    python benchmarks/vs_peer.py --sides ours --k 10 --low-memory off     # cmvae only, all activations kept
    python benchmarks/vs_peer.py --sides ours --k 1,10 --flops         # + FLOPs per step, fraction of GEMM rate

Prints one JSON line per run and a Markdown table: samples/s, s/step, peak memory, and ours / peer.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

M, SHAPE, DZ, DW, CLUSTERS, SCALE = 5, (3, 28, 28), 32, 32, 40, 0.75
PEER_VERSION = "multivae==1.0.3"
PEER_LIGHT_DEPS = ["cloudpickle", "numpy", "pydantic", "scikit-learn", "scipy", "tqdm", "typing_extensions",
                   "imageio", "matplotlib", "pandas", "nltk"]
STUB = '''"""Stub for MultiVae's imports of torchvision (datasets, transforms, image saving), unused by the benchmark."""


class _Missing:
    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        return _Missing(self._name + "()")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Missing(self._name + "." + name)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing(name)
'''
STUB_SUB = "from torchvision import _Missing\n\n\ndef __getattr__(name):\n    if name.startswith('__'):\n" \
           "        raise AttributeError(name)\n    return _Missing(name)\n"


def beta_for(k: int) -> float:
    return 2.5 if k == 1 else 1.0


# -- the two steps ------------------------------------------------------------------------------------------
def ours_step(k: int, batch: int, device: str, low_memory: bool):
    import torch

    from cmvae.distributions import likelihood
    from cmvae.models.cmvae import CMVAEModule
    from cmvae.nets import build_networks

    nets = [build_networks(SHAPE, DZ, DW, arch="paper", branches="separate") for _ in range(M)]
    module = CMVAEModule([n[0] for n in nets], [n[1] for n in nets], [likelihood("laplace", SCALE)] * M,
                         n_clusters=CLUSTERS, shared_dim=DZ, private_dim=DW, latent_family_name="laplace",
                         scale_param="softmax", mean_init="uniform", low_memory=low_memory).to(device)
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, amsgrad=True)
    views = [torch.rand(batch, *SHAPE, device=device) for _ in range(M)]
    estimator = "elbo" if k == 1 else "dreg"

    def step() -> None:
        loss = module.objective(views, n_samples=k, estimator=estimator, beta=beta_for(k)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return module, step


def peer_step(k: int, batch: int, device: str, low_memory: bool):
    import torch
    from multivae.data.datasets.base import MultimodalBaseDataset
    from multivae.models import CMVAE, CMVAEConfig
    from multivae.models.nn.mmnist import DecoderResnetMMNIST, EncoderResnetMMNIST

    names = [f"m{i}" for i in range(M)]
    config = CMVAEConfig(
        n_modalities=M, latent_dim=DZ, input_dims={n: SHAPE for n in names}, modalities_specific_dim=DW,
        decoders_dist={n: "laplace" for n in names}, decoder_dist_params={n: {"scale": SCALE} for n in names},
        K=k, prior_and_posterior_dist="laplace_with_softmax", beta=beta_for(k), number_of_clusters=CLUSTERS,
        loss="iwae_looser" if k == 1 else "dreg_looser",
    )
    model = CMVAE(config, encoders={n: EncoderResnetMMNIST(DW, DZ) for n in names},
                  decoders={n: DecoderResnetMMNIST(DZ + DW) for n in names}).to(device)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
    inputs = MultimodalBaseDataset(data={n: torch.rand(batch, *SHAPE, device=device) for n in names})

    def step() -> None:
        loss = model(inputs).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return model, step


def run_one(side: str, k: int, device: str, steps: int, batch: int, threads: int, low_memory: bool,
            flops: bool, warmup: int = 1) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    module, step = (ours_step if side == "ours" else peer_step)(k, batch, device, low_memory)
    for _ in range(warmup):  # allocations, oneDNN primitives
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for _ in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    seconds = sorted(times)[len(times) // 2]  # the median step
    if device == "cuda":
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"side": side, "K": k, "device": device, "batch": batch, "threads": threads, "low_memory": low_memory,
           "torch": torch.__version__, "params": sum(p.numel() for p in module.parameters()),
           "sec_per_step": seconds, "samples_per_s": batch / seconds, "peak_mem_MiB": peak_mib,
           "step_times": [round(t, 3) for t in times], "step_cpu_times": [round(t, 3) for t in cpu_times]}
    if flops:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            step()
        row["gflop_per_step"] = counter.get_total_flops() / 1e9
        row["gflop_per_s"] = row["gflop_per_step"] / seconds
        row["gemm_gflop_per_s"] = gemm_rate(threads, device)
        row["fraction_of_gemm"] = row["gflop_per_s"] / row["gemm_gflop_per_s"]
    return row


def gemm_rate(threads: int, device: str, n: int = 2048, repeats: int = 5) -> float:
    """Measured dense float32 rate (GFLOP/s): the best of ``repeats`` n x n matrix products, and of a 3x3
    convolution 64 -> 64 on a [128, 64, 28, 28] batch (the networks' most common layer); the larger rate."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    x, w = torch.randn(128, 64, 28, 28, device=device), torch.randn(64, 64, 3, 3, device=device)
    best = 0.0
    for fn, flop in ((lambda: a @ b, 2 * n**3), (lambda: torch.nn.functional.conv2d(x, w, padding=1),
                                                  2 * 128 * 64 * 64 * 9 * 28 * 28)):
        fn()
        for _ in range(repeats):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best = max(best, flop / (time.perf_counter() - start) / 1e9)
    return best


# -- the peer's environment ---------------------------------------------------------------------------------
def peer_python(venv: Path, log) -> tuple[Path | None, str]:
    """The venv's python with MultiVae importable (creating the venv on first use), or (None, why)."""
    python, stubs = venv / "bin" / "python", venv / "cmvae-stubs"
    env = peer_env(venv)
    probe = [str(python), "-c", "import multivae.models, torch; print(torch.__version__)"]
    if python.exists() and subprocess.run(probe, env=env, capture_output=True).returncode == 0:
        return python, ""
    import torch

    log(f"creating MultiVae's environment in {venv} (once; a few minutes)")
    base = Path(getattr(sys, "_base_executable", sys.executable))
    pip = [str(python), "-m", "pip", "install", "-q"]
    steps = [
        [str(base), "-m", "venv", str(venv)],
        pip + [f"torch=={torch.__version__.split('+')[0]}"],  # the local CPU wheel, never an unpinned torch
        pip + ["--no-deps", PEER_VERSION, "pythae"],  # their torch/torchvision requirements are not taken
        pip + PEER_LIGHT_DEPS,
    ]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"`{' '.join(cmd[:6])} ...` failed: {(proc.stderr or proc.stdout).strip()[-400:]}"
    (stubs / "torchvision" / "datasets").mkdir(parents=True, exist_ok=True)
    (stubs / "torchvision" / "transforms").mkdir(parents=True, exist_ok=True)
    (stubs / "torchvision" / "__init__.py").write_text(STUB)
    for sub in ("datasets/__init__.py", "datasets/utils.py", "transforms/__init__.py", "utils.py"):
        (stubs / "torchvision" / sub).write_text(STUB_SUB)
    proc = subprocess.run(probe, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"multivae does not import: {proc.stderr.strip()[-400:]}"
    return python, ""


def peer_env(venv: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(venv / "cmvae-stubs")
    return env


def run_watched(cmd: list[str], env: dict | None, timeout: float, limit_gib: float) -> tuple[int, str, str]:
    """Run ``cmd``; stop it when its resident memory passes ``limit_gib`` (the machine may be shared) or
    after ``timeout`` seconds. (exit code, stdout, why it failed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, peak, why = time.monotonic(), 0.0, ""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            rss = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("VmRSS"))
            peak = max(peak, rss / 2**20)
        except (OSError, StopIteration, ValueError):
            pass
        if peak > limit_gib:
            why = f"stopped: resident memory passed {limit_gib:g} GiB (--mem-limit-gib)"
        elif time.monotonic() - start > timeout:
            why = f"stopped after {timeout:.0f} s (--timeout)"
        if why:
            proc.kill()
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    if not why and proc.returncode != 0:
        why = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return (proc.returncode if not why else 1), out, why


# -- driver -------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step (median reported)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--k", default="1,10", help="comma-separated K values (K=1: ELBO, K>1: DReG)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sides", default="ours,peer", help="ours, peer or both")
    parser.add_argument("--low-memory", default="auto", choices=["auto", "on", "off"],
                        help="cmvae's low_memory path (decoders recomputed in chunks); auto: on for K > 1")
    parser.add_argument("--flops", action="store_true", help="also count FLOPs per step and measure the GEMM rate")
    parser.add_argument("--peer-venv", type=Path, default=Path.home() / ".cache" / "cmvae" / "peer-venv")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed to one run")
    parser.add_argument("--mem-limit-gib", type=float, default=12.0,
                        help="stop a run whose resident memory passes this (default 12 GiB)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        side, k = args.one.split(":")
        print(json.dumps(run_one(side, int(k), args.device, args.steps, args.batch, args.threads, args.low_memory == "on",
                                 args.flops, args.warmup)))
        return

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    sides = [s for s in args.sides.split(",") if s]
    peer_py, why = (None, "not requested")
    if "peer" in sides:
        if args.device == "cuda":
            why = "MultiVae's environment has the CPU torch only"
        else:
            peer_py, why = peer_python(args.peer_venv, log)
        if peer_py is None:
            log(f"MultiVae could not be run: {why}; printing cmvae's side only")
    rows = []
    for k in (int(v) for v in args.k.split(",")):
        for side in sides:
            if side == "peer" and peer_py is None:
                rows.append({"side": side, "K": k, "error": f"not run: {why}"})
                continue
            python, env = (str(peer_py), peer_env(args.peer_venv)) if side == "peer" else (sys.executable, None)
            cmd = [python, __file__, "--one", f"{side}:{k}", "--device", args.device, "--steps", str(args.steps),
                   "--warmup", str(args.warmup),
                   "--batch", str(args.batch), "--threads", str(args.threads)]
            low = args.low_memory == "on" or (args.low_memory == "auto" and k > 1)
            cmd += ["--low-memory", "on" if low else "off"] + (["--flops"] if args.flops and side == "ours" else [])
            code, out, err = run_watched(cmd, env, args.timeout, args.mem_limit_gib)
            ok = code == 0
            rows.append(json.loads(out.strip().splitlines()[-1]) if ok else {"side": side, "K": k, "error": err})
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows, args))


def table(rows: list[dict], args) -> str:
    lines = [f"\nthreads {args.threads}, batch {args.batch}, device {args.device}, {args.warmup} warm-up and "
             f"{args.steps} timed steps (median), cmvae low_memory {args.low_memory}",
             "", "| K | objective | side | low_memory | params (M) | samples/s | s/step | CPU s/step | peak memory (MiB) "
             "| ours / peer |", "|---|---|---|---|---|---|---|---|---|---|"]
    by = {(r["side"], r["K"]): r for r in rows}
    for r in rows:
        objective = "ELBO" if r["K"] == 1 else "DReG"
        name = "cmvae" if r["side"] == "ours" else "MultiVae " + PEER_VERSION.split("==")[1]
        if "error" in r:
            lines.append(f"| {r['K']} | {objective} | {name} | | - | failed: {r['error']} | | | | |")
            continue
        other = by.get(("peer", r["K"])) if r["side"] == "ours" else None
        ratio = (f"{r['samples_per_s'] / other['samples_per_s']:.2f}x speed, "
                 f"{r['peak_mem_MiB'] / other['peak_mem_MiB']:.2f}x memory"
                 if other and "error" not in other else "")
        low = r["low_memory"] if r["side"] == "ours" else ""
        lines.append(f"| {r['K']} | {objective} | {name} | {low} | {r['params'] / 1e6:.2f} | {r['samples_per_s']:.2f} | "
                     f"{r['sec_per_step']:.2f} | {sorted(r['step_cpu_times'])[len(r['step_cpu_times']) // 2]:.2f} | "
                     f"{r['peak_mem_MiB']:.0f} | {ratio} |")
    flops = [r for r in rows if "gflop_per_step" in r]
    if flops:
        lines += ["", "| K | GFLOP/step | GFLOP/s | measured GEMM/conv GFLOP/s | fraction |", "|---|---|---|---|---|"]
        lines += [f"| {r['K']} | {r['gflop_per_step']:.0f} | {r['gflop_per_s']:.1f} | {r['gemm_gflop_per_s']:.1f} | "
                  f"{r['fraction_of_gemm']:.2f} |" for r in flops]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
