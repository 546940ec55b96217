"""Generation: sampling, cross-modal generate(), grids, coherence classifiers, FD and the CLI."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml

from cmvae import CMVAE, DataValidationError, ParameterError, cli
from cmvae.generation import conditional_grid, sample_grid, save_conditional_grid, save_sample_grid
from cmvae.metrics.coherence import (
    ModalityClassifiers,
    conditional_coherence,
    train_modality_classifiers,
    tuple_coherence,
    unconditional_coherence,
)
from cmvae.metrics.frechet import (
    FD_NAME,
    feature_statistics,
    frechet_classifier_distance,
    frechet_distance,
    frechet_inception_distance,
)

torch.set_num_threads(1)

PNG = b"\x89PNG\r\n\x1a\n"
SHAPES = [(5,), (3, 12, 12), (1, 12, 12)]


def make_data(n: int, seed: int = 0, n_classes: int = 3):
    """Three well-separated modalities: a tabular one and two images whose bright band marks the class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    centers = np.random.default_rng(123).normal(0, 4, (n_classes, 5))
    tab = (centers[y] + rng.normal(0, 0.5, (n, 5))).astype(np.float32)
    images = []
    for c in (3, 1):
        x = rng.integers(0, 60, (n, c, 12, 12)).astype(np.uint8)
        for k in range(n_classes):
            x[y == k, :, 4 * k : 4 * k + 4, :] += 150
        images.append(x)
    return [tab, *images], y


@pytest.fixture(scope="module")
def data():
    return make_data(150, seed=0), make_data(90, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    (views, _), _ = data
    return CMVAE(n_clusters=3, shared_dim=4, private_dim=2, epochs=2, batch_size=50, cluster_init_epoch=1,
                 progress=False, accelerator="cpu", seed=0).fit(views)


@pytest.fixture(scope="module")
def classifiers(data):
    (views, y), (test_views, test_y) = data
    return train_modality_classifiers(views, y, epochs=4, seed=0, test_views=test_views, test_labels=test_y)


# ------------------------------------------------------------------------------ sample / generate


def test_sample_shapes_ranges_and_seed(fitted):
    samples = fitted.sample(5)
    assert [s.shape for s in samples] == [(5, *s) for s in SHAPES]
    assert all(np.isfinite(s).all() for s in samples)
    for img in samples[1:]:
        assert img.min() >= 0.0 and img.max() <= 1.0
    again = fitted.sample(5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, fitted.sample(5, seed=3)))
    assert not np.array_equal(again[0], fitted.sample(5, seed=4)[0])
    with pytest.raises(ValueError, match="n must be"):
        fitted.sample(0)


def test_generate_shapes_targets_and_ranges(fitted, data):
    _, (test_views, _) = data
    out = fitted.generate([test_views[0], None, None], targets=[1, 2])
    assert out[0] is None
    assert out[1].shape == (90, *SHAPES[1]) and out[2].shape == (90, *SHAPES[2])
    assert out[1].min() >= 0 and out[1].max() <= 1 and np.isfinite(out[2]).all()
    default = fitted.generate([None, test_views[1][:7], test_views[2][:7]], batch_size=3)  # several batches
    assert default[0].shape == (7, 5) and default[1] is None and default[2] is None
    everything = fitted.generate(test_views)  # all observed: every modality is generated
    assert [g.shape for g in everything] == [(90, *s) for s in SHAPES]
    seeded = [fitted.generate([test_views[0], None, None], targets=[1], seed=1)[1] for _ in range(2)]
    assert np.array_equal(*seeded)


def test_generate_bad_inputs(fitted, data):
    _, (tv, _) = data
    with pytest.raises(DataValidationError, match="at least one observed"):
        fitted.generate([None, None, None])
    with pytest.raises(DataValidationError, match=r"modality 2: per-sample shape \[1, 12, 11\]"):
        fitted.generate([None, None, tv[2][:, :, :, :11]])
    with pytest.raises(DataValidationError, match="modality 1"):
        fitted.generate([None, tv[1].astype(np.float32), None])  # scaling differs from fit
    with pytest.raises(DataValidationError, match="different numbers of samples.*modality 0: 90.*modality 1: 10"):
        fitted.generate([tv[0], tv[1][:10], None])
    with pytest.raises(DataValidationError, match="one entry per modality"):
        fitted.generate([tv[0], None])
    with pytest.raises(DataValidationError, match="modality 0.*NaN"):
        fitted.generate([np.full((3, 5), np.nan, np.float32), None, None])
    with pytest.raises(ValueError, match="out of range"):
        fitted.generate([tv[0], None, None], targets=[3])
    with pytest.raises(ValueError, match="repeat"):
        fitted.generate([tv[0], None, None], targets=[1, 1])


