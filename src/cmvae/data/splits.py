"""Shared accessors of datasets made of a ``train`` and a ``test`` split."""

from __future__ import annotations

from typing import Any

import numpy as np


class TrainTestViews:
    """``train_views``/``train_labels``/``test_views``/``test_labels`` read from ``self.train`` and
    ``self.test`` (objects with ``views``: list of M arrays ``[N, ...]`` and ``labels``: int64 ``[N]``)."""

    train: Any
    test: Any

    @property
    def train_views(self) -> list[np.ndarray]:
        """M arrays ``[N_train, ...]``."""
        return self.train.views

    @property
    def train_labels(self) -> np.ndarray:
        """int64 ``[N_train]``."""
        return self.train.labels

    @property
    def test_views(self) -> list[np.ndarray]:
        """M arrays ``[N_test, ...]``."""
        return self.test.views

    @property
    def test_labels(self) -> np.ndarray:
        """int64 ``[N_test]``."""
        return self.test.labels
