"""Settings of the estimators: the errors they raise, argument checks, training length, device and seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

#: Without ``epochs`` a fit lasts at least this many optimiser steps...
DEFAULT_MIN_STEPS = 1000
#: ...and at least this many epochs (the former fixed default, which data of 4,225+ samples keep).
DEFAULT_MIN_EPOCHS = 30
#: Lightning's accelerator names (``gpu`` and ``cuda`` need CUDA).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


class NotFittedError(RuntimeError):
    """The estimator was used before ``fit`` (or ``load``)."""


class ParameterError(ValueError):
    """A setting (constructor parameter or method argument) has a wrong type or value; the message names it."""


def is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (bools, floats and strings refused), else :class:`ParameterError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_number(name: str, value: Any, minimum: float, *, strict: bool = False, hint: str = "") -> float:
    """``value`` as a finite real number > (``strict``) or >= ``minimum``, else :class:`ParameterError`."""
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    ok_type = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not ok_type or not np.isfinite(value) or value < minimum or (strict and value == minimum):
        raise ParameterError(f"{name} must be " + (hint or f"a finite number {bound}, got {value!r}"))
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else :class:`ParameterError` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def resolve_epochs(epochs: int | None, n_samples: int, batch_size: int) -> int:
    """Training epochs: ``epochs`` when given; with ``None`` enough epochs of ``ceil(n_samples / batch_size)``
    optimiser steps for :data:`DEFAULT_MIN_STEPS` steps, and at least :data:`DEFAULT_MIN_EPOCHS`
    (1,200 samples in batches of 128: 100 epochs; 8,000 samples: 30). Steps are counted for one
    process: with several DDP processes each takes fewer steps per epoch."""
    if epochs is not None:
        return int(epochs)
    steps_per_epoch = max(1, math.ceil(n_samples / batch_size))
    return max(DEFAULT_MIN_EPOCHS, math.ceil(DEFAULT_MIN_STEPS / steps_per_epoch))


#: ``contrastive_warmup_epochs="auto"`` (CMVAE's default): this many warm-up epochs...
AUTO_WARMUP_EPOCHS = 4
#: ... and at most one epoch in this many of the training's (none below that many epochs), then half as many
#: epochs with the warm-up's codes frozen (``warmup_freeze_epochs="auto"``).
AUTO_WARMUP_EVERY = 6


def resolve_warmup(warmup: int | str, freeze: int | str, epochs: int, n_modalities: int = 2) -> tuple[int, int]:
    """(contrastive warm-up epochs, frozen-code epochs) of a fit of ``epochs`` epochs on ``n_modalities``.
    ``"auto"`` warm-up: ``min(AUTO_WARMUP_EPOCHS, epochs // AUTO_WARMUP_EVERY)`` (30 epochs: 4; 10: 1; under 6:
    none), none with one modality (nothing to contrast); ``"auto"`` freeze: half the warm-up (rounded down).
    Integers are kept as given."""
    if warmup == "auto":
        warmup_epochs = min(AUTO_WARMUP_EPOCHS, epochs // AUTO_WARMUP_EVERY) if n_modalities >= 2 else 0
    else:
        warmup_epochs = int(warmup)
    freeze_epochs = warmup_epochs // 2 if freeze == "auto" else int(freeze)
    return warmup_epochs, freeze_epochs


def check_epochs_or_auto(name: str, value: Any) -> None:
    """``value`` is ``"auto"`` or an integer >= 0, else :class:`ParameterError` naming ``name``."""
    if isinstance(value, str) and value == "auto":
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ParameterError(f"{name} must be an integer >= 0 or 'auto', got {value!r}")


def pick_device(accelerator: str = "auto") -> torch.device:
    """CUDA when present and allowed, else CPU. Never assumes a GPU."""
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise RuntimeError(f"accelerator={accelerator!r} requested but CUDA is not available")
    return torch.device("cpu")


class seeded:
    """Context manager: with a seed, run on a forked torch RNG seeded with it (the global RNG is untouched)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._fork: Any = None

    def __enter__(self) -> None:
        if self.seed is not None:
            devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
            self._fork = torch.random.fork_rng(devices=devices)
            self._fork.__enter__()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc: Any) -> None:
        if self._fork is not None:
            self._fork.__exit__(*exc)
            self._fork = None


def fit_seed(estimator: Any) -> int:
    """``estimator.seed``, or with ``seed=None`` a random seed drawn once for that estimator (kept in
    ``estimator.seed_``)."""
    if estimator.seed is not None:
        return int(estimator.seed)
    if getattr(estimator, "seed_", None) is None:
        estimator.seed_ = int(np.random.SeedSequence().entropy % (2**31))
    return estimator.seed_

