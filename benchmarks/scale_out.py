"""Scale-out benchmark: training throughput with 1 and N processes (Lightning DDP, gloo on the CPU),
and peak memory when fitting memory-mapped views larger than a memory budget.

    python benchmarks/scale_out.py throughput --devices 1 2 --n 4096 --epochs 3
    python benchmarks/scale_out.py memmap --n 100000 --dim 1000 --modalities 5 --folder /tmp/mm

``throughput`` trains CMVAE on synthetic tabular data (2 modalities) for ``--epochs`` epochs with a
per-process batch of ``--batch`` and reports samples/s of the epochs after the first (whose start-up
is excluded). ``memmap`` writes M float32 ``.npy`` files ``[n, dim]`` (reused when present), fits one
epoch (or ``--max-minutes`` of it) on them, predicts the first ``--predict-rows`` rows via :func:`cmvae.data.from_npy` and reports the peak resident memory (VmHWM) and the peak
anonymous memory (RssAnon, sampled every 50 ms): file-backed pages of a memory map count in the
resident size but the kernel reclaims them under pressure; anonymous memory is what the process holds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _status(field: str) -> int:
    """A /proc/self/status field in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _views(n: int, dims=(64, 32), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    return [(rng.normal(0, 2, (8, d))[labels] + rng.normal(0, 1, (n, d))).astype(np.float32) for d in dims]


class _Clock:
    """Lightning callback: wall time of each training epoch (rank 0 prints them)."""

    def __new__(cls):
        import lightning as L

        class Clock(L.Callback):
            def __init__(self) -> None:
                self.times: list[float] = []

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self._start = time.perf_counter()

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                self.times.append(time.perf_counter() - self._start)

        return Clock()


def throughput_worker(args: argparse.Namespace) -> None:
    """One training run (the extra DDP processes re-run this same command)."""
    import torch

    import cmvae
    from cmvae.training import is_global_zero

    torch.set_num_threads(args.threads)
    views = _views(args.n)
    clock = _Clock()
    model = cmvae.CMVAE(n_clusters=8, shared_dim=16, private_dim=8, epochs=args.epochs, batch_size=args.batch,
                        accelerator="cpu", devices=args.devices, strategy="ddp" if args.devices > 1 else "auto",
                        progress=False, cluster_init_when="epoch", cluster_init_epoch=args.epochs)
    model.fit(views, callbacks=[clock])
    if is_global_zero():
        later = clock.times[1:] or clock.times
        print(json.dumps({"devices": args.devices, "n": args.n, "per_process_batch": args.batch,
                          "epoch_seconds": [round(t, 2) for t in clock.times],
                          "samples_per_s": round(args.n / (sum(later) / len(later)), 1)}))


def throughput(args: argparse.Namespace) -> None:
    for devices in args.devices:
        command = [sys.executable, __file__, "_worker", "--devices", str(devices), "--n", str(args.n),
                   "--epochs", str(args.epochs), "--batch", str(args.batch), "--threads", str(args.threads)]
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if lines else done.stderr[-2000:], flush=True)


def memmap(args: argparse.Namespace) -> None:
    import torch

    import cmvae
    from cmvae.data import from_npy

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"view{m}.npy" for m in range(args.modalities)]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, args.n)
    for m, path in enumerate(paths):
        if path.is_file() and np.load(path, mmap_mode="r").shape == (args.n, args.dim):
            continue
        x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.n, args.dim))
        centers = rng.normal(0, 2, (4, args.dim)).astype(np.float32)
        for start in range(0, args.n, 10000):
            stop = min(args.n, start + 10000)
            x[start:stop] = centers[labels[start:stop]] + rng.normal(0, 1, (stop - start, args.dim)).astype(np.float32)
        x.flush()
        del x
    peak_anon = [_status("RssAnon")]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], _status("RssAnon"))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    before = {"VmHWM": _status("VmHWM"), "RssAnon": _status("RssAnon")}
    thread.start()
    start = time.perf_counter()
    ds = from_npy(paths)
    model = cmvae.CMVAE(n_clusters=4, shared_dim=16, private_dim=8, epochs=1, batch_size=args.batch,
                        accelerator="cpu", progress=False, cluster_init_epoch=1, cluster_init_when="epoch",
                        max_time_minutes=args.max_minutes)
    model.fit(ds)
    labels_pred = model.predict([x[: args.predict_rows] for x in ds.to_views()])  # slices of the memory maps
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    gib = 2.0**30
    size = sum(p.stat().st_size for p in paths)
    print(json.dumps({"modalities": args.modalities, "n": args.n, "dim": args.dim,
                      "data_gib": round(size / gib, 2), "seconds_fit_and_predict": round(seconds, 1),
                      "peak_rss_gib (VmHWM, includes file pages)": round(_status("VmHWM") / gib, 2),
                      "peak_anon_gib (RssAnon, sampled)": round(peak_anon[0] / gib, 2),
                      "anon_before_gib": round(before["RssAnon"] / gib, 2), "predicted": int(labels_pred.shape[0])}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--devices", type=int, nargs="+", default=[1, 2])
    w = sub.add_parser("_worker")
    w.add_argument("--devices", type=int, default=1)
    for q in (t, w):
        q.add_argument("--n", type=int, default=4096)
        q.add_argument("--epochs", type=int, default=3)
        q.add_argument("--batch", type=int, default=128, help="per process")
        q.add_argument("--threads", type=int, default=1, help="torch threads per process")
    mm = sub.add_parser("memmap")
    mm.add_argument("--n", type=int, default=100000)
    mm.add_argument("--dim", type=int, default=1000)
    mm.add_argument("--modalities", type=int, default=5)
    mm.add_argument("--batch", type=int, default=256)
    mm.add_argument("--threads", type=int, default=1)
    mm.add_argument("--folder", default="/tmp/cmvae-memmap-bench")
    mm.add_argument("--max-minutes", type=float, default=None, help="stop the epoch after this many minutes")
    mm.add_argument("--predict-rows", type=int, default=20000, help="predict on the first rows")
    args = p.parse_args()
    {"throughput": throughput, "_worker": throughput_worker, "memmap": memmap}[args.cmd](args)


if __name__ == "__main__":
    main()
