"""The ``cmvae`` command line: build data, train from a YAML config, evaluate a run.

::

    cmvae quickstart                                  # PolyMNIST on the CPU, ~20 minutes
    cmvae data polymnist [--root DIR] [--seed S]
    cmvae train --config CONFIG.yaml --out RUN_DIR [--epochs N] [--accelerator gpu --devices 2] [--resume]
                [--strategy ddp --devices N --num-nodes K]
    cmvae evaluate RUN_DIR [--split test|train]
    cmvae evaluate RUN_DIR --generation [--classifier-epochs N]   # coherence, FD (classifier features)
    cmvae sample RUN_DIR [--per-cluster 3] [--out FILE]
    cmvae select-clusters RUN_DIR [--apply]
    cmvae compare CONFIG.yaml --out DIR [--overwrite] [--accelerator gpu]   # models x seeds, Figure 1
    cmvae benchmark clustering CONFIG.yaml --out DIR  # CMVAE vs VaDE, DeepCluster, CMC, k-means
    cmvae reproduce --scale smoke|cpu|paper --out DIR # the paper's results and a report (resumable)

The commands are thin: they parse arguments, call the library (:mod:`cmvae.runs`, :mod:`cmvae.compare`,
:mod:`cmvae.benchmark`, :mod:`cmvae.data`), print tables and write files. One module per command
group defines ``register(sub, common)``; :mod:`.runner` holds what they share (errors and exit
statuses, logging, config overrides). A new command is a module here and one entry in :data:`COMMANDS`.

User errors (missing file, bad config key, unusable data) print one line and exit with
status 2; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._version import __version__
from ..config import packaged_config, resolve_config_path
from ..runs.evaluate import BASELINE_ROW, MODEL_ROW
from . import compare, data, evaluate, reproduce, sample, select_clusters, train
from .runner import EXIT_USER_ERROR, CLIError, common_options, run_command

__all__ = ["BASELINE_ROW", "COMMANDS", "CLIError", "MODEL_ROW", "build_parser", "main", "packaged_config",
           "resolve_config_path"]

#: The command groups, in the order of ``cmvae --help``; each module has ``register(sub, common)``.
COMMANDS = (data, train, evaluate, sample, select_clusters, compare, reproduce)


def build_parser() -> argparse.ArgumentParser:
    """The ``cmvae`` argument parser with every command of :data:`COMMANDS`."""
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="cmvae",
        description="Deep generative clustering of multimodal data with the Clustering Multimodal VAE.",
        parents=[common],
    )
    parser.set_defaults(verbose=False)
    parser.add_argument("--version", action="version", version=f"cmvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 1 other failure, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USER_ERROR
    return run_command(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
