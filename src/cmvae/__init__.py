"""cmvae: deep generative clustering of multimodal data (Clustering Multimodal VAE and friends)."""

from ._version import __version__

from .estimator import CMVAE, MultimodalEstimator, NotFittedError, ParameterError  # noqa: E402
from .saving import ModelFileError  # noqa: E402
from .baselines import MMJSD, MMVAE, MVAE, MVTCAE, MMVAEPlus, MoPoE, make_estimator  # noqa: E402
from .schema import DataValidationError  # noqa: E402
from .clustering_baselines import CMC, DeepCluster, VaDE  # noqa: E402

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
    "make_estimator",
]