def test_mixture_posterior_picks_an_observed_modality_per_sample(fitted, monkeypatch):
    from cmvae.objectives import Posteriors

    module = fitted.module_
    b, d = 400, module.shared_dim
    locs = torch.stack([torch.full((b, d), -100.0), torch.full((b, d), 100.0)])
    post = Posteriors(locs, torch.full_like(locs, 1e-3), torch.zeros(2, b, 2), torch.ones(2, b, 2))
    monkeypatch.setattr(module, "encode_subset", lambda views: ([0, 2], post))
    z = module.sample_subset_z([None] * 3)
    first = z[:, 0]
    assert ((first + 100).abs() < 0.1).logical_or((first - 100).abs() < 0.1).all()
    assert 0.4 < float((first > 0).float().mean()) < 0.6  # uniform choice between the two modalities
    assert (torch.sign(z) == torch.sign(z[:, :1])).all()  # one modality per sample, for every dimension
    assert torch.allclose(module.sample_subset_z([None] * 3, use_mean=True), torch.zeros(b, d))


def test_per_cluster_sampling_uses_that_clusters_prior(fitted):
    model = copy.deepcopy(fitted)
    prior = model.module_.prior
    with torch.no_grad():
        prior.means.copy_(torch.tensor([-40.0, 0.0, 40.0]).unsqueeze(1).expand(3, model.shared_dim))
        prior.logits.copy_(torch.tensor([0.0, 0.0, 0.0]))
    for c, mean in enumerate((-40.0, 0.0, 40.0)):
        z = model.sample_latents(300, cluster=c, seed=c)
        assert z.shape == (300, model.shared_dim)
        assert abs(z.mean() - mean) < 0.5 and np.abs(z - mean).max() < 15
    seen = []
    hook = model.module_.decoders[0].register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    try:
        model.sample(64, cluster=2)
    finally:
        hook.remove()
    z_dec = seen[0][:, : model.shared_dim]
    assert abs(float(z_dec.mean()) - 40.0) < 1.0  # the decoder saw cluster 2's latents
    z_all = model.sample_latents(600, seed=0)
    near = [np.mean(np.abs(z_all.mean(1) - m) < 10) for m in (-40.0, 0.0, 40.0)]
    assert all(0.2 < f < 0.47 for f in near) and abs(sum(near) - 1) < 1e-9  # c ~ pi (uniform here)


def test_sampling_temperature_scales_the_spread_around_the_cluster_mean(fitted):
    model = copy.deepcopy(fitted)
    prior = model.module_.prior
    with torch.no_grad():
        prior.means.copy_(torch.tensor([-40.0, 0.0, 40.0]).unsqueeze(1).expand(3, model.shared_dim))
    full = model.sample_latents(2000, cluster=2, seed=1)
    cool = model.sample_latents(2000, cluster=2, seed=1, temperature=0.5)
    np.testing.assert_allclose(cool - 40.0, (full - 40.0) * 0.5, rtol=1e-5, atol=1e-5)  # same draws, half the spread
    assert float((full - 40.0).std()) > 0.5  # T = 1: the prior's unit-scale spread
    a, b = model.sample(4, cluster=1, seed=3, temperature=0.5), model.sample(4, cluster=1, seed=3, temperature=0.5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], model.sample(4, cluster=1, seed=3)[0])
    for bad in (0.0, -1.0, float("nan"), "0.5"):
        with pytest.raises(ParameterError, match="temperature"):
            model.sample(2, temperature=bad)
        with pytest.raises(ParameterError, match="temperature"):
            model.sample_latents(2, temperature=bad)


