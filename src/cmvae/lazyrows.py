"""Views read from disk on demand: :class:`LazyRows` is an array-like ``[N, *shape]`` whose rows are
read only when indexed (a batch, a chunk), never all at once.

The estimators accept a :class:`LazyRows` wherever they accept an array: :func:`cmvae.schema.as_views`
passes it through unconverted, and every later step indexes it a batch or a chunk at a time
(``x[start:stop]``, ``x[indices]``), receiving CPU tensors. :class:`cmvae.data.images.ImageFiles`
(folders of images) is one; subclass it for any other storage by implementing :meth:`read`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["LazyRows", "RowSubset"]


class LazyRows:
    """Rows ``[N, *shape]`` of dtype ``dtype`` (``torch.uint8`` for images, ``torch.float32`` for
    features) read on demand.

    Subclasses set :attr:`shape` (a ``torch.Size``) and :attr:`dtype` and implement :meth:`read`
    (indices ``[B]`` -> tensor ``[B, *shape[1:]]``). Indexing with an int (one row ``[*shape[1:]]``),
    a slice, or a 1-D list / array / tensor of ints or bools (rows ``[B, *shape[1:]]``) calls
    :meth:`read` once with those row indices. ``np.asarray(rows)`` reads every row (only for data
    that fits in memory).
    """

    shape: torch.Size
    dtype: torch.dtype
    device = torch.device("cpu")

    def read(self, indices: np.ndarray) -> torch.Tensor:
        """Rows ``indices`` (int64 ``[B]``, each in ``0..N-1``) as a CPU tensor ``[B, *shape[1:]]``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def dim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            index = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= index < len(self):
                raise IndexError(f"row {int(key)} out of range for {len(self)} rows")
            return self.read(np.array([index], dtype=np.int64))[0]
        return self.read(self.row_indices(key))

    def row_indices(self, key: Any) -> np.ndarray:
        """The int64 row indices ``[B]`` that ``key`` (a slice, or 1-D ints or bools) selects."""
        if isinstance(key, slice):
            return np.arange(*key.indices(len(self)), dtype=np.int64)
        if isinstance(key, tuple):
            raise TypeError(f"{type(self).__name__} selects rows only (x[rows]); index the batch it returns")
        rows = key.detach().cpu().numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        if rows.ndim != 1:
            raise TypeError(f"{type(self).__name__} rows must be 1-D, got shape {list(rows.shape)}")
        if rows.dtype == bool:
            if rows.shape[0] != len(self):
                raise IndexError(f"boolean rows of length {rows.shape[0]} for {len(self)} rows")
            return np.flatnonzero(rows)
        if rows.size and rows.dtype.kind not in "iu":
            raise TypeError(f"{type(self).__name__} rows must be integers or bools, got dtype {rows.dtype}")
        rows = rows.astype(np.int64)
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range for {len(self)} rows")
        return rows

    def subset(self, rows: Sequence[int] | np.ndarray) -> "LazyRows":
        """The rows ``rows`` (in that order) as a new lazy view; nothing is read."""
        return RowSubset(self, self.row_indices(rows))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self.read(np.arange(len(self), dtype=np.int64)).numpy()
        return whole if dtype is None else whole.astype(dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={list(self.shape)}, dtype={self.dtype})"


class RowSubset(LazyRows):
    """Rows ``rows`` ``[B]`` of another :class:`LazyRows`, read through it on demand."""

    def __init__(self, base: LazyRows, rows: np.ndarray) -> None:
        self.base = base
        self.rows = np.asarray(rows, dtype=np.int64)
        self.shape = torch.Size([len(self.rows), *base.shape[1:]])
        self.dtype = base.dtype

    def read(self, indices: np.ndarray) -> torch.Tensor:
        return self.base.read(self.rows[indices])
