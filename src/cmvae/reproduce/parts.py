"""The parts of a reproduction: each trains or loads what it needs, writes its JSON and PNG files
into its own folder (``ctx.folder``) and returns a JSON-able result (see :mod:`.runner`).

They call the library's own commands: CMVAE's ``fit`` / ``select_clusters`` (Algorithm 1),
:func:`cmvae.benchmark.run_clustering_benchmark`, :func:`cmvae.compare.compare_models`,
:mod:`cmvae.generation`'s grids and :mod:`cmvae.plots`.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..benchmark import ALL_MODALITIES, SCORES, read_runs, run_clustering_benchmark, summarise
from ..compare import compare_models
from ..config import RunConfig
from ..data.run_data import load_data
from ..estimator import CMVAE
from ..generation import labelled_split, save_conditional_grid, save_sample_grid
from ..metrics import clustering_scores
from ..plots import save_entropy_curve, save_score_curve
from ..selection import assign_clusters
from .document import write_atomic
from .runner import PartContext

__all__ = ["run_clustering", "run_cmvae", "run_compare", "run_samples", "run_selection", "run_subsets",
           "subset_scores"]


def _write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, json.dumps(value, indent=2, default=float) + "\n")


def _scores(raw: dict[str, Any]) -> dict[str, float]:
    return {k: float(raw[k]) for k in (*SCORES, "n_clusters_used")}


def _eval_data(cfg: RunConfig) -> tuple[list[np.ndarray], str, list[Any], np.ndarray]:
    """Training views, and the labelled split everything is scored on (test when labelled)."""
    data = load_data(cfg.data)
    split, views, labels = labelled_split(data)
    return data.train_views, split, views, labels


# --------------------------------------------------------------------------- CMVAE + Algorithm 1


def _train_seed(cfg: RunConfig, seed: int, folder: Path, train: list[Any], views: list[Any], labels: np.ndarray,
                ctx: PartContext) -> dict[str, Any]:
    """One seed: fit (continuing its checkpoint if a previous attempt stopped), score, Algorithm 1 on the
    training split (NMI/ARI along it on the scored split), prune, score again, save. Cached in result.json."""
    done = folder / "result.json"
    if done.is_file():
        ctx.say(f"seed {seed}: finished earlier")
        return json.loads(done.read_text())
    model = CMVAE(**{**cfg.estimator_kwargs(), "seed": seed, "progress": False})
    train_dir = folder / "train"
    resume = (train_dir / "checkpoints" / "last.ckpt").is_file()
    ctx.say(f"seed {seed}: training CMVAE with K = {model.n_clusters}" + (" (continuing)" if resume else ""))
    start = time.monotonic()
    model.fit(train, out_dir=train_dir, resume=resume)
    seconds = time.monotonic() - start
    before = _scores(model.score(views, labels))
    ctx.say(f"seed {seed}: Algorithm 1")
    selection = model.select_clusters(train, eval_views=views, eval_labels=labels)
    model.apply_selection(selection)
    after = _scores(model.score(views, labels))
    model.save(folder / "model", overwrite=True)
    row = {"seed": seed, "k_over": model.n_clusters, "k_hat": selection.n_clusters, "kept": selection.kept,
           "before": before, "after": after, "train_seconds": round(seconds, 1),
           "epochs": len(model.history_.get("epoch", [])), "model": ctx.rel(folder / "model"),
           "selection": selection.to_dict()}
    _write_json(done, row)
    return row


def run_cmvae(ctx: PartContext) -> dict[str, Any]:
    """CMVAE per seed with the over-specified K of the scale, pruned by Algorithm 1."""
    cfg = ctx.plan.run_config("cmvae")
    train, split, views, labels = _eval_data(cfg)
    runs = [_train_seed(cfg, seed, ctx.folder / f"seed{seed}", train, views, labels, ctx) for seed in ctx.plan.seeds]
    return {"split": split, "n_train": int(train[0].shape[0]), "n_eval": int(labels.shape[0]),
            "n_modalities": len(views), "true_k": int(np.unique(labels).size), "k_over": cfg.model.n_clusters,
            "runs": runs}


# --------------------------------------------------------------------------- Figure 2


def run_selection(ctx: PartContext) -> dict[str, Any]:
    """Figure 2 per seed: entropy h_k and NMI/ARI against k along Algorithm 1's pruning."""
    cm = ctx.results["cmvae"]
    per_seed = []
    for run in cm["runs"]:
        steps = run["selection"]["steps"]
        png = save_entropy_curve(
            [s["k"] for s in steps], [s["entropy"] for s in steps], ctx.folder / f"figure2_seed{run['seed']}.png",
            nmi=[s["nmi"] for s in steps], ari=[s["ari"] for s in steps], chosen_k=run["k_hat"],
            minimum_k=run["selection"].get("minimum_k"),  # the paper's exact argmin, where the tie rule moved K_hat
            title=f"Algorithm 1, seed {run['seed']}: K = {run['k_over']} -> K_hat = {run['k_hat']} "
                  f"(true {cm['true_k']})",
        )
        per_seed.append({"seed": run["seed"], "k_hat": run["k_hat"], "figure": ctx.rel(png),
                         "steps": [{k: s[k] for k in ("k", "entropy", "nmi", "ari")} for s in steps]})
    k_hats = np.array([r["k_hat"] for r in per_seed], dtype=float)
    return {"true_k": cm["true_k"], "k_over": cm["k_over"], "split": cm["split"], "per_seed": per_seed,
            "k_hat_mean": float(k_hats.mean()), "k_hat_std": float(k_hats.std())}


