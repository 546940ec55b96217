"""``cmvae evaluate``: clustering scores of a run (:func:`cmvae.evaluate_run`), or with ``--generation``
the coherence and quality of its generated data (:func:`cmvae.evaluate_generation_run`)."""

from __future__ import annotations

import argparse

from ..runs.evaluate import evaluate_generation_run, evaluate_run
from .runner import run_folder_command


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``evaluate`` to the command parsers ``sub``."""
    p = run_folder_command(sub, "evaluate", common, help="score a trained run against the labels",
                       description="Score a run's model and a k-means baseline (NMI/ARI/ACC) on a data split.")
    p.add_argument("--split", choices=("test", "train"), default=None,
                   help="data split (default: test when it has labels, else train)")
    g = p.add_argument_group("generation (--generation)")
    g.add_argument("--generation", action="store_true",
                   help="score generation instead of clustering: coherence and FD (classifier features), "
                   "written to RUN_DIR/generation.{md,json}")
    g.add_argument("--classifier-epochs", type=int, metavar="N", default=4, help="epochs of the coherence classifiers (default 4)")
    g.add_argument("--classifier-max-train", type=int, metavar="N", default=None,
                   help="train the classifiers on at most this many tuples (default all)")
    g.add_argument("--retrain-classifiers", action="store_true", help="ignore the classifiers cached in RUN_DIR/classifiers")
    g.add_argument("--n-samples", type=int, metavar="N", default=1000, help="unconditional samples (default 1000)")
    g.add_argument("--max-samples", type=int, metavar="N", default=1000,
                   help="test tuples for conditional coherence and the FD (default 1000; 0 = all)")
    g.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="local Inception weights for the standard FID (not implemented: reports why)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a run's clustering (or, with --generation, its generated data)."""
    if getattr(args, "generation", False):
        evaluate_generation_run(
            args.run_dir, args.split, classifier_epochs=args.classifier_epochs,
            classifier_max_train=args.classifier_max_train, retrain_classifiers=args.retrain_classifiers,
            n_samples=args.n_samples, max_samples=args.max_samples, inception_weights=args.inception_weights,
            accelerator=args.accelerator,
        )
        return 0
    evaluate_run(args.run_dir, args.split, accelerator=args.accelerator)
    return 0
