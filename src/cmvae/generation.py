"""Generation with a fitted model: sample grids and the evaluation of generated data.

* :func:`save_sample_grid` -- unconditional samples, one row per active cluster and one
  column block per image modality (the paper's Figures 3 and 5).
* :func:`save_conditional_grid` -- a row of test inputs of one modality, then one row of
  generated samples per other image modality (cross-modal generation).
* :func:`evaluate_generation` -- coherence (unconditional, and conditional per number of
  observed modalities) and quality ("FD (classifier features)") judged by per-modality
  classifiers trained by :func:`cmvae.metrics.coherence.train_modality_classifiers`;
  :func:`load_or_train_classifiers` caches them in a folder (``RUN_DIR/classifiers``).

>>> save_sample_grid(model, "samples.png", per_cluster=3)
>>> clf, trained = load_or_train_classifiers("run/classifiers", train_views, y, test_views=tv, test_labels=ty)
>>> report = evaluate_generation(model, clf, tv, ty)
>>> print(report.to_markdown())
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .metrics.coherence import (
    ConditionalCoherence,
    ModalityClassifiers,
    all_subsets,
    conditional_coherence,
    train_modality_classifiers,
    tuple_coherence,
    unconditional_coherence,
)
from .metrics.frechet import FD_NAME, frechet_classifier_distance
from .plots import save_image_grid
from .schema import DataValidationError

log = logging.getLogger(__name__)

__all__ = [
    "GenerationReport",
    "active_clusters",
    "conditional_grid",
    "evaluate_generation",
    "image_modalities",
    "labelled_split",
    "leave_one_out_fd",
    "load_or_train_classifiers",
    "sample_grid",
    "save_conditional_grid",
    "save_sample_grid",
]

Grid = tuple[list[list[np.ndarray]], list[str], list[str]]  # rows[r][block], row labels, block titles


def image_modalities(model: Any) -> list[int]:
    """Ids of the modalities with ``[C, H, W]`` images (the ones a grid can draw)."""
    _, schema = model._fitted()
    return [m for m, spec in enumerate(schema.modalities) if len(spec.shape) == 3 and spec.shape[0] in (1, 3)]


def active_clusters(model: Any) -> list[int] | None:
    """Clusters with positive prior probability, or None for a model without clusters."""
    weights = getattr(model, "cluster_weights_", None)
    if weights is None:
        return None
    return [int(c) for c in np.flatnonzero(np.asarray(weights) > 0)]


def _require_images(model: Any) -> list[int]:
    mods = image_modalities(model)
    if not mods:
        raise ValueError("the model has no image modality ([C, H, W] with 1 or 3 channels): nothing to draw")
    return mods


def sample_grid(model: Any, per_cluster: int = 3, *, clusters: Sequence[int] | None = None, seed: int = 0,
                temperature: float = 1.0) -> Grid:
    """Unconditional samples, ``per_cluster`` per row: one row per cluster (default: the active ones;
    a single "p(z)" row for a model without clusters), one block per image modality; ``temperature``: see
    :meth:`cmvae.CMVAE.sample`."""
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    mods = _require_images(model)
    ids: list[int | None] = list(clusters) if clusters is not None else list(active_clusters(model) or [None])
    rows, labels = [], []
    for r, c in enumerate(ids):
        samples = model.sample(per_cluster, cluster=c, seed=seed + r, temperature=temperature)
        rows.append([samples[m] for m in mods])
        labels.append("p(z)" if c is None else f"cluster {c}")
    return rows, labels, [f"modality {m}" for m in mods]


def save_sample_grid(model: Any, out_png: str | Path, per_cluster: int = 3, *,
                     clusters: Sequence[int] | None = None, seed: int = 0, temperature: float = 1.0) -> Path:
    """Draw :func:`sample_grid` to ``out_png``."""
    rows, labels, titles = sample_grid(model, per_cluster, clusters=clusters, seed=seed, temperature=temperature)
    return save_image_grid(rows, out_png, row_labels=labels, col_block_titles=titles)


def _pick_examples(n_total: int, n: int, labels: Any | None) -> np.ndarray:
    """``n`` indices: one per class in turn when labels are given (a varied row), else the first ``n``."""
    n = min(n, n_total)
    if labels is None:
        return np.arange(n)
    labels = np.asarray(labels)
    picked: list[int] = []
    by_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    while len(picked) < n:
        for members in by_class:
            if members and len(picked) < n:
                picked.append(members.pop(0))
    return np.asarray(picked)


def conditional_grid(model: Any, views: Sequence[Any], *, source: int = 0, n: int = 8,
                     labels: Any | None = None, seed: int = 0) -> Grid:
    """Row 0: ``n`` inputs of modality ``source`` (one per class in turn when ``labels`` are given);
    then one row per other image modality, generated from those inputs alone."""
    mods = _require_images(model)
    if source not in mods:
        raise ValueError(f"source modality {source} is not an image modality (image modalities: {mods})")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    idx = _pick_examples(len(views[source]), n, labels)
    inputs = [np.asarray(views[m])[idx] if m == source else None for m in range(len(views))]
    targets = [m for m in mods if m != source]
    if not targets:
        raise ValueError("conditional grid: no other image modality to generate")
    generated = model.generate(inputs, targets=targets, seed=seed)
    rows = [[inputs[source]]] + [[generated[t]] for t in targets]
    row_labels = [f"input: modality {source}"] + [f"modality {t} | {source}" for t in targets]
    return rows, row_labels, [f"generated from modality {source}"]


def save_conditional_grid(model: Any, views: Sequence[Any], out_png: str | Path, *, source: int = 0,
                          n: int = 8, labels: Any | None = None, seed: int = 0) -> Path:
    """Draw :func:`conditional_grid` to ``out_png``."""
    rows, row_labels, titles = conditional_grid(model, views, source=source, n=n, labels=labels, seed=seed)
    return save_image_grid(rows, out_png, row_labels=row_labels, col_block_titles=titles)


# --------------------------------------------------------------------------- classifiers


def labelled_split(data: Any, split: str | None = None) -> tuple[str, list[Any], np.ndarray]:
    """``(name, views, labels)`` that generation is scored on: the labelled test split of ``data``
    (a :class:`cmvae.config.RunData`) unless ``split="train"`` or it has none, else the training split.
    The training split must be labelled (the coherence classifiers learn from it)."""
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    train_views, train_labels = data.split("train")
    if train_labels is None:
        raise DataValidationError("the training split has no labels: cannot train the coherence classifiers")
    if split != "train" and data.test_views is not None and data.test_labels is not None:
        views, labels = data.split("test")
        return "test", views, np.asarray(labels)
    if split == "test":
        raise DataValidationError("--split test: the data has no labelled test split")
    return "train", train_views, np.asarray(train_labels)



def load_or_train_classifiers(
    folder: str | Path,
    train_views: Sequence[Any],
    train_labels: Any,
    *,
    test_views: Sequence[Any] | None = None,
    test_labels: Any = None,
    epochs: int = 4,
    seed: int = 0,
    retrain: bool = False,
    max_train: int | None = None,
    device: str = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[ModalityClassifiers, bool]:
    """Classifiers saved in ``folder`` when they fit the data (shapes and classes), else trained on
    the training split and saved there. Returns ``(classifiers, trained_now)``."""
    folder = Path(folder)
    classes = np.unique(np.asarray(train_labels))
    shapes = [tuple(np.shape(x)[1:]) for x in train_views]
    if not retrain and (folder / "classifiers.json").is_file():
        clf = ModalityClassifiers.load(folder)
        if clf.shapes == shapes and np.array_equal(clf.classes, classes):
            if clf.test_accuracy is None and test_views is not None:
                clf.test_accuracy = clf.evaluate(test_views, test_labels)
            return clf, False
        log.warning("classifiers in %s do not fit this data (shapes or classes differ): retraining", folder)
    clf = train_modality_classifiers(
        train_views, train_labels, epochs, seed, test_views=test_views, test_labels=test_labels,
        max_train=max_train, device=device, progress=progress,
    )
    clf.save(folder)
    return clf, True


# --------------------------------------------------------------------------- evaluation


@dataclass
class GenerationReport:
    """Coherence and quality of a model's generations (see :func:`evaluate_generation`)."""

    n_modalities: int
    n_eval: int
    n_samples: int
    classifier_accuracy: list[float]
    real_coherence: float
    unconditional_coherence: float
    conditional: ConditionalCoherence
    fd: list[float]
    fd_reference: list[float] | None = None
    fd_conditional: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_modalities": self.n_modalities,
            "n_eval": self.n_eval,
            "n_samples": self.n_samples,
            "classifier_accuracy": self.classifier_accuracy,
            "real_coherence": self.real_coherence,
            "unconditional_coherence": self.unconditional_coherence,
            "conditional_coherence": self.conditional.to_dict(),
            "fd_name": FD_NAME,
            "fd": self.fd,
            "fd_reference": self.fd_reference,
            "fd_conditional": self.fd_conditional,
            "info": self.info,
        }

    def modality_rows(self) -> list[list[str]]:
        """Rows (modality, classifier accuracy, conditional coherence as target, FD, FD reference)."""
        per_target = self.conditional.per_target
        rows = []
        for m in range(self.n_modalities):
            rows.append([
                f"modality {m}",
                f"{self.classifier_accuracy[m]:.3f}",
                f"{per_target[m]:.3f}" if m in per_target else "-",
                f"{self.fd[m]:.2f}",
                "-" if self.fd_reference is None else f"{self.fd_reference[m]:.2f}",
            ])
        return rows

    MODALITY_HEADER = ("modality", "classifier test acc", "cond. coherence (as target)", FD_NAME,
                       "FD real vs real")

    def coherence_rows(self) -> list[list[str]]:
        rows = [["real test tuples (ceiling)", f"{self.real_coherence:.3f}"],
                ["unconditional", f"{self.unconditional_coherence:.3f}"]]
        for k, value in self.conditional.per_size.items():
            rows.append([f"conditional, {k} observed", f"{value:.3f}"])
        return rows

    def to_markdown(self, title: str = "Generation") -> str:
        def table(header: Sequence[str], rows: list[list[str]]) -> str:
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

        return (
            f"# {title}\n\n"
            f"Coherence on {self.n_eval} test tuples ({self.n_samples} unconditional samples):\n\n"
            + table(("coherence", "value"), self.coherence_rows())
            + "\n\nPer modality:\n\n"
            + table(self.MODALITY_HEADER, self.modality_rows())
            + "\n\nCoherence: fraction of generated samples whose label, by the modality's classifier (trained "
            "here on the training split), is the input's label (conditional; averaged over the generated "
            "modalities, then over the subsets with that many observed modalities) or is the same across all "
            "modalities of a tuple (unconditional). "
            f"{FD_NAME}: Frechet distance between real test data and unconditional samples in the feature space "
            "of the classifier's penultimate layer (lower is better); it is not the FID and is comparable only "
            "between models scored with the same classifiers. FD real vs real: the same distance between real "
            "training and test data of the same size (the floor it can reach).\n"
        )


