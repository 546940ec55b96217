"""The clustering benchmark: CMVAE against VaDE, DeepCluster, CMC and a k-means floor.

:func:`run_clustering_benchmark` trains every method of a run config's ``benchmark`` section
on the training split, once per seed, scores it (NMI, ARI, Hungarian accuracy) on the test
split (the training split when there is no labelled test split) and writes

* ``benchmark.md``   -- mean +- std over seeds, per modality for the unimodal methods, and the
  NMI per modality side by side (the layout of the paper's Tables 3-6);
* ``benchmark.csv``  -- the same summary, one row per (method, setting, modality);
* ``benchmark_runs.csv`` -- one row per fit (rewritten after every fit, so a stopped run
  keeps what it finished).

Settings a method does not take from its own section come from the run's ``model``
(``shared_dim``, ``arch``, likelihood) and ``training`` (``epochs``, ``batch_size``, ``lr``,
``accelerator``) sections, so every method uses the same networks and latent size; a method's own
``epochs`` and ``lr`` replace the training section's. Its ``max_time_minutes`` caps each of its fits'
training (whichever of it and ``epochs`` comes first): the same limit for every trained method
compares them at one wall-clock budget.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import BenchmarkConfig, MethodSection, RunConfig
from .data.run_data import load_data
from .metrics import kmeans_baseline
from .schema import DataValidationError

log = logging.getLogger(__name__)

SCORES = ("nmi", "ari", "acc")
ALL_MODALITIES = "all"
RUN_FIELDS = ("method", "setting", "modality", "seed", "nmi", "ari", "acc", "n_clusters_used", "seconds")


@dataclass(frozen=True)
class Job:
    """One fit + score: ``run(train_views, eval_views, eval_labels) -> scores``."""

    method: str
    setting: str
    modality: str  # "all" for multimodal methods, else the modality index
    seed: int
    run: Callable[[list[np.ndarray], list[np.ndarray], np.ndarray], dict[str, Any]]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fit_score(make: Callable[[], Any]) -> Callable[[list[np.ndarray], list[np.ndarray], np.ndarray], dict[str, Any]]:
    def run(train: list[np.ndarray], views: list[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
        return make().fit(train).score(views, labels)

    return run


def _common(cfg: RunConfig, sec: MethodSection, seed: int) -> dict[str, Any]:
    """Settings every trained baseline shares with the run's CMVAE, and its section's training limits."""
    t = cfg.training
    common = {"shared_dim": cfg.model.shared_dim, "arch": cfg.model.arch, "epochs": sec.epochs or t.epochs,
              "batch_size": t.batch_size, "lr": sec.lr or t.lr, "max_time_minutes": sec.max_time_minutes,
              "seed": seed, "accelerator": t.accelerator, "progress": False}
    if common["epochs"] is None:  # each method's default training length
        del common["epochs"]
    return common


def plan_jobs(cfg: RunConfig, n_modalities: int, true_k: int) -> Iterator[Job]:
    """Every (method, setting, modality, seed) of ``cfg.benchmark``, cheapest methods first."""
    from .clustering_baselines import CMC, DeepCluster, VaDE
    from .estimator import CMVAE

    bench = cfg.benchmark
    assert bench is not None
    methods = bench.methods
    k = bench.n_clusters or true_k
    modalities = bench.modalities if bench.modalities is not None else list(range(n_modalities))
    bad = [m for m in modalities if not 0 <= m < n_modalities]
    if bad:
        raise DataValidationError(f"benchmark.modalities {bad} out of range: the data has modalities 0..{n_modalities - 1}")
    lik = {"likelihood": cfg.model.likelihood, "likelihood_scale": cfg.model.likelihood_scale}

    if methods.kmeans is not None:
        pca = methods.kmeans.pca_dim
        for seed in bench.seeds:
            for m in [ALL_MODALITIES, *modalities]:
                def run(train, views, labels, m=m, seed=seed):
                    picked = views if m == ALL_MODALITIES else [views[m]]
                    return kmeans_baseline(picked, labels, k, seed=seed, pca_dim=pca)

                yield Job("k-means", f"pixels, PCA-{pca}, K={k}", str(m), seed, run)
    if methods.cmvae is not None:
        sec = methods.cmvae
        if sec.run_dir is not None:
            given = Path(sec.run_dir)  # a saved model, or a run folder holding one in model/
            folder = given if (given / "config.json").is_file() else given / "model"

            def load_score(train, views, labels, folder=folder):
                return CMVAE.load(folder, accelerator=cfg.training.accelerator).score(views, labels)

            yield Job("CMVAE", f"saved model {given.name}", ALL_MODALITIES, -1, load_score)
        else:
            for seed in bench.seeds:
                kwargs = {**cfg.estimator_kwargs(), "seed": seed, "progress": False}
                for key in ("epochs", "lr", "max_time_minutes"):  # the section's own, else the training section's
                    if getattr(sec, key) is not None:
                        kwargs[key] = getattr(sec, key)
                yield Job("CMVAE", f"K={cfg.model.n_clusters}, beta={cfg.model.beta}", ALL_MODALITIES, seed,
                          _fit_score(lambda kw=kwargs: CMVAE(**kw)))
    if methods.cmc is not None:
        sec = methods.cmc
        for seed in bench.seeds:
            yield Job("CMC", f"tau={sec.temperature}, K={k}", ALL_MODALITIES, seed, _fit_score(
                lambda seed=seed, sec=sec: CMC(k, temperature=sec.temperature, early_stopping=sec.early_stopping,
                                              **_common(cfg, sec, seed))))
    if methods.vade is not None:
        sec = methods.vade
        for beta in sec.betas:
            for m in modalities:
                for seed in bench.seeds:
                    yield Job("VaDE", f"beta={beta}, K={k}", str(m), seed, _fit_score(
                        lambda beta=beta, m=m, seed=seed, sec=sec: VaDE(
                            k, modality=m, beta=beta, latent_family=sec.latent_family,
                            learn_prior_scales=sec.learn_prior_scales, cluster_init_epoch=sec.cluster_init_epoch,
                            **lik, **_common(cfg, sec, seed))))
    if methods.deepcluster is not None:
        sec = methods.deepcluster
        ks = list(dict.fromkeys([*sec.ks, *([true_k] if sec.include_true_k else [])]))
        for kk in ks:
            for m in modalities:
                for seed in bench.seeds:
                    yield Job("DeepCluster", f"K={kk}", str(m), seed, _fit_score(
                        lambda kk=kk, m=m, seed=seed, sec=sec: DeepCluster(
                            kk, modality=m, pca_dim=sec.pca_dim, **_common(cfg, sec, seed))))


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and (population) std over seeds of every (method, setting, modality): one row each."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["method"], r["setting"], r["modality"]), []).append(r)
    rows = []
    for (method, setting, modality), rs in groups.items():
        row: dict[str, Any] = {"method": method, "setting": setting, "modality": modality, "n_seeds": len(rs)}
        for key in SCORES:
            values = np.array([r[key] for r in rs], dtype=float)
            row[f"{key}_mean"] = float(values.mean())
            row[f"{key}_std"] = float(values.std())
        row["seconds_mean"] = float(np.mean([r["seconds"] for r in rs]))
        rows.append(row)
    return rows


def _pm(row: dict[str, Any], key: str) -> str:
    if row["n_seeds"] == 1:
        return f"{row[key + '_mean']:.3f}"
    return f"{row[key + '_mean']:.3f} ± {row[key + '_std']:.3f}"


def to_markdown(summary: list[dict[str, Any]], title: str = "Clustering benchmark") -> str:
    """The summary table and, for the unimodal methods, NMI per modality side by side."""
    lines = [f"## {title}", "", "Mean ± std over seeds (population std; one value when a single run).", "",
             "| method | setting | modality | NMI | ARI | ACC | seeds | s/fit |", "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        lines.append(f"| {r['method']} | {r['setting']} | {r['modality']} | {_pm(r, 'nmi')} | {_pm(r, 'ari')} | "
                     f"{_pm(r, 'acc')} | {r['n_seeds']} | {r['seconds_mean']:.0f} |")
    per_mod = [r for r in summary if r["modality"] != ALL_MODALITIES]
    if per_mod:
        mods = sorted({r["modality"] for r in per_mod}, key=int)
        table: dict[tuple[str, str], dict[str, str]] = {}
        for r in per_mod:
            table.setdefault((r["method"], r["setting"]), {})[r["modality"]] = f"{r['nmi_mean']:.2f}"
        lines += ["", "NMI per modality (mean over seeds):", "",
                  "| method | setting | " + " | ".join(f"m{m}" for m in mods) + " |",
                  "|---|---|" + "---|" * len(mods)]
        for (method, setting), cells in table.items():
            lines.append(f"| {method} | {setting} | " + " | ".join(cells.get(m, "-") for m in mods) + " |")
    return "\n".join(lines) + "\n"


def _csv_text(rows: list[dict[str, Any]], fields: tuple[str, ...] | list[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_outputs(out_dir: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write benchmark_runs.csv, benchmark.csv and benchmark.md (atomically); return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(out_dir / "benchmark_runs.csv", _csv_text(runs, RUN_FIELDS))
    summary = summarise(runs)
    fields = ["method", "setting", "modality", "n_seeds", *(f"{k}_{s}" for k in SCORES for s in ("mean", "std")),
              "seconds_mean"]
    _write_atomic(out_dir / "benchmark.csv", _csv_text(summary, fields))
    _write_atomic(out_dir / "benchmark.md", to_markdown(summary))
    return summary


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``benchmark_runs.csv`` (as :func:`write_outputs` writes them), typed; [] without the file."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        try:
            out.append({"method": row["method"], "setting": row["setting"], "modality": row["modality"],
                        "seed": int(row["seed"]), **{k: float(row[k]) for k in SCORES},
                        "n_clusters_used": int(row["n_clusters_used"]), "seconds": float(row["seconds"])})
        except (KeyError, TypeError, ValueError) as err:
            raise DataValidationError(f"{path}: unreadable row {row!r} ({err}); remove the file to start again") from None
    return out


def _job_key(row: dict[str, Any] | Job) -> tuple[str, str, str, int]:
    if isinstance(row, Job):
        return row.method, row.setting, row.modality, row.seed
    return row["method"], row["setting"], row["modality"], int(row["seed"])


def run_clustering_benchmark(cfg: RunConfig, out_dir: str | os.PathLike, *, progress: bool = True,
                             console: Any = None, resume: bool = False) -> list[dict[str, Any]]:
    """Run ``cfg.benchmark`` on ``cfg.data``; write the tables to ``out_dir``; return the summary rows.

    ``resume``: the fits already in ``out_dir/benchmark_runs.csv`` (same method, setting, modality and
    seed as a planned fit) are kept and not run again; rows of fits the config no longer plans are dropped.
    """
    if cfg.benchmark is None:
        raise ValueError("the config has no benchmark: section (see configs/benchmark_clustering_polymnist_cpu.yaml)")
    bench: BenchmarkConfig = cfg.benchmark
    data = load_data(cfg.data)
    if data.train_labels is None:
        raise DataValidationError("the clustering benchmark needs labels (the training split has none)")
    split = bench.split or ("test" if data.test_views is not None and data.test_labels is not None else "train")
    views, labels = data.split(split)
    if labels is None:
        raise DataValidationError(f"the {split} split has no labels to score against")
    true_k = int(np.unique(data.train_labels).shape[0])
    jobs = list(plan_jobs(cfg, len(data.train_views), true_k))
    out = Path(out_dir)
    planned = {_job_key(job) for job in jobs}
    runs: list[dict[str, Any]] = [r for r in read_runs(out / "benchmark_runs.csv") if _job_key(r) in planned] if resume else []
    done = {_job_key(r) for r in runs}
    log.info("%d fits on %d training samples, scored on the %s split (%d samples)", len(jobs),
             data.train_views[0].shape[0], split, labels.shape[0])

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not progress) as bar:
        task = bar.add_task("benchmark", total=len(jobs))
        for job in jobs:
            if _job_key(job) in done:
                bar.advance(task)
                continue
            where = "" if job.modality == ALL_MODALITIES else f", modality {job.modality}"
            bar.update(task, description=f"{job.method} ({job.setting}{where}, seed {job.seed})")
            start = time.perf_counter()
            scores = job.run(data.train_views, views, labels)
            runs.append({"method": job.method, "setting": job.setting, "modality": job.modality, "seed": job.seed,
                         **{k: float(scores[k]) for k in SCORES}, "n_clusters_used": int(scores["n_clusters_used"]),
                         "seconds": time.perf_counter() - start})
            write_outputs(out, runs)
            bar.advance(task)
    return summarise(runs)
