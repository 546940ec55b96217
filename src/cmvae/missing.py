"""Missing modalities: which (sample, modality) pairs are observed, and averages over them.

Users mark holes two ways, which combine:

* ``None`` in the views list: that modality is unobserved for every sample;
* ``mask`` ``[N, M]`` (bool, True = observed): per-sample holes. Masked-out entries may hold
  any placeholder (zeros; NaN/inf in float arrays are replaced by 0 before validation).

Every sample needs at least one observed modality. Inference then uses the mixture of the
observed modalities' posteriors q(z | X_S) = (1/|S|) sum_{m in S} q(z | x_m).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .lazyrows import LazyRows
from .schema import DataValidationError


def observation_mask(
    views: list[Any], mask: Any | None, n: int, *, every_sample: bool = True
) -> torch.Tensor:
    """The ``[N, M]`` bool mask of observed entries: ``mask`` (or all True) with ``None`` views set False.

    Raises :class:`DataValidationError` when ``mask`` has the wrong shape/type or (``every_sample``)
    a sample has no observed modality (naming the first few such samples).
    """
    n_mod = len(views)
    if mask is None:
        out = torch.ones(n, n_mod, dtype=torch.bool)
    else:
        t = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
        if t.dtype != torch.bool:
            if t.dtype.is_floating_point or t.dtype.is_complex or not bool(((t == 0) | (t == 1)).all()):
                raise DataValidationError(f"mask must be boolean (True = observed) [N, M], got dtype {t.dtype}")
            t = t.bool()
        if tuple(t.shape) != (n, n_mod):
            raise DataValidationError(
                f"mask must have shape [N, M] = [{n}, {n_mod}] (one column per modality), got {list(t.shape)}"
            )
        out = t.clone()
    for m, x in enumerate(views):
        if x is None:
            out[:, m] = False
    if not every_sample:
        return out
    empty = torch.nonzero(~out.any(1)).flatten()
    if empty.numel():
        first = ", ".join(str(int(i)) for i in empty[:5])
        more = f" (and {empty.numel() - 5} more)" if empty.numel() > 5 else ""
        raise DataValidationError(
            f"{empty.numel()} sample(s) have no observed modality (samples {first}{more}); "
            "every sample needs at least one"
        )
    return out


def fill_unobserved(x: Any, observed: torch.Tensor) -> Any:
    """Replace non-finite values of the unobserved samples of one float view by 0 (``observed`` ``[N]``).

    Leaves ``x`` untouched (no copy) when it has no non-finite values; other dtypes pass through.
    """
    if isinstance(x, LazyRows):  # read on demand, never whole: its placeholders must be finite already
        return x
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not t.dtype.is_floating_point or t.dim() == 0 or t.shape[0] != observed.shape[0]:
        return x
    bad = ~torch.isfinite(t)
    if not bool(bad.any()):
        return x
    keep = observed.view(-1, *([1] * (t.dim() - 1)))
    return torch.where(keep | ~bad, t, torch.zeros((), dtype=t.dtype))


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the modality axis of the observed entries: ``[M, N, ...]`` with ``mask`` ``[N, M]`` -> ``[N, ...]``.

    Unobserved entries may hold NaN; they never reach the result.
    """
    keep = mask.t().reshape(*mask.t().shape, *([1] * (values.dim() - 2)))
    total = torch.where(keep, values, torch.zeros((), dtype=values.dtype)).sum(0)
    return total / keep.sum(0).to(values.dtype)


def random_mask(n: int, n_modalities: int, rate: float, seed: int = 0) -> np.ndarray:
    """A random ``[n, n_modalities]`` observed mask (for simulating missing data): each entry is
    missing with probability ``rate``; a sample left with none gets one modality back at random."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    rng = np.random.default_rng(seed)
    mask = rng.random((n, n_modalities)) >= rate
    empty = ~mask.any(1)
    mask[empty, rng.integers(n_modalities, size=int(empty.sum()))] = True
    return mask
