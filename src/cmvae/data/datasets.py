"""Your own multimodal data: arrays, CSV files, folders of images, or a dataset class.

Everything here produces a :class:`MultimodalDataset`, which ``CMVAE.fit``, ``predict``,
``transform``, ``generate`` ... accept in place of a views list (they call :meth:`to_views`;
a dataset with a :attr:`~MultimodalDataset.mask` of missing entries passes it on).

>>> ds = from_modalities([CSVModality("clinical.csv", id_column="patient", label_column="group"),
...                       ImageFolderModality("scans/", size=64)])
>>> CMVAE(n_clusters=3).fit(ds).predict(ds)

Pairing rule (:func:`from_modalities`): when every modality has sample ids (image file
stems, or a CSV ``id_column``) samples are matched by id -- the id sets must be equal -- in
the order of the first modality; otherwise by position, and the lengths must be equal.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..lazyrows import LazyRows
from ..schema import DataValidationError
from .images import ImageFiles, files_by_stem, image_files, subfolder_labels

__all__ = [
    "ArrayDataset",
    "CSVModality",
    "ImageFolderModality",
    "LoadedModality",
    "MultimodalDataset",
    "from_csv",
    "from_image_folders",
    "from_modalities",
    "from_npy",
]

_MISSING_CELLS = ("", "na", "nan", "null", "none")


def _few(items: Sequence[Any], k: int = 5) -> str:
    shown = ", ".join(str(x) for x in list(items)[:k])
    return shown + (f" (and {len(items) - k} more)" if len(items) > k else "")


# ------------------------------------------------------------------------------------------
# the dataset classes
# ------------------------------------------------------------------------------------------
class MultimodalDataset:
    """Base class for paired multimodal data; subclass it for any source.

    Implement ``__len__`` (N), :attr:`n_modalities` and either ``__getitem__(i)`` -> list of
    M arrays ``[*shape_m]`` (one sample) or :meth:`get_batch` (indices ``[B]`` -> list of M
    arrays ``[B, *shape_m]``, faster). Optionally override :attr:`labels` (``[N]`` ints) and
    :attr:`mask` (``[N, M]`` bool, True = observed). Images are ``[C, H, W]`` (uint8 0..255 or
    floats in [0, 1]), tabular samples ``[D]`` floats.

    :meth:`to_views` materialises the whole dataset in memory as M arrays ``[N, *shape_m]``
    (uint8 stays uint8), which is what the estimators train on.
    """

    names: list[str] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def n_modalities(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> list[Any]:
        raise NotImplementedError

    @property
    def labels(self) -> np.ndarray | None:
        """Ground-truth labels ``[N]`` if known (used only for scoring)."""
        return None

    @property
    def mask(self) -> np.ndarray | None:
        """``[N, M]`` bool, True where a modality is observed; None = everything observed."""
        return None

    def modality_name(self, m: int) -> str:
        names = self.names
        return f"modality {m} ({names[m]!r})" if names and m < len(names) else f"modality {m}"

    def get_batch(self, indices: np.ndarray) -> list[Any]:
        """Samples ``indices`` ``[B]`` as M arrays ``[B, *shape_m]`` (default: stacks ``__getitem__``)."""
        samples = [self[int(i)] for i in indices]
        out = []
        for m in range(self.n_modalities):
            try:
                out.append(np.stack([np.asarray(s[m]) for s in samples]))
            except ValueError as err:
                raise DataValidationError(f"{self.modality_name(m)}: samples have different shapes ({err})") from None
        return out

    def to_views(self, batch_size: int = 1024) -> list[Any]:
        """The whole dataset as M arrays ``[N, *shape_m]``."""
        n = len(self)
        if n == 0:
            raise DataValidationError(f"{type(self).__name__} is empty")
        chunks: list[list[Any]] = [[] for _ in range(self.n_modalities)]
        for start in range(0, n, batch_size):
            batch = self.get_batch(np.arange(start, min(n, start + batch_size)))
            if len(batch) != self.n_modalities:
                raise DataValidationError(
                    f"{type(self).__name__}.get_batch returned {len(batch)} arrays for {self.n_modalities} modalities"
                )
            for m, x in enumerate(batch):
                chunks[m].append(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach().cpu().numpy())
        views = []
        for m, parts in enumerate(chunks):
            shapes = {p.shape[1:] for p in parts}
            if len(shapes) != 1:
                raise DataValidationError(f"{self.modality_name(m)}: batches have different sample shapes {sorted(shapes)}")
            views.append(np.concatenate(parts))
        return views


def from_npy(paths: Sequence[str | Path], labels: Any | None = None, *, names: Sequence[str] | None = None,
             mask: Any | None = None) -> "ArrayDataset":
    """Data larger than memory: one ``.npy`` file ``[N, *shape_m]`` per modality, memory-mapped
    (``np.load(path, mmap_mode="r")``). Nothing is read at once: ``fit`` checks and standardises the
    views chunk by chunk and its data loader reads one batch at a time (under DDP each process reads
    its share); ``predict``/``transform`` encode batch by batch. Write such files with
    ``np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N, D))``.
    uint8 images and float32 features are used as stored (other dtypes are converted, i.e. read whole).
    """
    views = []
    for m, path in enumerate(paths):
        if not Path(path).is_file():
            raise DataValidationError(f"modality {m}: no such .npy file: {path}")
        views.append(np.load(path, mmap_mode="r"))
    return ArrayDataset(views, labels, names=names, mask=mask)


class ArrayDataset(MultimodalDataset):
    """Paired arrays: M numpy arrays (memory-mapped ones too), torch tensors or
    :class:`~cmvae.lazyrows.LazyRows` (read on demand) ``[N, *shape_m]``.

    ``labels`` ``[N]`` optional; ``names`` name the modalities in error messages; ``mask``
    ``[N, M]`` (True = observed) marks missing entries (their values are placeholders).
    """

    def __init__(
        self,
        views: Sequence[Any],
        labels: Any | None = None,
        *,
        names: Sequence[str] | None = None,
        mask: Any | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        if isinstance(views, (np.ndarray, torch.Tensor)) or not isinstance(views, Sequence):
            raise DataValidationError(
                f"views must be a list with one array per modality ([N, ...] each), got {type(views).__name__}"
            )
        if len(views) == 0:
            raise DataValidationError("views is empty: pass one array per modality")
        self.names = list(names) if names is not None else None
        if self.names is not None and len(self.names) != len(views):
            raise DataValidationError(f"{len(self.names)} names for {len(views)} modalities")
        arrays = []
        for m, x in enumerate(views):
            if isinstance(x, LazyRows):  # read on demand, batch by batch: never converted here
                arrays.append(x)
                continue
            a = x.detach().cpu() if isinstance(x, torch.Tensor) else np.asarray(x)
            if not isinstance(a, torch.Tensor) and a.dtype.kind not in "uif":
                raise DataValidationError(
                    f"{self.modality_name(m)}: expected a numeric array, got dtype {a.dtype} "
                    f"({type(x).__name__}); convert strings/objects to numbers first"
                )
            if a.ndim < 1:
                raise DataValidationError(f"{self.modality_name(m)}: expected [N, ...], got a scalar")
            arrays.append(a)
        lengths = [int(a.shape[0]) for a in arrays]
        if len(set(lengths)) != 1:
            detail = ", ".join(f"{self.modality_name(m)}: {n}" for m, n in enumerate(lengths))
            raise DataValidationError(f"modalities have different numbers of samples ({detail}); they must be paired")
        self._views = arrays
        n = lengths[0]
        self._labels = None
        if labels is not None:
            y = np.asarray(labels)
            if y.ndim != 1 or y.shape[0] != n:
                raise DataValidationError(f"labels must be [N] = [{n}], got shape {list(y.shape)}")
            self._labels = y
        self._mask = None
        if mask is not None:
            mk = np.asarray(mask)
            if mk.shape != (n, len(arrays)) or mk.dtype != bool:
                raise DataValidationError(f"mask must be bool [N, M] = [{n}, {len(arrays)}], got {mk.dtype} {list(mk.shape)}")
            self._mask = None if mk.all() else mk
        self.label_names = list(label_names) if label_names is not None else None

    def __len__(self) -> int:
        return int(self._views[0].shape[0])

    @property
    def n_modalities(self) -> int:
        return len(self._views)

    def __getitem__(self, index: int) -> list[Any]:
        return [x[index] for x in self._views]

    def get_batch(self, indices: np.ndarray) -> list[Any]:
        return [x[torch.as_tensor(indices)] if isinstance(x, torch.Tensor) else x[indices] for x in self._views]

    def to_views(self, batch_size: int = 1024) -> list[Any]:
        return list(self._views)

    @property
    def labels(self) -> np.ndarray | None:
        return self._labels

    @property
    def mask(self) -> np.ndarray | None:
        return self._mask

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(x.shape[1:])}" for x in self._views)
        return f"ArrayDataset(N={len(self)}, modalities=[{shapes}], labels={'yes' if self._labels is not None else 'no'})"


# ------------------------------------------------------------------------------------------
# modality readers
# ------------------------------------------------------------------------------------------
@dataclass
class LoadedModality:
    """One modality read from disk: ``data`` ``[N, *shape]`` (an array, or a :class:`~cmvae.lazyrows.LazyRows`
    read on demand), optional sample ``ids`` and ``labels`` ``[N]``."""

    name: str
    data: np.ndarray | LazyRows
    ids: list[str] | None = None
    labels: np.ndarray | None = None
    label_names: list[str] | None = None
    observed: np.ndarray | None = None  # [N] bool, None = all observed


def _encode_labels(values: Sequence[str], where: str) -> tuple[np.ndarray, list[str] | None]:
    """Integer labels: numbers as they are, anything else mapped to ids in sorted order."""
    try:
        as_float = np.array([float(v) for v in values])
        if np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)):
            return as_float.astype(np.int64), None
    except ValueError:
        pass
    if any(v.strip() == "" for v in values):
        raise DataValidationError(f"{where}: empty label in row {[v.strip() for v in values].index('') + 1}")
    names = sorted(set(values))
    lookup = {v: i for i, v in enumerate(names)}
    return np.array([lookup[v] for v in values], dtype=np.int64), names


@dataclass
class CSVModality:
    """A tabular modality from a CSV file with a header row.

    ``columns``: the feature columns (names or glob patterns such as ``"gene_*"``; default:
    every column except ``id_column`` and ``label_column``). ``id_column`` pairs rows with
    other modalities by id; ``label_column`` gives labels. ``missing="mask"`` lets a row
    leave *all* its feature cells empty (the modality is unobserved for that sample);
    by default any empty cell is an error.
    """

    path: str | Path
    columns: Sequence[str] | None = None
    id_column: str | None = None
    label_column: str | None = None
    name: str | None = None
    missing: str = "error"
    delimiter: str = ","

    def load(self) -> LoadedModality:
        path = Path(self.path)
        if not path.is_file():
            raise DataValidationError(f"CSV file not found: {path}")
        if self.missing not in ("error", "mask"):
            raise ValueError(f"missing must be 'error' or 'mask', got {self.missing!r}")
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh, delimiter=self.delimiter))
        rows = [r for r in rows if r]
        if not rows:
            raise DataValidationError(f"{path}: empty CSV file (expected a header row)")
        header = [h.strip() for h in rows[0]]
        body = rows[1:]
        if not body:
            raise DataValidationError(f"{path}: no data rows after the header")
        for i, r in enumerate(body):
            if len(r) != len(header):
                raise DataValidationError(f"{path}: line {i + 2} has {len(r)} fields, the header has {len(header)}")
        for key, col in (("id_column", self.id_column), ("label_column", self.label_column)):
            if col is not None and col not in header:
                raise DataValidationError(f"{path}: {key} {col!r} not in the header ({_few(header, 8)})")
        features = self._feature_columns(header, path)
        idx = [header.index(c) for c in features]
        data = np.empty((len(body), len(idx)), dtype=np.float32)
        empty = np.zeros((len(body), len(idx)), dtype=bool)
        for i, r in enumerate(body):
            for j, k in enumerate(idx):
                cell = r[k].strip()
                if cell.lower() in _MISSING_CELLS:
                    empty[i, j] = True
                    data[i, j] = np.nan
                    continue
                try:
                    data[i, j] = float(cell)
                except ValueError:
                    raise DataValidationError(
                        f"{path}: column {features[j]!r} is not numeric (line {i + 2}: {cell[:30]!r}); "
                        "list only numeric feature columns in columns=, or set id_column/label_column"
                    ) from None
                if not math.isfinite(data[i, j]):
                    raise DataValidationError(f"{path}: column {features[j]!r} line {i + 2}: non-finite value {cell!r}")
        observed = None
        if empty.any():
            partial = empty.any(1) & ~empty.all(1)
            bad_rows = np.nonzero(partial if self.missing == "mask" else empty.any(1))[0]
            if bad_rows.size:
                first = int(bad_rows[0])
                col = features[int(np.argmax(empty[first]))]
                hint = "" if self.missing == "mask" else " (missing='mask' allows rows whose feature cells are all empty)"
                raise DataValidationError(
                    f"{path}: empty value in column {col!r} (line {first + 2}; {bad_rows.size} row(s) affected){hint}"
                )
            observed = ~empty.all(1)
            data[~observed] = 0.0
        ids = None
        if self.id_column is not None:
            ids = [r[header.index(self.id_column)].strip() for r in body]
            seen: set[str] = set()
            dup = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
            if dup:
                raise DataValidationError(f"{path}: repeated ids in {self.id_column!r}: {_few(dup)}")
        labels = label_names = None
        if self.label_column is not None:
            values = [r[header.index(self.label_column)].strip() for r in body]
            labels, label_names = _encode_labels(values, f"{path}: label column {self.label_column!r}")
        return LoadedModality(self.name or path.stem, data, ids, labels, label_names, observed)

    def _feature_columns(self, header: list[str], path: Path) -> list[str]:
        reserved = {self.id_column, self.label_column}
        if self.columns is None:
            cols = [h for h in header if h not in reserved]
        else:
            cols = []
            for pattern in self.columns:
                hits = [h for h in header if fnmatch.fnmatchcase(h, pattern)] if any(
                    ch in pattern for ch in "*?[") else ([pattern] if pattern in header else [])
                if not hits:
                    raise DataValidationError(f"{path}: column {pattern!r} not in the header ({_few(header, 8)})")
                cols += [h for h in hits if h not in cols]
        if not cols:
            raise DataValidationError(f"{path}: no feature columns")
        return cols


@dataclass
class ImageFolderModality:
    """An image modality from a folder of image files (read with Pillow, see :mod:`cmvae.data.images`).

    Sample ids are the file stems (name without extension): modalities are paired by stem,
    so ``a/patient7.png`` pairs with ``b/patient7.jpg``. Files may sit in sub-folders; with
    ``labels_from_subfolders`` the first-level sub-folder is the label (``root/<label>/x.png``).
    All images must have the same size unless ``size`` (``int`` or ``(H, W)``) resizes them;
    ``mode`` is a Pillow mode (``"RGB"``, ``"L"``; default: ``"L"`` if the first image is
    greyscale, else ``"RGB"``). Result: uint8 ``[N, C, H, W]``, decoded now, or with ``lazy``
    an :class:`~cmvae.data.images.ImageFiles` that decodes a batch when it is indexed (only the
    headers are read now; ``verify`` also decodes every file once, keeping nothing). ``ids``: use
    exactly the files with these stems, in this order (other files are ignored).
    """

    folder: str | Path
    size: int | Sequence[int] | None = None
    mode: str | None = None
    labels_from_subfolders: bool = False
    name: str | None = None
    lazy: bool = False
    ids: Sequence[str] | None = None
    verify: bool = False

    def load(self) -> LoadedModality:
        root = Path(self.folder)
        files = image_files(root)
        stems = files_by_stem(root, files)
        if self.ids is not None:
            wanted = [str(i) for i in self.ids]
            absent = [i for i in wanted if i not in stems]
            if absent:
                raise DataValidationError(f"{root}: no image file for {len(absent)} of the {len(wanted)} ids: {_few(absent)}")
            files = [stems[i] for i in wanted]
        images = ImageFiles.scan(files, root, size=self.size, mode=self.mode)
        if self.verify:
            images.verify()
        data: np.ndarray | LazyRows = images if self.lazy else images.read(np.arange(len(files))).numpy()
        labels = label_names = None
        if self.labels_from_subfolders:
            labels, label_names = subfolder_labels(root, files)
        return LoadedModality(self.name or root.name, data, [p.stem for p in files], labels, label_names)


# ------------------------------------------------------------------------------------------
# pairing
# ------------------------------------------------------------------------------------------
def from_modalities(
    modalities: Sequence[CSVModality | ImageFolderModality | LoadedModality], labels: Any | None = None
) -> ArrayDataset:
    """Read each modality and pair them into an :class:`ArrayDataset` (see the module's pairing rule).

    Labels come from ``labels`` ``[N]`` or from the modalities that carry some (which must agree).
    """
    if len(modalities) == 0:
        raise DataValidationError("no modalities given")
    loaded = [m if isinstance(m, LoadedModality) else m.load() for m in modalities]
    names = [m.name for m in loaded]
    if len(set(names)) != len(names):
        names = [f"{n}[{i}]" for i, n in enumerate(names)]
    if all(m.ids is not None for m in loaded):
        order = loaded[0].ids
        assert order is not None
        for m, mod in zip(names[1:], loaded[1:]):
            assert mod.ids is not None
            have, want = set(mod.ids), set(order)
            missing = [i for i in order if i not in have]
            extra = sorted(have - want)
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"{len(missing)} id(s) of {names[0]!r} not in {m!r}: {_few(missing)}")
                if extra:
                    parts.append(f"{len(extra)} id(s) of {m!r} not in {names[0]!r}: {_few(extra)}")
                if len(mod.ids) != len(order):
                    parts.append(f"{len(order)} samples in {names[0]!r}, {len(mod.ids)} in {m!r}")
                raise DataValidationError("unpaired samples: " + "; ".join(parts))
        for mod in loaded:
            assert mod.ids is not None
            pos = {k: i for i, k in enumerate(mod.ids)}
            take = np.array([pos[k] for k in order])
            mod.data = mod.data.subset(take) if isinstance(mod.data, LazyRows) else mod.data[take]
            mod.labels = mod.labels[take] if mod.labels is not None else None
            mod.observed = mod.observed[take] if mod.observed is not None else None
    else:
        lengths = [len(m.data) for m in loaded]
        if len(set(lengths)) != 1:
            detail = ", ".join(f"{n!r}: {k}" for n, k in zip(names, lengths))
            raise DataValidationError(
                f"modalities have different numbers of samples ({detail}); without ids (image stems, CSV id_column) "
                "they are paired by position"
            )
    label_names = None
    if labels is None:
        carriers = [(n, m) for n, m in zip(names, loaded) if m.labels is not None]
        for n, m in carriers[1:]:
            if m.label_names != carriers[0][1].label_names or not np.array_equal(m.labels, carriers[0][1].labels):
                raise DataValidationError(f"the labels of {carriers[0][0]!r} and {n!r} disagree")
        if carriers:
            labels, label_names = carriers[0][1].labels, carriers[0][1].label_names
    mask = None
    if any(m.observed is not None for m in loaded):
        mask = np.stack([m.observed if m.observed is not None else np.ones(len(m.data), bool) for m in loaded], 1)
        if not mask.any(1).all():
            rows = np.nonzero(~mask.any(1))[0]
            raise DataValidationError(f"{rows.size} sample(s) have no observed modality (rows {_few(rows.tolist())})")
    return ArrayDataset([m.data for m in loaded], labels, names=names, mask=mask, label_names=label_names)


def from_csv(
    paths: str | Path | Sequence[str | Path],
    *,
    columns: Sequence[Sequence[str]] | None = None,
    id_column: str | None = None,
    label_column: str | None = None,
    missing: str = "error",
) -> ArrayDataset:
    """Tabular modalities from CSV files.

    * several ``paths``: one CSV per modality (every column but ``id_column``/``label_column``
      is a feature; ``columns`` may give one column list per file);
    * one path and ``columns=[[...], [...], ...]``: one modality per column group (names or
      glob patterns) of the same file.

    Rows pair by ``id_column`` when given, else by position. ``label_column`` (in any file
    that has it) gives labels.
    """
    if isinstance(paths, (str, Path)):
        if columns is None or len(columns) < 1:
            raise DataValidationError("one CSV file needs columns=[[...], [...]]: one column group per modality")
        specs = [
            CSVModality(paths, list(group), id_column, label_column, name=f"{Path(paths).stem}[{i}]", missing=missing)
            for i, group in enumerate(columns)
        ]
    else:
        paths = list(paths)
        if columns is not None and len(columns) != len(paths):
            raise DataValidationError(f"{len(columns)} column groups for {len(paths)} CSV files")
        specs = []
        for i, p in enumerate(paths):
            header = _csv_header(Path(p))
            specs.append(
                CSVModality(
                    p,
                    None if columns is None else list(columns[i]),
                    id_column,
                    label_column if label_column in header else None,
                    missing=missing,
                )
            )
        if label_column is not None and all(s.label_column is None for s in specs):
            raise DataValidationError(f"label_column {label_column!r} is in none of the CSV files")
    return from_modalities(specs)


def _csv_header(path: Path) -> list[str]:
    if not path.is_file():
        raise DataValidationError(f"CSV file not found: {path}")
    with path.open(newline="") as fh:
        return [h.strip() for h in next(csv.reader(fh), [])]


def from_image_folders(
    folders: Sequence[str | Path],
    *,
    size: int | Sequence[int] | None = None,
    mode: str | None = None,
    labels_from_subfolders: bool = False,
    lazy: bool = False,
    ids: Sequence[str] | None = None,
    verify: bool = False,
) -> ArrayDataset:
    """Image modalities, one folder per modality, paired by file stem (see :class:`ImageFolderModality`):
    the stems of every folder must be the same (in the sorted order of the first folder's files),
    or with ``ids`` the samples are exactly these stems, in this order.

    ``lazy=True``: data larger than memory. Only the file headers are read here (each file must
    open as an image; without ``size`` the images of a folder must have one size); each view is an
    :class:`~cmvae.data.images.ImageFiles` that ``fit``/``predict``/``transform``/``select_clusters``
    decode a batch at a time (under DDP each process decodes its share). ``verify=True`` also
    decodes every file once now (nothing kept), so that a file damaged after its header fails here
    rather than in the middle of training.
    """
    if isinstance(folders, (str, Path)):
        folders = [folders]
    return from_modalities(
        [ImageFolderModality(f, size, mode, labels_from_subfolders, lazy=lazy, ids=ids, verify=verify)
         for f in folders]
    )
