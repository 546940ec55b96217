"""Train a run: a config into a run folder (fit, save, training curves, evaluation); ``cmvae train``,
``cmvae quickstart`` and :func:`cmvae.train_run`."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .evaluate import run_evaluation
from .folder import (
    check_resume_config,
    config_writer,
    is_rank_zero,
    keep_metrics_before_resume,
    prepare_run_dir,
    remove_failed_run,
    restore_metrics,
)
from .output import fmt_duration, make_console

log = logging.getLogger(__name__)


def train_run(
    cfg: Any, out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False, console: Any = None
) -> int:
    """Fit, save, plot and evaluate a run described by ``cfg`` into the run folder ``out``.

    ``cfg``: a :class:`~cmvae.config.RunConfig`, a YAML file or a packaged config name (``polymnist_cpu``).
    ``resume`` changes nothing in ``out`` before the config and the checkpoint are checked to fit;
    a fresh run that fails before its first checkpoint leaves no files behind (rerun without overwrite).
    ``console``: a :class:`rich.console.Console` for progress and tables (default: stdout).
    Returns 0, or 130 when training was interrupted (rerun with ``resume=True`` to continue).
    """
    from ..config import RunConfig, load_config

    cfg = cfg if isinstance(cfg, RunConfig) else load_config(cfg)
    out = Path(out)
    console = console or make_console()
    if resume and is_rank_zero():
        check_resume_config(cfg, out)
    created = not out.exists()
    if is_rank_zero():  # extra DDP processes re-run this command: only rank 0 touches the folder
        prepare_run_dir(out, resume=resume, overwrite=overwrite)
    try:
        return _train_run(cfg, out, resume=resume, console=console)
    except BaseException as err:
        if not resume and is_rank_zero() and not isinstance(err, KeyboardInterrupt):
            remove_failed_run(out, created)
        raise


def epochs_text(epochs: int | None) -> str:
    """How a message names ``training.epochs`` (null: the default training length)."""
    if epochs is not None:
        return f"{epochs} epochs"
    from ..estimator import DEFAULT_MIN_EPOCHS, DEFAULT_MIN_STEPS

    return f"the default length ({DEFAULT_MIN_STEPS} optimiser steps, at least {DEFAULT_MIN_EPOCHS} epochs)"


def with_resolved_epochs(cfg: Any, n_train: int) -> Any:
    """``cfg`` with ``training.epochs: null`` replaced by the number the estimator resolves for ``n_train``
    samples (so the run's config.yaml, its resume and its messages name the epochs actually run)."""
    from ..estimator import resolve_epochs

    t = cfg.training
    if t.epochs is not None:
        return cfg
    epochs = resolve_epochs(None, n_train, t.batch_size)
    return cfg.model_copy(update={"training": t.model_copy(update={"epochs": epochs})})


def _train_run(cfg: Any, out: Path, *, resume: bool, console: Any) -> int:
    from ..baselines import make_estimator
    from ..config import dump_config, load_data
    from ..plots import save_training_curves

    start = time.monotonic()
    data = load_data(cfg.data)
    n_train = data.train_views[0].shape[0]
    console.print(
        f"data: {data.info.get('source', cfg.data.name)}; {n_train} training samples x "
        f"{len(data.train_views)} modalities"
        + (f", {data.test_views[0].shape[0]} test samples" if data.test_views is not None else "")
    )
    cfg = with_resolved_epochs(cfg, n_train)
    model = make_estimator(cfg)
    callbacks = []
    if is_rank_zero():
        if resume:  # written once fit has checked the checkpoint against this config
            callbacks.append(config_writer(cfg, out / "config.yaml"))
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
    previous = keep_metrics_before_resume(metrics_csv) if resume and is_rank_zero() else None
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
            if previous is not None and is_rank_zero():
                restore_metrics(previous, metrics_csv)  # the rows logged before the resume are never lost
    if not is_rank_zero():  # extra DDP processes: rank 0 saves and evaluates
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
    console.print(f"trained in {fmt_duration(train_time)}; model saved to {out / 'model'}")
    if data.train_labels is None and data.test_labels is None:
        console.print("no labels in the data: evaluation skipped")
    else:
        run_evaluation(model, cfg, data, out, None, console)
    console.print(f"elapsed: {fmt_duration(time.monotonic() - start)}")
    return 0
