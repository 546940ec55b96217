"""Compare multimodal VAEs on the same data with the same training budget (the paper's Figure 1).

:func:`compare_models` reads the ``compare:`` section of a run config (see
:class:`cmvae.config.CompareConfig`): every listed model is trained for every seed on the
``data`` of the config, with the ``model``/``training`` settings of the config merged with the
entry's overrides (settings a model type does not take, e.g. ``n_clusters`` for a model without
clusters, are left out) and the same budget (``training.epochs``, ``training.max_time_minutes``).
Each trained model is scored with :func:`cmvae.generation.evaluate_generation` by one set of
coherence classifiers trained once per comparison:

* unconditional coherence: all modalities of an unconditional sample get the same label;
* conditional coherence: generated modalities get the label of the observed ones, averaged over
  the subsets of each size, then over the sizes (also reported: from 1 and from M-1 modalities);
* quality: FD (classifier features) of unconditional samples, and of each modality generated
  from the other M-1 (averaged over modalities; lower is better).

Output folder::

    OUT/compare_config.yaml            the resolved config
    OUT/classifiers/                   the coherence classifiers (shared by all models)
    OUT/<label>/seed<k>/               checkpoints/, logs/, model/, run.json, scores.json
    OUT/comparison.csv, comparison.md  one row per model and seed, then mean and std per model
    OUT/figure1.png                    coherence vs FD, unconditional and conditional panels

Running again with the same folder reuses every run whose ``model/`` was saved (and its scores
when the evaluation settings are unchanged); ``overwrite=True`` starts again.

>>> result = compare_models(load_config("configs/compare_polymnist_cpu.yaml"), "runs/compare")
>>> print(result.to_markdown())
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from .config import CompareConfig, CompareEntry, ConfigError, RunConfig, dump_config
from .data.run_data import load_data
from .estimator import MultimodalEstimator, pick_device
from .generation import GenerationReport, evaluate_generation, labelled_split, load_or_train_classifiers
from .metrics.clustering import format_scores_table
from .metrics.coherence import tuple_coherence
from .metrics.frechet import FD_NAME
from .plots import save_coherence_quality_figure, save_training_curves
from .registry import estimator_class, estimator_defaults

log = logging.getLogger(__name__)

__all__ = ["ComparisonResult", "RunResult", "compare_models", "run_params", "METRIC_COLUMNS"]

RUN_FILE = "run.json"
SCORES_FILE = "scores.json"
OUTPUTS = ("comparison.csv", "comparison.md", "figure1.png", "compare_config.yaml")
#: Settings that may differ between a saved run and the config without making it stale.
HARDWARE_KEYS = ("accelerator", "devices", "strategy", "num_nodes", "num_workers", "progress")
#: (key, header) of the table columns.
METRIC_COLUMNS = (
    ("unconditional_coherence", "uncond. coh."),
    ("conditional_coherence", "cond. coh."),
    ("conditional_coherence_1", "cond. coh. 1 obs."),
    ("conditional_coherence_loo", "cond. coh. M-1 obs."),
    ("fd_unconditional", "FD uncond."),
    ("fd_conditional", "FD cond."),
    ("epochs", "epochs"),
    ("train_seconds", "train s"),
)

#: Decimals in the tables (default 3).
DIGITS = {"fd_unconditional": 1, "fd_conditional": 1, "epochs": 0, "train_seconds": 0}

#: ``progress(runs_done, runs_total, what is happening)``.
ProgressFn = Callable[[int, int, str], None]


# --------------------------------------------------------------------------- building


def _build(model_type: str, params: dict[str, Any]) -> MultimodalEstimator:
    """An unfitted estimator of ``model_type`` (a registered type) from the shared ``params``.

    The one place where a comparison turns settings into a model: parameters the class does
    not take (e.g. ``n_clusters``-related keys of CMVAE) are left out, and settings a model's
    definition fixes are set to that value: no private latents (``private_dim = 0``) for
    MVAE/MMVAE/MoPoE/mmJSD/MVTCAE, Gaussian latents for the product-of-experts models, the
    model's own ELBO-type objective for the models that have one.
    """
    try:
        klass = estimator_class(model_type)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    accepted, defaults = set(klass._param_names()), estimator_defaults(klass)
    # unset model-specific keys of the shared section (None, e.g. MVTCAE's alpha) take the class default
    kwargs = {k: v for k, v in params.items() if k in accepted and not (v is None and defaults.get(k) is not None)}
    if not getattr(klass, "has_private_latents", True):
        kwargs["private_dim"] = 0
    if getattr(klass, "gaussian_only", False):
        kwargs["latent_family"] = "gaussian"
    if getattr(klass, "elbo_only", False):
        kwargs["estimator"] = "elbo"
    return klass(**kwargs)


def run_params(cfg: RunConfig, entry: CompareEntry, seed: int) -> dict[str, Any]:
    """Settings of one run: the config's ``model`` and ``training`` sections, the entry's overrides,
    the ``seed``, and no Lightning progress bar (the comparison shows its own)."""
    params = cfg.model.model_dump(exclude={"type"})
    params.update(cfg.training.model_dump())
    params.update(entry.overrides)
    params.update(seed=seed, progress=False)
    return params


def _model(cfg: RunConfig, entry: CompareEntry, seed: int) -> MultimodalEstimator:
    model = _build(entry.type, run_params(cfg, entry, seed))
    ignored = sorted(set(entry.overrides) - set(model.get_params()))
    if ignored:
        raise ConfigError(f"compare model {entry.display_label!r} ({entry.type}) does not take {', '.join(ignored)}")
    return model


# --------------------------------------------------------------------------- results


def _fmt(key: str, value: float) -> str:
    return f"{float(value):.{DIGITS.get(key, 3)}f}"


@dataclass
class RunResult:
    """One trained model: its scores (keys of :data:`METRIC_COLUMNS`) and where it lives."""

    label: str
    model_type: str
    seed: int
    run_dir: Path
    scores: dict[str, float]
    trained_now: bool
    evaluated_now: bool


@dataclass
class ComparisonResult:
    """All runs of a comparison, the per-model mean and std, and the files written."""

    runs: list[RunResult]
    out_dir: Path
    split: str
    n_eval: int
    classifier_accuracy: list[float]
    real_coherence: float
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{label: {metric: (mean, std)}}`` over the seeds (std with ddof 0; 0 for one seed)."""
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for label in dict.fromkeys(r.label for r in self.runs):
            runs = [r for r in self.runs if r.label == label]
            out[label] = {key: (float(np.mean([r.scores[key] for r in runs])), float(np.std([r.scores[key] for r in runs])))
                          for key, _ in METRIC_COLUMNS}
        return out

    def run_rows(self) -> dict[str, dict[str, str]]:
        """Table rows ``{"label (seed k)": {metric: text}}``."""
        return {f"{r.label} (seed {r.seed})": {k: _fmt(k, v) for k, v in r.scores.items()} for r in self.runs}

    def summary_rows(self) -> dict[str, dict[str, str]]:
        """Table rows ``{label: {metric: "mean ± std"}}``."""
        return {label: {k: f"{_fmt(k, m)} ± {_fmt(k, s)}" for k, (m, s) in stats.items()}
                for label, stats in self.summary().items()}

    def to_markdown(self) -> str:
        acc = ", ".join(f"{a:.3f}" for a in self.classifier_accuracy)
        return (
            f"# Model comparison (`{self.out_dir}`)\n\n"
            f"Generation scored on {self.n_eval} tuples of the {self.split} split by classifiers with accuracy "
            f"{acc} (per modality); coherence of the real tuples (ceiling): {self.real_coherence:.3f}.\n\n"
            "## Per model and seed\n\n" + format_scores_table(self.run_rows(), METRIC_COLUMNS) + "\n\n"
            "## Mean ± std over seeds\n\n" + format_scores_table(self.summary_rows(), METRIC_COLUMNS) + "\n\n"
            "Coherence (coh., higher is better): unconditional = all modalities of a sample get the same label; "
            "conditional = generated modalities get the label of the observed ones (mean over the subsets of each "
            "size, then over the sizes; also shown from 1 and from M-1 observed (obs.) modalities). "
            f"FD = {FD_NAME} (lower is better), averaged over modalities, of unconditional samples (uncond.) and of "
            "each modality generated from the other M-1 (cond.); comparable only within this comparison.\n"
        )

    def to_csv(self) -> str:
        """One row per run, then ``mean`` and ``std`` rows per model (column ``seed``)."""
        import csv
        import io

        keys = [k for k, _ in METRIC_COLUMNS]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["model", "type", "seed", *keys])
        for r in self.runs:
            writer.writerow([r.label, r.model_type, r.seed, *(repr(float(r.scores[k])) for k in keys)])
        types = {r.label: r.model_type for r in self.runs}
        for label, stats in self.summary().items():
            for i, name in enumerate(("mean", "std")):
                writer.writerow([label, types[label], name, *(repr(stats[k][i]) for k in keys)])
        return buf.getvalue()


