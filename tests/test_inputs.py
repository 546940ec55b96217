"""User data: arrays, CSV files, image folders, dataset subclasses, run configs, tabular scaling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cmvae import CMVAE, DataValidationError
from cmvae.config import ConfigError, load_config, load_data
from cmvae.data import (
    ArrayDataset,
    CSVModality,
    ImageFolderModality,
    MultimodalDataset,
    from_csv,
    from_image_folders,
    from_modalities,
)

FAST = dict(
    n_clusters=2, shared_dim=3, private_dim=2, batch_size=32, lr=5e-3, cluster_init_epoch=1,
    progress=False, accelerator="cpu", seed=0,
)


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(str(c) for c in r) for r in rows]) + "\n")
    return path


def write_images(root, items, *, size=(6, 5), grey=False):
    """items: {relative stem path: value}; writes constant images of that value."""
    for rel, value in items.items():
        p = root / f"{rel}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        shape = size if grey else (*size, 3)
        Image.fromarray(np.full(shape, value, np.uint8)).save(p)
    return root


# ------------------------------------------------------------------------------------------ CSV
def test_csv_files_pair_by_id_and_encode_string_labels(tmp_path):
    a = write_csv(tmp_path / "a.csv", ["id", "x1", "x2", "group"],
                  [["p1", 1, 2, "sick"], ["p2", 3, 4, "well"], ["p3", 5, 6, "sick"]])
    b = write_csv(tmp_path / "b.csv", ["id", "z"], [["p3", 30], ["p1", 10], ["p2", 20]])
    ds = from_csv([a, b], id_column="id", label_column="group")
    x, z = ds.to_views()
    np.testing.assert_array_equal(x, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(z[:, 0], [10, 20, 30])  # rows of b reordered to a's ids
    np.testing.assert_array_equal(ds.labels, [0, 1, 0])
    assert ds.label_names == ["sick", "well"] and ds.names == ["a", "b"] and ds.mask is None


def test_one_csv_with_column_groups_and_globs(tmp_path):
    path = write_csv(tmp_path / "t.csv", ["g_1", "g_2", "p_1", "y"], [[1, 2, 3, 0], [4, 5, 6, 1]])
    ds = from_csv(path, columns=[["g_*"], ["p_1"]], label_column="y")
    g, p = ds.to_views()
    assert g.shape == (2, 2) and p.shape == (2, 1) and g.dtype == np.float32
    np.testing.assert_array_equal(ds.labels, [0, 1])


def test_csv_errors_name_the_problem(tmp_path):
    a = write_csv(tmp_path / "a.csv", ["x", "note"], [[1, "ok"], [2, "bad"]])
    with pytest.raises(DataValidationError, match=r"column 'note' is not numeric \(line 2: 'ok'\)"):
        CSVModality(a).load()
    b = write_csv(tmp_path / "b.csv", ["x", "y"], [[1, 2], [3, ""]])
    with pytest.raises(DataValidationError, match=r"empty value in column 'y' \(line 3"):
        CSVModality(b).load()
    c = write_csv(tmp_path / "c.csv", ["x"], [[1], [2], [3]])
    with pytest.raises(DataValidationError, match=r"different numbers of samples \('b': 2, 'c': 3\)"):
        from_modalities([CSVModality(b, ["x"]), CSVModality(c)])
    with pytest.raises(DataValidationError, match="column 'w' not in the header"):
        CSVModality(c, ["w"]).load()
    d = write_csv(tmp_path / "d.csv", ["id", "x"], [["p1", 1], ["p9", 2]])
    e = write_csv(tmp_path / "e.csv", ["id", "x"], [["p1", 1], ["p2", 2]])
    with pytest.raises(DataValidationError, match=r"unpaired samples: 1 id\(s\) of 'd' not in 'e': p9"):
        from_csv([d, e], id_column="id")
    with pytest.raises(DataValidationError, match="label_column 'y' is in none"):
        from_csv([d, e], id_column="id", label_column="y")
    with pytest.raises(DataValidationError, match="CSV file not found"):
        from_csv([d, tmp_path / "nope.csv"])


def test_csv_missing_rows_become_a_mask(tmp_path):
    a = write_csv(tmp_path / "a.csv", ["id", "x", "y"], [["p1", 1, 2], ["p2", "", ""], ["p3", 5, 6]])
    b = write_csv(tmp_path / "b.csv", ["id", "z"], [["p1", 1], ["p2", 2], ["p3", 3]])
    ds = from_csv([a, b], id_column="id", missing="mask")
    np.testing.assert_array_equal(ds.mask, [[True, True], [False, True], [True, True]])
    assert np.isfinite(ds.to_views()[0]).all()


# ------------------------------------------------------------------------------------ images
def test_image_folders_pair_by_stem_with_subfolder_labels(tmp_path):
    write_images(tmp_path / "rgb", {"cat/s1": 10, "dog/s2": 20, "cat/s3": 30})
    write_images(tmp_path / "grey", {"cat/s3": 31, "cat/s1": 11, "dog/s2": 21}, grey=True)
    ds = from_image_folders([tmp_path / "rgb", tmp_path / "grey"], labels_from_subfolders=True)
    rgb, grey = ds.to_views()
    assert rgb.shape == (3, 3, 6, 5) and grey.shape == (3, 1, 6, 5) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(grey[:, 0, 0, 0], rgb[:, 0, 0, 0] + 1)  # same stem, same row
    assert ds.label_names == ["cat", "dog"]
    np.testing.assert_array_equal(ds.labels, [0 if v in (10, 30) else 1 for v in rgb[:, 0, 0, 0]])


def test_image_folder_errors(tmp_path):
    write_images(tmp_path / "a", {"s1": 1, "s2": 2, "s3": 3, "s4": 4})
    write_images(tmp_path / "b", {"s1": 1, "s2": 2})
    with pytest.raises(DataValidationError, match=r"2 id\(s\) of 'a' not in 'b': s3, s4"):
        from_image_folders([tmp_path / "a", tmp_path / "b"])
    write_images(tmp_path / "mixed", {"s1": 1}, size=(6, 5))
    write_images(tmp_path / "mixed", {"s2": 1}, size=(7, 5))
    with pytest.raises(DataValidationError, match=r"different sizes \(s1.png: 6x5, s2.png: 7x5\); pass size="):
        ImageFolderModality(tmp_path / "mixed").load()
    resized = ImageFolderModality(tmp_path / "mixed", size=(4, 3)).load()
    assert resized.data.shape == (2, 3, 4, 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataValidationError, match="no image files"):
        ImageFolderModality(tmp_path / "empty").load()
    with pytest.raises(DataValidationError, match="image folder not found"):
        ImageFolderModality(tmp_path / "nowhere").load()
    with pytest.raises(DataValidationError, match="needs every image in a sub-folder"):
        ImageFolderModality(tmp_path / "a", labels_from_subfolders=True).load()


# ------------------------------------------------------------------------------- datasets
def test_array_dataset_errors_name_modalities():
    with pytest.raises(DataValidationError, match=r"modality 0 \('rna'\): 5, modality 1 \('img'\): 4"):
        ArrayDataset([np.zeros((5, 2)), np.zeros((4, 3))], names=["rna", "img"])
    with pytest.raises(DataValidationError, match="modality 1: expected a numeric array, got dtype <U1"):
        ArrayDataset([np.zeros((2, 2)), np.array([["a"], ["b"]])])
    with pytest.raises(DataValidationError, match=r"labels must be \[N\] = \[2\]"):
        ArrayDataset([np.zeros((2, 2)), torch.zeros(2, 3)], labels=[0, 1, 2])
    nan = ArrayDataset([np.full((4, 2), np.nan, np.float32), np.zeros((4, 3), np.float32)])
    with pytest.raises(DataValidationError, match="NaN"):
        CMVAE(epochs=1, **FAST).fit(nan)


class Squares(MultimodalDataset):
    """A user subclass: sample i is (a 4-vector, a 1x4x4 image), both from its class i % 2."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.y = np.arange(n) % 2
        self.noise = rng.normal(0, 0.3, (n, 4)).astype(np.float32)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_modalities(self) -> int:
        return 2

    def __getitem__(self, i: int) -> list[np.ndarray]:
        c = float(self.y[i])
        return [np.full(4, 3 * c, np.float32) + self.noise[i], np.full((1, 4, 4), 0.2 + 0.6 * c, np.float32)]

    @property
    def labels(self) -> np.ndarray:
        return self.y


