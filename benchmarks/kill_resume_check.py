"""kill -9 during `cmvae train` at several moments, then `--resume`: every epoch must end up logged
and the finished run must load (issue #12). Anyone can rerun it (about 2 minutes on one CPU core):

    PYTHONPATH=src python benchmarks/kill_resume_check.py [--epochs 6] [--workdir DIR]

Moments: right after the first checkpoint, in the middle of training, after the last epoch's
checkpoint (during the final save/evaluation), and once more mid-resume. After each kill the
same command is rerun with ``--resume``; the last rerun runs to the end. Exit status 0 when the
final run has every epoch in logs/metrics.csv, a model that loads with its checksums, and
no temporary folders left; 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def write_run_config(folder: Path, epochs: int) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    views = [rng.normal(size=(600, 20)) + 2 * labels[:, None], rng.normal(size=(600, 10)) - 2 * labels[:, None]]
    np.savez(folder / "data.npz", view0=views[0].astype(np.float32), view1=views[1].astype(np.float32), labels=labels)
    config = {"data": {"name": "arrays", "path": str(folder / "data.npz")},
              "model": {"n_clusters": 3, "shared_dim": 4, "private_dim": 2, "likelihood": "gaussian"},
              "training": {"epochs": epochs, "batch_size": 32, "accelerator": "cpu", "devices": 1, "progress": False}}
    (folder / "run.yaml").write_text(yaml.safe_dump(config))
    return folder / "run.yaml"


def checkpoint_epoch(run: Path) -> int:
    """Epochs completed according to checkpoints/last.ckpt (-1 when there is none or it is being written)."""
    import torch

    try:
        return int(torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"]) + 1
    except Exception:  # noqa: BLE001 -- missing or mid-write
        return -1


def train_until(cmd: list[str], run: Path, kill_at: int | None, kill_on_model: bool = False) -> int:
    """Run ``cmd``; kill -9 it once ``kill_at`` epochs are checkpointed (or once model/ appears)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if kill_on_model and any(p.name.startswith(".model") or p.name == "model" for p in run.iterdir()):
            proc.send_signal(signal.SIGKILL)
        elif kill_at is not None and not kill_on_model and checkpoint_epoch(run) >= kill_at:
            proc.send_signal(signal.SIGKILL)
        time.sleep(0.05)
    return proc.wait()


def logged_epochs(run: Path) -> set[int]:
    with open(run / "logs" / "metrics.csv", newline="") as fh:
        return {int(float(row["epoch"])) for row in csv.DictReader(fh) if row.get("epoch")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--workdir", default=None, help="folder for the data and the run (default: a temporary one)")
    args = parser.parse_args()
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="cmvae-kill-"))
    folder.mkdir(parents=True, exist_ok=True)
    config, run = write_run_config(folder, args.epochs), folder / "run"
    base = [sys.executable, "-m", "cmvae", "train", "--out", str(run)]
    moments = [("after the first checkpoint", 1, False), ("mid-training", args.epochs // 2, False),
               ("mid-resume", args.epochs - 1, False), ("after the last epoch (saving)", None, True)]
    code = None
    for i, (label, at, on_model) in enumerate(moments):
        cmd = base + (["--config", str(config)] if i == 0 else ["--resume"])
        code = train_until(cmd, run, at, on_model)
        print(f"kill -9 {label}: exit {code}, checkpointed epochs {checkpoint_epoch(run)}")
    code = subprocess.run(base + ["--resume"], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    print(f"final --resume: exit {code.returncode}" + (f" ({code.stderr.strip()[-300:]})" if code.returncode else ""))
    from cmvae import MultimodalEstimator

    epochs = logged_epochs(run)
    model = MultimodalEstimator.load(run / "model")
    leftovers = [p.name for p in run.iterdir() if ".cmvae-" in p.name]
    ok = code.returncode == 0 and epochs == set(range(args.epochs)) and not leftovers
    print(f"epochs logged: {sorted(epochs)} (expected 0..{args.epochs - 1}); model loads: "
          f"{type(model).__name__}; temporary folders left: {leftovers or 'none'}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
