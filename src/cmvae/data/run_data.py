"""The views a run config's ``data:`` section describes: :func:`load_data` and :class:`RunData`.

``name: polymnist`` builds (or loads) offline PolyMNIST, ``arrays`` reads an ``.npz``,
``files`` reads CSV files / image folders (:mod:`cmvae.data.datasets`) and ``cubicc``
builds CUBICC from local CUB folders (:mod:`cmvae.data.cubicc`). ``max_train`` /
``max_test`` then keep a random subset.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..schema import DataValidationError

__all__ = ["DataSpec", "RunData", "load_arrays", "load_data"]


class ModalityReaderSpec(Protocol):
    """One modality source of ``name: files`` (:class:`cmvae.config.ModalitySource`)."""

    def reader(self) -> Any: ...


class DataSpec(Protocol):
    """What :func:`load_data` reads of a data description: a :class:`cmvae.config.DataConfig`
    (its ``data:`` section). The config layer sits above this module and hands it in."""

    name: str
    root: str | None
    seed: int
    max_train: int | None
    max_test: int | None
    n_modalities: int | None
    path: str | None
    modalities: Sequence[ModalityReaderSpec] | None
    test_modalities: Sequence[ModalityReaderSpec] | None
    cub_dir: str | None
    captions_dir: str | None
    grouping: str | None
    image_size: int
    max_len: int
    min_word_count: int


@dataclass
class RunData:
    """Views and labels of a run. Views are lists of M arrays ``[N, ...]``; labels ``[N]`` or None."""

    train_views: list[np.ndarray]
    train_labels: np.ndarray | None
    test_views: list[np.ndarray] | None = None
    test_labels: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)
    vocabularies: list[Any] | None = None  # per modality: a Vocabulary for text views, else None (fit(vocabularies=))

    def split(self, name: str) -> tuple[list[np.ndarray], np.ndarray | None]:
        """``(views, labels)`` of the ``"train"`` or ``"test"`` split."""
        if name == "train":
            return self.train_views, self.train_labels
        if name == "test":
            if self.test_views is None:
                raise DataValidationError(f"the data ({self.info.get('source', 'arrays')}) has no test split")
            return self.test_views, self.test_labels
        raise ValueError(f"split must be 'train' or 'test', got {name!r}")


def _subset(views: list[np.ndarray], labels: np.ndarray | None, k: int | None, rng: np.random.Generator):
    n = views[0].shape[0]
    if k is None or k >= n:
        return views, labels
    idx = np.sort(rng.choice(n, size=k, replace=False))
    return [v[idx] for v in views], (labels[idx] if labels is not None else None)


def _read_npz_views(z: Any, prefix: str, path: Path) -> list[np.ndarray] | None:
    views = []
    while f"{prefix}{len(views)}" in z.files:
        views.append(z[f"{prefix}{len(views)}"])
    stray = sorted(k for k in z.files if k.startswith(prefix) and k[len(prefix):].isdigit() and int(k[len(prefix):]) >= len(views))
    if stray:
        raise DataValidationError(f"{path}: {stray[0]} present but {prefix}{len(views)} missing (number views from 0)")
    return views or None


def _check_split(views: list[np.ndarray], labels: np.ndarray | None, path: Path, what: str) -> None:
    n = views[0].shape[0]
    for m, v in enumerate(views):
        if v.ndim < 2:
            raise DataValidationError(f"{path}: {what} view {m} must be [N, ...] with N samples, got shape {list(v.shape)}")
        if v.shape[0] != n:
            raise DataValidationError(f"{path}: {what} view {m} has {v.shape[0]} samples, view 0 has {n}")
    if labels is not None and (labels.ndim != 1 or labels.shape[0] != n):
        raise DataValidationError(f"{path}: {what} labels must be [N] = [{n}], got shape {list(labels.shape)}")


def load_arrays(path: str | os.PathLike) -> RunData:
    """Read an ``.npz`` with ``view0, view1, ...``, optional ``labels``, ``test_view0, ...``, ``test_labels``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            train = _read_npz_views(z, "view", path)
            if train is None:
                raise DataValidationError(f"{path}: no view0 array (expected keys view0, view1, ..., optional labels)")
            labels = z["labels"] if "labels" in z.files else None
            test = _read_npz_views(z, "test_view", path)
            test_labels = z["test_labels"] if "test_labels" in z.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, DataValidationError):
            raise
        raise DataValidationError(f"{path}: cannot read as .npz ({err})") from None
    _check_split(train, labels, path, "train")
    if test is not None:
        _check_split(test, test_labels, path, "test")
        if len(test) != len(train):
            raise DataValidationError(f"{path}: {len(train)} train views but {len(test)} test views")
    elif test_labels is not None:
        raise DataValidationError(f"{path}: test_labels given without test_view0, ...")
    return RunData(train, labels, test, test_labels, info={"source": f"arrays from {path}"})