# --------------------------------------------------------------------------- subsets of modalities


def subset_scores(model: CMVAE, views: list[Any], labels: np.ndarray) -> dict[tuple[int, ...], dict[str, float]]:
    """NMI/ARI/ACC of ``model``'s clusters from every non-empty subset of the modalities (only the
    observed ones count, by the model's assignment rule), from one pass of the encoders."""
    log_post = model.cluster_log_posteriors(views)  # [M, N, C]
    with np.errstate(divide="ignore"):
        log_pi = torch.as_tensor(np.log(model.cluster_weights_), dtype=log_post.dtype)
    n_mod, n = log_post.shape[0], log_post.shape[1]
    out: dict[tuple[int, ...], dict[str, float]] = {}
    for k in range(1, n_mod + 1):
        for subset in itertools.combinations(range(n_mod), k):
            mask = torch.zeros(n, n_mod, dtype=torch.bool)
            mask[:, list(subset)] = True
            pred = assign_clusters(log_post, log_pi, mask, model.assignment).numpy()
            out[subset] = _scores(clustering_scores(labels, pred))
    full = tuple(range(n_mod))
    if not np.isclose(out[full]["nmi"], model.score(views, labels)["nmi"]):
        raise RuntimeError("subset scores disagree with model.score on all modalities: a bug in subset_scores")
    return out


def run_subsets(ctx: PartContext) -> dict[str, Any]:
    """Clustering from every subset of the modalities, with each seed's pruned CMVAE."""
    cfg = ctx.plan.run_config("cmvae")
    _, split, views, labels = _eval_data(cfg)
    per_seed = []
    for run in ctx.results["cmvae"]["runs"]:
        ctx.say(f"seed {run['seed']}: scoring every subset of modalities")
        model = CMVAE.load(ctx.out / run["model"], accelerator=cfg.training.accelerator)
        per_seed.append(subset_scores(model, views, labels))
    subsets = list(per_seed[0])
    mean = {s: {m: float(np.mean([p[s][m] for p in per_seed])) for m in SCORES} for s in subsets}
    n_mod = len(views)
    by_size = []
    for k in range(1, n_mod + 1):
        members = [s for s in subsets if len(s) == k]
        row: dict[str, Any] = {"k": k, "n_subsets": len(members)}
        for m in SCORES:
            vals = np.array([mean[s][m] for s in members])
            row.update({m: float(vals.mean()), f"{m}_min": float(vals.min()), f"{m}_max": float(vals.max()),
                        f"{m}_seed_std": float(np.std([np.mean([p[s][m] for s in members]) for p in per_seed]))})
        by_size.append(row)
    png = save_score_curve(
        [r["k"] for r in by_size], {m.upper(): ([r[m] for r in by_size], [r[f"{m}_seed_std"] for r in by_size])
                                    for m in SCORES},
        ctx.folder / "subsets.png", xlabel="observed modalities",
        title=f"CMVAE from subsets of the modalities ({split} split, {len(per_seed)} seed(s))",
    )
    singles = [{"modality": s[0], **mean[s]} for s in subsets if len(s) == 1]
    _write_json(ctx.folder / "subsets.json", {"per_seed": [{",".join(map(str, s)): v for s, v in p.items()}
                                                           for p in per_seed]})
    return {"split": split, "n_eval": int(labels.shape[0]), "seeds": [r["seed"] for r in ctx.results["cmvae"]["runs"]],
            "by_size": by_size, "single": singles, "figure": ctx.rel(png)}