def test_sample_grids(fitted, data, tmp_path):
    _, (tv, ty) = data
    rows, labels, titles = sample_grid(fitted, per_cluster=2)
    assert labels == ["cluster 0", "cluster 1", "cluster 2"] and titles == ["modality 1", "modality 2"]
    assert rows[0][0].shape == (2, 3, 12, 12) and rows[0][1].shape == (2, 1, 12, 12)
    pruned = copy.deepcopy(fitted)
    pruned.module_.prior.set_active([0, 2])
    assert sample_grid(pruned, 1)[1] == ["cluster 0", "cluster 2"]
    png = save_sample_grid(fitted, tmp_path / "s.png", per_cluster=2)
    assert png.read_bytes()[:8] == PNG
    rows, labels, _ = conditional_grid(fitted, tv, source=2, n=6, labels=ty)
    assert labels == ["input: modality 2", "modality 1 | 2"]
    assert rows[0][0].shape == (6, 1, 12, 12) and rows[1][0].shape == (6, 3, 12, 12)
    assert save_conditional_grid(fitted, tv, tmp_path / "c.png", source=1).read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="not an image modality"):
        conditional_grid(fitted, tv, source=0)


# ------------------------------------------------------------------------------ classifiers


def test_classifiers_accuracy_real_coherence_and_save_load(classifiers, data, tmp_path):
    _, (tv, ty) = data
    assert classifiers.test_accuracy is not None and min(classifiers.test_accuracy) > 0.95
    real = tuple_coherence(tv, classifiers)
    assert real > 0.9 and abs(real - min(classifiers.test_accuracy)) < 0.05  # coherence of real data ~ accuracy
    assert classifiers.features(1, tv[1]).shape == (90, 128)
    loaded = ModalityClassifiers.load(classifiers.save(tmp_path / "clf"))
    for m, x in enumerate(tv):
        assert np.allclose(loaded.logits(m, x), classifiers.logits(m, x), atol=1e-5)
    assert loaded.test_accuracy == classifiers.test_accuracy and loaded.classes.tolist() == [0, 1, 2]
    with pytest.raises(FileNotFoundError, match="no saved classifiers"):
        ModalityClassifiers.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="modality 1: per-sample shape"):
        classifiers.predict(1, tv[2])


def test_frechet_distance_closed_form_and_real_vs_noise(classifiers, data):
    assert frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3)) == pytest.approx(0.0, abs=1e-9)
    # 1-D Gaussians: (mu1 - mu2)^2 + (s1 - s2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(4.0 + 1.0)
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    (views, _), (tv, _) = data
    rng = np.random.default_rng(0)
    for m in (0, 1):
        halves = frechet_classifier_distance(views[m][:75], views[m][75:], classifiers, m)
        noise_like = rng.uniform(0, 1, (75, *views[m].shape[1:])).astype(np.float32)
        noise = frechet_classifier_distance(views[m][:75], noise_like, classifiers, m)
        assert halves < 0.1 * noise, (m, halves, noise)
    mu, sigma = feature_statistics(classifiers.features(1, tv[1]))
    assert mu.shape == (128,) and sigma.shape == (128, 128)
    assert "classifier features" in FD_NAME and "FID" not in FD_NAME


def test_inception_fid_is_an_explicit_not_implemented(tmp_path):
    with pytest.raises(FileNotFoundError, match="Inception weights not found"):
        frechet_inception_distance(None, None, tmp_path / "missing.pth")
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"x")
    with pytest.raises(NotImplementedError, match="pytorch-fid"):
        frechet_inception_distance(None, None, weights)


# ------------------------------------------------------------------------------ coherence against fakes


class _FakeClassifiers:
    """Reads the label off the first feature."""

    def predict(self, m, x):
        return np.asarray(x)[:, 0].astype(int)


class _FakeModel:
    """Generates the right label when modality 0 is observed, a wrong one otherwise."""

    def __init__(self, labels):
        self.labels = labels
        self.calls = []

    def generate(self, views, targets, **kwargs):
        self.calls.append(([v is not None for v in views], list(targets)))
        right = views[0] is not None
        value = self.labels if right else (self.labels + 1) % 3
        return [value[:, None].astype(float) if m in targets else None for m in range(len(views))]

    def sample(self, n, cluster=None, seed=None):
        base = np.arange(n) % 3
        other = np.where(np.arange(n) % 2 == 0, base, (base + 1) % 3)  # every other tuple disagrees
        return [base[:, None], base[:, None], other[:, None]]


def test_conditional_coherence_against_a_fake_model():
    labels = np.arange(30) % 3
    views = [labels[:, None].astype(float)] * 3
    model = _FakeModel(labels)
    result = conditional_coherence(model, _FakeClassifiers(), views, labels)
    assert set(result.per_subset) == {(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)}
    assert result.per_subset[(0,)] == {1: 1.0, 2: 1.0}
    assert result.per_subset[(1, 2)] == {0: 0.0}
    assert result.per_size == pytest.approx({1: 1 / 3, 2: 2 / 3})
    assert result.per_target == pytest.approx({0: 0.0, 1: 2 / 3, 2: 2 / 3})
    for observed, targets in model.calls:  # the observed modalities are given, the rest generated
        assert targets == [m for m in range(3) if not observed[m]]
    assert json.loads(json.dumps(result.to_dict()))["per_size"]["2"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="proper subset"):
        conditional_coherence(model, _FakeClassifiers(), views, labels, subsets=[(0, 1, 2)])