def _scores(report: GenerationReport) -> dict[str, float]:
    per_size = report.conditional.per_size
    assert report.fd_conditional is not None
    return {
        "unconditional_coherence": report.unconditional_coherence,
        "conditional_coherence": float(np.mean(list(per_size.values()))),
        "conditional_coherence_1": per_size[min(per_size)],
        "conditional_coherence_loo": per_size[max(per_size)],
        "fd_unconditional": float(np.mean(report.fd)),
        "fd_conditional": float(np.mean(report.fd_conditional)),
    }


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _normalised(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _check_saved(run_dir: Path, model: MultimodalEstimator) -> None:
    """The model saved in ``run_dir`` must have the type and settings the config asks for."""
    saved = json.loads((run_dir / "model" / "config.json").read_text())
    if saved.get("model_type") != model.model_type:
        raise ConfigError(f"{run_dir} holds a {saved.get('model_type')!r} model, the config asks for "
                          f"{model.model_type!r}: pass --overwrite (overwrite=True) or choose another output folder")
    wanted = _normalised(model.get_params())
    have = saved.get("params", {})
    changed = [k for k in wanted if k not in HARDWARE_KEYS and have.get(k) != wanted[k]]
    if changed:
        diff = ", ".join(f"{k}: {have.get(k)!r} -> {wanted[k]!r}" for k in changed[:4])
        raise ConfigError(f"{run_dir} was trained with other settings ({diff}): pass --overwrite "
                          "(overwrite=True) to train again, or choose another output folder")


def _clear(out: Path, cc: CompareConfig) -> None:
    """Remove what a comparison with this config writes (the runs of its models, outputs, classifiers)."""
    for entry in cc.models:
        shutil.rmtree(out / entry.folder, ignore_errors=True)
    shutil.rmtree(out / "classifiers", ignore_errors=True)
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)


