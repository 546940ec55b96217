"""Clustering diagnostics over training: the model's clusters vs the structure of its latent.

    python benchmarks/clustering_diagnostics.py NAME --data polymnist-small --seeds 0 1 2 \
        [--set '{"beta": 1.0}'] [--config polymnist_cpu] [--threads 1] [--accelerator gpu]

Trains CMVAE (from a packaged/YAML config's model and training sections, then ``--set``
overrides) on one of the data sets below and records after every epoch, on the held-out split,
everything :func:`cmvae.diagnostics.latent_diagnostics` measures (the model's NMI/ARI, k-means
on the mixture means, k-means with a vote over the unimodal codes, the variance shares of
modality and class, clusters used, entropy of pi), the held-out bound (``val_bound``), k-means on
the mixture means of 2,000 *training* tuples (``train_kmeans_mean_nmi``: below the held-out value when
the encoders memorise the training tuples; ``train_kmeans_r2``: its share of the variance explained, beside the
held-out ``kmeans_r2``, the same without labels), with ``cluster_init_when="plateau"`` the bound on the training
rows held out of the steps (``held_out_bound``), the mean and largest L2 norm of the training gradient before any
clipping (``grad_norm``, ``grad_norm_max``) and the training wall time. Rows go to ``OUT/NAME.csv``;
``--plot`` draws every CSV in OUT as curves against CPU-minutes (PNG).

Data sets (all offline):

* ``polymnist``: the quickstart's PolyMNIST (5 modalities, 28x28, 8,000 / 2,000 tuples);
* ``polymnist-small``: its first 3 modalities average-pooled to 14x14 (a 10x cheaper proxy);
* ``polymnist-other``: a Poly-X built from the same digits on three *other* backgrounds
  (scikit-image's rocket, motorcycle and retina), 3 modalities, 14x14;
* ``digits-views``: scikit-learn's 8x8 digits as 3 tabular views of different sizes (top half
  rows 32 features, bottom half 32, a 4x4 pooled copy with noise 16), 1,197 / 600 samples;
* ``blobs``: 4 well-separated clusters seen through 3 noisy views of 10 / 20 / 5 features.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch

from cmvae import CMVAE

HERE = Path(__file__).resolve().parent


def _pool(views: list[np.ndarray], n_modalities: int) -> list[np.ndarray]:
    """First ``n_modalities`` uint8 image views ``[N, C, 28, 28]`` average-pooled to 14x14 (uint8)."""
    out = []
    for v in views[:n_modalities]:
        t = torch.nn.functional.avg_pool2d(torch.as_tensor(v).float(), 2)
        out.append(t.round().clamp(0, 255).to(torch.uint8).numpy())
    return out


def load(name: str, seed: int = 0) -> tuple[list, np.ndarray, list, np.ndarray]:
    """(train views, train labels, test views, test labels) of a named data set."""
    if name.startswith("polymnist"):
        from cmvae.data import build_polymnist

        kwargs = {}
        if name == "polymnist-other":
            kwargs.update(backgrounds=["rocket", "motorcycle_left", "retina"], n_modalities=3)
        ds = build_polymnist(seed=0, **kwargs)
        if name == "polymnist":
            return ds.train_views, ds.train_labels, ds.test_views, ds.test_labels
        return _pool(ds.train_views, 3), ds.train_labels, _pool(ds.test_views, 3), ds.test_labels
    rng = np.random.default_rng(seed)
    if name == "digits-views":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, y = digits.images.astype(np.float32), digits.target
        pooled = images.reshape(-1, 4, 2, 4, 2).mean((2, 4)).reshape(-1, 16)
        views = [images[:, :4].reshape(-1, 32), images[:, 4:].reshape(-1, 32),
                 pooled + rng.normal(0, 2.0, pooled.shape).astype(np.float32)]
    elif name == "blobs":
        n, k = 1800, 4
        y = rng.permutation(np.arange(n) % k)
        views = []
        for d in (10, 20, 5):
            centres = rng.normal(0, 0.6, (k, d))
            views.append((centres[y] + rng.normal(0, 1.0, (n, d))).astype(np.float32))
    else:
        raise SystemExit(f"unknown data set {name!r}")
    order = rng.permutation(len(y))
    test, train = order[: len(y) // 3], order[len(y) // 3 :]
    return [v[train] for v in views], y[train], [v[test] for v in views], y[test]


class Clock(L.Callback):
    """Training wall time (seconds, validation and diagnostics excluded) at each epoch's end; each
    epoch's row (time and the ``val/...`` diagnostics) is appended to ``csv_path`` at once, so a run
    that is stopped keeps the epochs it finished."""

    def __init__(self, csv_path: Path, name: str, data: str, seed: int,
                 train_check: tuple[CMVAE, list, np.ndarray] | None = None) -> None:
        self.elapsed, self.times = 0.0, []
        self.csv_path, self.head = csv_path, {"name": name, "data": data, "seed": seed}
        self.train_check = train_check

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_validation_start(self, trainer, pl_module) -> None:
        self.elapsed += time.perf_counter() - self.start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.times.append(self.elapsed)
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {**self.head, "epoch": trainer.current_epoch + 1, "minutes": self.elapsed / 60}
        row.update({k[4:]: v for k, v in sorted(m.items()) if k.startswith("val/") and k != "val/bound"})
        if "val/bound" in m:
            row["val_bound"] = m["val/bound"]
        if "held_out/bound" in m:  # cluster_init_when="plateau": the bound on the rows held out of training
            row["held_out_bound"] = m["held_out/bound"]
        for key in ("grad_norm", "grad_norm_max"):  # the training gradient's L2 norm before clipping: mean, max
            if f"train/{key}" in m:
                row[key] = m[f"train/{key}"]
        if self.train_check is not None:
            nmi, r2 = train_kmeans_scores(pl_module, *self.train_check, seed=self.head["seed"])
            row["train_kmeans_mean_nmi"], row["train_kmeans_r2"] = nmi, r2
        append_row(self.csv_path, row)
        print(f"  {self.head['name']} seed {self.head['seed']} epoch {trainer.current_epoch + 1} {self.elapsed / 60:.1f} min: "
              f"NMI {m.get('val/nmi', float('nan')):.3f} k-means {m.get('val/kmeans_mean_nmi', float('nan')):.3f} "
              f"vote-k-means {m.get('val/kmeans_vote_nmi', float('nan')):.3f} "
              f"modality share {m.get('val/modality_share', float('nan')):.2f} "
              f"used {m.get('val/clusters_used', float('nan')):.0f}", flush=True)


def train_kmeans_scores(pl_module, model: CMVAE, views: list, labels: np.ndarray, seed: int) -> tuple[float, float]:
    """(NMI, share of the variance explained) of k-means on the mixture means of training ``views`` (a fixed
    subsample): set beside the test split's ``kmeans_mean_nmi`` / ``kmeans_r2``, lower values show codes that hold
    more than the clusters on the data they were trained on (memorised tuples); the second needs no labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from cmvae.callbacks import _mixture_means

    tensors = [torch.as_tensor(v) for v in views]
    codes = _mixture_means(model.module_, model.schema_, tensors, pl_module.device).double().numpy()
    k = len(np.unique(labels))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(codes)
    total = float(((codes - codes.mean(0)) ** 2).sum())
    r2 = 1.0 - float(km.inertia_) / total if total > 0 else 0.0
    return float(normalized_mutual_info_score(labels, km.labels_)), r2


