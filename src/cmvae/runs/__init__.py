"""Run folders: the library side of the ``cmvae`` commands, one module per command group.

=============  ======================================================================  ====================
module         job                                                                     command
=============  ======================================================================  ====================
``folder``     what a run folder holds; preparing it, resuming, loading a finished run
``output``     the console and durations runs print
``train``      :func:`train_run`: fit, save, curves, evaluation                         ``train``, ``quickstart``
``evaluate``   :func:`evaluate_run` (clustering), :func:`evaluate_generation_run`        ``evaluate``
``select``     :func:`select_clusters_run` (Algorithm 1 on a run)                       ``select-clusters``
``sample``     :func:`sample_run` (sample grids)                                        ``sample``
=============  ======================================================================  ====================

``cmvae compare`` is :func:`cmvae.compare.compare_models`, ``cmvae benchmark clustering``
:func:`cmvae.benchmark.run_clustering_benchmark`, ``cmvae data`` :func:`cmvae.data.build_polymnist`
and :func:`cmvae.data.cubicc.load_cubicc`.
"""

from .evaluate import evaluate_generation_run, evaluate_run
from .folder import RUN_OUTPUTS, RunError, load_run
from .sample import sample_run
from .select import select_clusters_run
from .train import train_run

__all__ = [
    "RUN_OUTPUTS",
    "RunError",
    "evaluate_generation_run",
    "evaluate_run",
    "load_run",
    "sample_run",
    "select_clusters_run",
    "train_run",
]
