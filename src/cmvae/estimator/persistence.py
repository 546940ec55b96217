"""``save`` and ``load``: a fitted estimator as a checked folder (``config.json``, ``weights.safetensors``,
``SHA256SUMS``; see :mod:`cmvae.saving`), and back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .._version import __version__
from ..registry import find_estimator
from ..saving import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelFileError,
    read_config,
    restore_interrupted_replacement,
    verify_checksums,
    write_model_folder,
)
from ..schema import DataSchema
from ..training import is_global_zero

log = logging.getLogger(__name__)

#: The version of the saved-model folder layout; ``load`` reads this version only.
FORMAT_VERSION = 1
#: Values of parameters added after format 1 that reproduce how older saved models were built
#: (a saved model without the key was trained with this value, whatever today's default is).
LEGACY_PARAMS: dict[str, Any] = {"scale_param": "softplus", "encoder_branches": "shared", "assignment": "vote",
                                  "cluster_init_when": "epoch", "posterior_samples": 0, "weight_init": "torch",
                                  "early_stopping": False, "contrastive_warmup_epochs": 0, "warmup_freeze_epochs": 0}



E = TypeVar("E", bound="PersistenceMixin")


class PersistenceMixin:
    """``save`` and ``load`` of :class:`~cmvae.estimator.base.MultimodalEstimator`."""

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``config.json`` (parameters, data schema, versions), ``weights.safetensors`` and
        ``SHA256SUMS`` (checked by :meth:`load`) into the folder ``path``.

        The folder is written next to ``path`` and moved into place, so an interrupted save never
        leaves a half-written model behind. ``save`` never deletes or hides what it did not write:
        an existing ``path`` that is not a saved model is refused (:class:`ModelFileError`), and a
        saved model there is replaced only with ``overwrite=True``.

        In the extra processes of a multi-process (DDP) run ``save`` writes nothing: rank 0 saves.
        """
        module, schema = self._fitted()
        if not is_global_zero():
            return Path(path)
        if self.encoders is not None:
            log.warning("custom networks are not serialised: pass the same encoders/decoders to load()")
        config = {
            "format_version": FORMAT_VERSION,
            "cmvae_version": __version__,
            "torch_version": torch.__version__,
            "model_type": self.model_type,
            "params": self.get_params(),
            "custom_networks": self.encoders is not None,
            "fit_epochs": self.epochs_,
            "schema": schema.to_dict(),
            "history": self.history_,
        }
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

        def write(folder: Path) -> None:
            (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
            save_file(state, str(folder / WEIGHTS_FILE))

        return write_model_folder(Path(path), write, overwrite=overwrite)

    @classmethod
    def load(
        cls: type[E],
        path: str | Path,
        *,
        encoders: Sequence[nn.Module] | None = None,
        decoders: Sequence[nn.Module] | None = None,
        **overrides: Any,
    ) -> E:
        """Load a model written by :meth:`save`. ``overrides`` change parameters (e.g. ``accelerator``).

        The files are checked against the SHA-256 sums recorded at save (models saved before
        checksums existed are checked for consistency only); a damaged, truncated or edited file
        raises :class:`ModelFileError` naming it.
        """
        path = Path(path)
        restore_interrupted_replacement(path)
        config_file = path / CONFIG_FILE
        if not config_file.exists():
            raise FileNotFoundError(f"no saved model at {path} (missing {CONFIG_FILE})")
        verify_checksums(path)
        config = read_config(path)
        klass = _model_class(cls, config, config_file)
        if config.get("custom_networks") and encoders is None:
            raise ValueError(f"{path} was trained with custom networks: pass encoders= and decoders= to load()")
        unknown = set(overrides) - set(klass._param_names())
        if unknown:
            raise TypeError(f"unknown parameter(s) {sorted(unknown)} for {klass.__name__}")
        params = config.get("params")
        if not isinstance(params, dict):
            raise ModelFileError(f"{config_file} is damaged: 'params' must be an object")
        try:
            legacy = {k: v for k, v in LEGACY_PARAMS.items() if k in set(klass._param_names())}
            model = klass(**{**legacy, **params, **overrides}, encoders=encoders, decoders=decoders)
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"{config_file}: invalid params: {one_line(err)}") from None
        model.schema_ = _schema_of(config, config_file)
        try:
            model.module_ = model._build_module(model.schema_)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ModelFileError(f"{config_file}: the recorded settings do not build a model: {one_line(err)}") from None
        _load_weights(model.module_, path / WEIGHTS_FILE)
        model.module_.eval()
        history = config.get("history", {})
        model.history_ = history if isinstance(history, dict) else {}
        model.epochs_ = _resolved_epochs_of(config, model.epochs)
        return model  # type: ignore[no-any-return]


