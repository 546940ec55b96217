"""The one way in for user data: :func:`prepare_input` turns what a caller passes into a checked :class:`Input`.

Every public estimator method that takes data (``fit``, ``predict``, ``predict_proba``,
``transform``, ``encode``, ``score``, ``generate``, ``select_clusters``, ...) calls it once per data
argument and works on the :class:`Input` it returns. What it accepts:

* ``views``: a list (or tuple) of M per-modality arrays ``[N, ...]`` (numpy arrays, torch tensors,
  pandas DataFrames, nested lists), with ``None`` for a modality observed by no sample; or a
  :class:`cmvae.data.MultimodalDataset` (its ``to_views()`` and its ``mask``);
* ``mask``: ``[N, M]`` bool, True = observed (per-sample holes, see :mod:`cmvae.missing`).

Three routes, one per kind of caller, each with the error messages it has always had:

* training (``training=``): :func:`~cmvae.schema.as_views` on the whole list; holes only for models
  that train on partially observed samples, whose placeholders are made finite;
* inference on fully observed views (no ``None``, no mask): :func:`~cmvae.schema.as_views`, then
  :meth:`DataSchema.check <cmvae.schema.DataSchema.check>` against the fitted schema;
* inference with holes (or ``each_modality=True``, as ``generate``): each given modality checked on its
  own against its fitted schema, errors naming the modality.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .missing import fill_unobserved, observation_mask
from .registry import estimator_types, find_estimator
from .schema import ArrayLike, DataSchema, DataValidationError, as_views, views_of

__all__ = ["Input", "TrainingRules", "check_labels", "prepare_input", "select_modality"]


@dataclass(frozen=True)
class TrainingRules:
    """What ``fit`` accepts, for :func:`prepare_input`'s training route.

    ``model``: the estimator's name (in messages); ``partial_training``: whether it trains on samples
    with unobserved modalities; ``min_modalities``: fewest views; ``every_modality``: each modality must
    be observed for some sample (true of training views; validation views may lack one).
    """

    model: str
    partial_training: bool = False
    min_modalities: int = 2
    every_modality: bool = True


@dataclass(frozen=True)
class Input:
    """One checked batch of user data.

    ``views``: M raw CPU tensors ``[N, *shape_m]`` as given (uint8 images stay uint8; integer arrays
    become float; nothing is scaled), ``None`` for a modality given as ``None``. ``observed``: ``[N, M]``
    bool, True = observed. ``complete``: every entry observed. ``schema``: the fitted schema the views
    were checked against (None at fit, before it is inferred from them).
    """

    views: tuple[torch.Tensor | None, ...]
    observed: torch.Tensor
    complete: bool
    schema: DataSchema | None = None

    @property
    def n_samples(self) -> int:
        """N."""
        return int(self.observed.shape[0])

    @property
    def n_modalities(self) -> int:
        """M."""
        return len(self.views)

    @property
    def mask(self) -> torch.Tensor | None:
        """``observed`` ``[N, M]``, or None when every entry is observed (the fully observed code paths)."""
        return None if self.complete else self.observed

    @property
    def given(self) -> list[int]:
        """The modalities given as arrays (not ``None``)."""
        return [m for m, x in enumerate(self.views) if x is not None]

    @property
    def tensors(self) -> list[torch.Tensor]:
        """The views as a list of tensors, when every modality is given (training, fully observed inference)."""
        if any(x is None for x in self.views):
            raise ValueError("this input has modalities given as None: use views")
        return list(self.views)  # type: ignore[arg-type]

    def model_input(self, start: int, stop: int, device: torch.device | None = None) -> list[torch.Tensor | None]:
        """Rows ``start:stop`` as model inputs on ``device`` (scaled by the schema; None stays None)."""
        if self.schema is None:
            raise ValueError("model_input needs the fitted schema: pass schema= to prepare_input")
        return self.schema.to_model_input([None if x is None else x[start:stop] for x in self.views], device)


def prepare_input(
    views: Any,
    mask: ArrayLike | None = None,
    *,
    schema: DataSchema | None = None,
    training: TrainingRules | None = None,
    name: str = "views",
    min_modalities: int = 1,
    modality: int | None = None,
    missing: bool = True,
    each_modality: bool = False,
) -> Input:
    """Check what a caller passes and return it as an :class:`Input`; :class:`DataValidationError` naming
    the argument, modality or dimension otherwise.

    ``schema``: the fitted schema to check against (inference; with ``training``, validation views).
    ``training``: fit's rules (:class:`TrainingRules`); without it the inference routes apply.
    ``modality``: unimodal models read ``views[modality]`` (and ``mask[:, modality]``) only.
    ``missing=False``: ``None`` views are refused (models that need every modality) and a mask is ignored.
    ``each_modality``: check each given modality on its own even without holes (``generate``).
    ``min_modalities`` applies to the fully observed inference route (training: ``training.min_modalities``).
    """
    if mask is None:
        mask = getattr(views, "mask", None)  # a MultimodalDataset with holes
    raw = views_of(views)
    if modality is not None:
        raw = select_modality(raw, modality, name)
        mask = _mask_column(mask, modality)
    if training is not None:
        tensors, observed = _training_views(raw, mask, name, training)
        if schema is not None:
            schema.check(tensors)
        return _complete_or_masked(tensors, observed, schema)
    if not missing or (mask is None and not each_modality and not _has_none(raw)):
        tensors = as_views(raw, name=name, min_modalities=min_modalities)
        if schema is not None:
            schema.check(tensors)
        return _complete_or_masked(tensors, None, schema)
    checked, observed = _observed_views(raw, mask, schema, name)
    return Input(tuple(checked), observed, bool(observed.all()), schema)


def select_modality(views: Any, modality: int, name: str = "views") -> list[ArrayLike]:
    """``[views[modality]]`` with clear errors for a non-list or an out-of-range index."""
    if isinstance(views, (np.ndarray, torch.Tensor)) or not isinstance(views, Sequence):
        raise DataValidationError(f"{name} must be a list with one array per modality, got {type(views).__name__}")
    if not 0 <= modality < len(views):
        raise DataValidationError(f"modality={modality} but {name} has {len(views)} modalities (0..{len(views) - 1})")
    return [views[modality]]


def check_labels(y: ArrayLike, n: int) -> np.ndarray:
    """Labels as a 1-D array of length ``n``, with a clear error otherwise."""
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataValidationError(f"labels must be 1-D with {n} entries, got shape {list(labels.shape)}")
    return labels


# ----------------------------------------------------------------------------------- the routes


def _complete_or_masked(tensors: list[torch.Tensor], observed: torch.Tensor | None, schema: DataSchema | None) -> Input:
    """An :class:`Input` of checked tensors ``[N, ...]`` (``observed`` None: every entry observed)."""
    if observed is None:
        return Input(tuple(tensors), torch.ones(int(tensors[0].shape[0]), len(tensors), dtype=torch.bool), True, schema)
    return Input(tuple(tensors), observed, bool(observed.all()), schema)


def _training_views(
    raw: Any, mask: ArrayLike | None, name: str, rules: TrainingRules
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """Checked training views and their observed mask ``[N, M]`` (None when fully observed).

    Holes need ``rules.partial_training``; placeholders are made finite
    (:func:`~cmvae.missing.fill_unobserved`). A modality given as ``None`` or (with
    ``rules.every_modality``) observed for no sample cannot be trained.
    """
    if mask is None and not _has_none(raw):
        return as_views(raw, name=name, min_modalities=rules.min_modalities), None
    if isinstance(raw, (np.ndarray, torch.Tensor)) or not isinstance(raw, Sequence):
        raise DataValidationError(f"{name} must be a list with one array per modality, got {type(raw).__name__}")
    if not rules.partial_training and _has_none(raw):
        _refuse_partial(rules.model, name)
    # checks the mask's shape and type; a sample with no observed modality is a hole the refusal below names
    observed = observation_mask(list(raw), mask, _n_samples(raw), every_sample=rules.partial_training)
    if bool(observed.all()):
        return as_views(raw, name=name, min_modalities=rules.min_modalities), None
    if not rules.partial_training:
        _refuse_partial(rules.model, name)
    absent = [m for m, x in enumerate(raw) if x is None]
    if absent:
        raise DataValidationError(
            f"{name}[{absent[0]}] is None: fit needs every modality observed for some samples (a modality "
            "nobody observed cannot be learned); mark per-sample holes with mask= [N, M] instead"
        )
    never = torch.nonzero(~observed.any(0)).flatten().tolist()
    if never and rules.every_modality:
        raise DataValidationError(
            f"{name}: modality {never[0]} is observed for no sample; fit needs every modality observed for some"
        )
    filled = [fill_unobserved(x, observed[:, m]) for m, x in enumerate(raw)]
    return as_views(filled, name=name, min_modalities=rules.min_modalities), observed


def _observed_views(
    raw: Any, mask: ArrayLike | None, schema: DataSchema | None, name: str
) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """Views with holes: each given modality checked on its own (None = unobserved), and the ``[N, M]`` mask."""
    if mask is not None and isinstance(raw, Sequence) and not isinstance(raw, (np.ndarray, torch.Tensor)):
        obs = observation_mask(list(raw), mask, _n_samples(raw))
        raw = [None if x is None else fill_unobserved(x, obs[:, m]) for m, x in enumerate(raw)]
    checked = _each_modality(raw, schema, name)
    n = next(int(t.shape[0]) for t in checked if t is not None)
    return checked, observation_mask(checked, mask, n)


def _each_modality(views: Any, schema: DataSchema | None, name: str) -> list[torch.Tensor | None]:
    """Check views with ``None`` for unobserved modalities against the schema, one modality at a time."""
    n_modalities = schema.n_modalities if schema is not None else len(views) if isinstance(views, Sequence) else 0
    if isinstance(views, (np.ndarray, torch.Tensor)) or not isinstance(views, Sequence):
        raise DataValidationError(
            f"{name} must be a list with one entry per modality ({n_modalities}; None for the "
            f"unobserved ones), got {type(views).__name__}"
        )
    if len(views) != n_modalities:
        raise DataValidationError(
            f"{name} must have one entry per modality ({n_modalities}, None for the unobserved ones), "
            f"got {len(views)}"
        )
    out: list[torch.Tensor | None] = []
    for m, x in enumerate(views):
        if x is None:
            out.append(None)
            continue
        try:
            (t,) = as_views([x], name=name, min_modalities=1)
        except DataValidationError as err:
            raise DataValidationError(f"modality {m}: " + str(err).replace(f"{name}[0]", "the array")) from None
        if schema is not None:
            try:
                DataSchema([schema.modalities[m]]).check([t])
            except DataValidationError as err:  # the one-modality schema calls it "modality 0"
                raise DataValidationError(str(err).replace("modality 0:", f"modality {m}:", 1)) from None
        out.append(t)
    observed = {m: int(t.shape[0]) for m, t in enumerate(out) if t is not None}
    if not observed:
        raise DataValidationError(f"need at least one observed modality; every entry of {name} is None")
    if len(set(observed.values())) != 1:
        raise DataValidationError(
            "the observed modalities have different numbers of samples "
            + ", ".join(f"modality {m}: {n}" for m, n in observed.items())
            + "; they must be paired"
        )
    return out


# ---------------------------------------------------------------------------------- small helpers


def _has_none(views: Any) -> bool:
    """Whether a views list marks a modality as unobserved (a ``None`` entry)."""
    return isinstance(views, (list, tuple)) and any(x is None for x in views)


def _n_samples(views: Sequence[ArrayLike | None]) -> int:
    """N of the first given view (for checking a mask before the views are validated)."""
    for x in views:
        if x is not None:
            return int(x.shape[0]) if hasattr(x, "shape") else len(x)
    raise DataValidationError("need at least one observed modality; every entry of views is None")


def _mask_column(mask: ArrayLike | None, modality: int) -> ArrayLike | None:
    """Column ``modality`` of a ``[N, M]`` mask as ``[N, 1]`` (other shapes are left to the mask check)."""
    if mask is None:
        return None
    t = mask.detach().cpu() if isinstance(mask, torch.Tensor) else torch.as_tensor(np.asarray(mask))
    return t[:, modality : modality + 1] if t.dim() == 2 and modality < t.shape[1] else mask


def _refuse_partial(model_name: str, name: str = "views") -> None:
    """DataValidationError: ``model_name`` trains on fully observed samples only (naming the models that do not)."""
    able = sorted(k.__name__ for k in map(find_estimator, estimator_types()) if k.partial_training)
    raise DataValidationError(
        f"{name} has missing modalities (None entries or a mask with False entries), but {model_name} trains on "
        f"fully observed samples only; the models that train on partially observed samples are {', '.join(able)} "
        "(predict/transform/generate of every model accept missing modalities)"
    )
