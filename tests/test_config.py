"""Tests of cmvae.config: YAML run configs, their validation and the data they describe."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cmvae import CMVAE, DataValidationError
from cmvae.baselines import estimator_defaults as baseline_estimator_defaults
from cmvae.config import (
    BASELINE_ONLY_KEYS,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainingConfig,
    config_from_dict,
    dump_config,
    load_arrays,
    load_config,
    load_data,
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "src" / "cmvae" / "configs"


def write_yaml(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def estimator_defaults() -> dict:
    return baseline_estimator_defaults(CMVAE)


# ------------------------------------------------------------------ defaults in sync


def test_config_defaults_match_estimator_signature():
    defaults = estimator_defaults()
    config_fields = {
        **ModelConfig().model_dump(exclude={"type", *BASELINE_ONLY_KEYS}),  # the baselines' keys: test_baselines.py
        **TrainingConfig().model_dump(),
    }
    assert set(config_fields) == set(defaults), (
        "config fields and CMVAE parameters differ: "
        f"only in config {set(config_fields) - set(defaults)}, only in CMVAE {set(defaults) - set(config_fields)}"
    )
    for name, value in config_fields.items():
        assert value == defaults[name], f"default of {name}: config {value!r} != CMVAE {defaults[name]!r}"


def test_estimator_kwargs_build_the_estimator():
    cfg = RunConfig()
    model = CMVAE(**cfg.estimator_kwargs())
    assert model.get_params() == {**CMVAE().get_params()}
    cfg = config_from_dict({"model": {"n_clusters": 7, "arch": "resnet"}, "training": {"epochs": 3, "devices": [0, 1]}})
    params = CMVAE(**cfg.estimator_kwargs()).get_params()
    assert params["n_clusters"] == 7 and params["arch"] == "resnet"
    assert params["epochs"] == 3 and params["devices"] == [0, 1]


# ------------------------------------------------------------------------ validation


def test_unknown_key_names_key_and_file(tmp_path):
    path = write_yaml(tmp_path / "run.yaml", {"model": {"n_clusterz": 3}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "model.n_clusterz" in msg
    assert "unknown key" in msg and "n_clusters" in msg  # suggestion and allowed keys
    assert "\n" not in msg


def test_unknown_section_and_data_key(tmp_path):
    with pytest.raises(ConfigError, match=r"optimiser: unknown key"):
        load_config(write_yaml(tmp_path / "a.yaml", {"optimiser": {"lr": 1}}))
    with pytest.raises(ConfigError, match=r"data\.rooot: unknown key \(did you mean 'root'\?\)"):
        load_config(write_yaml(tmp_path / "b.yaml", {"data": {"rooot": "/x"}}))


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("model", "n_clusters", "many", "valid integer"),
        ("model", "n_clusters", 0, "greater than or equal to 1"),
        ("model", "arch", "huge", "'light', 'resnet' or 'paper'"),
        ("model", "latent_family", "cauchy", "'laplace' or 'gaussian'"),
        ("model", "estimator", "vi", "'elbo', 'iwae' or 'dreg'"),
        ("training", "lr", -1.0, "greater than 0"),
        ("training", "amsgrad", "perhaps", "valid boolean"),
        ("data", "name", "cifar", "'polymnist', 'arrays', 'files' or 'cubicc'"),
    ],
)
def test_wrong_values_name_the_dotted_key(tmp_path, section, key, value, expected):
    path = write_yaml(tmp_path / "run.yaml", {section: {key: value}})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {section}.{key}: ")
    assert expected in msg
    assert repr(value) in msg or str(value) in msg


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="no/such/config.yaml"):
        load_config("no/such/config.yaml")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write_yaml(tmp_path / "bad.yaml", "model:\n  n_clusters: [1, 2\ntraining: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "invalid YAML" in str(info.value) and "line" in str(info.value)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write_yaml(tmp_path / "list.yaml", "- 1\n- 2\n"))


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_empty_file_is_an_error_not_all_defaults(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="empty.yaml is empty"):
        load_config(path)
    assert config_from_dict({}) == RunConfig()  # an explicit empty mapping still means the defaults


def test_arrays_needs_an_existing_path(tmp_path):
    with pytest.raises(ConfigError, match=r"data: name: arrays needs path"):
        load_config(write_yaml(tmp_path / "a.yaml", {"data": {"name": "arrays"}}))
    with pytest.raises(ConfigError) as info:
        load_config(write_yaml(tmp_path / "b.yaml", {"data": {"name": "arrays", "path": "missing.npz"}}))
    assert "data.path: file not found" in str(info.value)
    assert str(tmp_path / "missing.npz") in str(info.value)


def test_relative_data_path_resolves_against_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "sub" / "d.npz", view0=np.zeros((4, 3), np.float32))
    cfg = load_config(write_yaml(tmp_path / "sub" / "c.yaml", {"data": {"name": "arrays", "path": "d.npz"}}))
    assert cfg.data.path == str((tmp_path / "sub" / "d.npz").resolve())


def test_dump_and_load_round_trip(tmp_path):
    cfg = config_from_dict(
        {"model": {"n_clusters": 5, "likelihood": ["laplace", "bernoulli"]}, "training": {"max_time_minutes": 2.5}}
    )
    path = dump_config(cfg, tmp_path / "out" / "config.yaml")
    assert load_config(path) == cfg


# --------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", ["polymnist.yaml", "polymnist_cpu.yaml"])
def test_packaged_configs_equal_repo_configs(name):
    assert (PACKAGED / name).read_text() == (REPO / "configs" / name).read_text(), (
        f"src/cmvae/configs/{name} differs from configs/{name}: copy configs/{name} over it"
    )
    load_config(REPO / "configs" / name)


def test_packaged_configs_load_through_importlib():
    from cmvae.cli import packaged_config

    for name in ("polymnist.yaml", "polymnist_cpu"):
        assert load_config(packaged_config(name)).data.name == "polymnist"


def test_load_config_takes_a_packaged_config_name(tmp_path, monkeypatch):
    """``cmvae.load_config("polymnist_cpu")`` from Python, as ``cmvae train --config polymnist_cpu``."""
    import cmvae
    from cmvae.config import PACKAGED_CONFIGS, packaged_config

    assert "polymnist_cpu.yaml" in PACKAGED_CONFIGS
    for name in ("polymnist_cpu", "polymnist"):
        assert cmvae.load_config(name) == load_config(packaged_config(name))
    assert cmvae.load_config("polymnist_cpu.yaml") == load_config(PACKAGED / "polymnist_cpu.yaml")
    monkeypatch.chdir(tmp_path)  # a file of that name is read first, as by the CLI
    (tmp_path / "polymnist_cpu").write_text("data: {name: polymnist, max_train: 7}\n")
    assert load_config("polymnist_cpu").data.max_train == 7
    with pytest.raises(FileNotFoundError, match=r"config file not found: nope .*usable by name: polymnist_cpu.yaml"):
        load_config("nope")


def test_paper_config_values():
    cfg = load_config(REPO / "configs" / "polymnist.yaml")
    m, t = cfg.model, cfg.training
    assert (m.arch, m.likelihood, m.likelihood_scale, m.latent_family) == ("paper", "laplace", 0.75, "laplace")
    assert (m.beta, m.n_samples, m.estimator, m.n_clusters, m.shared_dim, m.private_dim) == (2.5, 1, "elbo", 40, 32, 32)
    assert (t.lr, t.amsgrad, t.batch_size, t.epochs) == (1e-3, True, 128, 250)
    cpu = load_config(REPO / "configs" / "polymnist_cpu.yaml")
    assert cpu.model.arch == "light" and cpu.model.n_clusters == 10 and cpu.training.accelerator == "cpu"
    assert cpu.training.max_time_minutes == 20
    # the paper trains by its objective from the first step; the CPU configs warm the encoders up (README)
    assert (m.contrastive_warmup_epochs, m.warmup_freeze_epochs) == (0, 0)
    assert (cpu.model.contrastive_warmup_epochs, cpu.model.warmup_freeze_epochs) == (4, 2)
    # the CPU config ends once the held-out bound stalls after the placement, and the estimator gets that setting
    assert (cpu.model.cluster_init_when, cpu.model.early_stopping) == ("plateau", True)
    assert cpu.estimator_kwargs()["early_stopping"] is True
    off = cpu.model_copy(update={"model": cpu.model.model_copy(update={"early_stopping": False})})
    assert off.estimator_kwargs()["early_stopping"] is False


def test_the_40_cluster_config_is_the_quickstart_config_with_40_clusters():
    """``configs/polymnist_cpu_k40.yaml`` differs from the quickstart's only where its comments say."""
    cpu = load_config(REPO / "configs" / "polymnist_cpu.yaml")
    k40 = load_config(REPO / "configs" / "polymnist_cpu_k40.yaml")
    assert k40.model.n_clusters == 40
    assert k40.model.model_copy(update={"n_clusters": cpu.model.n_clusters}) == cpu.model
    assert k40.data == cpu.data
    assert k40.training.max_time_minutes == 27


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    ci = (REPO / ".ci" / "run").read_text()
    test_cmd = next(line for line in readme[:6] if "pytest" in line)
    assert test_cmd.strip() in ci


