"""`cmvae compare`: config section, training models x seeds, table, Figure 1, resuming, the CLI."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import cmvae
from cmvae import cli
from cmvae.compare import _build, compare_models, run_params
from cmvae.config import CompareEntry, ConfigError, config_from_dict, load_config
from cmvae.distributions import likelihood as make_likelihood
from cmvae.estimator import _ESTIMATORS, CMVAE, MultimodalEstimator
from cmvae.models.cmvae import CMVAEModule

PNG = b"\x89PNG\r\n\x1a\n"


class OneClusterVAE(MultimodalEstimator):
    """A stand-in for a baseline: another registered model type without an ``n_clusters`` parameter."""

    model_type = "one_cluster_test"

    def _build_module(self, schema):
        encoders, decoders = self._networks(schema)
        liks = [make_likelihood(n, self.likelihood_scale) for n in self._likelihood_names(schema.n_modalities)]
        return CMVAEModule(encoders, decoders, liks, n_clusters=1, shared_dim=self.shared_dim,
                           private_dim=self.private_dim, latent_family_name=self.latent_family)


@pytest.fixture(scope="module")
def registered():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(_ESTIMATORS, OneClusterVAE.model_type, OneClusterVAE)
        yield


def make_views(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Three modalities (a vector, two 1x12x12 images) that all show the class of each tuple."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    vec = (np.eye(3)[y] * 3 + rng.normal(0, 0.3, (n, 3))).astype(np.float32)
    images = []
    for shift in (0, 1):
        x = rng.integers(0, 50, (n, 1, 12, 12)).astype(np.uint8)
        for k in range(3):
            x[y == k, :, 4 * ((k + shift) % 3) : 4 * ((k + shift) % 3) + 4, :] += 180
        images.append(x)
    return [vec, *images], y


def write_config(root: Path, compare: dict, name: str = "c.yaml") -> Path:
    (views, y), (tv, ty) = make_views(120, 0), make_views(60, 1)
    np.savez(root / "d.npz", **{f"view{m}": v for m, v in enumerate(views)}, labels=y,
             **{f"test_view{m}": v for m, v in enumerate(tv)}, test_labels=ty)
    config = {
        "data": {"name": "arrays", "path": "d.npz"},
        "model": {"n_clusters": 3, "shared_dim": 4, "private_dim": 2, "cluster_init_epoch": 1,
                  "likelihood": ["gaussian", "laplace", "laplace"]},
        "training": {"epochs": 1, "batch_size": 40, "accelerator": "cpu", "devices": 1, "progress": False},
        "compare": compare,
    }
    (root / name).write_text(yaml.safe_dump(config))
    return root / name


COMPARE = {
    "models": [{"type": "cmvae"}, {"type": "one_cluster_test", "label": "One cluster", "beta": 1.0}],
    "seeds": [0, 1],
    "n_samples": 40,
    "classifier_epochs": 3,
}


# --------------------------------------------------------------------------- config


def test_compare_section_parses_labels_folders_and_run_params(registered, tmp_path):
    cfg = load_config(write_config(tmp_path, {"models": [
        {"type": "cmvae", "label": "CMVAE K=2", "n_clusters": 2, "lr": 3e-3},
        {"type": "one_cluster_test"}, {"type": "cmvae"},
    ]}))
    assert cfg.compare is not None and cfg.compare.seeds == [0] and cfg.compare.classifier_epochs == 4
    entries = cfg.compare.models
    assert [e.display_label for e in entries] == ["CMVAE K=2", "one_cluster_test", "CMVAE"]
    assert [e.folder for e in entries] == ["CMVAE_K_2", "one_cluster_test", "CMVAE"]
    assert CompareEntry(type="cmvae", label="MMVAE+").folder == "MMVAEplus"
    params = run_params(cfg, entries[0], seed=7)
    assert params["n_clusters"] == 2 and params["lr"] == 3e-3 and params["seed"] == 7 and params["beta"] == 1.0
    model = _build("cmvae", params)
    assert isinstance(model, CMVAE) and model.n_clusters == 2 and model.seed == 7 and model.progress is False
    # Settings a model type does not take (n_clusters) are left out, the others kept.
    other = _build("one_cluster_test", run_params(cfg, entries[1], seed=0))
    assert type(other) is OneClusterVAE and other.shared_dim == 4 and not hasattr(other, "n_clusters")


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ({"models": [{"type": "mvea"}]}, "compare.models[0]: unknown model type 'mvea'"),
        ({"models": [{"type": "cmvae"}, {"type": "cmvae"}]}, "share the run folder 'CMVAE'"),
        ({"models": [{"type": "cmvae", "epochs": 5}]}, "epochs cannot differ between models"),
        ({"models": [{"type": "cmvae", "seed": 5}]}, "seed cannot differ between models"),
        ({"models": [{"type": "cmvae", "n_clusterz": 5}]}, "compare.models[0]: n_clusterz: not a parameter"),
        ({"models": [{"type": "one_cluster_test", "n_clusters": 5}]}, "n_clusters: not a parameter of model type"),
        ({"models": [{"type": "cmvae", "beta": -1}]}, "compare.models[0]: beta: Input should be greater"),
        ({"models": []}, "compare.models: List should have at least 1 item"),
        ({"models": [{"label": "x"}]}, "compare.models[0].type: Field required"),
        ({"models": [{"type": "cmvae"}], "seeds": [1, 1]}, "compare.seeds: seeds repeat a value"),
        ({"models": [{"type": "cmvae"}], "n_sample": 10}, "compare.n_sample: unknown key (did you mean 'n_samples'?)"),
    ],
)
def test_bad_compare_sections_name_file_and_key(registered, tmp_path, compare, message):
    path = write_config(tmp_path, compare)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def compared(registered, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    config = write_config(root, COMPARE)
    assert cli.main(["compare", str(config), "--out", str(root / "out")]) == 0
    return config, root / "out"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG
    return struct.unpack(">II", data[16:24])


def test_compare_writes_runs_table_and_figure(compared):
    _, out = compared
    for folder in ("CMVAE", "One_cluster"):
        for seed in (0, 1):
            run = out / folder / f"seed{seed}"
            assert (run / "model" / "config.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
            assert json.loads((run / "run.json").read_text())["epochs"] == 1
    saved = json.loads((out / "One_cluster" / "seed1" / "model" / "config.json").read_text())
    assert saved["model_type"] == "one_cluster_test" and saved["params"]["beta"] == 1.0 and saved["params"]["seed"] == 1
    with open(out / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["seed"]) for r in rows] == [
        ("CMVAE", "0"), ("CMVAE", "1"), ("One cluster", "0"), ("One cluster", "1"),
        ("CMVAE", "mean"), ("CMVAE", "std"), ("One cluster", "mean"), ("One cluster", "std"),
    ]
    for r in rows[:4]:
        for key in ("unconditional_coherence", "conditional_coherence", "conditional_coherence_1",
                    "conditional_coherence_loo"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert float(r["fd_unconditional"]) >= 0 and float(r["fd_conditional"]) >= 0
    # The summary rows are the mean and std of the per-seed rows.
    cond = [float(r["conditional_coherence"]) for r in rows[:2]]
    assert float(rows[4]["conditional_coherence"]) == pytest.approx(np.mean(cond))
    assert float(rows[5]["conditional_coherence"]) == pytest.approx(np.std(cond))
    scores = json.loads((out / "CMVAE" / "seed0" / "scores.json").read_text())
    per_size = scores["report"]["conditional_coherence"]["per_size"]
    assert scores["scores"]["conditional_coherence"] == pytest.approx(np.mean(list(per_size.values())))
    assert scores["scores"]["conditional_coherence_loo"] == pytest.approx(per_size["2"])
    assert len(scores["report"]["fd_conditional"]) == 3
    md = (out / "comparison.md").read_text()
    assert "| CMVAE (seed 1)" in md and "| One cluster " in md and " ± " in md and "FD (classifier features)" in md
    assert png_size(out / "figure1.png") == (1100, 450)
    assert (out / "classifiers" / "classifiers.json").is_file()
    assert load_config(out / "compare_config.yaml").compare.models[1].overrides == {"beta": 1.0}


def test_rerun_reuses_runs_and_scores_and_refuses_changed_settings(compared):
    config, out = compared
    cfg = load_config(config)
    model_file = out / "CMVAE" / "seed0" / "model" / "weights.safetensors"
    stamp = model_file.stat().st_mtime_ns
    result = compare_models(cfg, out)
    assert not any(r.trained_now or r.evaluated_now for r in result.runs)
    assert model_file.stat().st_mtime_ns == stamp
    first = {(r.label, r.seed): r.scores for r in result.runs}
    # New evaluation settings: the models are reused, the scores recomputed.
    data = cfg.model_dump(mode="json")
    data["compare"]["n_samples"] = 30
    data["compare"]["seeds"] = [1]
    result = compare_models(config_from_dict(data, base_dir=config.parent), out)
    assert [(r.trained_now, r.evaluated_now) for r in result.runs] == [(False, True), (False, True)]
    assert len(result.runs) == 2 and model_file.stat().st_mtime_ns == stamp
    assert first[("CMVAE", 1)]["train_seconds"] == result.runs[0].scores["train_seconds"]
    # A changed model setting must not silently reuse the old run.
    data["model"]["beta"] = 1.5
    with pytest.raises(ConfigError, match=r"trained with other settings \(beta: 1.0 -> 1.5\)"):
        compare_models(config_from_dict(data, base_dir=config.parent), out)


def test_overwrite_trains_again(registered, tmp_path):
    config = write_config(tmp_path, {"models": [{"type": "cmvae"}], "n_samples": 20, "classifier_epochs": 1,
                                     "max_samples": 30, "max_subsets_per_size": 1})
    cfg = load_config(config)
    first = compare_models(cfg, tmp_path / "out")
    assert first.n_eval == 30 and [r.trained_now for r in first.runs] == [True]
    (tmp_path / "out" / "CMVAE" / "seed0" / "stale.txt").write_text("x")
    again = compare_models(cfg, tmp_path / "out", overwrite=True)
    assert [r.trained_now for r in again.runs] == [True]
    assert not (tmp_path / "out" / "CMVAE" / "seed0" / "stale.txt").exists()
    # Same seed and settings: the retrained model gets the same scores.
    assert again.runs[0].scores["conditional_coherence"] == pytest.approx(first.runs[0].scores["conditional_coherence"])


def test_cli_compare_errors_are_one_line(tmp_path, capsys):
    bad = write_config(tmp_path, {"models": [{"type": "nope"}]}, name="bad.yaml")
    no_section = tmp_path / "plain.yaml"
    no_section.write_text(yaml.safe_dump({"training": {"epochs": 1}}))
    for path, message in ((bad, "unknown model type 'nope'"), (no_section, "no compare: section"),
                          (tmp_path / "missing.yaml", "config file not found")):
        capsys.readouterr()
        assert cli.main(["compare", str(path), "--out", str(tmp_path / "o")]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["compare_polymnist_cpu.yaml", "compare_polymnist.yaml"])
def test_shipped_compare_configs_build_the_seven_models(name):
    """The shipped configs list the seven models; each is built from the shared settings with the
    constraints of its definition (no private latents / Gaussian latents / own ELBO where it has them)."""
    cfg = load_config(Path(__file__).parents[1] / "configs" / name)
    types = ["cmvae", "mvae", "mmvae", "mopoe", "mmjsd", "mvtcae", "mmvae_plus"]
    assert [e.type for e in cfg.compare.models] == types
    assert [e.display_label for e in cfg.compare.models] == ["CMVAE", "MVAE", "MMVAE", "MoPoE", "MMJSD", "MVTCAE",
                                                             "MMVAE+"]
    assert all(not e.overrides for e in cfg.compare.models)
    models = {e.type: _build(e.type, run_params(cfg, e, 0)) for e in cfg.compare.models}
    assert [type(models[t]).model_type for t in types] == types
    for t in ("mvae", "mmvae", "mopoe", "mmjsd", "mvtcae"):
        assert models[t].private_dim == 0
    for t in ("mvae", "mopoe", "mmjsd", "mvtcae"):
        assert models[t].latent_family == "gaussian" and models[t].estimator == "elbo"
    assert models["mvtcae"].alpha == cmvae.MVTCAE().alpha  # unset model-specific keys take the class default
    for t in ("cmvae", "mmvae_plus"):
        assert models[t].private_dim == cfg.model.private_dim and models[t].latent_family == cfg.model.latent_family
    assert {m.epochs for m in models.values()} == {cfg.training.epochs}
