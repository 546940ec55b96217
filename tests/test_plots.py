"""Tests for cmvae.plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from cmvae import plots


def _read_png(path: Path) -> np.ndarray:
    assert path.is_file()
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    assert img.shape[0] > 10 and img.shape[1] > 10
    return img


def _no_temp_files(d: Path) -> None:
    names = sorted(p.name for p in d.iterdir())
    assert all(n.endswith(".png") and not n.startswith(".") for n in names), names
    assert not any(".tmp" in n for n in names), names


def test_import_does_not_load_pyplot():
    # importing cmvae.plots must not import pyplot nor select a backend
    code = (
        "import sys, cmvae\n"
        "before = 'matplotlib.pyplot' in sys.modules\n"
        "import matplotlib\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "import cmvae.plots\n"
        "assert before or 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend changed'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_training_curves_from_dict(tmp_path):
    hist = {"loss": [3.0, 2.0, 1.5, 1.2], "kl": [0.5, 0.4, float("nan"), 0.3], "recon": [2.5, 1.6, 1.2, 0.9]}
    out = plots.save_training_curves(hist, tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    img = _read_png(out)
    # 3 metrics -> 3 subplots side by side -> landscape figure
    assert img.shape[1] > img.shape[0]
    _no_temp_files(out.parent)


def test_training_curves_more_metrics_is_taller(tmp_path):
    few = plots.save_training_curves({"a": [1, 2], "b": [2, 1]}, tmp_path / "few.png")
    many = plots.save_training_curves({k: [1.0, 2.0, 3.0] for k in "abcdefg"}, tmp_path / "many.png")
    assert _read_png(many).shape[0] > _read_png(few).shape[0]


def test_training_curves_from_lightning_csv(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "epoch,step,train_loss_step,train_loss_epoch,val_loss\n"
        "0,9,2.0,,\n"
        "0,19,1.8,,\n"
        "0,19,,,1.9\n"
        "0,19,,1.9,\n"
        "1,29,1.5,,\n"
        "1,39,1.4,,\n"
        "1,39,,,1.45\n"
        "1,39,,1.45,\n"
    )
    series = plots.read_metrics_csv(csv)
    assert list(series) == ["train_loss_step", "train_loss_epoch", "val_loss"]
    assert series["train_loss_step"] == ("step", [9.0, 19.0, 29.0, 39.0], [2.0, 1.8, 1.5, 1.4])
    assert series["val_loss"] == ("epoch", [0.0, 1.0], [1.9, 1.45])
    out = plots.save_training_curves(csv, tmp_path / "out" / "curves.png")
    _read_png(out)
    _no_temp_files(out.parent)


def test_training_curves_errors(tmp_path):
    with pytest.raises(ValueError, match="no metric"):
        plots.save_training_curves({"loss": [float("nan")]}, tmp_path / "x.png")
    with pytest.raises(FileNotFoundError):
        plots.save_training_curves(tmp_path / "missing.csv", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_image_grid_grows_with_rows(tmp_path):
    rng = np.random.default_rng(0)
    rows3 = [rng.random((5, 3, 28, 28)) for _ in range(3)]
    rows6 = [rng.random((5, 3, 28, 28)) for _ in range(6)]
    a = _read_png(plots.save_image_grid(rows3, tmp_path / "g3.png"))
    b = _read_png(plots.save_image_grid(rows6, tmp_path / "g6.png"))
    assert b.shape[0] > a.shape[0] * 1.6
    assert b.shape[1] == a.shape[1]
    _no_temp_files(tmp_path)


def test_image_grid_nested_modalities_grayscale_uint8(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        [
            rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8),  # grayscale modality
            rng.random((4, 3, 32, 32)),  # colour modality, different size
        ]
        for _ in range(3)
    ]
    out = plots.save_image_grid(
        rows, tmp_path / "grid" / "nested.png",
        row_labels=[f"cluster {k}" for k in range(3)], col_block_titles=["mnist", "svhn"],
    )
    img = _read_png(out)
    one_block = _read_png(plots.save_image_grid([r[0] for r in rows], tmp_path / "grid" / "single.png"))
    # two modality blocks are wider than one
    assert img.shape[1] > one_block.shape[1]
    _no_temp_files(out.parent)


def test_image_grid_pixels_land_in_image(tmp_path):
    # a black image on white background must produce dark pixels
    rows = [np.zeros((2, 1, 10, 10))]
    img = _read_png(plots.save_image_grid(rows, tmp_path / "black.png", scale=4))
    assert img[..., :3].min() < 0.05
    assert img[..., :3].max() > 0.95  # white padding


def test_image_grid_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plots.save_image_grid([], tmp_path / "e.png")
    with pytest.raises(ValueError, match="channels"):
        plots.save_image_grid([np.zeros((2, 2, 8, 8))], tmp_path / "e.png")
    with pytest.raises(ValueError, match="row_labels"):
        plots.save_image_grid([np.zeros((2, 1, 8, 8))], tmp_path / "e.png", row_labels=["a", "b"])
    assert not any(tmp_path.iterdir())


def test_entropy_curve(tmp_path):
    ks = list(range(2, 12))
    ent = np.linspace(2.3, 1.0, len(ks))
    out = plots.save_entropy_curve(
        ks, ent, tmp_path / "ent.png", nmi=np.linspace(0.2, 0.8, len(ks)),
        ari=np.linspace(0.1, 0.7, len(ks)), chosen_k=10,
    )
    _read_png(out)
    out2 = plots.save_entropy_curve(ks, ent, tmp_path / "ent_plain.png")
    _read_png(out2)
    with pytest.raises(ValueError, match="lengths differ"):
        plots.save_entropy_curve(ks, ent[:-1], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="nmi"):
        plots.save_entropy_curve(ks, ent, tmp_path / "bad.png", nmi=[0.1])
    _no_temp_files(tmp_path)


@pytest.mark.parametrize("d,n_labels", [(8, 4), (2, 3), (5, 30)])
def test_latent_map(tmp_path, d, n_labels):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(200, d))
    labels = rng.integers(0, n_labels, size=200)
    out = plots.save_latent_map(Z, labels, tmp_path / "z" / "latent.png")
    _read_png(out)
    _no_temp_files(out.parent)


def test_latent_map_errors(tmp_path):
    with pytest.raises(ValueError, match="lengths differ"):
        plots.save_latent_map(np.zeros((10, 3)), np.zeros(9), tmp_path / "z.png")
    with pytest.raises(ValueError, match=r"\[N, d\]"):
        plots.save_latent_map(np.zeros(10), np.zeros(10), tmp_path / "z.png")


def test_overwrite_is_atomic_replace(tmp_path):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    plots.save_training_curves({"loss": [1.0, 0.5]}, target)
    with open(target, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    _no_temp_files(tmp_path)
