"""Evaluate a run: clustering scores against the labels (with a k-means baseline) and the coherence and
quality of generated data; ``cmvae evaluate``, :func:`cmvae.evaluate_run` and
:func:`cmvae.evaluate_generation_run`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from .folder import RunError, load_run
from .output import fmt_duration, make_console

BASELINE_ROW = "k-means on pixels (PCA-50)"
MODEL_ROW = "CMVAE"
SCORE_COLUMNS = (("nmi", "NMI"), ("ari", "ARI"), ("acc", "ACC"), ("n_clusters_used", "clusters used"))


def evaluate_run(run_dir: str | os.PathLike, split: str | None = None, *, accelerator: str = "auto",
                 console: Any = None) -> dict[str, Any]:
    """Score a finished run's model and the k-means baseline on ``split`` (default: test when it has
    labels, else train); prints the table and writes ``evaluation.{md,json}``; returns the report."""
    run_dir = Path(run_dir)
    cfg, model, data = load_run(run_dir, accelerator)
    return run_evaluation(model, cfg, data, run_dir, split, console or make_console())


def _evaluation_rows(model: Any, cfg: Any, data: Any, split: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from ..metrics import clustering_scores, kmeans_baseline

    views, labels = data.split(split)
    if labels is None:
        raise RunError(f"the {split} split has no labels: cannot score the clustering")
    labels = np.asarray(labels)
    n_classes = int(np.unique(labels).shape[0])
    pred = model.predict(views)
    rows = {
        model_row(model): clustering_scores(labels, pred),
        BASELINE_ROW: kmeans_baseline(views, labels, n_clusters=n_classes, seed=cfg.training.seed, max_samples=20000),
    }
    meta = {
        "split": split,
        "n_samples": int(labels.shape[0]),
        "n_classes": n_classes,
        "n_modalities": len(views),
        "n_clusters": int(cfg.model.n_clusters),
        "data": data.info.get("source", cfg.data.name),
        "model": model_row(model),
    }
    return rows, meta


def model_row(model: Any) -> str:
    """Row name of a model in score tables: ``CMVAE``, or a baseline's name with its k-means note."""
    return MODEL_ROW if hasattr(model, "cluster_weights_") else f"{type(model).__name__} + k-means"


def default_split(data: Any) -> str:
    """The split evaluations use: test when it has views and labels, else train."""
    return "test" if data.test_views is not None and data.test_labels is not None else "train"


def run_evaluation(model: Any, cfg: Any, data: Any, run_dir: Path, split: str | None, console: Any) -> dict[str, Any]:
    """Score ``model`` and the k-means baseline on a split; print the table; write evaluation.{md,json}."""
    from ..metrics import format_scores_table, print_scores_table

    split = split or default_split(data)
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


def evaluate_generation_run(
    run_dir: str | os.PathLike,
    split: str | None = None,
    *,
    classifier_epochs: int = 4,
    classifier_max_train: int | None = None,
    retrain_classifiers: bool = False,
    n_samples: int = 1000,
    max_samples: int = 1000,
    inception_weights: str | None = None,
    accelerator: str = "auto",
    console: Any = None,
) -> dict[str, Any]:
    """Coherence and FD (classifier features) of a finished run on ``split``: coherence classifiers
    trained once and cached in ``RUN_DIR/classifiers``, ``n_samples`` unconditional samples, at most
    ``max_samples`` tuples (0: all) for conditional coherence and the FD. Prints the tables, writes
    ``generation.{md,json}`` and returns the report."""
    from rich.table import Table

    from ..estimator import pick_device
    from ..generation import evaluate_generation, labelled_split, load_or_train_classifiers
    from ..metrics.frechet import FD_NAME, frechet_inception_distance

    run_dir = Path(run_dir)
    console = console or make_console()
    cfg, model, data = load_run(run_dir, accelerator)
    start = time.monotonic()
    if n_samples < 2 or classifier_epochs < 1 or max_samples < 0:
        raise RunError("--n-samples must be >= 2, --classifier-epochs >= 1 and --max-samples >= 0")
    if inception_weights:
        try:
            frechet_inception_distance(None, None, inception_weights)
        except NotImplementedError as err:
            raise RunError(str(err)) from None
    train_views, train_labels = data.split("train")
    used, views, labels = labelled_split(data, split)
    if used == "train" and split is None:
        console.print("no labelled test split: scoring on the training split")
    folder = run_dir / "classifiers"
    device = str(pick_device(accelerator))
    with console.status("coherence classifiers") as status:
        clf, trained = load_or_train_classifiers(
            folder, train_views, train_labels, test_views=views, test_labels=labels,
            epochs=classifier_epochs, seed=cfg.training.seed, retrain=retrain_classifiers,
            max_train=classifier_max_train, device=device,
            progress=lambda m, e, loss: status.update(f"classifier of modality {m}: epoch {e + 1}, loss {loss:.3f}"),
        )
    secs = clf.info.get("train_seconds")
    console.print(f"classifiers {'trained in ' + fmt_duration(secs) if trained and secs is not None else 'loaded'}"
                  f" ({folder})")
    clf.to(device)
    with console.status("generating") as status:
        report = evaluate_generation(
            model, clf, views, labels, n_samples=n_samples,
            max_samples=max_samples if max_samples > 0 else None,
            reference_views=train_views if used == "test" else None, seed=cfg.training.seed,
            progress=status.update,
        )
    title = f"Generation of `{run_dir}` ({used} split)"
    table = Table(title=f"Coherence on {report.n_eval} {used} tuples, {report.n_samples} unconditional samples")
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
    payload = {**report.to_dict(), "split": used, "classifiers_dir": str(folder), "classifiers_trained_now": trained,
               "elapsed_seconds": round(time.monotonic() - start, 1), "cmvae_version": __version__}
    (run_dir / "generation.json").write_text(json.dumps(payload, indent=2) + "\n")
    console.print(f"wrote {run_dir / 'generation.md'} and {run_dir / 'generation.json'}")
    return payload