def evaluate_generation(
    model: Any,
    classifiers: ModalityClassifiers,
    views: Sequence[Any],
    labels: Any,
    *,
    n_samples: int = 1000,
    max_samples: int | None = 1000,
    reference_views: Sequence[Any] | None = None,
    max_subsets_per_size: int | None = None,
    conditional_fd: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> GenerationReport:
    """Coherence and quality of ``model``'s generations, judged by ``classifiers``.

    ``views``/``labels``: the (test) tuples the conditional coherence starts from (at most
    ``max_samples``, a random subset) and the real data of the Frechet distance;
    ``n_samples`` unconditional tuples are drawn. ``reference_views`` (e.g. the training
    split): a same-sized real sample whose FD to ``views`` is reported as a floor.
    ``max_subsets_per_size``: score a random few subsets per size (all by default).
    ``conditional_fd``: also report :func:`leave_one_out_fd` (``fd_conditional``).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    if max_samples is not None and max_samples < n:
        idx = np.sort(rng.choice(n, max_samples, replace=False))
        views, labels = [np.asarray(x)[idx] for x in views], labels[idx]
    n_mod = len(views)
    say = progress or (lambda text: None)
    say("classifier accuracy")
    accuracy = classifiers.test_accuracy if classifiers.test_accuracy is not None else classifiers.evaluate(views, labels)
    real = tuple_coherence(views, classifiers)
    say("unconditional samples")
    uncond, samples = unconditional_coherence(model, classifiers, n_samples, seed=seed, return_samples=True)  # type: ignore[misc]
    subsets = all_subsets(n_mod, max_subsets_per_size, seed=seed)
    cond = conditional_coherence(model, classifiers, views, labels, subsets=subsets, seed=seed,
                                 progress=lambda s: say(f"conditional coherence from {list(s)}"))
    say(FD_NAME)
    fd = [frechet_classifier_distance(views[m], samples[m], classifiers, m) for m in range(n_mod)]
    fd_ref = None
    if reference_views is not None:
        k = min(len(reference_views[0]), n_samples)
        ref_idx = np.sort(rng.choice(len(reference_views[0]), k, replace=False))
        fd_ref = [frechet_classifier_distance(views[m], np.asarray(reference_views[m])[ref_idx], classifiers, m)
                  for m in range(n_mod)]
    fd_cond = leave_one_out_fd(model, classifiers, views, seed=seed) if conditional_fd else None
    return GenerationReport(
        n_modalities=n_mod,
        n_eval=int(labels.shape[0]),
        n_samples=n_samples,
        classifier_accuracy=[float(a) for a in accuracy],
        real_coherence=real,
        unconditional_coherence=float(uncond),
        conditional=cond,
        fd=fd,
        fd_reference=fd_ref,
        fd_conditional=fd_cond,
        info={"subsets": [list(s) for s in subsets], "seed": seed, "classifiers": classifiers.info},
    )


def leave_one_out_fd(model: Any, classifiers: ModalityClassifiers, views: Sequence[Any], *, seed: int = 0) -> list[float]:
    """Quality of conditional generation: for each modality m, the Frechet distance (classifier
    features) between the real ``views[m]`` ``[N, ...]`` and modality m generated from the other
    modalities of the same tuples. One value per modality (lower is better)."""
    n_mod = len(views)
    if n_mod < 2:
        raise ValueError("leave-one-out generation needs at least 2 modalities")
    out = []
    for m in range(n_mod):
        inputs = [None if k == m else views[k] for k in range(n_mod)]
        generated = model.generate(inputs, targets=[m], seed=seed)[m]
        out.append(frechet_classifier_distance(views[m], generated, classifiers, m))
    return out
