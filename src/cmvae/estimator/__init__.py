"""The user-facing estimators, in scikit-learn conventions.

>>> model = CMVAE(n_clusters=10, epochs=20, seed=0)
>>> model.fit(views)                      # list of M arrays [N, ...] with the same N
>>> labels = model.predict(views)         # [N] cluster ids (the combined evidence of the modalities)
>>> proba = model.predict_proba(views)    # [N, n_clusters]
>>> Z = model.transform(views)            # [N, shared_dim]
>>> model.save("run/model"); model = CMVAE.load("run/model")

The estimator is thin: the math lives in :mod:`cmvae.models` and :mod:`cmvae.objectives`, the loop
in :mod:`cmvae.training`, the checks of user data in :mod:`cmvae.inputs`. One file per job:

============================  =====================================================================
``params``                    errors, argument checks, training length, device, seeds
``base``                      :class:`MultimodalEstimator`: settings, building the module, the way in for data
``fitting``                   ``fit``
``encoding``                  ``encode``, ``transform``
``sampling``                  ``sample``, ``sample_latents``, ``generate``, ``decode_text``
``persistence``               ``save``, ``load``
``clustering``                cluster posteriors, ``predict``, ``predict_proba``, ``score``, ``select_clusters``
``cmvae``                     :class:`CMVAE`
============================  =====================================================================
"""

from ..inputs import check_labels
from ..registry import _ESTIMATORS  # noqa: F401 (tests register toy models here)
from .base import MultimodalEstimator
from .cmvae import CMVAE
from .fitting import check_checkpoint
from .params import (
    ACCELERATORS,
    DEFAULT_MIN_EPOCHS,
    DEFAULT_MIN_STEPS,
    NotFittedError,
    ParameterError,
    check_choice,
    check_int,
    check_number,
    fit_seed,
    pick_device,
    resolve_epochs,
)
from .persistence import FORMAT_VERSION, LEGACY_PARAMS

__all__ = [
    "ACCELERATORS",
    "CMVAE",
    "DEFAULT_MIN_EPOCHS",
    "DEFAULT_MIN_STEPS",
    "FORMAT_VERSION",
    "LEGACY_PARAMS",
    "MultimodalEstimator",
    "NotFittedError",
    "ParameterError",
    "check_checkpoint",
    "check_choice",
    "check_int",
    "check_labels",
    "check_number",
    "fit_seed",
    "pick_device",
    "resolve_epochs",
]
