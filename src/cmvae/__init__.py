"""cmvae: deep generative clustering of multimodal data (Clustering Multimodal VAE and friends)."""

__version__ = "0.1.0"

from .estimator import CMVAE, MultimodalEstimator, NotFittedError  # noqa: E402
from .baselines import MMJSD, MMVAE, MVAE, MVTCAE, MMVAEPlus, MoPoE, make_estimator  # noqa: E402
from .schema import DataValidationError  # noqa: E402

__all__ = [
    "CMVAE",
    "DataValidationError",
    "MMJSD",
    "MMVAE",
    "MMVAEPlus",
    "MVAE",
    "MVTCAE",
    "MoPoE",
    "MultimodalEstimator",
    "NotFittedError",
    "__version__",
    "make_estimator",
]
