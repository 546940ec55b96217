"""cmvae: deep generative clustering of multimodal data (Clustering Multimodal VAE and friends).

Everything the ``cmvae`` command line does is a function here too:

==============================  ====================================================================
command                         Python
==============================  ====================================================================
``cmvae train``, ``quickstart``  :func:`train_run` (``train_run("polymnist_cpu", "runs/qs")``)
``cmvae evaluate``               :func:`evaluate_run`, :func:`evaluate_generation_run` (``--generation``)
``cmvae select-clusters``        :func:`select_clusters_run`
``cmvae sample``                 :func:`sample_run`
``cmvae compare``                :func:`compare_models`
``cmvae benchmark clustering``   :func:`run_clustering_benchmark`
``cmvae data polymnist|cubicc``  :func:`cmvae.data.build_polymnist`, :func:`cmvae.data.cubicc.load_cubicc`
==============================  ====================================================================

Configs: :func:`load_config` takes a YAML file or a packaged name (``load_config("polymnist_cpu")``).
"""

from ._version import __version__
from .estimator import CMVAE, MultimodalEstimator, NotFittedError, ParameterError
from .saving import ModelFileError
from .baselines import MMJSD, MMVAE, MVAE, MVTCAE, MMVAEPlus, MoPoE, make_estimator
from .schema import DataValidationError
from .clustering_baselines import CMC, DeepCluster, VaDE
from .config import load_config
from .benchmark import run_clustering_benchmark
from .compare import compare_models
from .runs import RunError, evaluate_generation_run, evaluate_run, sample_run, select_clusters_run, train_run

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
    "RunError",
    "VaDE",
    "__version__",
    "compare_models",
    "evaluate_generation_run",
    "evaluate_run",
    "load_config",
    "make_estimator",
    "run_clustering_benchmark",
    "sample_run",
    "select_clusters_run",
    "train_run",
]
