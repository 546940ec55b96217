"""Model types by name: ``model_type`` (``"cmvae"``, ``"mopoe"``, ...) -> estimator class.

The bottom of the package: configs check their ``model.type`` and keys here, ``load`` finds the
class a saved model names, and neither needs to import the estimators. Each estimator class
registers itself when its module is imported (:func:`register_estimator`); ``cmvae/__init__``
imports every estimator module, so the registry is complete as soon as ``cmvae`` is imported.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

__all__ = ["estimator_class", "estimator_defaults", "estimator_types", "find_estimator", "register_estimator"]

T = TypeVar("T", bound=type)

_ESTIMATORS: dict[str, Any] = {}


def register_estimator(klass: T) -> T:
    """Make a model type known by its ``model_type`` (configs, ``load``, comparisons); a class decorator."""
    _ESTIMATORS[klass.model_type] = klass
    return klass


def find_estimator(type_name: str) -> Any | None:
    """The estimator class of ``type_name``, or None when no class has that ``model_type``."""
    return _ESTIMATORS.get(type_name)


def estimator_types() -> list[str]:
    """The registered model types, sorted."""
    return sorted(_ESTIMATORS)


def estimator_class(type_name: str) -> Any:
    """The estimator class of a ``model_type`` (``cmvae``, ``mvae``, ``mmvae``, ``mopoe``, ``mmjsd``,
    ``mvtcae``, ``mmvae_plus``, ...); ValueError naming the known types otherwise."""
    klass = _ESTIMATORS.get(type_name)
    if klass is None:
        raise ValueError(f"unknown model type {type_name!r}; known: {', '.join(sorted(_ESTIMATORS))}")
    return klass


def estimator_defaults(klass: type) -> dict[str, Any]:
    """Constructor defaults of ``klass`` (the most derived class's default wins)."""
    out: dict[str, Any] = {}
    for base in klass.__mro__:
        if "__init__" not in base.__dict__ or base is object:
            continue
        for name, p in inspect.signature(base.__init__).parameters.items():
            if name in ("self", "kwargs", "encoders", "decoders") or p.default is inspect.Parameter.empty:
                continue
            out.setdefault(name, p.default)
    return out
