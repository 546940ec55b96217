"""Validation of user data and the data schema recorded at ``fit``.

At ``fit`` every modality's per-sample shape, kind and scaling is recorded; ``predict``,
``transform`` and ``load`` check new data against it and name the modality and the
dimension that is off. Conversion to model inputs happens batch by batch
(:meth:`DataSchema.to_model_input`), so uint8 images stay uint8 in memory.

Text modalities are declared explicitly, never inferred: ``DataSchema.infer(views,
vocabularies=[None, vocab])`` (the estimators' ``fit(..., vocabularies=...)``) marks modality
``m`` as token ids ``[N, L]`` over a vocabulary of ``vocab_size`` tokens. Such a view is neither
scaled nor standardised; its ids must be integers in ``0..vocab_size-1``; the vocabulary's tokens
(when given) are recorded so that generated ids decode to strings after ``load``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from .lazyrows import LazyRows

ModalityKind = Literal["image", "tabular", "text"]
ArrayLike = Any  # np.ndarray | torch.Tensor


class DataValidationError(ValueError):
    """Raised when user data does not fit what the model expects."""


@dataclass
class ModalitySchema:
    """What one modality looks like: per-sample ``shape``, ``kind`` and how it is scaled."""

    shape: tuple[int, ...]
    kind: ModalityKind
    dtype: str
    scale_uint8: bool = False
    mean: list[float] | None = None
    std: list[float] | None = None
    vocab_size: int | None = None
    vocab: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModalitySchema":
        return cls(**{**d, "shape": tuple(d["shape"])})


@dataclass
class DataSchema:
    """Schema of all modalities, recorded at ``fit`` and replayed on new data."""

    modalities: list[ModalitySchema] = field(default_factory=list)

    @property
    def n_modalities(self) -> int:
        return len(self.modalities)

    def to_dict(self) -> dict[str, Any]:
        return {"modalities": [m.to_dict() for m in self.modalities]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSchema":
        return cls([ModalitySchema.from_dict(m) for m in d["modalities"]])

    @classmethod
    def infer(
        cls,
        views: Sequence[torch.Tensor],
        *,
        standardize_tabular: bool = True,
        vocabularies: Sequence[Any] | None = None,
        mask: torch.Tensor | None = None,
    ) -> "DataSchema":
        """Record shapes and scaling from training views (already checked by :func:`as_views`).

        ``mask`` ``[N, M]`` (True = observed): tabular standardisation statistics come from each
        modality's observed rows only (every modality needs one).

        ``vocabularies``: one entry per modality, None for non-text modalities; for a text
        modality a vocabulary size, a list of tokens or an object with ``tokens`` (e.g.
        :class:`cmvae.data.text.Vocabulary`).
        """
        vocabs = list(vocabularies) if vocabularies is not None else [None] * len(views)
        if len(vocabs) != len(views):
            raise DataValidationError(f"vocabularies lists {len(vocabs)} entries for {len(views)} modalities")
        mods = []
        for m, (x, vocab) in enumerate(zip(views, vocabs)):
            if vocab is not None:
                mods.append(_text_schema(m, x, vocab))
                continue
            shape = tuple(x.shape[1:])
            kind: ModalityKind = "image" if len(shape) == 3 else "tabular"
            scale = x.dtype == torch.uint8
            mean = std = None
            if kind == "tabular" and standardize_tabular and not scale:
                rows = None if mask is None else mask[:, m].to(x.device)
                mean_t, std_t = _chunked_mean_std(x, rows)
                mean, std = mean_t.tolist(), std_t.tolist()
            mods.append(ModalitySchema(shape, kind, str(x.dtype).replace("torch.", ""), scale, mean, std))
        return cls(mods)

    def check(self, views: Sequence[torch.Tensor]) -> None:
        """Raise :class:`DataValidationError` naming the modality and dimension that differ."""
        if len(views) != self.n_modalities:
            raise DataValidationError(
                f"expected {self.n_modalities} modalities (as at fit), got {len(views)}"
            )
        for m, (x, spec) in enumerate(zip(views, self.modalities)):
            got = tuple(x.shape[1:])
            if got != spec.shape:
                diffs = [
                    f"dim {i + 1}: expected {e} received {g}" for i, (e, g) in enumerate(zip(spec.shape, got)) if e != g
                ]
                detail = "; ".join(diffs) if len(got) == len(spec.shape) else f"expected {len(spec.shape) + 1}-D data"
                raise DataValidationError(
                    f"modality {m}: per-sample shape {list(got)} does not match the fitted {list(spec.shape)} ({detail})"
                )
            if spec.kind == "text":
                _check_token_ids(m, x, int(spec.vocab_size or 0))
            elif (x.dtype == torch.uint8) != spec.scale_uint8:
                raise DataValidationError(
                    f"modality {m}: fitted on {spec.dtype} data but received {str(x.dtype).replace('torch.', '')}; "
                    "pass data with the same scaling as at fit (uint8 0..255 vs floats)"
                )

    def to_model_input(
        self, views: Sequence[torch.Tensor | None], device: torch.device | None = None
    ) -> list[torch.Tensor]:
        """Convert a batch of raw views ``[B, ...]`` to float model inputs (uint8 -> [0, 1], tabular
        standardised; text: long token ids). A ``None`` view (unobserved modality) stays None."""
        out: list = []
        for x, spec in zip(views, self.modalities):
            if x is None:
                out.append(None)
                continue
            x = x.to(device) if device is not None else x
            if spec.kind == "text":  # token ids stay integers
                out.append(x.long())
                continue
            x = x.float() / 255.0 if spec.scale_uint8 else x.float()
            if spec.mean is not None and spec.std is not None:
                mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device)
                std = torch.tensor(spec.std, dtype=x.dtype, device=x.device)
                x = (x - mean) / std
            out.append(x)
        return out

    def from_model_output(self, m: int, x: torch.Tensor) -> np.ndarray:
        """Undo the scaling of modality ``m`` on generated data (floats; uint8 images come back in [0, 1];
        text: int64 token ids ``[N, L]``, see :meth:`vocabulary`)."""
        spec = self.modalities[m]
        if spec.kind == "text":
            return x.detach().cpu().long().numpy()
        if spec.mean is not None and spec.std is not None:
            x = x * torch.tensor(spec.std, dtype=x.dtype, device=x.device) + torch.tensor(
                spec.mean, dtype=x.dtype, device=x.device
            )
        return x.detach().cpu().numpy()

    def vocabulary(self, m: int) -> list[str]:
        """The tokens of text modality ``m`` (``tokens[id]``), as recorded at fit."""
        spec = self.modalities[m]
        if spec.kind != "text":
            raise DataValidationError(f"modality {m} is {spec.kind}, not text")
        if spec.vocab is None:
            raise DataValidationError(f"modality {m} was fitted with a vocabulary size only, no tokens to decode with")
        return list(spec.vocab)


#: Rows per chunk when a whole view is read (finite check, standardisation statistics): views may be
#: memory-mapped files larger than memory, and only one chunk at a time is converted.
CHUNK_ROWS = 8192


def _chunks(x: torch.Tensor, rows: torch.Tensor | None = None):
    """``x`` (or its ``rows``, bool ``[N]``) in blocks of :data:`CHUNK_ROWS` rows."""
    for start in range(0, x.shape[0], CHUNK_ROWS):
        block = x[start : start + CHUNK_ROWS]
        yield block if rows is None else block[rows[start : start + CHUNK_ROWS]]


def _chunked_mean_std(x: torch.Tensor, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and :func:`_safe_std` of ``x`` ``[N, D]`` (or its ``rows``), in float64, chunk by chunk."""
    n, total, peak = 0, torch.zeros(x.shape[1:], dtype=torch.float64), torch.zeros(x.shape[1:], dtype=torch.float64)
    for block in _chunks(x, rows):
        block = block.double()
        n += block.shape[0]
        total += block.sum(0)
        peak = torch.maximum(peak, block.abs().amax(0)) if block.shape[0] else peak
    mean = total / max(n, 1)
    squares = torch.zeros_like(total)
    for block in _chunks(x, rows):
        squares += ((block.double() - mean) ** 2).sum(0)
    std = (squares / (n - 1)).sqrt() if n > 1 else torch.zeros_like(total)
    return mean, _safe_std(std, peak)


