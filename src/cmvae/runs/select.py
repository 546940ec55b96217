"""Choose the number of clusters of a trained run post hoc; ``cmvae select-clusters`` and
:func:`cmvae.select_clusters_run`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..selection import DEFAULT_TIE_TOLERANCE
from .evaluate import default_split
from .folder import RunError, load_run
from .output import make_console


def select_clusters_run(
    run_dir: str | os.PathLike,
    *,
    criterion: str = "entropy",
    assignment: str | None = None,
    use_mean: bool = True,
    tie_tolerance: float = DEFAULT_TIE_TOLERANCE,
    apply: bool = False,
    accelerator: str = "auto",
    console: Any = None,
) -> dict[str, Any]:
    """The paper's Algorithm 1 on a finished run: prune the smallest cluster one at a time on the training
    split and pick the k with the lowest mean normalised entropy of p(c|z) (``criterion``: ``entropy``, or
    the authors' ``entropy_loglik``; points assigned by ``assignment``, default the model's predict rule;
    ``use_mean=False``: one sample of q(z|x_m); ``tie_tolerance``: scores within that many standard errors
    of the lowest are ties, won by the larger k, 0 for the paper's exact argmin); NMI/ARI at each k on the
    test split when it has labels. Prints the table, writes ``cluster_selection.png``,
    ``selection.{md,json}``; ``apply`` prunes the saved model. Returns the report of ``selection.json``."""
    from rich.progress import Progress
    from rich.table import Table

    from ..metrics import clustering_scores
    from ..plots import save_entropy_curve

    run_dir = Path(run_dir)
    cfg, model, data = load_run(run_dir, accelerator)
    if not hasattr(model, "select_clusters"):
        raise RunError(f"{run_dir} holds a {type(model).__name__}, which has no cluster prior to prune")
    console = console or make_console()
    views, labels = data.split("train")
    eval_split = default_split(data) if (data.test_labels is not None or labels is not None) else None
    eval_views, eval_labels = data.split(eval_split) if eval_split else (None, None)
    n_active = int((model.cluster_weights_ > 0).sum())
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"pruning {n_active} clusters", total=max(n_active - 1, 1))
        result = model.select_clusters(
            views,
            criterion=criterion,
            assignment=assignment,
            use_mean=use_mean,
            tie_tolerance=tie_tolerance,
            eval_views=eval_views if eval_labels is not None else None,
            eval_labels=eval_labels,
            progress=lambda k: progress.advance(task),
        )
    table = Table(title=f"Cluster selection ({criterion}, {result.assignment} assignment) on the train split"
                  + (f"; NMI/ARI on the {eval_split} split" if eval_labels is not None else ""))
    columns = ("k", "mean normalised entropy", "score", "SE above min", "NMI", "ARI", "pruned next")
    for col in columns:
        table.add_column(col, justify="right")
    md = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for step in result.steps:
        mark = " <- K_hat" if step.k == result.n_clusters else (" (min)" if step.k == result.minimum_k else "")
        cells = [f"{step.k}{mark}", f"{step.entropy:.4f}", f"{step.score:.4f}", f"{step.se_above_min:.1f}",
                 "-" if step.nmi is None else f"{step.nmi:.3f}", "-" if step.ari is None else f"{step.ari:.3f}",
                 "-" if step.removed is None else str(step.removed)]
        table.add_row(*cells, style="bold green" if step.k == result.n_clusters else None)
        md.append("| " + " | ".join(cells) + " |")
    console.print(table)
    ks = [s.k for s in result.steps]
    png = save_entropy_curve(
        ks, [s.entropy for s in result.steps], run_dir / "cluster_selection.png",
        nmi=[s.nmi for s in result.steps] if eval_labels is not None else None,
        ari=[s.ari for s in result.steps] if eval_labels is not None else None,
        chosen_k=result.n_clusters, minimum_k=result.minimum_k,
        title=f"CMVAE cluster selection: K_hat = {result.n_clusters}",
    )
    report: dict[str, Any] = {"selection": result.to_dict(), "eval_split": eval_split}
    if eval_labels is not None:
        report["before"] = clustering_scores(np.asarray(eval_labels), model.predict(eval_views))
    if apply:
        model.apply_selection(result)
        model.save(run_dir / "model", overwrite=True)
        if eval_labels is not None:
            report["after"] = clustering_scores(np.asarray(eval_labels), model.predict(eval_views))
    tie_rule = (f"lowest score at k = {result.minimum_k}; scores within {result.tie_tolerance:g} standard errors "
                "of it are ties, won by the larger k")
    (run_dir / "selection.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (run_dir / "selection.md").write_text(
        f"# Cluster selection for `{run_dir}`\n\nK_hat = {result.n_clusters} (criterion: {criterion}; "
        f"points assigned by {result.assignment}; {tie_rule}); kept clusters: {result.kept}\n\n" + "\n".join(md) + "\n"
    )
    console.print(f"K_hat = {result.n_clusters} ({tie_rule}); kept clusters {result.kept}")
    for key in ("before", "after"):
        if key in report:
            sc = report[key]
            console.print(f"{key} selection ({eval_split} split): NMI {sc['nmi']:.3f}  ARI {sc['ari']:.3f}  "
                          f"ACC {sc['acc']:.3f}  clusters used {sc['n_clusters_used']}")
    console.print(f"wrote {png}, {run_dir / 'selection.md'}, {run_dir / 'selection.json'}"
                  + (f"; pruned model saved to {run_dir / 'model'}" if apply else " (model unchanged; --apply prunes it)"))
    return report
