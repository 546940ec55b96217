"""Plotting helpers: training curves, image grids, entropy curves, latent maps.

Figures are built with :class:`matplotlib.figure.Figure` and rendered with the
Agg canvas, so importing this module never touches pyplot or the global
matplotlib backend. Every ``save_*`` function creates missing parent
directories, writes the PNG atomically (temporary file in the same directory,
then :func:`os.replace`) and returns the output :class:`~pathlib.Path`.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "save_training_curves",
    "read_metrics_csv",
    "save_image_grid",
    "save_entropy_curve",
    "save_latent_map",
    "save_coherence_quality_figure",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _new_figure(figsize: tuple[float, float], dpi: float = 100) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save_atomic(fig: Figure, out_png: PathLike, **savefig_kwargs: Any) -> Path:
    """Render ``fig`` to ``out_png`` via a temp file in the same directory."""
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp.png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", **savefig_kwargs)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return out


def _to_float(value: str) -> float | None:
    value = value.strip()
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return None


# --------------------------------------------------------------------------- #
# training curves
# --------------------------------------------------------------------------- #
def read_metrics_csv(path: PathLike) -> dict[str, tuple[str, list[float], list[float]]]:
    """Read a Lightning ``CSVLogger`` ``metrics.csv``.

    Rows of such a file are sparse (each row holds the metrics logged at one
    step). For each metric column the non-empty rows are collected; the x axis
    is ``epoch`` when the metric was logged at most once per epoch (or its
    name ends with ``_epoch``), otherwise ``step``.

    Returns:
        ``{metric: (x_name, xs, ys)}`` in file column order.
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        records = list(reader)
    axis_cols = [c for c in ("epoch", "step") if c in fields]
    out: dict[str, tuple[str, list[float], list[float]]] = {}
    for col in fields:
        if col in axis_cols:
            continue
        pts = []
        for i, rec in enumerate(records):
            y = _to_float(rec.get(col) or "")
            if y is None:
                continue
            ep = _to_float(rec.get("epoch") or "") if "epoch" in fields else None
            st = _to_float(rec.get("step") or "") if "step" in fields else None
            pts.append((i, ep, st, y))
        if not pts:
            continue
        epochs = [p[1] for p in pts]
        per_epoch = all(e is not None for e in epochs) and (
            col.endswith("_epoch") or len(set(epochs)) == len(epochs)
        )
        if per_epoch:
            out[col] = ("epoch", [p[1] for p in pts], [p[3] for p in pts])  # type: ignore[misc]
        elif all(p[2] is not None for p in pts):
            out[col] = ("step", [p[2] for p in pts], [p[3] for p in pts])  # type: ignore[misc]
        else:
            out[col] = ("row", [float(p[0]) for p in pts], [p[3] for p in pts])
    return out