class _EpochProgress(L.Callback):
    """Calls ``say(epoch, max_epochs)`` after each training epoch."""

    def __init__(self, say: Callable[[int, int], None]) -> None:
        self.say = say

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.say(trainer.current_epoch + 1, int(trainer.max_epochs or 0))


# --------------------------------------------------------------------------- the comparison


def _train(model: MultimodalEstimator, views: list[Any], run_dir: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Fit and save ``model`` in ``run_dir`` (a partial earlier attempt is removed); returns run.json's content."""
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    start = time.monotonic()
    say("training")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")  # no validation split here
        model.fit(views, out_dir=run_dir, callbacks=[_EpochProgress(lambda e, n: say(f"training, epoch {e}/{n} done"))])
    seconds = time.monotonic() - start
    model.save(run_dir / "model")
    metrics_csv = run_dir / "logs" / "metrics.csv"
    if metrics_csv.is_file():
        try:
            save_training_curves(metrics_csv, run_dir / "training_curves.png", title=f"{model.model_type}: {run_dir}")
        except ValueError as err:
            log.warning("no training curves for %s: %s", run_dir, err)
    info = {"model_type": model.model_type, "train_seconds": round(seconds, 1),
            "epochs": len(model.history_.get("epoch", []))}
    _write_atomic(run_dir / RUN_FILE, json.dumps(info, indent=2) + "\n")
    return info


def compare_models(
    cfg: RunConfig,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ComparisonResult:
    """Train every model of ``cfg.compare`` for every seed, score their generation and write the
    table (``comparison.csv``, ``comparison.md``) and ``figure1.png`` into ``out_dir``.

    Runs whose model is already saved in ``out_dir`` are reused unless ``overwrite``.
    Raises :class:`ConfigError` without a ``compare:`` section or when a saved run was trained
    with other settings.
    """
    if cfg.compare is None:
        raise ConfigError("the config has no compare: section (models to compare, seeds)")
    cc = cfg.compare
    out = Path(out_dir)
    if overwrite:
        _clear(out, cc)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "compare_config.yaml")
    total = len(cc.models) * len(cc.seeds)
    report_progress = progress or (lambda done, n, text: None)
    # Every model is built before anything is trained: a bad override fails now, not after an hour.
    for entry in cc.models:
        _model(cfg, entry, cc.seeds[0])

    data = load_data(cfg.data)
    split, views, labels = labelled_split(data)
    train_views, train_labels = data.split("train")
    device = str(pick_device(cfg.training.accelerator))
    clf, _ = load_or_train_classifiers(
        out / "classifiers", train_views, train_labels, test_views=views, test_labels=labels,
        epochs=cc.classifier_epochs, seed=cfg.training.seed, max_train=cc.classifier_max_train, device=device,
        progress=lambda m, e, loss: report_progress(0, total, f"coherence classifier of modality {m}: epoch {e + 1}, "
                                                              f"loss {loss:.3f}"),
    )
    clf.to(device)
    eval_key = _normalised({
        "split": split, "n_samples": cc.n_samples, "max_samples": cc.max_samples,
        "max_subsets_per_size": cc.max_subsets_per_size, "classifiers": clf.info,
    })

    runs: list[RunResult] = []
    for entry in cc.models:
        for seed in cc.seeds:
            name = f"{entry.display_label} seed {seed}"

            def say(text: str, name: str = name) -> None:
                report_progress(len(runs), total, f"{name}: {text}")

            run_dir = out / entry.folder / f"seed{seed}"
            model = _model(cfg, entry, seed)
            info = _read_json(run_dir / RUN_FILE)
            trained_now = not ((run_dir / "model" / "config.json").is_file() and info is not None)
            if trained_now:
                info = _train(model, train_views, run_dir, say)
            else:
                _check_saved(run_dir, model)
                model = type(model).load(run_dir / "model", accelerator=cfg.training.accelerator)
            assert info is not None
            cached = _read_json(run_dir / SCORES_FILE)
            if not trained_now and cached is not None and cached.get("evaluation") == eval_key:
                scores, evaluated_now = cached["scores"], False
            else:
                say("evaluating")
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", category=RuntimeWarning)  # FD of degenerate samples
                    report = evaluate_generation(
                        model, clf, views, labels, n_samples=cc.n_samples, max_samples=cc.max_samples,
                        max_subsets_per_size=cc.max_subsets_per_size, conditional_fd=True, seed=seed,
                        progress=lambda text: say(f"evaluating: {text}"),
                    )
                scores = {**_scores(report), "epochs": info["epochs"], "train_seconds": info["train_seconds"]}
                _write_atomic(run_dir / SCORES_FILE, json.dumps(
                    {"evaluation": eval_key, "scores": scores, "report": report.to_dict()}, indent=2) + "\n")
                evaluated_now = True
            runs.append(RunResult(entry.display_label, entry.type, seed, run_dir, scores, trained_now, evaluated_now))
            report_progress(len(runs), total, f"{name}: done")

    accuracy = clf.test_accuracy if clf.test_accuracy is not None else clf.evaluate(views, labels)
    n_eval = min(len(labels), cc.max_samples or len(labels))
    result = ComparisonResult(runs, out, split, n_eval, [float(a) for a in accuracy], tuple_coherence(views, clf))
    result.files["csv"] = _write_atomic(out / "comparison.csv", result.to_csv())
    result.files["markdown"] = _write_atomic(out / "comparison.md", result.to_markdown())
    points = [{"model": r.label, **r.scores} for r in runs]
    result.files["figure"] = save_coherence_quality_figure(
        points, out / "figure1.png", fd_name=FD_NAME,
        title=f"{len(cc.models)} models x {len(cc.seeds)} seed(s), {split} split",
    )
    return result
