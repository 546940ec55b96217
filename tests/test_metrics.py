"""Tests for cmvae.metrics.clustering."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from cmvae.metrics import (
    clustering_accuracy,
    clustering_scores,
    format_scores_table,
    hungarian_mapping,
    kmeans_baseline,
    print_scores_table,
    scores_to_markdown,
)


def test_accuracy_permuted_cluster_ids_is_one():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([7, 7, 3, 3, 5, 5, 5])  # same partition, arbitrary ids
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(1.0)
    assert hungarian_mapping(y_true, y_pred) == {7: 0, 3: 1, 5: 2}


def test_accuracy_partial_hand_computed():
    # classes:   0 0 0 0 1 1 1 1
    # clusters:  1 1 1 0 0 0 0 1
    # contingency (class x cluster): [[1, 3], [3, 1]] -> best: 0->1, 1->0: 6/8
    y_true = [0, 0, 0, 0, 1, 1, 1, 1]
    y_pred = [1, 1, 1, 0, 0, 0, 0, 1]
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(0.75)
    assert hungarian_mapping(y_true, y_pred) == {1: 0, 0: 1}


def test_accuracy_not_fooled_by_majority_vote():
    # Majority vote would label both clusters as their majority class (5/6);
    # a one-to-one matching must not.
    y_true = [0, 0, 0, 0, 1, 1]
    y_pred = [0, 0, 1, 1, 1, 1]
    # contingency [[2, 2], [0, 2]] -> best 1-to-1: 0->0 (2) + 1->1 (2) = 4/6
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_more_clusters_than_classes():
    # 2 classes, 4 clusters, each class split in two equal halves:
    # only 2 clusters can be matched -> half the samples are errors.
    y_true = np.array([0] * 4 + [1] * 4)
    y_pred = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(0.5)
    mapping = hungarian_mapping(y_true, y_pred)
    assert len(mapping) == 2
    assert sorted(mapping.values()) == [0, 1]
    assert set(mapping) <= {0, 1, 2, 3}
    # 40 clusters vs 10 classes, pure clusters of equal size: acc = 10/40
    rng = np.random.default_rng(0)
    clusters = rng.permutation(np.repeat(np.arange(40), 5))
    classes = clusters % 10
    assert clustering_accuracy(classes, clusters) == pytest.approx(0.25)


def test_fewer_clusters_than_classes():
    y_true = [0, 1, 2, 3]
    y_pred = [0, 0, 0, 0]
    assert clustering_accuracy(y_true, y_pred) == pytest.approx(0.25)


def test_scores_match_sklearn():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 5, size=300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 7, size=300))
    s = clustering_scores(y_true, y_pred)
    assert set(s) == {"nmi", "ari", "acc", "n_clusters_used"}
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred))
    assert s["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred))
    assert s["acc"] == pytest.approx(clustering_accuracy(y_true, y_pred))
    assert s["n_clusters_used"] == len(np.unique(y_pred))
    assert 0.5 < s["acc"] < 1.0


def test_validation_errors():
    with pytest.raises(ValueError, match="different lengths"):
        clustering_accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        clustering_scores([], [])
    with pytest.raises(ValueError, match="1-D"):
        clustering_accuracy(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="1-D"):
        hungarian_mapping(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="NaN"):
        clustering_accuracy([0.0, np.nan], [0, 1])


def _blobs(n_per: int = 60, n_classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    centres_a = rng.normal(0, 8.0, size=(n_classes, 2, 6, 6))
    centres_b = rng.normal(0, 8.0, size=(n_classes, 40))
    va = centres_a[y] + rng.normal(0, 1.0, size=(len(y), 2, 6, 6))  # [N, 2, 6, 6]
    vb = centres_b[y] + rng.normal(0, 1.0, size=(len(y), 40))  # [N, 40]
    perm = rng.permutation(len(y))
    return [va[perm], vb[perm]], y[perm]


def test_kmeans_baseline_separated_blobs():
    views, y = _blobs()
    s = kmeans_baseline(views, y, n_clusters=4, seed=0, pca_dim=10)
    assert s["nmi"] > 0.9
    assert s["acc"] > 0.9
    assert s["n_clusters_used"] == 4
    # deterministic given the seed
    assert kmeans_baseline(views, y, n_clusters=4, seed=0, pca_dim=10) == s
    # PCA skipped (features <= pca_dim) also works
    s2 = kmeans_baseline(views, y, n_clusters=4, seed=0, pca_dim=500)
    assert s2["nmi"] > 0.9


def test_kmeans_baseline_uint8_and_subsample():
    views, y = _blobs(n_per=50)
    img = np.clip((views[0] - views[0].min()) / np.ptp(views[0]) * 255, 0, 255).astype(np.uint8)
    s = kmeans_baseline([img, views[1]], y, n_clusters=4, max_samples=120, pca_dim=8)
    assert s["nmi"] > 0.9
    # subsampling really happens: 4 clusters cannot fit 3 sampled points
    with pytest.raises(ValueError, match=r"exceeds the number of samples \(3\)"):
        kmeans_baseline(views, y, n_clusters=4, max_samples=3)


def test_kmeans_baseline_validation():
    views, y = _blobs(n_per=10)
    with pytest.raises(ValueError, match="lengths differ"):
        kmeans_baseline([views[0], views[1][:-1]], y, n_clusters=4)
    with pytest.raises(ValueError, match="lengths differ"):
        kmeans_baseline(views, y[:-1], n_clusters=4)
    with pytest.raises(ValueError, match="views is empty"):
        kmeans_baseline([], y, n_clusters=4)
    with pytest.raises(ValueError, match="1-D"):
        kmeans_baseline(views, y[:, None], n_clusters=4)
    bad = views[1].copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match=r"views\[1\].*NaN"):
        kmeans_baseline([views[0], bad], y, n_clusters=4)
    with pytest.raises(ValueError, match="empty"):
        kmeans_baseline([np.zeros((0, 3))], np.zeros(0), n_clusters=2)


def test_format_scores_table():
    rows = {
        "kmeans": {"nmi": 0.51234, "ari": 0.4, "acc": 0.6, "n_clusters_used": 10},
        "cmvae": {"nmi": 0.9, "ari": 0.85},
    }
    txt = format_scores_table(rows)
    lines = txt.splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["method", "NMI", "ARI", "ACC"]
    assert set(lines[1]) <= set("|:-")
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["kmeans", "0.512", "0.400", "0.600"]
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["cmvae", "0.900", "0.850", "-"]
    # all lines padded to the same width
    assert len({len(line) for line in lines}) == 1
    assert scores_to_markdown(rows) == txt
    extra = format_scores_table(rows, columns=[("n_clusters_used", "#clusters")]).splitlines()
    assert [c.strip() for c in extra[2].strip("|").split("|")] == ["kmeans", "10"]
    assert [c.strip() for c in extra[3].strip("|").split("|")] == ["cmvae", "-"]


def test_print_scores_table():
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=False, color_system=None)
    table = print_scores_table({"kmeans": {"nmi": 0.5, "ari": 0.25, "acc": 0.75}}, "My scores", console=console)
    out = buf.getvalue()
    assert "My scores" in out
    assert "kmeans" in out and "0.500" in out and "0.250" in out and "0.750" in out
    assert table.row_count == 1