def one_line(err: BaseException) -> str:
    """An exception's message on one line (the first 300 characters)."""
    text = " ".join(str(err).split())
    return (text[:300] + " ...") if len(text) > 300 else text or type(err).__name__


def _resolved_epochs_of(config: dict[str, Any], epochs: int | None) -> int | None:
    """The epochs a saved model was fitted for (``fit_epochs``; models saved before it was
    recorded always had an explicit ``epochs``)."""
    value = config.get("fit_epochs")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return epochs


def _model_class(cls: type, config: dict[str, Any], file: Path) -> type:
    """The estimator class a ``config.json`` names, after checking its format version."""
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{file}: format_version must be an integer, got {version!r}")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{file.parent} was saved in format {version}; this cmvae ({__version__}) reads format {FORMAT_VERSION}"
        )
    model_type = config.get("model_type")
    klass = cls if cls.model_type == model_type else find_estimator(model_type) if isinstance(model_type, str) else None
    if klass is None:
        raise ModelFileError(f"{file.parent} holds an unknown model type {model_type!r} ({file})")
    return klass


def _schema_of(config: dict[str, Any], file: Path) -> DataSchema:
    """The data schema recorded in ``config.json``, checked for what a hand edit can break."""
    try:
        schema = DataSchema.from_dict(config["schema"])
        for m, spec in enumerate(schema.modalities):
            dims = tuple(int(d) for d in spec.shape)
            if not dims or any(d < 1 for d in dims):
                raise ValueError(f"modality {m}: invalid shape {list(spec.shape)}")
            standardised = spec.kind == "tabular" and not spec.scale_uint8
            stats = [spec.mean, spec.std]
            if standardised and any(s is None or len(s) != dims[0] for s in stats):
                raise ValueError(f"modality {m}: the standardisation (mean and std, {dims[0]} values each) is missing")
            if standardised and not all(np.isfinite(v) and v > 0 for v in spec.std):  # type: ignore[union-attr]
                raise ValueError(f"modality {m}: std values must be positive")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        detail = f"missing key {err}" if isinstance(err, KeyError) else one_line(err)
        raise ModelFileError(f"{file} is damaged or was edited: schema: {detail}") from None
    return schema


def _load_weights(module: nn.Module, file: Path) -> None:
    """Load ``weights.safetensors`` into ``module`` with errors naming the file and what is wrong."""
    if not file.is_file():
        raise ModelFileError(f"{file} is missing")
    try:
        state = load_file(str(file))
    except Exception as err:  # noqa: BLE001 -- safetensors raises its own error type for damaged files
        raise ModelFileError(f"{file} is damaged or truncated: {one_line(err)}") from None
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        parts += [f"{len(wrong)} with another shape (e.g. {wrong[0]}: {list(state[wrong[0]].shape)} vs "
                  f"{list(expected[wrong[0]].shape)})"] if wrong else []
        raise ModelFileError(f"{file} does not fit its {CONFIG_FILE}: tensors " + ", ".join(parts))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ModelFileError(f"{file} is damaged: {len(bad)} tensor(s) hold NaN/inf values (e.g. {bad[0]})")
    module.load_state_dict(state, strict=True)

