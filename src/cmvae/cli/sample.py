"""``cmvae sample``: sample grids from a trained run (:func:`cmvae.sample_run`)."""

from __future__ import annotations

import argparse

from ..runs.sample import sample_run
from .runner import run_folder_command


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``sample`` to the command parsers ``sub``."""
    p = run_folder_command(sub, "sample", common, help="draw sample grids from a trained run",
                       description="Unconditional samples (one row per active cluster, one column block per image "
                       "modality) to RUN_DIR/samples.png, and cross-modal samples from test inputs of one modality "
                       "to RUN_DIR/conditional_samples.png.")
    p.add_argument("--per-cluster", type=int, metavar="N", default=3, help="samples per cluster (default 3)")
    p.add_argument("--out", default=None, metavar="FILE", help="unconditional grid (default RUN_DIR/samples.png)")
    p.add_argument("--conditional-out", default=None, metavar="FILE",
                   help="conditional grid (default RUN_DIR/conditional_samples.png)")
    p.add_argument("--source", type=int, metavar="M", default=None, help="input modality of the conditional grid (default: first image modality)")
    p.add_argument("--n-conditional", type=int, metavar="N", default=8, help="inputs in the conditional grid (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="scales of p(z|c) times T in the unconditional grid (default 1: the prior itself; "
                   "e.g. 0.7 draws nearer each cluster's mean)")
    p.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace) -> int:
    """Unconditional grid (one row per active cluster) and a conditional grid from test inputs."""
    sample_run(args.run_dir, per_cluster=args.per_cluster, out=args.out, conditional_out=args.conditional_out,
               source=args.source, n_conditional=args.n_conditional, seed=args.seed, temperature=args.temperature,
               accelerator=args.accelerator)
    return 0
