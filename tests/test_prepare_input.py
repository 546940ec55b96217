"""The one way in for user data (:func:`cmvae.inputs.prepare_input`): what it returns, the errors it
gives, and that every public method that takes data goes through it exactly once per data argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmvae import CMVAE, MMVAE, DataValidationError, MoPoE
from cmvae.clustering_baselines import CMC
from cmvae.data import ArrayDataset
from cmvae.estimator import base as estimator_base
from cmvae import clustering_baselines
from cmvae.inputs import Input, TrainingRules, prepare_input
from cmvae.schema import DataSchema
from test_saving import TINY, fitted, tiny_views  # noqa: F401 (fitted: a fixture)


def schema_of(views) -> DataSchema:
    return DataSchema.infer(prepare_input(views, training=TrainingRules("CMVAE")).tensors)


# ------------------------------------------------------------------------------ what it returns


def test_fully_observed_views_become_one_checked_input():
    views = tiny_views(10)
    data = prepare_input(views, schema=schema_of(views))
    assert isinstance(data, Input) and data.complete and data.mask is None
    assert (data.n_samples, data.n_modalities, data.given) == (10, 2, [0, 1])
    assert data.observed.shape == (10, 2) and bool(data.observed.all())
    assert all(torch.equal(t, torch.as_tensor(x)) for t, x in zip(data.tensors, views))
    batch = data.model_input(2, 5)
    assert [tuple(t.shape) for t in batch] == [(3, 3), (3, 2)]  # standardised rows 2..4


def test_none_and_mask_mark_holes():
    views = tiny_views(6)
    schema = schema_of(views)
    data = prepare_input([views[0], None], schema=schema)
    assert not data.complete and data.given == [0] and data.views[1] is None
    assert data.observed[:, 1].sum() == 0 and data.mask is data.observed
    assert data.model_input(0, 4)[1] is None and data.model_input(0, 4)[0].shape == (4, 3)
    mask = np.ones((6, 2), bool)
    mask[0, 1] = False
    holes = [views[0], views[1].copy()]
    holes[1][0] = np.nan  # a placeholder at a masked-out entry
    data = prepare_input(holes, mask, schema=schema)
    assert torch.equal(data.observed, torch.as_tensor(mask)) and bool(torch.isfinite(data.views[1]).all())
    with pytest.raises(ValueError, match="given as None"):
        prepare_input([views[0], None], schema=schema).tensors


def test_a_dataset_brings_its_views_and_its_mask():
    views = tiny_views(8)
    mask = np.ones((8, 2), bool)
    mask[3, 0] = False
    data = prepare_input(ArrayDataset(views, mask=mask), schema=schema_of(views))
    assert data.observed[3, 0].item() is False and data.n_samples == 8


def test_array_likes_and_integer_arrays_are_accepted():
    class Frame:  # what a pandas DataFrame offers numpy
        def __init__(self, values):
            self.values = values

        def __array__(self, dtype=None, copy=None):
            return self.values

    views = [Frame(np.arange(12.0).reshape(4, 3)), np.arange(8).reshape(4, 2).tolist()]
    data = prepare_input(views)
    assert [t.dtype for t in data.tensors] == [torch.float64, torch.float32]


def test_unimodal_models_read_one_modality_and_its_mask_column():
    views = tiny_views(5)
    mask = np.ones((5, 2), bool)
    mask[:, 1] = False  # holes elsewhere do not matter to a model of modality 0
    data = prepare_input(views, mask, training=TrainingRules("VaDE", min_modalities=1), modality=0)
    assert data.n_modalities == 1 and data.complete


# -------------------------------------------------------------------------------- the errors


@pytest.mark.parametrize("views, message", [
    ("data.npz", r"views must be a list with one array per modality .*got the path 'data.npz'"),
    (np.zeros((4, 3)), "views must be a list with one array per modality .*got ndarray"),
    ({"a": np.zeros((4, 3))}, "views must be a list with one array per modality .*got dict"),
    ([np.zeros((4, 3))], "views needs at least 2 modalities, got 1"),
    ([np.zeros((4, 3)), np.zeros((5, 2))], r"modalities have different numbers of samples \[4, 5\]"),
    ([np.zeros((4, 3)), np.array([["a", "b"]] * 4)], r"views\[1\] holds strings"),
    ([np.zeros((4, 3)), np.zeros((4, 2, 2))], r"views\[1\] has shape \[4, 2, 2\]"),
    ([np.zeros((4, 3)), np.full((4, 2), np.nan)], r"views\[1\] contains 8 NaN/inf values \(first in sample 0\)"),
    ([np.zeros((4, 3)), np.zeros((4, 2), bool)], r"views\[1\] holds booleans"),
])
def test_training_input_errors_name_the_argument(views, message):
    with pytest.raises(DataValidationError, match=message):
        prepare_input(views, training=TrainingRules("CMVAE"))


def test_training_errors_name_val_views():
    with pytest.raises(DataValidationError, match=r"val_views\[0\] contains 1 NaN"):
        prepare_input([np.array([[np.nan]]), np.zeros((1, 2))], training=TrainingRules("CMVAE"), name="val_views")


def test_holes_need_a_model_that_trains_on_them():
    views = tiny_views(6)
    mask = np.ones((6, 2), bool)
    mask[0, 0] = False
    with pytest.raises(DataValidationError, match="MoPoE trains on fully observed samples only"):
        prepare_input(views, mask, training=TrainingRules("MoPoE"))
    with pytest.raises(DataValidationError, match="MoPoE trains on fully observed samples only"):
        prepare_input([views[0], None], training=TrainingRules("MoPoE"))
    data = prepare_input(views, mask, training=TrainingRules("CMVAE", partial_training=True))
    assert data.mask is not None and data.mask[0, 0].item() is False
    with pytest.raises(DataValidationError, match=r"mask must have shape \[N, M\] = \[6, 2\]"):
        prepare_input(views, mask[:, :1], training=TrainingRules("CMVAE", partial_training=True))
    with pytest.raises(DataValidationError, match=r"mask must be boolean"):
        prepare_input(views, mask.astype(np.float32), training=TrainingRules("CMVAE", partial_training=True))


def test_inference_errors_name_the_modality():
    views = tiny_views(6)
    schema = schema_of(views)
    with pytest.raises(DataValidationError, match=r"expected 2 modalities \(as at fit\), got 3"):
        prepare_input([*views, views[0]], schema=schema)
    with pytest.raises(DataValidationError, match=r"modality 1: per-sample shape \[3\] does not match the fitted \[2\]"):
        prepare_input([views[0], views[0]], schema=schema)
    # with holes (or each_modality, as generate): each given modality on its own
    with_nan = views[0].copy()
    with_nan[4, 1] = np.nan
    with pytest.raises(DataValidationError, match=r"modality 0: the array contains 1 NaN/inf values \(first in sample 4\)"):
        prepare_input([with_nan, None], schema=schema)
    with pytest.raises(DataValidationError, match=r"different numbers of samples modality 0: 6, modality 1: 5"):
        prepare_input([views[0], views[1][:5]], schema=schema, each_modality=True)
    with pytest.raises(DataValidationError, match="one entry per modality"):
        prepare_input([views[0]], schema=schema, each_modality=True)
    with pytest.raises(DataValidationError, match="every entry of views is None"):
        prepare_input([None, None], schema=schema)
    with pytest.raises(DataValidationError, match=r"views\[1\] is None; every modality must be observed here"):
        prepare_input([views[0], None], schema=schema, missing=False)


# ------------------------------------------------------------------ every public method, once


@pytest.fixture
def count_calls(monkeypatch):
    """Counts the calls of prepare_input made by the estimators (both places that call it)."""
    calls: list[str] = []

    def counting(views, *args, **kwargs):
        calls.append(kwargs.get("name", "views"))
        return prepare_input(views, *args, **kwargs)

    monkeypatch.setattr(estimator_base, "prepare_input", counting)
    monkeypatch.setattr(clustering_baselines, "prepare_input", counting)
    return calls


@pytest.mark.parametrize("method, call, expected", [
    ("predict", lambda m, v: m.predict(v), 1),
    ("predict_proba", lambda m, v: m.predict_proba(v), 1),
    ("transform", lambda m, v: m.transform(v), 1),
    ("encode", lambda m, v: m.encode(v), 1),
    ("score", lambda m, v: m.score(v, np.arange(32) % 2), 1),
    ("cluster_log_posteriors", lambda m, v: m.cluster_log_posteriors(v), 1),
    ("cluster_log_likelihoods", lambda m, v: m.cluster_log_likelihoods(v), 1),
    ("generate", lambda m, v: m.generate([v[0], None]), 1),
    ("select_clusters", lambda m, v: m.select_clusters(v), 1),
    ("select_clusters with eval_views", lambda m, v: m.select_clusters(v, eval_views=v, eval_labels=np.arange(32) % 2), 2),
    ("predict with a mask", lambda m, v: m.predict(v, mask=np.ones((32, 2), bool)), 1),
])
def test_every_inference_method_prepares_its_data_once(fitted, count_calls, method, call, expected):
    call(fitted, tiny_views())
    assert len(count_calls) == expected, method


def test_fit_prepares_each_data_argument_once(count_calls):
    views = tiny_views()
    CMVAE(**TINY).fit(views, val_views=views, val_labels=np.arange(32) % 2)
    assert count_calls == ["views", "val_views"]


@pytest.mark.parametrize("klass, options", [(MoPoE, {}), (MMVAE, {"n_samples": 1, "estimator": "elbo"}),
                                            (CMC, {"epochs": 1})])
def test_baselines_prepare_their_data_once(count_calls, klass, options):
    keys = ("n_clusters", "shared_dim", "epochs", "batch_size", "progress", "accelerator", "seed")
    model = klass(**{**{k: TINY[k] for k in keys}, **options}).fit(tiny_views())
    assert len(count_calls) == 1
    model.predict(tiny_views())
    model.transform(tiny_views())
    assert len(count_calls) == 3
