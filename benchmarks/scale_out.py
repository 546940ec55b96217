"""Scale-out benchmark: training throughput with 1 and N processes (Lightning DDP, gloo on the CPU),
and peak memory when fitting data read from disk on demand (memory-mapped views, image folders).

    python benchmarks/scale_out.py throughput --devices 1 2 --n 4096 --epochs 3
    python benchmarks/scale_out.py memmap --n 100000 --dim 1000 --modalities 5 --folder /tmp/mm
    (ulimit -d 1048576; python benchmarks/scale_out.py memmap --n 200000 ...)   # under a 1 GiB hard budget
    python benchmarks/scale_out.py images --n 20000 --size 64 --folder /tmp/img

``throughput`` trains CMVAE on synthetic tabular data (2 modalities) for ``--epochs`` epochs with a
per-process batch of ``--batch`` and reports samples/s of the epochs after the first (whose start-up
is excluded). ``memmap`` writes M float32 ``.npy`` files ``[n, dim]`` (reused when present), fits one
epoch (or ``--max-minutes`` of it) on them, predicts the first ``--predict-rows`` rows via :func:`cmvae.data.from_npy` and reports the peak resident memory (VmHWM) and the peak
anonymous memory (RssAnon, sampled every 50 ms): file-backed pages of a memory map count in the
resident size but the kernel reclaims them under pressure; anonymous memory is what the process holds.
``images`` writes ``--n`` PNG images ``--size`` x ``--size`` RGB per modality (2 modalities, reused when
present), reads them with ``from_image_folders(lazy=True)`` and reports the same for fit + predict.

Both report the process's data limit (``RLIMIT_DATA``, set by ``ulimit -d`` before the command) and the
peak of ``VmData``, the private writable memory that limit caps: a process that needed more than the
limit would fail with a MemoryError. Unlike ``ulimit -v`` it does not count read-only file maps, so it is
a hard budget that memory-mapped data larger than it can run under.
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


class _Peaks:
    """Context manager: peaks of RssAnon and VmData, sampled every 50 ms in a thread (bytes)."""

    FIELDS = ("RssAnon", "VmData")

    def __enter__(self) -> "_Peaks":
        self.before = {f: _status(f) for f in self.FIELDS}
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            for f in self.FIELDS:
                self.peak[f] = max(self.peak[f], _status(f))
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        import resource

        gib = 2.0**30
        limit = resource.getrlimit(resource.RLIMIT_DATA)[0]
        return {"data_limit_gib (RLIMIT_DATA)": None if limit == resource.RLIM_INFINITY else round(limit / gib, 2),
                "peak_vmdata_gib (sampled)": round(self.peak["VmData"] / gib, 2),
                "peak_anon_gib (RssAnon, sampled)": round(self.peak["RssAnon"] / gib, 2),
                "anon_before_gib": round(self.before["RssAnon"] / gib, 2),
                "peak_rss_gib (VmHWM, includes file pages)": round(_status("VmHWM") / gib, 2)}


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
    with _Peaks() as peaks:
        start = time.perf_counter()
        ds = from_npy(paths)
        model = cmvae.CMVAE(n_clusters=4, shared_dim=16, private_dim=8, epochs=1, batch_size=args.batch,
                            accelerator="cpu", progress=False, cluster_init_epoch=1, cluster_init_when="epoch",
                            max_time_minutes=args.max_minutes)
        model.fit(ds)
        fitted = time.perf_counter()
        rows = args.predict_rows or args.n
        labels_pred = model.predict([x[:rows] for x in ds.to_views()])  # slices of the memory maps
        seconds = time.perf_counter() - start
    gib = 2.0**30
    size = sum(p.stat().st_size for p in paths)
    print(json.dumps({"modalities": args.modalities, "n": args.n, "dim": args.dim,
                      "data_gib": round(size / gib, 2), "seconds_fit": round(fitted - start, 1),
                      "seconds_predict": round(seconds - (fitted - start), 1), **peaks.report(),
                      "predicted": int(labels_pred.shape[0])}))


def _write_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """Two folders of ``n`` RGB PNG images ``size`` x ``size`` in 4 groups (reused when complete)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    folders = [folder / f"view{m}" for m in range(2)]
    for m, sub in enumerate(folders):
        if sub.is_dir() and len(list(sub.glob("*.png"))) == n:
            continue
        sub.mkdir(parents=True, exist_ok=True)
        colours = rng.integers(30, 225, (4, 3))
        for i in range(n):
            noise = rng.integers(-12, 13, (size, size, 3))
            Image.fromarray((colours[labels[i]] + noise).clip(0, 255).astype(np.uint8)).save(sub / f"s{i:06d}.png")
    return folders


def images(args: argparse.Namespace) -> None:
    import torch

    import cmvae
    from cmvae.data import from_image_folders

    torch.set_num_threads(args.threads)
    folders = _write_images(Path(args.folder), args.n, args.size)
    with _Peaks() as peaks:
        start = time.perf_counter()
        ds = from_image_folders(folders, lazy=True)
        scanned = time.perf_counter()
        model = cmvae.CMVAE(n_clusters=4, shared_dim=16, private_dim=8, epochs=1, batch_size=args.batch,
                            accelerator="cpu", progress=False, cluster_init_epoch=1, cluster_init_when="epoch",
                            max_time_minutes=args.max_minutes)
        model.fit(ds)
        fitted = time.perf_counter()
        labels_pred = model.predict(ds)
        done = time.perf_counter()
    gib = 2.0**30
    disk = sum(p.stat().st_size for f in folders for p in f.glob("*.png"))
    decoded = sum(int(np.prod(v.shape)) for v in ds.to_views())
    print(json.dumps({"modalities": 2, "n": args.n, "image": f"3x{args.size}x{args.size}",
                      "png_gib": round(disk / gib, 2), "decoded_gib": round(decoded / gib, 2),
                      "seconds_headers": round(scanned - start, 1), "seconds_fit": round(fitted - scanned, 1),
                      "seconds_predict_all": round(done - fitted, 1), **peaks.report(),
                      "predicted": int(labels_pred.shape[0])}))


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
    mm.add_argument("--predict-rows", type=int, default=0, help="predict on the first rows (0: all)")
    im = sub.add_parser("images")
    im.add_argument("--n", type=int, default=20000, help="images per modality")
    im.add_argument("--size", type=int, default=64)
    im.add_argument("--batch", type=int, default=128)
    im.add_argument("--threads", type=int, default=1)
    im.add_argument("--folder", default="/tmp/cmvae-images-bench")
    im.add_argument("--max-minutes", type=float, default=None, help="stop the epoch after this many minutes")
    args = p.parse_args()
    {"throughput": throughput, "_worker": throughput_worker, "memmap": memmap, "images": images}[args.cmd](args)


if __name__ == "__main__":
    main()
