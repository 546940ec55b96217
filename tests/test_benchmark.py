"""`cmvae benchmark clustering`: config section, summary tables and a tiny end-to-end run."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml

from cmvae import CMVAE
from cmvae.benchmark import plan_jobs, summarise, to_markdown
from cmvae.cli import main
from cmvae.config import ConfigError, config_from_dict


def _write_data(path, n=120, k=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, prefix, size in (("train", "", n), ("test", "test_", n // 2)):
        y = rng.integers(0, k, size)
        for m in range(2):
            centres = np.random.default_rng(10 + m).normal(0, 4, (k, 6))
            arrays[f"{prefix}view{m}"] = (centres[y] + rng.normal(0, 0.5, (size, 6))).astype(np.float32)
        arrays["labels" if split == "train" else "test_labels"] = y
    np.savez(path, **arrays)
    return arrays


def test_benchmark_section_is_optional_strict_and_defaults_to_the_paper():
    assert config_from_dict({}).benchmark is None
    cfg = config_from_dict({"benchmark": {"methods": {"vade": None, "deepcluster": {}}}})
    bench = cfg.benchmark
    assert bench.seeds == [0, 1, 2] and bench.methods.selected() == ["vade", "deepcluster"]
    assert bench.methods.vade.betas == [1.0, 2.5] and bench.methods.deepcluster.ks == [10, 35, 100]
    with pytest.raises(ConfigError, match=r"benchmark\.methods\.vade\.betaz: unknown key \(did you mean 'betas'\?\)"):
        config_from_dict({"benchmark": {"methods": {"vade": {"betaz": [1.0]}}}})
    with pytest.raises(ConfigError, match="selects no method"):
        config_from_dict({"benchmark": {"methods": {}}})
    with pytest.raises(ConfigError, match="run_dir: no saved model"):
        config_from_dict({"benchmark": {"methods": {"cmvae": {"run_dir": "/nonexistent/run"}}}})


def test_summary_is_mean_and_std_over_seeds_per_modality():
    runs = [
        {"method": "VaDE", "setting": "beta=1.0", "modality": "0", "seed": s, "nmi": v, "ari": v / 2, "acc": 0.5,
         "seconds": 1.0}
        for s, v in enumerate([0.2, 0.4])
    ] + [{"method": "VaDE", "setting": "beta=1.0", "modality": "1", "seed": 0, "nmi": 0.9, "ari": 0.8, "acc": 0.7,
          "seconds": 2.0}]
    rows = summarise(runs)
    assert len(rows) == 2
    first = rows[0]
    assert first["n_seeds"] == 2 and first["nmi_mean"] == pytest.approx(0.3) and first["nmi_std"] == pytest.approx(0.1)
    assert first["ari_mean"] == pytest.approx(0.15)
    text = to_markdown(rows)
    assert "| VaDE | beta=1.0 | 0 | 0.300 ± 0.100 | 0.150 ± 0.050 | 0.500 ± 0.000 | 2 |" in text
    assert "| VaDE | beta=1.0 | 0.30 | 0.90 |" in text  # NMI per modality side by side


def test_cli_benchmark_runs_every_method_and_writes_the_tables(tmp_path, capsys):
    data = _write_data(tmp_path / "data.npz")
    saved = CMVAE(n_clusters=3, shared_dim=4, private_dim=2, epochs=1, batch_size=32, progress=False)
    (tmp_path / "myrun").mkdir()  # a run folder, as `cmvae train` writes it: the model in model/
    saved.fit([data["view0"], data["view1"]]).save(tmp_path / "myrun" / "model")
    cfg = {
        "data": {"name": "arrays", "path": "data.npz"},
        "model": {"n_clusters": 3, "shared_dim": 4, "private_dim": 2},
        "training": {"epochs": 2, "batch_size": 32, "accelerator": "cpu"},
        "benchmark": {
            "seeds": [0, 1],
            "methods": {
                "kmeans": {"pca_dim": 4},
                "cmvae": {"run_dir": "myrun"},
                "cmc": None,
                "vade": {"betas": [1.0]},
                "deepcluster": {"ks": [2], "include_true_k": True, "epochs": 1},
            },
        },
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["benchmark", "clustering", str(tmp_path / "bench.yaml"), "--out", str(out), "--no-progress"]) == 0
    assert "NMI per modality" in capsys.readouterr().out

    with open(out / "benchmark_runs.csv") as f:
        runs = list(csv.DictReader(f))
    # k-means: 2 seeds x (all + 2 modalities); CMVAE saved: 1; CMC: 2; VaDE: 2 x 2; DeepCluster K in {2, 3}: 2 x 2 x 2
    counts = {m: sum(r["method"] == m for r in runs) for m in ("k-means", "CMVAE", "CMC", "VaDE", "DeepCluster")}
    assert counts == {"k-means": 6, "CMVAE": 1, "CMC": 2, "VaDE": 4, "DeepCluster": 8}
    assert {r["setting"] for r in runs if r["method"] == "DeepCluster"} == {"K=2", "K=3"}
    assert [r["setting"] for r in runs if r["method"] == "CMVAE"] == ["saved model myrun"]  # named by the run
    assert all(0.0 <= float(r["acc"]) <= 1.0 for r in runs)
    # the saved CMVAE is scored on the test split exactly as its own score() does
    cmvae_nmi = float(next(r["nmi"] for r in runs if r["method"] == "CMVAE"))
    direct = CMVAE.load(tmp_path / "myrun" / "model").score([data["test_view0"], data["test_view1"]], data["test_labels"])
    assert cmvae_nmi == pytest.approx(direct["nmi"])

    with open(out / "benchmark.csv") as f:
        summary = list(csv.DictReader(f))
    assert len(summary) == 3 + 1 + 1 + 2 + 4  # one row per (method, setting, modality)
    vade0 = next(r for r in summary if r["method"] == "VaDE" and r["modality"] == "0")
    seeds = [float(r["nmi"]) for r in runs if r["method"] == "VaDE" and r["modality"] == "0"]
    assert float(vade0["nmi_mean"]) == pytest.approx(np.mean(seeds)) and vade0["n_seeds"] == "2"
    assert "±" in (out / "benchmark.md").read_text()


def test_a_methods_time_limit_and_learning_rate_reach_each_of_its_fits(monkeypatch):
    made, rates, stopping = [], [], []

    class Recorder:
        def __init__(self, *args, **kwargs):
            made.append((type(self).__name__, kwargs.get("max_time_minutes")))
            rates.append((type(self).__name__, kwargs.get("lr")))
            if "early_stopping" in kwargs:
                stopping.append((type(self).__name__, kwargs["early_stopping"]))

        def fit(self, train):
            return self

        def score(self, views, labels):
            return {"nmi": 0.0, "ari": 0.0, "acc": 0.0, "n_clusters_used": 1}

    for name in ("CMC", "VaDE", "DeepCluster"):
        monkeypatch.setattr(f"cmvae.clustering_baselines.{name}", type(name, (Recorder,), {}))
    monkeypatch.setattr("cmvae.estimator.CMVAE", type("CMVAE", (Recorder,), {}))
    methods = {"cmc": {"max_time_minutes": 1.5, "lr": 1e-3}, "vade": {"betas": [1.0], "max_time_minutes": 0.5},
               "deepcluster": {"ks": [2], "include_true_k": False}, "cmvae": {}}
    cfg = config_from_dict({"training": {"max_time_minutes": 5, "lr": 3e-3},
                            "benchmark": {"seeds": [0], "modalities": [0], "methods": methods}})
    for job in plan_jobs(cfg, n_modalities=2, true_k=3):
        job.run([], [], np.zeros(0))
    # its own section's limit; a trained CMVAE keeps training.max_time_minutes; a baseline without one has none
    assert sorted(made) == [("CMC", 1.5), ("CMVAE", 5.0), ("DeepCluster", None), ("VaDE", 0.5)]
    # its own rate, else the training section's
    assert sorted(rates) == [("CMC", 1e-3), ("CMVAE", 3e-3), ("DeepCluster", 3e-3), ("VaDE", 3e-3)]
    assert ("CMC", True) in stopping  # CMC's held-out early stopping is on unless its section turns it off
    stopping.clear()
    for job in plan_jobs(config_from_dict({"benchmark": {"seeds": [0], "methods": {
            "cmc": {"early_stopping": False}}}}), 2, 3):
        job.run([], [], np.zeros(0))
    assert stopping == [("CMC", False)]
    made.clear()
    for job in plan_jobs(config_from_dict({"training": {"max_time_minutes": 5}, "benchmark": {
            "seeds": [0], "modalities": [0], "methods": {"cmvae": {"max_time_minutes": 2}}}}), 2, 3):
        job.run([], [], np.zeros(0))
    assert made == [("CMVAE", 2.0)]
    with pytest.raises(ConfigError, match=r"benchmark\.methods\.cmc\.max_time_minutes"):
        config_from_dict({"benchmark": {"methods": {"cmc": {"max_time_minutes": 0}}}})


def test_cli_benchmark_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "plain.yaml").write_text("data: {name: polymnist}\n")
    assert main(["benchmark", "clustering", str(tmp_path / "plain.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "no benchmark: section" in capsys.readouterr().err
    _write_data(tmp_path / "data.npz")
    bad = {"data": {"name": "arrays", "path": "data.npz"}, "benchmark": {"modalities": [7], "methods": {"vade": None}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["benchmark", "clustering", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "benchmark.modalities [7] out of range" in capsys.readouterr().err


def test_resume_keeps_finished_fits_and_runs_only_the_missing_ones(tmp_path, monkeypatch):
    from cmvae import benchmark

    _write_data(tmp_path / "data.npz")
    cfg = config_from_dict({
        "data": {"name": "arrays", "path": str(tmp_path / "data.npz")},
        "training": {"accelerator": "cpu"},
        "benchmark": {"seeds": [0, 1], "methods": {"kmeans": {"pca_dim": 4}}},
    })
    out = tmp_path / "out"
    benchmark.run_clustering_benchmark(cfg, out, progress=False)
    first = benchmark.read_runs(out / "benchmark_runs.csv")
    assert len(first) == 6  # 2 seeds x (all + 2 modalities)
    # a stopped run: only the first two fits are on disk
    benchmark.write_outputs(out, first[:2])
    calls = []
    real = benchmark.kmeans_baseline
    monkeypatch.setattr(benchmark, "kmeans_baseline", lambda *a, **k: calls.append(k["seed"]) or real(*a, **k))
    benchmark.run_clustering_benchmark(cfg, out, progress=False, resume=True)
    assert len(calls) == 4  # the two kept fits were not run again
    again = benchmark.read_runs(out / "benchmark_runs.csv")
    assert again[:2] == first[:2] and len(again) == 6
    assert [r["nmi"] for r in again] == pytest.approx([r["nmi"] for r in first])
