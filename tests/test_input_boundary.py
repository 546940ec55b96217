"""The input boundary of the estimators (issue #12): every bad input is one clear error naming the
argument or modality, never a deep torch/numpy traceback and never a silently wrong result.

Regression tests for the defects of the issue, then property-based tests (hypothesis) that throw
arbitrary dtypes, shapes, lengths, NaN/inf and wrongly typed settings at the public API.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cmvae import CMVAE, DataValidationError, ParameterError
from test_saving import TINY, fitted, tiny_views  # noqa: F401 (fitted: a fixture)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                      HealthCheck.too_slow])
CLEAR_ERRORS = (DataValidationError, ParameterError)


def one_clear_line(err: BaseException, *needles: str) -> None:
    text = str(err)
    assert "\n" not in text and len(text) < 400, text
    assert any(n in text for n in needles), f"{text!r} names none of {needles}"


# ------------------------------------------------------------------ regressions (defects 5, 6, 7)
def test_seed_none_fits_with_a_drawn_seed():
    model = CMVAE(**{**TINY, "seed": None}).fit(tiny_views())
    assert isinstance(model.seed_, int) and model.predict(tiny_views()).shape == (32,)


@pytest.mark.parametrize(
    "name, value",
    [("n_clusters", 2.5), ("epochs", 1.5), ("lr", float("nan")), ("lr", float("inf")), ("lr", 3.4e37),
     ("lr_decay", 2.0), ("weight_decay", -0.1), ("weight_decay", "1e-4"), ("batch_size", "16"),
     ("shared_dim", True), ("beta", -1.0), ("likelihood", "poisson"), ("progress", "yes"), ("seed", -1), ("seed", 2**36),
     ("likelihood_scale", [0.5, float("nan")]), ("cluster_init_epoch", 0.5), ("max_time_minutes", 0),
     ("max_time_minutes", 1e12), ("gradient_clip_norm", 0.0), ("gradient_clip_norm", "1"),
     ("gradient_clip_norm", float("inf")), ("contrastive_warmup_epochs", -1), ("contrastive_warmup_epochs", 1.5),
     ("warmup_freeze_epochs", -2), ("contrastive_warmup_epochs", "sometimes"), ("warmup_freeze_epochs", True),
     ("contrastive_warmup_lr", 0.0), ("contrastive_warmup_lr", float("nan")),
     ("contrastive_warmup_lr", "1e-3"), ("early_stopping", "yes"), ("early_stopping", 1)],
)
def test_settings_are_type_checked_at_construction(name, value):
    with pytest.raises(ParameterError) as err:
        CMVAE(**{**TINY, name: value})
    one_clear_line(err.value, name)


def test_too_many_clusters_fail_before_training_and_leave_the_model_unfitted(tmp_path):
    model = CMVAE(**{**TINY, "n_clusters": 40})
    with pytest.raises(DataValidationError) as err:
        model.fit(tiny_views(), out_dir=tmp_path / "run")
    one_clear_line(err.value, "n_clusters=40")
    assert model.module_ is None and model.schema_ is None
    assert not (tmp_path / "run" / "checkpoints").exists()  # failed before any epoch


def test_networks_too_large_for_memory_are_a_parameter_error_naming_the_sizes(tmp_path):
    """A latent size far beyond this machine's memory (terabytes of weights) fails as one ParameterError
    naming the sizes, leaves the model unfitted and the output folder untouched."""
    for size in (10**9, 2**52):  # terabytes; a tensor size that overflows
        model = CMVAE(**{**TINY, "private_dim": size})
        with pytest.raises(ParameterError, match=rf"cannot be allocated .*private_dim={size}"):
            model.fit(tiny_views(), out_dir=tmp_path / "run")
        assert model.module_ is None and not (tmp_path / "run").exists()


def test_a_failed_refit_keeps_the_previous_fit(fitted):
    module = fitted.module_
    with pytest.raises(DataValidationError):
        fitted.fit([np.zeros((1, 3), np.float32), np.zeros((1, 2), np.float32)])
    assert fitted.module_ is module


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_without_cuda_is_a_clear_error():
    with pytest.raises(ParameterError, match="accelerator='gpu'"):
        CMVAE(**{**TINY, "accelerator": "gpu"}).fit(tiny_views())


def test_a_feature_constant_at_fit_is_centred_not_blown_up():
    views = tiny_views()
    views[0][:, 1] = 0.45
    model = CMVAE(**TINY).fit(views)
    drifted = [views[0].copy(), views[1]]
    drifted[0][:, 1] += 1e-3
    assert np.abs(model.transform(drifted) - model.transform(views)).max() < 0.05
    assert model.schema_.modalities[0].std[1] == 1.0


@pytest.mark.parametrize(
    "views, needle",
    [
        ("views.npz", "path 'views.npz'"),
        (lambda v: [v[0].astype(str), v[1]], "views[0] holds strings"),
        (lambda v: [v[0], v[1].astype(object)], "views[1] holds Python objects"),
        (lambda v: [v[0], [[1, 2], [3]] * 16], "views[1] is not a rectangular"),
    ],
)
def test_non_numeric_data_names_the_modality(views, needle):
    views = views(tiny_views()) if callable(views) else views
    with pytest.raises(DataValidationError) as err:
        CMVAE(**TINY).fit(views)
    one_clear_line(err.value, needle)


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda m, v: m.generate([v[0], None], targets=[1.7]), "targets"),
        (lambda m, v: m.generate([v[0], None], targets=1), "targets"),
        (lambda m, v: m.generate([v[0], None], targets=[True]), "targets"),
        (lambda m, v: m.sample(2, cluster=1.5), "cluster"),
        (lambda m, v: m.sample(2, cluster=7), "cluster"),
        (lambda m, v: m.sample(2.5), "n must"),
        (lambda m, v: m.sample_latents(2, seed="x"), "seed"),
    ],
)
def test_generation_arguments_are_checked(fitted, call, needle):
    with pytest.raises(ParameterError) as err:
        call(fitted, tiny_views())
    one_clear_line(err.value, needle)


def test_resume_refuses_changed_settings_and_fewer_epochs(tmp_path):
    views = tiny_views()
    CMVAE(**{**TINY, "epochs": 2}).fit(views, out_dir=tmp_path)
    with pytest.raises(ParameterError) as err:
        CMVAE(**{**TINY, "epochs": 3, "shared_dim": 3}).fit(views, out_dir=tmp_path, resume=True)
    one_clear_line(err.value, "does not fit the model")
    with pytest.raises(ParameterError) as err:
        CMVAE(**{**TINY, "epochs": 1}).fit(views, out_dir=tmp_path, resume=True)
    one_clear_line(err.value, "epochs=1 is below the 2 epochs")


# ------------------------------------------------------------------ property-based tests
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6), st.lists(st.integers(-1, 3), max_size=3), st.sampled_from(["gaussian", "light", "kmeans"]),
)
SETTINGS = ["n_clusters", "shared_dim", "private_dim", "epochs", "batch_size", "lr", "beta", "seed", "likelihood",
            "likelihood_scale", "latent_family", "estimator", "arch", "n_samples", "cluster_init", "progress",
            "cluster_init_epoch", "prior_mean_init_std", "max_time_minutes", "likelihood_weights"]


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(SETTINGS), value=ANY_VALUE)
def test_any_setting_is_accepted_or_refused_by_name(name, value):
    try:
        model = CMVAE(**{**TINY, name: value})
    except ParameterError as err:
        one_clear_line(err, name)
    else:
        assert model.get_params()[name] == value or (isinstance(value, float) and math.isnan(value))


DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.int8, np.uint8, np.bool_,
                          np.complex64, "U3", object])


def arrays(n: int, width: int):
    """Arrays of ``n`` rows: often the fitted shape ``[n, width]`` with float data (so that some calls
    succeed), else arbitrary dtypes, shapes (0-4 dimensions, zero-sized ones) and NaN/inf."""
    good_dtype = st.sampled_from([np.float32, np.float64])
    any_shape = st.lists(st.integers(0, 3), min_size=0, max_size=4).map(tuple)
    return st.builds(
        _array,
        st.one_of(good_dtype, good_dtype, DTYPES),
        st.one_of(st.just((n, width)), st.just((n, width)), any_shape, st.tuples(st.just(n), st.integers(0, 4))),
        st.sampled_from(["normal", "normal", "normal", "nan", "inf"]),
    )


def _array(dtype, shape, fill) -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    if fill != "normal" and x.size:
        x.flat[0] = np.nan if fill == "nan" else np.inf
    if dtype == "U3":
        return x.astype(str)
    if dtype is object:
        return x.astype(object)
    if np.dtype(dtype).kind in "iub":
        return np.nan_to_num(x, nan=0, posinf=1, neginf=-1).astype(dtype)
    return x.astype(dtype)


@st.composite
def paired(draw) -> list[np.ndarray]:
    """Two views, mostly with the same number of samples (sometimes not), of arbitrary dtype and shape."""
    n = draw(st.integers(0, 40))
    other = draw(st.sampled_from([n, n, n, draw(st.integers(0, 40))]))
    return [draw(arrays(n, 3)), draw(arrays(other, 2))]


@settings(FAST, max_examples=60)
@given(views=paired())
def test_predict_on_arbitrary_arrays_is_correct_or_one_clear_error(fitted, views):
    try:
        labels = fitted.predict(views)
    except CLEAR_ERRORS as err:
        one_clear_line(err, "views", "modality", "modalities")
    else:
        event("predicted")
        assert labels.shape == (views[0].shape[0],)
        assert np.isfinite(fitted.transform(views)).all()


@FAST
@given(views=paired())
def test_fit_on_arbitrary_arrays_is_correct_or_one_clear_error(views):
    model = CMVAE(**{**TINY, "n_clusters": 1})
    try:
        model.fit(views)
    except CLEAR_ERRORS as err:
        one_clear_line(err, "views", "modality", "n_clusters")
        assert model.module_ is None
    else:
        event("fitted")
        assert np.isfinite(model.transform(views)).all()


ARG = st.one_of(st.none(), st.booleans(), st.integers(-2, 4), st.floats(allow_nan=True), st.text(max_size=3),
                st.lists(st.one_of(st.integers(-1, 3), st.floats(-1, 3)), max_size=3))


@FAST
@given(targets=ARG, n=ARG, cluster=ARG, seed=ARG)
def test_generate_and_sample_arguments_are_correct_or_one_clear_error(fitted, targets, n, cluster, seed):
    views = tiny_views(4)
    try:
        out = fitted.generate([views[0], None], targets=targets)
    except ParameterError as err:
        one_clear_line(err, "targets")
    else:
        assert all((o is None) == (m not in (targets if targets is not None else [1])) for m, o in enumerate(out))
    try:
        samples = fitted.sample(n, cluster=cluster, seed=seed)
    except ParameterError as err:
        one_clear_line(err, "n ", "n must", "cluster", "seed")
    else:
        assert [s.shape for s in samples] == [(n, 3), (n, 2)]


def test_apply_selection_refuses_a_result_of_another_model(fitted):
    other = CMVAE(**{**TINY, "seed": 1}).fit(tiny_views(seed=1))
    result = other.select_clusters(tiny_views(seed=1))
    with pytest.raises(ParameterError) as err:
        fitted.apply_selection(result)
    one_clear_line(err.value, "another model")
    assert other.apply_selection(result) is other  # its own result applies
    with pytest.raises(ParameterError, match="SelectionResult"):
        fitted.apply_selection({"kept": [0]})
