"""Clustering metrics, a k-means floor baseline and score tables.

All label arrays are 1-D of shape ``[N]``. Predicted cluster ids and true
class ids may be arbitrary integers (they need not be ``0..K-1``), and the
number of predicted clusters may differ from the number of classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

__all__ = [
    "clustering_accuracy",
    "hungarian_mapping",
    "clustering_scores",
    "kmeans_baseline",
    "format_scores_table",
    "scores_to_markdown",
    "print_scores_table",
    "DEFAULT_SCORE_COLUMNS",
]

#: Columns shown by the table helpers by default: (score key, header).
DEFAULT_SCORE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nmi", "NMI"),
    ("ari", "ARI"),
    ("acc", "ACC"),
)


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def _check_label_array(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of labels, got an array with shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one sample")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite labels")
    return arr


def _check_labels(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of label vectors; return them as 1-D arrays ``[N]``."""
    t = _check_label_array(y_true, "y_true")
    p = _check_label_array(y_pred, "y_pred")
    if t.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true and y_pred have different lengths: {t.shape[0]} != {p.shape[0]}"
        )
    return t, p


def _py_scalar(x: Any) -> Any:
    """numpy scalar -> plain Python scalar (int stays int)."""
    return x.item() if isinstance(x, np.generic) else x


