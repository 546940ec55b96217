"""cmvae: deep generative clustering of multimodal data (Clustering Multimodal VAE and friends)."""

from ._version import __version__
from .estimator import CMVAE, MultimodalEstimator, NotFittedError, ParameterError
from .saving import ModelFileError
from .baselines import MMJSD, MMVAE, MVAE, MVTCAE, MMVAEPlus, MoPoE, make_estimator
from .schema import DataValidationError
from .clustering_baselines import CMC, DeepCluster, VaDE
from .config import load_config

__all__ = [
    "CMC",
    "CMVAE",
    "DataValidationError",
    "DeepCluster",
    "MMJSD",
    "MMVAE",
    "MMVAEPlus",
    "MVAE",
    "MVTCAE",
    "ModelFileError",
    "MoPoE",
    "MultimodalEstimator",
    "NotFittedError",
    "ParameterError",
    "VaDE",
    "__version__",
    "load_config",
    "make_estimator",
]