# --------------------------------------------------------------------------- sample grids


def run_samples(ctx: PartContext) -> dict[str, Any]:
    """Per-cluster samples (one row per kept cluster) and cross-modal samples of the first seed's model."""
    cfg = ctx.plan.run_config("cmvae")
    sec = ctx.plan.config.samples
    run = ctx.results["cmvae"]["runs"][0]
    model = CMVAE.load(ctx.out / run["model"], accelerator=cfg.training.accelerator)
    _, split, views, labels = _eval_data(cfg)
    grid = save_sample_grid(model, ctx.folder / "samples.png", sec.per_cluster, seed=sec.seed)
    cond = save_conditional_grid(model, views, ctx.folder / "conditional_samples.png", source=sec.source,
                                 n=sec.n_conditional, labels=labels, seed=sec.seed)
    return {"seed": run["seed"], "k_hat": run["k_hat"], "per_cluster": sec.per_cluster, "source": sec.source,
            "n_conditional": sec.n_conditional, "split": split, "samples": ctx.rel(grid),
            "conditional": ctx.rel(cond)}


# --------------------------------------------------------------------------- the clustering table


def cmvae_rows(cm: dict[str, Any]) -> list[dict[str, Any]]:
    """The CMVAE runs as benchmark rows: after Algorithm 1, and as trained (before selection)."""
    rows = []
    for run in cm["runs"]:
        for key, setting in (("after", f"Algorithm 1: K={cm['k_over']} -> K_hat"),
                             ("before", f"K={cm['k_over']}, before selection")):
            rows.append({"method": "CMVAE", "setting": setting, "modality": ALL_MODALITIES, "seed": run["seed"],
                         **{k: run[key][k] for k in SCORES}, "n_clusters_used": int(run[key]["n_clusters_used"]),
                         "seconds": run["train_seconds"]})
    return rows


def run_clustering(ctx: PartContext) -> dict[str, Any]:
    """The baselines (resumable, fit by fit) and CMVAE's rows: NMI/ARI/ACC mean and spread over seeds."""
    cfg = ctx.plan.run_config("clustering")
    ctx.say("baselines (k-means, CMC, VaDE, DeepCluster)")
    run_clustering_benchmark(cfg, ctx.folder / "baselines", progress=False, resume=True)
    baselines = read_runs(ctx.folder / "baselines" / "benchmark_runs.csv")
    cm = ctx.results["cmvae"]
    summary = summarise(cmvae_rows(cm) + baselines)
    return {"split": cm["split"], "n_eval": cm["n_eval"], "summary": summary,
            "seeds": sorted({int(r["seed"]) for r in baselines} | {r["seed"] for r in cm["runs"]}),
            "baseline_epochs": {name: (getattr(sec, "epochs", None) or cfg.training.epochs)
                                for name in cfg.benchmark.methods.selected()
                                if (sec := getattr(cfg.benchmark.methods, name)) is not None and name != "kmeans"},
            "n_train_baselines": cfg.data.max_train}


# --------------------------------------------------------------------------- Figure 1


def run_compare(ctx: PartContext) -> dict[str, Any]:
    """The multimodal VAEs of the scale trained on the same budget; coherence against FD (Figure 1)."""
    cfg = ctx.plan.run_config("compare")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        result = compare_models(cfg, ctx.folder / "compare",
                                progress=lambda done, total, text: ctx.say(f"{done}/{total} {text}"))
    return {"split": result.split, "n_eval": result.n_eval, "classifier_accuracy": result.classifier_accuracy,
            "real_coherence": result.real_coherence, "seeds": list(cfg.compare.seeds),
            "epochs": cfg.training.epochs, "max_time_minutes": cfg.training.max_time_minutes,
            "summary": {label: {k: list(v) for k, v in stats.items()} for label, stats in result.summary().items()},
            "runs": [{"label": r.label, "seed": r.seed, "scores": r.scores} for r in result.runs],
            "figure": ctx.rel(result.files["figure"]), "table": ctx.rel(result.files["markdown"])}