# --------------------------------------------------------------------------- #
# metrics
# --------------------------------------------------------------------------- #
def _assignment(
    y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-weight one-to-one matching of clusters to classes.

    Returns ``(classes, clusters, contingency, row_idx, col_idx)`` where
    ``contingency`` has shape ``[n_classes, n_clusters]`` and
    ``(row_idx[i], col_idx[i])`` are matched (class, cluster) index pairs.
    """
    classes = np.unique(y_true)
    clusters = np.unique(y_pred)
    cont = contingency_matrix(y_true, y_pred)  # rows: sorted classes, cols: sorted clusters
    row_idx, col_idx = linear_sum_assignment(cont, maximize=True)
    return classes, clusters, cont, row_idx, col_idx


def clustering_accuracy(y_true: Any, y_pred: Any) -> float:
    """Unsupervised clustering accuracy (ACC) under the best 1-to-1 matching.

    Clusters are matched to classes with the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`) on the contingency matrix
    ``[n_classes, n_clusters]`` so as to maximise the number of correctly
    labelled samples. When there are more clusters than classes, the clusters
    left unmatched count entirely as errors (and vice versa for classes).

    Args:
        y_true: true class labels, shape ``[N]``.
        y_pred: predicted cluster ids, shape ``[N]``.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    t, p = _check_labels(y_true, y_pred)
    _, _, cont, r, c = _assignment(t, p)
    return float(cont[r, c].sum() / t.shape[0])


def hungarian_mapping(y_true: Any, y_pred: Any) -> dict[int, int]:
    """Best one-to-one mapping ``{cluster id -> class label}``.

    Same matching as :func:`clustering_accuracy`. Clusters that are left
    unmatched (when there are more clusters than classes) are absent from
    the returned dict.

    Args:
        y_true: true class labels, shape ``[N]``.
        y_pred: predicted cluster ids, shape ``[N]``.
    """
    t, p = _check_labels(y_true, y_pred)
    classes, clusters, _, r, c = _assignment(t, p)
    return {_py_scalar(clusters[j]): _py_scalar(classes[i]) for i, j in zip(r, c)}


def clustering_scores(y_true: Any, y_pred: Any) -> dict[str, float | int]:
    """NMI, ARI, ACC and the number of distinct predicted clusters.

    Args:
        y_true: true class labels, shape ``[N]``.
        y_pred: predicted cluster ids, shape ``[N]``.

    Returns:
        ``{"nmi": float, "ari": float, "acc": float, "n_clusters_used": int}``
        (NMI with sklearn's default arithmetic normalisation).
    """
    t, p = _check_labels(y_true, y_pred)
    return {
        "nmi": float(normalized_mutual_info_score(t, p)),
        "ari": float(adjusted_rand_score(t, p)),
        "acc": clustering_accuracy(t, p),
        "n_clusters_used": int(np.unique(p).shape[0]),
    }


# --------------------------------------------------------------------------- #
# k-means floor baseline
# --------------------------------------------------------------------------- #
def _view_features(view: Any, index: int) -> np.ndarray:
    """One view ``[N, ...]`` -> float32 features ``[N, D]`` (uint8 scaled to [0,1])."""
    arr = np.asarray(view)
    if arr.ndim < 1 or arr.shape[0] == 0:
        raise ValueError(f"views[{index}] is empty (shape {arr.shape})")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"views[{index}] has non-numeric dtype {arr.dtype}")
    if arr.dtype == np.uint8:
        feats = arr.reshape(arr.shape[0], -1).astype(np.float32) / 255.0
    else:
        feats = arr.reshape(arr.shape[0], -1).astype(np.float32, copy=False)
    if feats.shape[1] == 0:
        raise ValueError(f"views[{index}] has no features (shape {arr.shape})")
    if not np.all(np.isfinite(feats)):
        raise ValueError(f"views[{index}] contains NaN or infinite feature values")
    return feats


def kmeans_baseline(
    views: Sequence[np.ndarray],
    y_true: Any,
    n_clusters: int,
    *,
    seed: int = 0,
    pca_dim: int = 50,
    max_samples: int | None = None,
) -> dict[str, float | int]:
    """Floor baseline: k-means on PCA of the concatenated, flattened views.

    Each view ``[N, ...]`` (e.g. images ``[N, C, H, W]``) is flattened to
    ``[N, D_m]`` and cast to float32 (uint8 views are divided by 255); all
    views are concatenated to ``[N, sum_m D_m]``, reduced with randomized PCA
    to ``pca_dim`` components (skipped when there are ``<= pca_dim``
    features), then clustered with ``KMeans(n_clusters, n_init=10)``.

    Args:
        views: list of arrays, each of shape ``[N, ...]`` with the same ``N``.
        y_true: true class labels, shape ``[N]``.
        n_clusters: number of k-means clusters.
        seed: random state for subsampling, PCA and k-means.
        pca_dim: number of PCA components.
        max_samples: if set and ``N > max_samples``, score a random subset of
            ``max_samples`` samples (drawn with ``seed``).

    Returns:
        :func:`clustering_scores` of the k-means assignment.
    """
    if isinstance(views, np.ndarray):
        views = [views]
    if len(views) == 0:
        raise ValueError("views is empty: need at least one view array")
    y = _check_label_array(y_true, "y_true")
    n = y.shape[0]
    for m, v in enumerate(views):
        n_m = np.shape(v)[0] if np.ndim(v) > 0 else 0
        if n_m != n:
            raise ValueError(
                f"views[{m}] has {n_m} samples but y_true has {n} labels: lengths differ"
            )
    if int(n_clusters) < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    if pca_dim < 1:
        raise ValueError(f"pca_dim must be >= 1, got {pca_dim}")

    idx: np.ndarray | None = None
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        if n > max_samples:
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(n, size=max_samples, replace=False))
            y = y[idx]
            n = max_samples

    feats = []
    for m, v in enumerate(views):
        v = np.asarray(v)
        if idx is not None:
            v = v[idx]
        feats.append(_view_features(v, m))
    x = np.concatenate(feats, axis=1) if len(feats) > 1 else feats[0]

    if int(n_clusters) > n:
        raise ValueError(f"n_clusters={n_clusters} exceeds the number of samples ({n})")

    if x.shape[1] > pca_dim:
        n_comp = min(pca_dim, n)
        x = PCA(n_components=n_comp, svd_solver="randomized", random_state=seed).fit_transform(x)

    pred = KMeans(n_clusters=int(n_clusters), n_init=10, random_state=seed).fit_predict(x)
    return clustering_scores(y, pred)


# --------------------------------------------------------------------------- #
# tables
# --------------------------------------------------------------------------- #
def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if not np.isfinite(value) else f"{float(value):.{digits}f}"
    return str(value)


def _table_cells(
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    digits: int,
) -> tuple[list[str], list[list[str]]]:
    header = ["method"] + [h for _, h in columns]
    body = [
        [str(name)] + [_fmt(scores.get(key), digits) for key, _ in columns]
        for name, scores in rows.items()
    ]
    return header, body


def format_scores_table(
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[tuple[str, str]] = DEFAULT_SCORE_COLUMNS,
    digits: int = 3,
) -> str:
    """Plain-text table that is also valid (GitHub) markdown.

    Args:
        rows: ``{method name: scores dict}``, e.g. outputs of
            :func:`clustering_scores`. Missing keys print as ``-``.
        columns: ``(score key, header)`` pairs; default NMI / ARI / ACC.
            Add e.g. ``("n_clusters_used", "#clusters")`` for more columns.
        digits: decimals for float values.

    Returns:
        The table as a string, columns padded to equal width, with one row
        per method, e.g.::

            | method | NMI   | ARI   | ACC   |
            |:-------|------:|------:|------:|
            | kmeans | 0.512 | 0.401 | 0.600 |
    """
    header, body = _table_cells(rows, columns, digits)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    widths = [max(w, 3) for w in widths]

    def line(cells: list[str]) -> str:
        out = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "| " + " | ".join(out) + " |"

    sep = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:]) + "|"
    header_line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    return "\n".join([header_line, sep, *(line(r) for r in body)])


#: Alias of :func:`format_scores_table` (its output already is markdown).
scores_to_markdown = format_scores_table


def print_scores_table(
    rows: Mapping[str, Mapping[str, Any]],
    title: str | None = "Clustering scores",
    console: Any | None = None,
    columns: Sequence[tuple[str, str]] = DEFAULT_SCORE_COLUMNS,
    digits: int = 3,
) -> Any:
    """Print the scores as a :class:`rich.table.Table`.

    Args:
        rows: ``{method name: scores dict}``.
        title: table title.
        console: a :class:`rich.console.Console`; a new one is created if None.
        columns: ``(score key, header)`` pairs.
        digits: decimals for float values.

    Returns:
        The rich ``Table`` that was printed.
    """
    from rich.console import Console
    from rich.table import Table

    header, body = _table_cells(rows, columns, digits)
    table = Table(title=title)
    table.add_column(header[0], justify="left")
    for h in header[1:]:
        table.add_column(h, justify="right")
    for r in body:
        table.add_row(*r)
    (console if console is not None else Console()).print(table)
    return table