def append_row(path: Path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path``; a new column rewrites the file with the wider header."""
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    keys = list(rows[0].keys()) if rows else []
    if set(row) - set(keys) or not path.exists():
        keys += [k for k in row if k not in keys]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows + [row])
        return
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=keys).writerow(row)


def run(name: str, data: str, seed: int, params: dict, out: Path, accelerator: str = "cpu") -> dict:
    """Train one seed, appending each epoch's row to ``OUT/NAME.csv``; returns the final test scores."""
    train, y_train, test, y_test = load(data, seed)
    model = CMVAE(**{**params, "seed": seed, "progress": False, "accelerator": accelerator})
    pick = np.random.default_rng(seed).permutation(len(y_train))[:2000]
    clock = Clock(out / f"{name}.csv", name, data, seed, train_check=(model, [v[pick] for v in train], y_train[pick]))
    model.fit(train, val_views=test, val_labels=y_test, callbacks=[clock])
    final = model.score(test, y_test)
    print(f"{name} seed {seed}: final NMI {final['nmi']:.3f} ARI {final['ari']:.3f} in {clock.times[-1] / 60:.1f} min",
          flush=True)
    return final


def params_from(config: str | None, overrides: dict) -> dict:
    params: dict = {}
    if config:
        from cmvae.config import load_config

        path = Path(config)
        if not path.exists():  # a packaged config name
            path = Path(__file__).resolve().parents[1] / "src" / "cmvae" / "configs" / f"{config}.yaml"
        params.update(load_config(path).estimator_kwargs())
    params.update(overrides)
    return params


def plot(out: Path, x: str = "minutes") -> Path:
    """Curves of every CSV in ``out`` against ``x`` (``minutes`` of training or ``epoch``); returns the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for f in sorted(out.glob("*.csv")):
        rows += list(csv.DictReader(f.open()))
    for r in rows:  # runs of seed_study.py are named SETTING_sSEED: one colour per setting
        r["name"] = re.sub(r"_s\d+$", "", r["name"])
    datasets = sorted({r["data"] for r in rows})
    metrics = [("nmi", "model's clusters (NMI)"), ("kmeans_mean_nmi", "k-means on its latent (NMI; dashed: train)"),
               ("modality_share", "z_m variance share: modality"), ("clusters_used", "clusters used")]
    fig, axes = plt.subplots(len(datasets), len(metrics), figsize=(4.2 * len(metrics), 3.2 * len(datasets)),
                             squeeze=False)
    names = sorted({r["name"] for r in rows})
    colours = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    for i, data in enumerate(datasets):
        for j, (key, title) in enumerate(metrics):
            ax = axes[i, j]
            for name in names:
                seeds = sorted({r["seed"] for r in rows if r["name"] == name and r["data"] == data})
                for seed in seeds:
                    sel = [r for r in rows if r["name"] == name and r["data"] == data and r["seed"] == seed and r.get(key)]
                    if sel:
                        ax.plot([float(r[x]) for r in sel], [float(r[key]) for r in sel], color=colours[name],
                                alpha=0.8, label=name if seed == seeds[0] else None)
                    train = [r for r in sel if key == "kmeans_mean_nmi" and r.get("train_kmeans_mean_nmi")]
                    if train:  # the same on training tuples: dashed
                        ax.plot([float(r[x]) for r in train], [float(r["train_kmeans_mean_nmi"]) for r in train],
                                color=colours[name], alpha=0.8, linestyle="--")
            ax.set_title(f"{data}: {title}", fontsize=9)
            ax.set_xlabel("training CPU-minutes" if x == "minutes" else x)
            ax.grid(alpha=0.3)
        axes[i, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = out / "clustering_diagnostics.png"
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?")
    parser.add_argument("--data", default="polymnist-small")
    parser.add_argument("--config", default=None, help="packaged config name or YAML path for the model settings")
    parser.add_argument("--set", default="{}", help="JSON dict of CMVAE parameters overriding the config")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto")
    parser.add_argument("--out", default=os.environ.get("OUT", "diagnostics"))
    parser.add_argument("--x", default="minutes", choices=("minutes", "epoch"), help="--plot: the x axis")
    parser.add_argument("--plot", action="store_true", help="only draw the curves of the CSVs in --out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.plot:
        print(plot(out, args.x))
        return
    if not args.name:
        parser.error("NAME is required unless --plot")
    torch.set_num_threads(args.threads)
    params = params_from(args.config, json.loads(args.set))
    (out / f"{args.name}.csv").unlink(missing_ok=True)  # this script's own output, rewritten per call
    finals = {seed: run(args.name, args.data, seed, params, out, args.accelerator) for seed in args.seeds}
    (out / f"{args.name}.final.json").write_text(json.dumps({str(k): v for k, v in finals.items()}, indent=1))
    print(" ".join(sys.argv), file=(out / f"{args.name}.cmd").open("w"))


if __name__ == "__main__":
    main()