# ------------------------------------------------------------------------------ data


def test_load_arrays_and_subsets(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        view0=rng.normal(size=(20, 3)).astype(np.float32),
        view1=rng.integers(0, 255, (20, 3, 8, 8)).astype(np.uint8),
        labels=np.arange(20) % 2,
        test_view0=rng.normal(size=(6, 3)).astype(np.float32),
        test_view1=rng.integers(0, 255, (6, 3, 8, 8)).astype(np.uint8),
        test_labels=np.arange(6) % 2,
    )
    data = load_arrays(path)
    assert len(data.train_views) == 2 and data.train_views[1].shape == (20, 3, 8, 8)
    assert data.test_views[0].shape == (6, 3)
    sub = load_data(DataConfig(name="arrays", path=str(path), max_train=5, max_test=4))
    assert sub.train_views[0].shape[0] == 5 and sub.train_labels.shape == (5,)
    assert sub.split("test")[0][1].shape == (4, 3, 8, 8)


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"labels": np.zeros(3)}, "no view0"),
        ({"view0": np.zeros((4, 2)), "view1": np.zeros((5, 2))}, "view 1 has 5 samples"),
        ({"view0": np.zeros((4, 2)), "labels": np.zeros(3)}, "labels must be"),
        ({"view0": np.zeros((4, 2)), "view2": np.zeros((4, 2))}, "view2 present but view1 missing"),
        ({"view0": np.zeros((4, 2)), "test_view0": np.zeros((2, 2)), "test_view1": np.zeros((2, 2))},
         "1 train views but 2 test views"),
    ],
)
def test_load_arrays_errors(tmp_path, arrays, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataValidationError, match=expected):
        load_arrays(path)


def test_load_arrays_not_an_npz(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DataValidationError, match="cannot read"):
        load_arrays(path)
