"""``cmvae reproduce``: the paper's results at a scale, resumably, with report.md and report.html
(the work: :func:`cmvae.reproduce.reproduce`)."""

from __future__ import annotations

import argparse

from .runner import fmt_duration, make_console


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``reproduce`` to the command parsers ``sub``."""
    p = sub.add_parser("reproduce", parents=[common], help="the paper's results at a scale, with a report",
                       description="Train and evaluate what the paper reports (clustering table, Figures 1 and 2, "
                       "subsets of modalities, sample grids) at a scale and write OUT/report.md and a self-contained "
                       "OUT/report.html. Rerunning the command continues: finished parts are reused.")
    p.add_argument("--scale", required=True, metavar="SCALE", help="smoke (minutes), cpu (~2 h on 2 cores), paper "
                   "(the paper's settings, GPU) or a scale YAML file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or a run of the same scale)")
    p.add_argument("--accelerator", default=None, help="cpu, gpu or auto for every part (default: the scale's)")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """The paper's results at ``--scale`` into ``--out``; prints where the report is."""
    from ..reproduce import reproduce

    console = make_console()
    result = reproduce(args.scale, args.out, accelerator=args.accelerator,
                       say=lambda part, text: console.print(f"[{part}] {text}", markup=False, highlight=False))
    console.print(f"wrote {result.report_md} and {result.report_html} in {fmt_duration(result.seconds)}")
    return 0
