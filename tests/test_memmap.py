"""Data larger than memory: memory-mapped ``.npy`` views (:func:`cmvae.data.from_npy`) are checked and
standardised chunk by chunk and handed to the data loader as they are (never copied whole into memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmvae import CMVAE
from cmvae.estimator import fitting  # where fit looks up make_loader
from cmvae.data import from_npy
from cmvae.schema import DataSchema, as_views


def write_npy(folder, n: int = 3000, dims=(40, 24), seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    paths = []
    for m, d in enumerate(dims):
        path = folder / f"view{m}.npy"
        x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        x[:] = rng.normal(0, 1, (3, d))[labels] * 3 + rng.normal(0, 1, (n, d)) + 5 * m
        x.flush()
        paths.append(path)
    return paths


def shares_memory(t: torch.Tensor, array: np.ndarray) -> bool:
    start = array.__array_interface__["data"][0]
    return start <= t.data_ptr() < start + array.nbytes


def test_memmapped_views_are_used_in_place_and_standardised_in_chunks(tmp_path, monkeypatch):
    paths = write_npy(tmp_path)
    ds = from_npy(paths)
    mapped = ds.to_views()
    assert all(isinstance(x, np.memmap) or isinstance(x.base, np.memmap) for x in mapped)  # file-backed
    tensors = as_views(ds)
    assert all(shares_memory(t, x) for t, x in zip(tensors, mapped))  # no copy
    monkeypatch.setattr("cmvae.schema.CHUNK_ROWS", 700)  # several chunks, a short last one
    schema = DataSchema.infer(tensors)
    for spec, x in zip(schema.modalities, mapped):
        full = np.asarray(x, dtype=np.float64)
        np.testing.assert_allclose(spec.mean, full.mean(0), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(spec.std, full.std(0, ddof=1), rtol=1e-10)

    handed = {}
    make_loader = fitting.make_loader

    def spy(views, *args, **kwargs):
        handed["views"] = views
        return make_loader(views, *args, **kwargs)

    monkeypatch.setattr(fitting, "make_loader", spy)
    model = CMVAE(n_clusters=3, shared_dim=4, private_dim=2, epochs=1, batch_size=256, accelerator="cpu",
                  progress=False).fit(ds)
    assert all(shares_memory(t, x) for t, x in zip(handed["views"], mapped))
    assert model.predict(ds).shape == (3000,)
    assert model.transform(ds).shape == (3000, 4)


def test_nan_in_a_later_chunk_is_found(tmp_path, monkeypatch):
    paths = write_npy(tmp_path, n=500)
    x = np.load(paths[1], mmap_mode="r+")
    x[432, 3] = np.nan
    x.flush()
    monkeypatch.setattr("cmvae.schema.CHUNK_ROWS", 100)
    with pytest.raises(ValueError, match=r"views\[1\] contains 1 NaN/inf values \(first in sample 432\)"):
        as_views(from_npy(paths))


def test_from_npy_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="modality 1: no such .npy file"):
        from_npy([write_npy(tmp_path, n=50)[0], tmp_path / "nope.npy"])
