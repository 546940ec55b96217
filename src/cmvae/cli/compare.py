"""``cmvae compare`` (several multimodal VAEs on the same data and budget: :func:`cmvae.compare_models`) and
``cmvae benchmark clustering`` (clustering methods over seeds: :func:`cmvae.run_clustering_benchmark`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..runs.train import epochs_text
from .runner import CLIError, apply_overrides, fmt_duration, make_console


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``compare`` and ``benchmark`` to the command parsers ``sub``."""
    p = sub.add_parser("compare", parents=[common], help="compare multimodal VAEs on the same data (Figure 1)",
                       description="Train each model of the config's compare: section for each seed with the same "
                       "data and training budget, score generation (coherence, FD with classifiers trained once) and "
                       "write comparison.csv, comparison.md and figure1.png. Runs already saved in the folder are "
                       "reused.")
    p.add_argument("config", metavar="CONFIG", help="YAML config with a compare: section")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (one run folder per model and seed)")
    p.add_argument("--overwrite", action="store_true", help="train and score every run again")
    p.add_argument("--accelerator", default=None, help="cpu, gpu or auto (overrides the config)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("benchmark", parents=[common], help="compare clustering methods over seeds",
                       description="Benchmarks driven by a run config's benchmark: section.")
    bsub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    bc = bsub.add_parser("clustering", parents=[common], help="CMVAE vs VaDE, DeepCluster, CMC and k-means",
                         description="Train every method of the config's benchmark: section on the training split "
                         "once per seed and write NMI/ARI/ACC (mean ± std, per modality for the unimodal methods) "
                         "to OUT/benchmark.md, benchmark.csv and benchmark_runs.csv.")
    bc.add_argument("config", metavar="CONFIG", help="YAML run config with a benchmark: section")
    bc.add_argument("--out", required=True, metavar="DIR", help="output folder")
    bc.add_argument("--accelerator", default=None, help="cpu, gpu or auto (overrides the config)")
    bc.add_argument("--epochs", type=int, default=None, help="training.epochs of the config (a method section's own epochs: still wins)")
    bc.add_argument("--no-progress", action="store_true", help="no progress display")
    bc.set_defaults(func=cmd_benchmark_clustering)


def cmd_compare(args: argparse.Namespace) -> int:
    """Train the models of the config's compare: section over its seeds; table and Figure 1."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..compare import METRIC_COLUMNS, compare_models
    from ..config import load_config, resolve_config_path
    from ..metrics import print_scores_table

    config_path = resolve_config_path(args.config)
    cfg = load_config(config_path)
    if cfg.compare is None:
        raise CLIError(f"{config_path}: no compare: section (the models to compare and the seeds)")
    cfg = apply_overrides(cfg, str(config_path), accelerator=args.accelerator)
    console = make_console()
    out = Path(args.out)
    cc = cfg.compare
    t = cfg.training
    limit = f", at most {t.max_time_minutes:g} min" if t.max_time_minutes else ""
    console.print(f"comparing {len(cc.models)} models x {len(cc.seeds)} seed(s) "
                  f"({', '.join(e.display_label for e in cc.models)}): {epochs_text(t.epochs)}{limit} each -> {out}")
    start = time.monotonic()
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("starting", total=len(cc.models) * len(cc.seeds))
        result = compare_models(cfg, out, overwrite=args.overwrite,
                                progress=lambda done, total, text: bar.update(task, completed=done, description=text))
    reused = sum(not r.trained_now for r in result.runs)
    if reused:
        console.print(f"{reused} run(s) reused from {out} (pass --overwrite to train them again)")
    print_scores_table(result.summary_rows(), title="Generation: mean ± std over seeds (FD: lower is better)",
                       console=console, columns=METRIC_COLUMNS)
    console.print("wrote " + ", ".join(str(p) for p in result.files.values())
                  + f" in {fmt_duration(time.monotonic() - start)}")
    return 0


def cmd_benchmark_clustering(args: argparse.Namespace) -> int:
    """Every method of the config's ``benchmark:`` section over its seeds; tables to --out."""
    from ..benchmark import run_clustering_benchmark
    from ..config import load_config, resolve_config_path

    cfg = load_config(resolve_config_path(args.config))
    if cfg.benchmark is None:
        raise CLIError(f"{args.config}: no benchmark: section (see configs/benchmark_clustering_polymnist_cpu.yaml)")
    cfg = apply_overrides(cfg, args.config, accelerator=args.accelerator, epochs=args.epochs)
    out = Path(args.out)
    console = make_console()
    start = time.perf_counter()
    run_clustering_benchmark(cfg, out, progress=not args.no_progress, console=console)
    console.print((out / "benchmark.md").read_text(), markup=False)
    console.print(f"wrote {out / 'benchmark.md'}, {out / 'benchmark.csv'} and {out / 'benchmark_runs.csv'} "
                  f"in {fmt_duration(time.perf_counter() - start)}")
    return 0
