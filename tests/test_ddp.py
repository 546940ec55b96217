"""Multi-process training (Lightning DDP, gloo on the CPU, 2 processes): the same optimisation as one
process on the same global batch, one k-means placement shared by every rank, files written once,
resume, and a model saved by rank 0 that loads and predicts in one process. The runs are launched as
scripts (tests/scripts/fit_ddp.py), by Lightning and by ``torchrun``, as users launch them.

Slow (about a minute a run on 2 shared cores): ``pytest -m slow tests/test_ddp.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import cmvae

SCRIPT = Path(__file__).parent / "scripts" / "fit_ddp.py"
SRC = Path(cmvae.__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(command: list[str], timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def ranks(out: Path) -> list[dict]:
    """What every process recorded at the end of training, rank 0 first."""
    files = sorted((out / "ranks").glob("rank*.json"))
    return [json.loads(f.read_text()) for f in files]


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_ddp_fit_matches_one_process_places_clusters_once_and_resumes(tmp_path):
    ddp, ref = tmp_path / "ddp", tmp_path / "ref"
    run([sys.executable, str(SCRIPT), str(ddp), "--devices", "2", "--epochs", "2"])
    run([sys.executable, str(SCRIPT), str(ref), "--devices", "1", "--reference-of", "2", "--epochs", "2"])
    rank0, rank1 = ranks(ddp)
    (single,) = ranks(ref)
    assert rank0["world_size"] == rank1["world_size"] == 2 and single["world_size"] == 1
    assert rank0["global_step"] == single["global_step"] == 12  # 192 samples, 2 x 16 per step, 2 epochs

    # (a) each step of the 2 processes covers the 1-process run's batch of 32 ...
    union = np.array(rank0["batches"]) + np.array(rank1["batches"])
    np.testing.assert_allclose(union, np.array(single["batches"]), rtol=1e-6)
    # ... and the loss (the mean over the ranks: equal batches) agrees up to the sampling noise of z, w
    ddp_losses = (np.array(rank0["losses"]) + np.array(rank1["losses"])) / 2
    np.testing.assert_allclose(ddp_losses[:3], np.array(single["losses"][:3]), rtol=0.05)
    # gradients are averaged: the ranks end with the same weights
    assert rank0["weights_sum"] == pytest.approx(rank1["weights_sum"], rel=1e-6)
    assert rank0["weights_abs_sum"] == pytest.approx(rank1["weights_abs_sum"], rel=1e-6)

    # (b) one k-means placement, the same on every rank
    assert len(rank0["placements"]) >= 1 and rank0["placements"] == rank1["placements"]
    np.testing.assert_array_equal(rank0["means"], rank1["means"])
    np.testing.assert_array_equal(rank0["logits"], rank1["logits"])

    # (c) checkpoints and logs written once (rank 0)
    run_dir = ddp / "run"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    assert sorted(p.name for p in (run_dir / "logs").glob("*.csv")) == ["metrics.csv"]
    assert not list(run_dir.glob("**/version_*"))
    epochs = [line.split(",")[0] for line in (run_dir / "logs" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["0", "1"]  # one row per epoch, not one per process

    # (e) the model saved by rank 0 loads and predicts in one process
    from fit_ddp import make_views  # noqa: E402  (tests/scripts on sys.path below)

    views, labels = make_views()
    model = cmvae.CMVAE.load(ddp / "model")
    np.testing.assert_allclose(model.module_.prior.means.detach().numpy(), rank0["means"], rtol=1e-6)
    pred = model.predict(views)
    assert pred.shape == labels.shape

    # (d) resume under DDP: 2 more epochs from last.ckpt, the placement kept, ranks still equal
    shutil.rmtree(ddp / "ranks")
    run([sys.executable, str(SCRIPT), str(ddp), "--devices", "2", "--epochs", "4", "--resume"])
    rank0, rank1 = ranks(ddp)
    assert rank0["global_step"] == rank1["global_step"] == 24 and len(rank0["losses"]) == 12
    assert rank0["placements"][: len(rank0["placements"])] == rank1["placements"]
    assert rank0["placements"][0].startswith("after 2 epochs")  # from the checkpoint, not placed again at start
    np.testing.assert_array_equal(rank0["means"], rank1["means"])
    assert rank0["weights_sum"] == pytest.approx(rank1["weights_sum"], rel=1e-6)
    assert sorted(p.name for p in (run_dir / "logs").glob("*.csv")) == ["metrics.1.csv", "metrics.csv"]
    assert cmvae.CMVAE.load(ddp / "model").predict(views).shape == labels.shape


def test_cli_train_under_torchrun_writes_one_run(tmp_path):
    """``torchrun --standalone --nproc_per_node 2 -m cmvae train ... --devices 2 --strategy ddp``: one run
    folder written by rank 0 (config, checkpoint, logs, model), loadable in one process."""
    from fit_ddp import make_views

    views, labels = make_views()
    np.savez(tmp_path / "data.npz", view0=views[0], view1=views[1], labels=labels)
    config = {"data": {"name": "arrays", "path": str(tmp_path / "data.npz")},
              "model": {"n_clusters": 4, "shared_dim": 4, "private_dim": 2},
              "training": {"epochs": 2, "batch_size": 16, "accelerator": "cpu", "progress": False}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    run([*torchrun(), "-m", "cmvae", "train", "--config", str(tmp_path / "run.yaml"), "--out", str(out),
         "--devices", "2", "--strategy", "ddp", "--num-nodes", "1"])
    assert (out / "config.yaml").is_file() and (out / "model" / "config.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    saved = yaml.safe_load((out / "config.yaml").read_text())["training"]
    assert (saved["devices"], saved["strategy"], saved["num_nodes"]) == (2, "ddp", 1)
    rows = (out / "logs" / "metrics.csv").read_text().splitlines()[1:]
    assert sorted({r.split(",")[0] for r in rows}) == ["0", "1"]
    model = cmvae.CMVAE.load(out / "model")
    assert model.predict(views).shape == labels.shape


sys.path.insert(0, str(SCRIPT.parent))