def load_data(cfg: DataSpec) -> RunData:
    """Load the views a :class:`~cmvae.config.DataConfig` describes (PolyMNIST is built offline and cached)."""
    if cfg.name == "polymnist":
        from . import build_polymnist

        ds = build_polymnist(
            cfg.root, seed=cfg.seed, n_modalities=cfg.n_modalities, max_train=cfg.max_train, max_test=cfg.max_test
        )
        return RunData(
            ds.train_views,
            ds.train_labels,
            ds.test_views,
            ds.test_labels,
            info={"source": f"PolyMNIST (digits: {ds.source})", "cache_dir": str(ds.cache_dir)},
        )
    if cfg.name == "files":
        data = _load_files(cfg)
    elif cfg.name == "cubicc":
        data = _load_cubicc(cfg)
    else:
        assert cfg.path is not None
        data = load_arrays(cfg.path)
    rng = np.random.default_rng(cfg.seed)
    data.train_views, data.train_labels = _subset(data.train_views, data.train_labels, cfg.max_train, rng)
    if data.test_views is not None:
        data.test_views, data.test_labels = _subset(data.test_views, data.test_labels, cfg.max_test, rng)
    return data


def _load_files(cfg: DataSpec) -> RunData:
    """``name: files``: read and pair the modality sources (see :mod:`cmvae.data.datasets`)."""
    from .datasets import from_modalities

    assert cfg.modalities is not None
    train = from_modalities([m.reader() for m in cfg.modalities])
    test = from_modalities([m.reader() for m in cfg.test_modalities]) if cfg.test_modalities else None
    for split, ds in (("train", train), ("test", test)):
        if ds is not None and ds.mask is not None:
            raise DataValidationError(
                f"{split} data has missing entries; a run config needs fully observed samples (the Python API "
                "trains CMVAE, MMVAE and MMVAE+ on them: model.fit(from_modalities(...)))"
            )
    return RunData(
        train.to_views(),
        train.labels,
        test.to_views() if test is not None else None,
        test.labels if test is not None else None,
        info={"source": "files: " + ", ".join(train.names or [])},
    )


def _load_cubicc(cfg: DataSpec) -> RunData:
    from .cubicc import load_cubicc

    assert cfg.cub_dir is not None and cfg.captions_dir is not None
    ds = load_cubicc(
        cfg.cub_dir, cfg.captions_dir, cfg.grouping, image_size=cfg.image_size, max_len=cfg.max_len,
        min_word_count=cfg.min_word_count, cache_dir=cfg.root,
    )
    info = {"source": f"CUBICC ({len(ds.species)} species: {', '.join(ds.species)})", "species": ds.species,
            "cache": str(ds.cache_path)}
    return RunData(ds.train_views, ds.train_labels, ds.test_views, ds.test_labels, info=info,
                   vocabularies=[None, ds.vocab])