def test_dataset_subclass_fits_and_predicts():
    ds = Squares(64)
    views = ds.to_views(batch_size=10)
    assert [v.shape for v in views] == [(64, 4), (64, 1, 4, 4)]
    model = CMVAE(epochs=3, likelihood=["gaussian", "laplace"], **FAST).fit(ds)
    np.testing.assert_array_equal(model.predict(ds), model.predict(views))
    assert model.transform(ds).shape == (64, 3)
    assert model.predict([views[0], None]).shape == (64,)


# ------------------------------------------------------------------ tabular scaling end to end
def test_tabular_standardisation_is_stored_and_undone(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(120) % 2
    tab = (1000.0 + 5.0 * y[:, None] + rng.normal(0, 1, (120, 3))).astype(np.float32)
    img = (np.clip(rng.normal(0.3 + 0.4 * y[:, None, None, None], 0.1, (120, 1, 6, 6)), 0, 1) * 255).astype(np.uint8)
    model = CMVAE(epochs=4, likelihood=["gaussian", "laplace"], **FAST).fit([tab, img])
    spec = model.schema_.modalities[0]
    np.testing.assert_allclose(spec.mean, tab.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(spec.std, tab.astype(np.float64).std(0, ddof=1), rtol=1e-5)
    assert model.schema_.modalities[1].mean is None and model.schema_.modalities[1].scale_uint8
    scaled = model.schema_.to_model_input([torch.as_tensor(tab)])[0]
    np.testing.assert_allclose(scaled.mean(0).numpy(), 0, atol=1e-3)
    model.save(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())
    np.testing.assert_allclose(stored["schema"]["modalities"][0]["mean"], spec.mean)
    assert stored["params"]["likelihood"] == ["gaussian", "laplace"]
    loaded = CMVAE.load(tmp_path / "m")
    a, b = model.sample(50, seed=1), loaded.sample(50, seed=1)
    np.testing.assert_array_equal(a[0], b[0])
    # generated tabular data is in the original units (around 1000, not around 0)
    assert abs(float(a[0].mean()) - 1002.5) < 10
    gen = loaded.generate([None, img], seed=0)[0]
    assert gen.shape == (120, 3) and abs(float(gen.mean()) - 1002.5) < 10
    np.testing.assert_array_equal(loaded.predict([tab, img]), model.predict([tab, img]))


# ------------------------------------------------------------------------------- run config
def test_config_files_source_resolves_paths_and_loads(tmp_path):
    write_csv(tmp_path / "clin.csv", ["id", "a", "b", "y"], [[f"s{i}", i, 2 * i, i % 2] for i in range(4)])
    write_images(tmp_path / "img", {f"s{i}": 10 * i for i in range(4)})
    write_csv(tmp_path / "clin_test.csv", ["id", "a", "b"], [["t0", 1, 2], ["t1", 3, 4]])
    write_images(tmp_path / "img_test", {"t1": 5, "t0": 6})
    cfg_path = tmp_path / "run.yaml"
    cfg_path.write_text(yaml.safe_dump({"data": {
        "name": "files",
        "modalities": [{"csv": "clin.csv", "id_column": "id", "label_column": "y"}, {"images": "img", "size": 4}],
        "test_modalities": [{"csv": "clin_test.csv", "id_column": "id"}, {"images": "img_test", "size": 4}],
    }}))
    cfg = load_config(cfg_path)
    assert cfg.data.modalities[0].csv == str(tmp_path / "clin.csv")
    data = load_data(cfg.data)
    assert [v.shape for v in data.train_views] == [(4, 2), (4, 3, 4, 4)]
    np.testing.assert_array_equal(data.train_labels, [0, 1, 0, 1])
    np.testing.assert_array_equal(data.train_views[1][:, 0, 0, 0], [0, 10, 20, 30])
    assert data.test_views[1][0, 0, 0, 0] == 6 and data.test_labels is None


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"name": "files"}, "name: files needs modalities"),
        ({"name": "files", "modalities": [{"csv": "x.csv"}]}, "file not found"),
        ({"name": "files", "modalities": [{"csv": "a.csv", "images": "."}]}, "exactly one of csv"),
        ({"name": "files", "modalities": [{"images": ".", "columns": ["a"]}]}, "columns do(es) not apply"),
        ({"name": "files", "modalities": [{"csv": "a.csv", "colums": ["a"]}]}, "unknown key"),
        ({"name": "polymnist", "modalities": [{"csv": "a.csv"}]}, "apply to name: files"),
        ({"name": "files", "modalities": [{"csv": "a.csv"}], "test_modalities": []}, "0 sources for 1"),
    ],
)
def test_config_files_errors(tmp_path, data, expected):
    write_csv(tmp_path / "a.csv", ["a"], [[1]])
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"data": data}))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value) and str(path) in str(info.value)