def _safe_std(std: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Per-feature std for standardisation (``peak``: the largest absolute value); a feature (near)
    constant at fit gets 1, so it is only centred: a small drift at predict time then stays small
    instead of being divided by ~0."""
    tiny = std <= 1e-6 * peak.clamp_min(1.0)
    return torch.where(tiny | ~torch.isfinite(std), torch.ones_like(std), std)


def _check_token_ids(m: int, x: torch.Tensor, vocab_size: int) -> None:
    """Token ids must be integers in ``0..vocab_size-1``."""
    if x.dtype.is_floating_point and bool((x != x.round()).any()):
        raise DataValidationError(f"modality {m} is text: expected integer token ids, got non-integer values")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= vocab_size):
        raise DataValidationError(
            f"modality {m} is text: token ids must lie in 0..{vocab_size - 1} (vocabulary size {vocab_size}), "
            f"got values in {int(x.min())}..{int(x.max())}"
        )


def _text_schema(m: int, x: torch.Tensor, vocab: Any) -> ModalitySchema:
    """Schema of text modality ``m`` (ids ``[N, L]``) for a vocabulary size, token list or ``.tokens`` object."""
    tokens = getattr(vocab, "tokens", vocab)
    if isinstance(tokens, (int, np.integer)):
        size, token_list = int(tokens), None
    elif isinstance(tokens, Sequence) and not isinstance(tokens, str):
        token_list = [str(t) for t in tokens]
        size = len(token_list)
    else:
        raise DataValidationError(f"vocabularies[{m}]: expected a vocabulary size, a token list or a Vocabulary")
    if size < 2:
        raise DataValidationError(f"vocabularies[{m}]: a vocabulary needs at least 2 tokens, got {size}")
    if x.dim() != 2:
        raise DataValidationError(f"modality {m} is text: expected token ids [N, L], got shape {list(x.shape)}")
    _check_token_ids(m, x, size)
    return ModalitySchema(tuple(x.shape[1:]), "text", str(x.dtype).replace("torch.", ""), vocab_size=size,
                          vocab=token_list)


def views_of(data: Any) -> Any:
    """The views list of a :class:`cmvae.data.MultimodalDataset` (anything with ``to_views()``); other input unchanged."""
    to_views = getattr(data, "to_views", None)
    return to_views() if callable(to_views) else data


def _as_tensor(x: Any, label: str) -> torch.Tensor:
    """One modality's array as a CPU tensor; non-numeric data raises :class:`DataValidationError` naming it."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, LazyRows):  # read on demand: every later step indexes it a batch or a chunk at a time
        if x.dtype not in (torch.uint8, torch.float32):
            raise DataValidationError(f"{label} is read on demand and must be uint8 or float32, got {x.dtype}")
        return x  # type: ignore[return-value]
    if isinstance(x, (str, bytes)):
        raise DataValidationError(f"{label} is a string ({x[:40]!r}); expected a numeric array [N, ...]")
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise DataValidationError(f"{label} is not a rectangular numeric array ({' '.join(str(err).split())[:120]})") from None
    if arr.dtype.kind not in "iuf":
        what = {"U": "strings", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time deltas",
                "c": "complex numbers", "b": "booleans"}
        raise DataValidationError(
            f"{label} holds {what.get(arr.dtype.kind, arr.dtype.name)} (dtype {arr.dtype}); expected numbers "
            "(floats, integers, or uint8 images); encode text as token ids with fit(..., vocabularies=...)"
        )
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    try:
        if not arr.flags.writeable:  # e.g. np.load(..., mmap_mode="r"): shared, not copied; never written to
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*not writable.*")
                return torch.as_tensor(arr)
        return torch.as_tensor(arr)
    except TypeError as err:
        raise DataValidationError(f"{label} has unsupported dtype {arr.dtype} ({err})") from None


def _check_finite(t: torch.Tensor, label: str) -> None:
    """No NaN/inf in ``t``, checked chunk by chunk (a memory-mapped view is never read whole into memory)."""
    for start in range(0, t.shape[0], CHUNK_ROWS):
        bad = ~torch.isfinite(t[start : start + CHUNK_ROWS])
        if bool(bad.any()):
            count = sum(int((~torch.isfinite(t[i : i + CHUNK_ROWS])).sum()) for i in range(start, t.shape[0], CHUNK_ROWS))
            first = start + int(torch.nonzero(bad.reshape(bad.shape[0], -1).any(1))[0])
            raise DataValidationError(f"{label} contains {count} NaN/inf values (first in sample {first})")


def as_views(views: Sequence[ArrayLike], *, name: str = "views", min_modalities: int = 2) -> list[torch.Tensor]:
    """Check a list of per-modality arrays and turn them into CPU tensors (no copy where possible).

    Each entry is ``[N, *shape]``: ``[N, C, H, W]`` images or ``[N, D]`` feature vectors,
    with the same N everywhere and no NaN/inf values. A :class:`cmvae.data.MultimodalDataset`
    is accepted too (its ``to_views()``).
    A :class:`~cmvae.lazyrows.LazyRows` entry (e.g. image files) is
    checked chunk by chunk and returned as it is: it is read on demand, never whole.
    """
    views = views_of(views)
    if isinstance(views, (str, bytes, os.PathLike)):
        raise DataValidationError(
            f"{name} must be a list with one array per modality ([N, ...] each), got the path {str(views)!r}: "
            "read the file first (e.g. cmvae.config.load_arrays for a .npz)"
        )
    if isinstance(views, (np.ndarray, torch.Tensor)) or not isinstance(views, Sequence):
        raise DataValidationError(
            f"{name} must be a list with one array per modality ([N, ...] each), got {type(views).__name__}"
        )
    if len(views) < min_modalities:
        raise DataValidationError(f"{name} needs at least {min_modalities} modalities, got {len(views)}")
    tensors = []
    for m, x in enumerate(views):
        if x is None:
            raise DataValidationError(f"{name}[{m}] is None; every modality must be observed here")
        t = _as_tensor(x, f"{name}[{m}]")
        if t.dim() not in (2, 4):
            raise DataValidationError(
                f"{name}[{m}] has shape {list(t.shape)}: expected [N, C, H, W] images or [N, D] features"
            )
        if 0 in t.shape[1:]:
            raise DataValidationError(
                f"{name}[{m}] has shape {list(t.shape)}: every per-sample dimension must be at least 1"
            )
        if t.dtype == torch.bool or t.dtype.is_complex:
            raise DataValidationError(f"{name}[{m}] has unsupported dtype {t.dtype}")
        if t.dtype.is_floating_point:
            _check_finite(t, f"{name}[{m}]")
        elif t.dtype != torch.uint8:
            t = t.float()
        tensors.append(t)
    lengths = [t.shape[0] for t in tensors]
    if len(set(lengths)) != 1:
        raise DataValidationError(f"{name}: modalities have different numbers of samples {lengths}; they must be paired")
    if lengths[0] == 0:
        raise DataValidationError(f"{name}: no samples")
    return tensors
