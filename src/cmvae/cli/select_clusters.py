"""``cmvae select-clusters``: choose the number of clusters of a run post hoc (:func:`cmvae.select_clusters_run`)."""

from __future__ import annotations

import argparse
import math

from ..runs.select import select_clusters_run
from ..selection import DEFAULT_TIE_TOLERANCE
from .runner import run_folder_command


def standard_errors(text: str) -> float:
    """``--tie-tolerance``: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 of standard errors, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``select-clusters`` to the command parsers ``sub``."""
    p = run_folder_command(sub, "select-clusters", common, help="choose the number of clusters post hoc",
                       description="The paper's Algorithm 1: prune the smallest cluster one at a time and pick "
                       "the k with the lowest mean normalised entropy of p(c|z). Prints the table, writes "
                       "RUN_DIR/cluster_selection.png, selection.md and selection.json.")
    p.add_argument("--apply", action="store_true", help="prune the saved model to the chosen clusters")
    p.add_argument("--criterion", choices=("entropy", "entropy_loglik"), default="entropy",
                   help="entropy (the paper, default) or entropy_loglik (the authors' released code)")
    p.add_argument("--assignment", choices=("evidence", "vote"), default=None,
                   help="how points are assigned while pruning (default: the model's own predict rule; "
                   "vote: the paper's majority vote)")
    p.add_argument("--tie-tolerance", type=standard_errors, default=DEFAULT_TIE_TOLERANCE, metavar="SE",
                   help="scores within SE standard errors of the lowest are ties, won by the larger k "
                   f"(default {DEFAULT_TIE_TOLERANCE:g}; 0: the paper's exact argmin)")
    p.add_argument("--sample", action="store_true", help="use one sample of q(z|x_m) instead of its mean")
    p.set_defaults(func=cmd_select_clusters)


def cmd_select_clusters(args: argparse.Namespace) -> int:
    """Algorithm 1 on the training split; NMI/ARI at each k on the test split when it has labels."""
    select_clusters_run(args.run_dir, criterion=args.criterion, assignment=args.assignment, use_mean=not args.sample,
                        tie_tolerance=args.tie_tolerance, apply=args.apply, accelerator=args.accelerator)
    return 0