def save_training_curves(
    history: Mapping[str, Sequence[float]] | PathLike,
    out_png: PathLike,
    title: str | None = None,
) -> Path:
    """One subplot per logged metric (loss terms) against epoch/step.

    Args:
        history: either ``{metric: [value per epoch]}`` (an ``"epoch"`` or
            ``"step"`` key, if present and of matching length, is used as x;
            otherwise x is ``0..len-1`` epochs; NaNs are skipped), or the path
            to a Lightning ``CSVLogger`` ``metrics.csv`` (see
            :func:`read_metrics_csv`).
        out_png: output PNG path.
        title: optional figure title.

    Returns:
        The output path.
    """
    series: dict[str, tuple[str, list[float], list[float]]]
    if isinstance(history, Mapping):
        x_key = next((k for k in ("epoch", "step") if k in history), None)
        series = {}
        for name, vals in history.items():
            if name == x_key:
                continue
            ys = np.asarray(vals, dtype=float).reshape(-1)
            if x_key is not None and len(history[x_key]) == len(ys):
                xs, xname = np.asarray(history[x_key], dtype=float), x_key
            else:
                xs, xname = np.arange(len(ys), dtype=float), "epoch"
            ok = np.isfinite(ys)
            if ok.any():
                series[str(name)] = (xname, xs[ok].tolist(), ys[ok].tolist())
    else:
        path = Path(history)
        if not path.is_file():
            raise FileNotFoundError(f"metrics file not found: {path}")
        series = read_metrics_csv(path)
    if not series:
        raise ValueError("history contains no metric values to plot")

    n = len(series)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = _new_figure((4.0 * ncols, 3.0 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, (name, (xname, xs, ys)) in zip(axes.flat, series.items()):
        marker = "o" if len(xs) <= 30 else None
        ax.plot(xs, ys, marker=marker, markersize=3, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xname)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_atomic(fig, out_png)


# --------------------------------------------------------------------------- #
# image grid
# --------------------------------------------------------------------------- #
def _as_images(arr: Any, where: str) -> np.ndarray:
    """``[n, C, H, W]`` (or ``[n, H, W]``), uint8 or float in [0, 1] -> float ``[n, H, W, 3]``."""
    a = np.asarray(arr)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"{where}: expected images of shape [n, C, H, W], got {a.shape}")
    if a.shape[1] not in (1, 3):
        raise ValueError(f"{where}: expected C = 1 or 3 channels, got shape {a.shape}")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    else:
        f = np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    f = np.transpose(f, (0, 2, 3, 1))
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    return f


def save_image_grid(
    rows: Sequence[Any],
    out_png: PathLike,
    row_labels: Sequence[str] | None = None,
    col_block_titles: Sequence[str] | None = None,
    *,
    scale: float = 2.0,
    pad: int = 1,
    block_gap: int = 6,
) -> Path:
    """Grid of images: one row per entry of ``rows``, one column block per modality.

    Args:
        rows: either a list of arrays ``[n, C, H, W]`` (one block per row), or
            a nested list ``rows[r][m]`` of arrays ``[n, C, H, W]`` (block ``m``
            = modality ``m``). Values are uint8 or float in ``[0, 1]`` (clipped);
            ``C`` is 1 (grayscale) or 3; ``[n, H, W]`` is read as ``C = 1``.
            Blocks may differ in image size and ``n``; cells are padded.
        out_png: output PNG path.
        row_labels: optional label per row (e.g. ``"cluster 3"``).
        col_block_titles: optional title per column block (e.g. modality names).
        scale: displayed pixels per image pixel.
        pad: white pixels between images.
        block_gap: extra white pixels between column blocks.

    Returns:
        The output path.
    """
    if len(rows) == 0:
        raise ValueError("rows is empty: need at least one row of images")
    grid: list[list[np.ndarray]] = []
    for r, row in enumerate(rows):
        blocks = [row] if isinstance(row, np.ndarray) or not isinstance(row, (list, tuple)) else list(row)
        if len(blocks) == 0:
            raise ValueError(f"rows[{r}] has no modality blocks")
        grid.append([_as_images(b, f"rows[{r}][{m}]") for m, b in enumerate(blocks)])
    n_blocks = max(len(g) for g in grid)
    if row_labels is not None and len(row_labels) != len(grid):
        raise ValueError(f"row_labels has {len(row_labels)} entries for {len(grid)} rows")
    if col_block_titles is not None and len(col_block_titles) != n_blocks:
        raise ValueError(
            f"col_block_titles has {len(col_block_titles)} entries for {n_blocks} column blocks"
        )

    # cell size and image count per block, taken over all rows
    cell_h = [0] * n_blocks
    cell_w = [0] * n_blocks
    count = [0] * n_blocks
    for g in grid:
        for m, imgs in enumerate(g):
            cell_h[m] = max(cell_h[m], imgs.shape[1])
            cell_w[m] = max(cell_w[m], imgs.shape[2])
            count[m] = max(count[m], imgs.shape[0])
    row_h = max(cell_h) + pad
    block_w = [count[m] * (cell_w[m] + pad) for m in range(n_blocks)]
    block_x = np.concatenate([[0], np.cumsum([w + block_gap for w in block_w])])[:-1].astype(int)
    total_w = int(block_x[-1] + block_w[-1] + pad)
    total_h = int(len(grid) * row_h + pad)

    canvas = np.ones((total_h, total_w, 3), dtype=np.float32)
    for r, g in enumerate(grid):
        y0 = pad + r * row_h
        for m, imgs in enumerate(g):
            for i, img in enumerate(imgs):
                x0 = pad + int(block_x[m]) + i * (cell_w[m] + pad)
                h, w = img.shape[:2]
                canvas[y0 : y0 + h, x0 : x0 + w] = img

    dpi = 100.0
    left = 1.1 if row_labels is not None else 0.05
    top = 0.35 if col_block_titles is not None else 0.05
    margin = 0.05
    img_w_in = total_w * scale / dpi
    img_h_in = total_h * scale / dpi
    fig_w, fig_h = left + img_w_in + margin, top + img_h_in + margin
    fig = _new_figure((fig_w, fig_h), dpi=dpi)
    ax = fig.add_axes((left / fig_w, margin / fig_h, img_w_in / fig_w, img_h_in / fig_h))
    ax.imshow(canvas, interpolation="nearest", aspect="auto", extent=(0, total_w, total_h, 0))
    ax.set_xlim(0, total_w)
    ax.set_ylim(total_h, 0)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    if row_labels is not None:
        ax.set_yticks([pad + r * row_h + (row_h - pad) / 2 for r in range(len(grid))])
        ax.set_yticklabels([str(s) for s in row_labels], fontsize=8)
        ax.tick_params(axis="y", length=0)
    else:
        ax.set_yticks([])
    if col_block_titles is not None:
        for m, t in enumerate(col_block_titles):
            ax.text(
                pad + block_x[m] + block_w[m] / 2, -2, str(t),
                ha="center", va="bottom", fontsize=9, clip_on=False,
            )
    return _save_atomic(fig, out_png)


# --------------------------------------------------------------------------- #
# entropy curve
# --------------------------------------------------------------------------- #
def save_entropy_curve(
    ks: Sequence[int],
    entropy: Sequence[float],
    out_png: PathLike,
    nmi: Sequence[float] | None = None,
    ari: Sequence[float] | None = None,
    chosen_k: int | None = None,
    title: str | None = None,
    minimum_k: int | None = None,
) -> Path:
    """Entropy vs. number of clusters ``k``; NMI/ARI on a twin axis if given.

    Args:
        ks: candidate numbers of clusters, shape ``[K]``.
        entropy: entropy at each ``k``, shape ``[K]`` (left axis).
        out_png: output PNG path.
        nmi: optional NMI at each ``k``, shape ``[K]`` (right axis).
        ari: optional ARI at each ``k``, shape ``[K]`` (right axis).
        chosen_k: if given, a dashed vertical line marks it.
        title: optional title.
        minimum_k: if given and not ``chosen_k``, a grey dotted line marks the lowest entropy's k.

    Returns:
        The output path.
    """
    x = np.asarray(ks, dtype=float).reshape(-1)
    e = np.asarray(entropy, dtype=float).reshape(-1)
    if x.size == 0:
        raise ValueError("ks is empty")
    if e.shape != x.shape:
        raise ValueError(f"entropy has {e.size} values for {x.size} ks: lengths differ")
    extra = {}
    for name, vals in (("NMI", nmi), ("ARI", ari)):
        if vals is not None:
            v = np.asarray(vals, dtype=float).reshape(-1)
            if v.shape != x.shape:
                raise ValueError(f"{name.lower()} has {v.size} values for {x.size} ks: lengths differ")
            extra[name] = v

    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    handles = ax.plot(x, e, "o-", color="tab:blue", markersize=4, label="entropy")
    ax.set_xlabel("k (number of clusters)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("entropy")
    ax.grid(True, alpha=0.3)
    if extra:
        ax2 = ax.twinx()
        colours = {"NMI": "tab:green", "ARI": "tab:orange"}
        for name, v in extra.items():
            handles += ax2.plot(x, v, "s--", color=colours[name], markersize=3, label=name)
        ax2.set_ylabel("score")
    if chosen_k is not None:
        handles.append(ax.axvline(chosen_k, color="tab:red", linestyle=":", label=f"chosen k = {chosen_k}"))
    if minimum_k is not None and minimum_k != chosen_k:
        handles.append(ax.axvline(minimum_k, color="tab:gray", linestyle=":",
                                  label=f"lowest score at k = {minimum_k} (a tie)"))
    ax.legend(handles=handles, loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save_atomic(fig, out_png)


# --------------------------------------------------------------------------- #
# latent map
# --------------------------------------------------------------------------- #
def save_latent_map(
    Z: Any,
    labels: Any,
    out_png: PathLike,
    title: str | None = None,
    seed: int = 0,
) -> Path:
    """2-D PCA scatter of latent codes coloured by label.

    Args:
        Z: latent codes, shape ``[N, d]`` (``d > 2`` is projected with sklearn
            PCA; ``d = 2`` is plotted as is; ``d = 1`` is plotted against 0).
        labels: label per point, shape ``[N]`` (or None for a single colour).
        out_png: output PNG path.
        title: optional title.
        seed: PCA random state.

    Returns:
        The output path.
    """
    z = np.asarray(Z, dtype=float)
    if z.ndim != 2 or z.shape[0] == 0:
        raise ValueError(f"Z must be a non-empty array of shape [N, d], got {z.shape}")
    if not np.all(np.isfinite(z)):
        raise ValueError("Z contains NaN or infinite values")
    lab = None
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape[0] != z.shape[0]:
            raise ValueError(f"labels has {lab.shape[0]} entries for {z.shape[0]} points: lengths differ")

    if z.shape[1] > 2 and z.shape[0] >= 2:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(z)
        axis_names = ("PC 1", "PC 2")
    elif z.shape[1] >= 2:
        xy = z[:, :2]
        axis_names = ("z 1", "z 2")
    else:
        xy = np.column_stack([z[:, 0], np.zeros(z.shape[0])])
        axis_names = ("z 1", "")

    fig = _new_figure((6.0, 5.0))
    ax = fig.add_subplot(1, 1, 1)
    size = max(2.0, min(20.0, 4000.0 / z.shape[0]))
    if lab is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7)
    else:
        uniq = np.unique(lab)
        if uniq.size <= 20:
            import matplotlib as mpl

            cmap = mpl.colormaps["tab10" if uniq.size <= 10 else "tab20"]
            for i, u in enumerate(uniq):
                sel = lab == u
                ax.scatter(xy[sel, 0], xy[sel, 1], s=size, alpha=0.7, color=cmap(i), label=str(u))
            ax.legend(fontsize=7, markerscale=2, loc="best", ncol=2 if uniq.size > 10 else 1)
        else:
            codes = np.searchsorted(uniq, lab)
            sc = ax.scatter(xy[:, 0], xy[:, 1], s=size, alpha=0.7, c=codes, cmap="viridis")
            fig.colorbar(sc, ax=ax, label="label index")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save_atomic(fig, out_png)


# --------------------------------------------------------------------------- #
# model comparison (the paper's Figure 1)
# --------------------------------------------------------------------------- #
COMPARISON_PANELS = (
    ("fd_unconditional", "unconditional_coherence", "Unconditional generation", "unconditional samples"),
    ("fd_conditional", "conditional_coherence", "Conditional generation", "samples from the other modalities"),
)


def save_coherence_quality_figure(
    points: Sequence[Mapping[str, Any]],
    out_png: PathLike,
    *,
    fd_name: str = "FD (classifier features)",
    title: str | None = None,
) -> Path:
    """Two panels, coherence (y) against sample quality (x): unconditional coherence vs the FD of
    unconditional samples, and conditional coherence vs the FD of conditionally generated samples.

    Args:
        points: one mapping per trained model (e.g. per model and seed) with ``"model"`` (legend
            name; one colour per model) and the float keys ``unconditional_coherence``,
            ``conditional_coherence``, ``fd_unconditional``, ``fd_conditional``. Models with several
            points also get their mean drawn as a large cross.
        out_png: output PNG path (1100 x 450 pixels).
        fd_name: how the x-axes name the distance (lower is better).
        title: optional figure title.
    """
    if not points:
        raise ValueError("points is empty: nothing to plot")
    keys = [k for panel in COMPARISON_PANELS for k in panel[:2]]
    for i, p in enumerate(points):
        missing = [k for k in ("model", *keys) if k not in p]
        if missing:
            raise ValueError(f"points[{i}] lacks {', '.join(missing)}")
    models = list(dict.fromkeys(str(p["model"]) for p in points))
    colours = {m: f"C{i % 10}" for i, m in enumerate(models)}
    fig = _new_figure((11.0, 4.5))
    for col, (x_key, y_key, panel_title, what) in enumerate(COMPARISON_PANELS):
        ax = fig.add_subplot(1, 2, col + 1)
        for m in models:
            xs = np.array([float(p[x_key]) for p in points if str(p["model"]) == m])
            ys = np.array([float(p[y_key]) for p in points if str(p["model"]) == m])
            ax.scatter(xs, ys, color=colours[m], s=36, alpha=0.8, label=m, edgecolors="none")
            if xs.size > 1:
                ax.scatter([xs.mean()], [ys.mean()], color=colours[m], s=120, marker="X", edgecolors="black",
                           linewidths=0.6)
        ax.set_xlabel(f"{fd_name} of {what}\n(lower is better)")
        ax.set_ylabel(f"{y_key.replace('_', ' ')} (higher is better)")
        ax.set_title(panel_title)
        ax.grid(True, alpha=0.3)
        ax.margins(0.12)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        lo, hi = ax.get_ylim()
        ax.set_ylim(max(lo, -0.02), min(hi, 1.02))  # coherence is a fraction
        if col == 1:
            ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save_atomic(fig, out_png)


# --------------------------------------------------------------------------- #
# scores against a count
# --------------------------------------------------------------------------- #
def save_score_curve(
    xs: Sequence[float],
    series: Mapping[str, tuple[Sequence[float], Sequence[float] | None]],
    out_png: PathLike,
    *,
    xlabel: str,
    ylabel: str = "score",
    title: str | None = None,
) -> Path:
    """One line per score against ``xs`` (e.g. NMI/ARI/ACC against the number of observed modalities).

    Args:
        xs: x positions, shape ``[X]`` (integers are labelled as such).
        series: ``{name: (means [X], spreads [X] or None)}``; a spread is drawn as a band mean +- spread.
        out_png: output PNG path (600 x 400 pixels).
        xlabel, ylabel, title: axis labels and an optional title.
    """
    x = np.asarray(xs, dtype=float).reshape(-1)
    if x.size == 0 or not series:
        raise ValueError("xs and series must not be empty")
    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, (means, spreads)) in enumerate(series.items()):
        m = np.asarray(means, dtype=float).reshape(-1)
        if m.shape != x.shape:
            raise ValueError(f"series {name!r} has {m.size} values for {x.size} xs: lengths differ")
        ax.plot(x, m, "o-", color=f"C{i}", markersize=4, label=name)
        if spreads is not None:
            s = np.asarray(spreads, dtype=float).reshape(-1)
            if s.shape != x.shape:
                raise ValueError(f"spreads of {name!r} have {s.size} values for {x.size} xs: lengths differ")
            ax.fill_between(x, m - s, m + s, color=f"C{i}", alpha=0.15, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save_atomic(fig, out_png)
