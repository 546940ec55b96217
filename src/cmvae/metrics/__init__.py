"""Evaluation metrics for clustering."""

from cmvae.metrics.clustering import (
    DEFAULT_SCORE_COLUMNS,
    clustering_accuracy,
    clustering_scores,
    format_scores_table,
    hungarian_mapping,
    kmeans_baseline,
    print_scores_table,
    scores_to_markdown,
)

__all__ = [
    "DEFAULT_SCORE_COLUMNS",
    "clustering_accuracy",
    "clustering_scores",
    "format_scores_table",
    "hungarian_mapping",
    "kmeans_baseline",
    "print_scores_table",
    "scores_to_markdown",
]