def test_unconditional_coherence_against_a_fake_model():
    assert unconditional_coherence(_FakeModel(None), _FakeClassifiers(), 40, batch_size=16) == pytest.approx(0.5)


# ------------------------------------------------------------------------------ CLI


@pytest.fixture(scope="module")
def run(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("gen_cli")
    (views, y), (tv, ty) = data
    np.savez(root / "d.npz", **{f"view{m}": v for m, v in enumerate(views)}, labels=y,
             **{f"test_view{m}": v for m, v in enumerate(tv)}, test_labels=ty)
    config = {
        "data": {"name": "arrays", "path": "d.npz"},
        "model": {"n_clusters": 3, "shared_dim": 4, "private_dim": 2, "cluster_init_epoch": 1},
        "training": {"epochs": 1, "batch_size": 50, "accelerator": "cpu", "devices": 1, "progress": False},
    }
    (root / "c.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["train", "--config", str(root / "c.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


def test_cli_sample_writes_both_grids(run, tmp_path, capsys):
    capsys.readouterr()
    assert cli.main(["sample", str(run), "--per-cluster", "2"]) == 0
    assert (run / "samples.png").read_bytes()[:8] == PNG
    assert (run / "conditional_samples.png").read_bytes()[:8] == PNG
    assert "conditional grid" in capsys.readouterr().out
    out = tmp_path / "mine.png"
    assert cli.main(["sample", str(run), "--out", str(out), "--source", "2", "--conditional-out",
                     str(tmp_path / "c.png")]) == 0
    assert out.is_file() and (tmp_path / "c.png").is_file()
    capsys.readouterr()
    assert cli.main(["sample", str(run), "--source", "0"]) == 2
    assert "not an image modality" in capsys.readouterr().err
    assert cli.main(["sample", str(tmp_path / "nope")]) == 2
    cool = tmp_path / "cool.png"
    assert cli.main(["sample", str(run), "--out", str(cool), "--temperature", "0.5"]) == 0
    assert cool.read_bytes()[:8] == PNG and cool.read_bytes() != out.read_bytes()
    capsys.readouterr()
    assert cli.main(["sample", str(run), "--out", str(tmp_path / "x.png"), "--temperature", "0"]) == 2
    assert "--temperature must be a finite number > 0" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_evaluate_generation_trains_then_reuses_classifiers(run, tmp_path, capsys):
    capsys.readouterr()
    args = ["evaluate", str(run), "--generation", "--classifier-epochs", "2", "--n-samples", "60", "--max-samples", "0"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "classifiers trained" in out and "unconditional" in out and "conditional, 2 observed" in out
    assert FD_NAME in out and "classifier test acc" in out
    report = json.loads((run / "generation.json").read_text())
    assert report["split"] == "test" and report["n_eval"] == 90 and report["n_samples"] == 60
    assert set(report["conditional_coherence"]["per_size"]) == {"1", "2"}
    assert len(report["fd"]) == 3 and len(report["fd_reference"]) == 3 and report["fd_name"] == FD_NAME
    assert min(report["classifier_accuracy"]) > 0.8 and report["classifiers_trained_now"]
    assert "FD (classifier features)" in (run / "generation.md").read_text()
    assert (run / "classifiers" / "classifiers.safetensors").is_file()
    assert cli.main(args) == 0
    assert "classifiers loaded" in capsys.readouterr().out
    assert not json.loads((run / "generation.json").read_text())["classifiers_trained_now"]
    assert cli.main([*args, "--split", "train"]) == 0
    report = json.loads((run / "generation.json").read_text())
    assert report["split"] == "train" and report["n_eval"] == 150 and report["fd_reference"] is None
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"x")
    capsys.readouterr()
    assert cli.main([*args, "--inception-weights", str(weights)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "not implemented" in err[0]
    assert cli.main(["evaluate", str(run), "--generation", "--n-samples", "1"]) == 2
    assert "--n-samples must be >= 2" in capsys.readouterr().err
