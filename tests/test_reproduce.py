"""`cmvae reproduce`: scale files, the resumable runner, the report (md + self-contained html), the CLI hook.

The parts here are tiny stand-ins (the real ones train models); the real `smoke` scale end to end is
the slow test at the bottom.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import cmvae
from cmvae.cli import main
from cmvae.config import ConfigError
from cmvae.plots import save_score_curve
from cmvae.reproduce import PartsFailedError, RunDirError, reproduce
from cmvae.reproduce import plan as plan_mod
from cmvae.reproduce.paper import NOT_STATED, PaperValue
from cmvae.reproduce.plan import SCALES, load_scale
from cmvae.reproduce.report import RunInfo, fmt_seconds, write_report
from cmvae.reproduce.runner import MANIFEST, MARKER, Part, prepare_out_dir, run_parts
from cmvae.reproduce.summary import write_summary

IDENTITY = {"scale": "smoke", "cmvae_version": "9.9", "config_sha256": "abc"}


# ------------------------------------------------------------------------------------------ scales


@pytest.mark.parametrize("name", SCALES)
def test_packaged_scales_load_and_state_their_budget(name):
    plan = load_scale(name)
    assert plan.name == name and plan.config.budget.expected_minutes > 0 and plan.config.budget.paper
    assert plan.run_config("clustering").benchmark.seeds == plan.seeds  # baselines default to the scale's seeds
    assert plan.run_config("compare").compare.models
    # every part is scored on the same test split
    assert {plan.run_config(p).data.max_test for p in ("cmvae", "clustering", "compare")} == {plan.config.data.get("max_test")}


def test_scales_keep_their_promises():
    smoke, cpu, paper = (load_scale(s) for s in SCALES)
    assert 1 <= len(smoke.seeds) <= 2 and smoke.config.budget.expected_minutes <= 10
    assert cpu.config.budget.expected_minutes <= 130 and cpu.run_config("cmvae").training.accelerator == "cpu"
    p = paper.run_config("cmvae")
    assert (p.model.arch, p.training.epochs, p.model.n_clusters, p.model.beta) == ("paper", 250, 40, 2.5)
    assert len(paper.seeds) == 3
    for plan in (smoke, cpu, paper):  # Algorithm 1 needs an over-specified K
        assert plan.run_config("cmvae").model.n_clusters > 10


def test_the_cpu_scale_trains_cmvae_as_the_40_cluster_cpu_config():
    """``cmvae reproduce --scale cpu`` trains what ``configs/polymnist_cpu_k40.yaml`` documents (README numbers)."""
    from cmvae.config import load_config

    k40 = load_config(Path(__file__).resolve().parents[1] / "configs" / "polymnist_cpu_k40.yaml")
    ours = load_scale("cpu").run_config("cmvae")
    assert ours.model == k40.model
    assert ours.training.model_dump(exclude={"progress"}) == k40.training.model_dump(exclude={"progress"})


def test_accelerator_override_reaches_every_part():
    plan = load_scale("smoke", accelerator="gpu")
    assert {plan.run_config(p).training.accelerator for p in ("cmvae", "clustering", "compare")} == {"gpu"}


def _scale_file(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(plan_mod.scale_path("smoke").read_text())
    for dotted, value in changes.items():
        node = raw
        *keys, last = dotted.split("__")
        for k in keys:
            node = node[k]
        node[last] = value
    path = tmp_path / "scale.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("change, message", [
    ({"budgett": 1}, "budgett"),
    ({"cmvae__model": {"n_clusterz": 3}}, "n_clusterz"),
    ({"clustering__benchmark": {"methods": {"cmvae": None}}}, "clustering.benchmark.methods.cmvae"),
    ({"compare__data": {"max_test": 10}}, "compare.data.max_test"),
    ({"seeds": [0, 0]}, "seeds"),
])
def test_bad_scale_files_fail_with_one_line_naming_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")) as err:
        load_scale(_scale_file(tmp_path, **change))
    assert str(tmp_path / "scale.yaml") in str(err.value) and "\n" not in str(err.value)


def test_unknown_scale_names_the_choices():
    with pytest.raises(FileNotFoundError, match="smoke, cpu, paper"):
        load_scale("huge")


# ------------------------------------------------------------------------------------------ the run folder


def test_a_new_folder_gets_a_manifest_and_the_same_run_is_accepted_again(tmp_path):
    out = tmp_path / "run"
    manifest = prepare_out_dir(out, IDENTITY)
    assert json.loads((out / MANIFEST).read_text()) == manifest and manifest["scale"] == "smoke"
    assert prepare_out_dir(out, IDENTITY)["created"] == manifest["created"]


@pytest.mark.parametrize("key, value, message", [
    ("scale", "cpu", "scale 'smoke', not 'cpu'"),
    ("cmvae_version", "10.0", "written by cmvae 9.9, this is cmvae 10.0"),
    ("config_sha256", "def", "another version of the 'smoke' scale config"),
])
def test_a_folder_of_another_run_is_refused(tmp_path, key, value, message):
    prepare_out_dir(tmp_path, IDENTITY)
    before = (tmp_path / MANIFEST).read_text()
    with pytest.raises(RunDirError, match=message):
        prepare_out_dir(tmp_path, {**IDENTITY, key: value})
    assert (tmp_path / MANIFEST).read_text() == before


def test_a_folder_of_foreign_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty and holds no reproduce.json"):
        prepare_out_dir(tmp_path, IDENTITY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="is a file"):
        prepare_out_dir(tmp_path / "file", IDENTITY)


# ------------------------------------------------------------------------------------------ resumability


class Recorder:
    """Stand-in parts: each call is recorded; ``fail`` names parts that raise (once, or always)."""

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.calls: list[str] = []
        self.fail = set(fail)

    def part(self, name: str, needs: tuple[str, ...] = ()) -> Part:
        def run(ctx):
            self.calls.append(name)
            (ctx.folder / "own.json").write_text("{}")
            if name in self.fail:
                raise RuntimeError(f"{name} crashed")
            return {"name": name, "inputs": sorted(ctx.results)}

        return Part(name, f"part {name}", run, needs)

    def parts(self) -> list[Part]:
        return [self.part("a"), self.part("b", ("a",)), self.part("c", ("b",)), self.part("d")]


def test_finished_parts_are_reused_and_a_crashed_part_runs_again(tmp_path):
    prepare_out_dir(tmp_path, IDENTITY)
    first = Recorder(fail={"b"})
    outcomes = run_parts(tmp_path, first.parts())
    assert [o.status for o in outcomes] == ["done", "failed", "blocked", "done"]
    assert first.calls == ["a", "b", "d"]  # c needs b: not started
    assert (tmp_path / "parts" / "a" / MARKER).is_file() and not (tmp_path / "parts" / "b" / MARKER).exists()
    assert "b crashed" in (tmp_path / "parts" / "b" / "error.txt").read_text()
    assert outcomes[1].error == "RuntimeError: b crashed"

    second = Recorder()
    outcomes = run_parts(tmp_path, second.parts())
    assert second.calls == ["b", "c"]  # a and d were finished: reused, not run
    assert [o.status for o in outcomes] == ["reused", "done", "done", "reused"]
    assert outcomes[2].result == {"name": "c", "inputs": ["b"]}
    assert outcomes[1].attempts == 2 and outcomes[1].earlier_seconds >= 0
    attempts = json.loads((tmp_path / "parts" / "b" / "attempts.json").read_text())
    assert [a["status"] for a in attempts] == ["failed", "done"]

    third = Recorder()
    assert [o.status for o in run_parts(tmp_path, third.parts())] == ["reused"] * 4 and third.calls == []


def test_a_marker_without_a_readable_result_counts_as_unfinished(tmp_path):
    rec = Recorder()
    run_parts(tmp_path, [rec.part("a")])
    (tmp_path / "parts" / "a" / "result.json").write_text("{truncated")
    rec.calls.clear()
    assert run_parts(tmp_path, [rec.part("a")])[0].status == "done" and rec.calls == ["a"]


def test_an_attempt_of_a_killed_process_is_recorded_as_killed(tmp_path):
    rec = Recorder()
    folder = tmp_path / "parts" / "a"
    folder.mkdir(parents=True)
    (folder / "attempts.json").write_text(json.dumps([{"started": "t0", "seconds": None, "status": "running"}]))
    assert run_parts(tmp_path, [rec.part("a")])[0].attempts == 2
    assert [a["status"] for a in json.loads((folder / "attempts.json").read_text())] == ["killed", "done"]


def test_an_interrupt_is_recorded_and_stops_the_run(tmp_path):
    def stop(ctx):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_parts(tmp_path, [Part("x", "x", stop), Recorder().part("y")])
    assert json.loads((tmp_path / "parts" / "x" / "attempts.json").read_text())[0]["status"] == "interrupted"
    assert not (tmp_path / "parts" / "y").exists()


# ------------------------------------------------------------------------------------------ the report


def _fake_results(out: Path) -> dict[str, dict]:
    """Results in the shape the real parts return, with real PNG files under parts/."""
    figs = {}
    for name in ("selection/figure2_seed0.png", "subsets/subsets.png", "samples/samples.png",
                 "samples/conditional_samples.png", "compare/compare/figure1.png"):
        figs[name] = save_score_curve([1, 2], {"NMI": ([0.1, 0.2], None)}, out / "parts" / name, xlabel="x").relative_to(out).as_posix()
    steps = [{"k": 4, "entropy": 0.3, "nmi": 0.2, "ari": 0.1}, {"k": 3, "entropy": 0.2, "nmi": 0.3, "ari": 0.2},
             {"k": 2, "entropy": 0.25, "nmi": 0.2, "ari": 0.1}]
    run = {"seed": 0, "k_over": 4, "k_hat": 3, "before": {"nmi": 0.21, "ari": 0.1, "acc": 0.4, "n_clusters_used": 4},
           "after": {"nmi": 0.31, "ari": 0.2, "acc": 0.5, "n_clusters_used": 3}, "train_seconds": 12.0, "epochs": 3,
           "model": "parts/cmvae/seed0/model", "selection": {"steps": steps}}
    row = lambda method, setting, modality, nmi: {  # noqa: E731
        "method": method, "setting": setting, "modality": modality, "n_seeds": 2, "nmi_mean": nmi, "nmi_std": 0.01,
        "ari_mean": 0.1, "ari_std": 0.02, "acc_mean": 0.3, "acc_std": 0.03, "seconds_mean": 5.0}
    return {
        "cmvae": {"split": "test", "n_train": 100, "n_eval": 50, "n_modalities": 2, "true_k": 3, "k_over": 4,
                  "runs": [run]},
        "selection": {"true_k": 3, "k_over": 4, "split": "test", "k_hat_mean": 3.0, "k_hat_std": 0.0,
                      "per_seed": [{"seed": 0, "k_hat": 3, "figure": figs["selection/figure2_seed0.png"], "steps": steps}]},
        "subsets": {"split": "test", "n_eval": 50, "seeds": [0], "figure": figs["subsets/subsets.png"],
                    "by_size": [{"k": k, "n_subsets": n, **{f"{m}{s}": 0.2 for m in ("nmi", "ari", "acc")
                                                            for s in ("", "_min", "_max")}} for k, n in ((1, 2), (2, 1))],
                    "single": [{"modality": m, "nmi": 0.2, "ari": 0.1, "acc": 0.4} for m in (0, 1)]},
        "samples": {"seed": 0, "k_hat": 3, "per_cluster": 2, "source": 0, "n_conditional": 4, "split": "test",
                    "samples": figs["samples/samples.png"], "conditional": figs["samples/conditional_samples.png"]},
        "clustering": {"split": "test", "n_eval": 50, "seeds": [0, 1], "summary": [
            row("CMVAE", "Algorithm 1: K=4 -> K_hat", "all", 0.31), row("CMVAE", "K=4, before selection", "all", 0.21),
            row("CMC", "tau=0.1, K=3", "all", 0.52), row("VaDE", "beta=2.5, K=3", "0", 0.05)]},
        "compare": {"split": "test", "n_eval": 50, "classifier_accuracy": [0.9, 0.8], "real_coherence": 0.7,
                    "seeds": [0], "epochs": 1, "max_time_minutes": None, "figure": figs["compare/compare/figure1.png"],
                    "summary": {"CMVAE": {"unconditional_coherence": [0.2, 0.0], "conditional_coherence": [0.3, 0.0],
                                          "fd_unconditional": [100.0, 0.0], "fd_conditional": [90.0, 0.0]}}},
    }


def _info(**changes) -> RunInfo:
    base = dict(scale="smoke", scale_file="reproduce_smoke.yaml", command="cmvae reproduce --scale smoke --out X",
                budget={"hardware": "2 CPU cores", "expected_minutes": 6, "summary": "tiny.", "paper": "250 epochs."},
                seeds=[0, 1], data={"name": "polymnist", "max_train": 100}, accelerator="cpu",
                machine={"cpu": "Test CPU", "cpu_cores": 2, "cpu_cores_usable": 2, "torch_threads": 1,
                         "omp_num_threads": "1", "gpus": [], "os": "Linux", "python": "3.11"},
                versions={"cmvae": "9.9", "torch": "2.0"}, started="2026-01-01T00:00:00", wall_seconds=75.0)
    return RunInfo(**{**base, **changes})


def _outcomes(results: dict[str, dict], status: dict[str, str] | None = None):
    from cmvae.reproduce.runner import PartOutcome

    status = status or {}
    return [PartOutcome(name, f"title of {name}", status.get(name, "done"), 61.0, "2026-01-01T00:01:01", 1,
                        None if status.get(name) in ("failed", "blocked") else res,
                        "RuntimeError: boom" if status.get(name) == "failed" else None)
            for name, res in results.items()]


def test_report_sets_our_values_beside_the_papers_and_states_the_run(tmp_path):
    results = _fake_results(tmp_path)
    md_path, html_path = write_report(tmp_path, _info(), _outcomes(results))
    md = md_path.read_text()
    # our value with its spread beside the paper column, which never invents a number
    assert "| CMVAE | Algorithm 1: K=4 -> K_hat | all | 0.310 ± 0.010 | not stated here |" in md
    assert "| CMVAE | K=4, before selection | all | 0.210 ± 0.010 | - |" in md
    assert md.count(NOT_STATED) >= 10
    for expected in ("seeds | 0, 1", "2 CPU cores", "1 min 01 s", "Test CPU (2 logical cores, 2 usable)",
                     "OMP_NUM_THREADS=1", "| torch | 2.0 |", "K_hat | 3", "any 2", "modality 1 only",
                     "CMC (tau=0.1, K=3, all modalities: NMI 0.520)", "below twice chance"):
        assert expected in md, expected
    assert "did not recover the true number" not in md  # K_hat = 3 = the number of classes
    assert "![" in md and "(parts/selection/figure2_seed0.png)" in md
    page = html_path.read_text()
    assert page.count('src="data:image/png;base64,') == 5  # every figure embedded
    assert "parts/samples/samples.png\"" not in page and "http" not in page  # nothing outside the file
    assert '<td class="num">0.310 ± 0.010</td><td>not stated here</td>' in page  # numbers right, text left


def test_a_stated_paper_value_is_shown_and_a_lower_number_gets_a_note(tmp_path):
    reference = {"clustering/PolyMNIST/CMVAE/nmi": PaperValue(0.9, "Table X, test source")}
    results = _fake_results(tmp_path)
    results["selection"]["per_seed"][0]["k_hat"] = 2
    md = write_report(tmp_path, _info(), _outcomes(results), reference)[0].read_text()
    assert "did not recover the true number of classes (3) for seed(s) 0 (K_hat = 2)" in md
    assert "| 0.310 ± 0.010 | 0.90 |" in md
    assert "NMI 0.310 is below the paper's 0.90 (Table X, test source)" in md
    with pytest.raises(ValueError, match="source"):
        PaperValue(0.9)


def test_unfinished_parts_are_named_in_the_report(tmp_path):
    results = _fake_results(tmp_path)
    outcomes = _outcomes(results, {"clustering": "failed", "samples": "blocked"})
    md = write_report(tmp_path, _info(), outcomes)[0].read_text()
    assert "4 of 6 parts finished" in md and "RuntimeError: boom" in md
    assert "Not finished: `samples` (blocked), `clustering` (failed)" in md


def test_summary_condenses_the_report_for_a_readme(tmp_path):
    results = _fake_results(tmp_path)
    results["clustering"]["summary"].append({**results["clustering"]["summary"][-1], "modality": "1", "nmi_mean": 0.15})
    md = write_summary(tmp_path, _info(), _outcomes(results)).read_text()
    for expected in ("`cmvae reproduce --scale smoke --out X`", "Test CPU with 1 torch thread(s)", "the parts took 6 min 06 s",
                     "| CMVAE | Algorithm 1: K=4 -> K_hat | all | 0.310 ± 0.010 | 0.100 ± 0.020 | 0.300 ± 0.030 | 2 |",
                     # a unimodal method: one row, the mean over its modalities and its best modality
                     "| VaDE | beta=2.5, K=3 | one at a time: mean of 2 (best: m1, NMI 0.150) | 0.100 |",
                     "| 0 | 4 -> 3 | 0.210 | 0.310 | 0.200 | 0.500 | 3 | 12 s |", "| 2 | 1 | 0.200 | 0.200 | 0.200 |",
                     "| CMVAE | 0.300 | 0.200 | 90.0 | 100.0 |", "(parts/selection/figure2_seed0.png)",
                     "is below the best baseline, CMC (tau=0.1, K=3, all modalities: NMI 0.520)"):
        assert expected in md, expected
    assert md.count("| VaDE |") == 1 and "not stated here" not in md and not md.startswith("#")


def _readme_results():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "readme_results.py"
    spec = importlib.util.spec_from_file_location("readme_results", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_replaces_only_the_marked_section(tmp_path, monkeypatch, capsys):
    tool = _readme_results()
    run = tmp_path / "run"
    write_summary(run, _info(), _outcomes(_fake_results(run)))
    (run / "report.html").write_text("<html>report</html>")
    monkeypatch.chdir(tmp_path)
    readme = tmp_path / "README.md"
    before, after = "# title\n\nintro\n\n", "\n\n## next\nkept\n"
    readme.write_text(f"{before}{tool.BEGIN}\nold numbers\n{tool.END}{after}")
    assert tool.main([str(run), "--readme", "README.md", "--assets", "docs/repro"]) == 0
    text = readme.read_text()
    assert text.startswith(before + tool.BEGIN) and text.endswith(tool.END + after) and "old numbers" not in text
    assert "(docs/repro/selection_figure2_seed0.png)" in text and "| CMVAE | Algorithm 1" in text
    assert "[docs/repro/report.html](docs/repro/report.html)" in text
    assert (tmp_path / "docs/repro/report.html").read_text() == "<html>report</html>"
    # a rerun replaces its own copies; a file of someone else's in the assets folder is never overwritten
    assert tool.main([str(run), "--readme", "README.md", "--assets", "docs/repro"]) == 0
    (tmp_path / "docs/mine").mkdir(parents=True)
    (tmp_path / "docs/mine/report.html").write_text("my page")
    kept = readme.read_text()
    assert tool.main([str(run), "--readme", "README.md", "--assets", "docs/mine"]) == 2
    assert "not written by readme_results.py" in capsys.readouterr().err
    assert (tmp_path / "docs/mine/report.html").read_text() == "my page" and readme.read_text() == kept
    assert (tmp_path / "docs/repro/selection_figure2_seed0.png").read_bytes() == \
        (run / "parts/selection/figure2_seed0.png").read_bytes()
    # a README without its markers, or a run without a summary: one line, nothing written
    readme.write_text("no markers\n")
    assert tool.main([str(run), "--readme", "README.md", "--assets", "docs/other"]) == 2
    assert "exactly one <!-- reproduce:begin -->" in capsys.readouterr().err
    assert readme.read_text() == "no markers\n" and not (tmp_path / "docs/other").exists()
    assert tool.main([str(tmp_path / "nothing"), "--readme", "README.md"]) == 2
    assert "summary.md" in capsys.readouterr().err


def test_fmt_seconds():
    assert [fmt_seconds(s) for s in (None, 5, 65, 3725)] == ["-", "5 s", "1 min 05 s", "1 h 02 min"]


# ------------------------------------------------------------------------------------------ the entry point


def _fake_plan_parts(recorder: Recorder):
    def parts():
        return [recorder.part("cmvae"), recorder.part("other", ("cmvae",))]

    return parts


def test_reproduce_runs_parts_writes_the_report_and_resumes(tmp_path, monkeypatch):
    import cmvae.reproduce as rep

    first = Recorder(fail={"other"})
    monkeypatch.setattr(rep, "plan_parts", _fake_plan_parts(first))
    out = tmp_path / "run"
    with pytest.raises(PartsFailedError, match="other: RuntimeError: other crashed") as err:
        cmvae.reproduce("smoke", out)  # the package is callable
    assert (out / "report.html").is_file() and "1 of 2 parts finished" in (out / "report.md").read_text()
    assert not err.value.result.ok

    second = Recorder()
    monkeypatch.setattr(rep, "plan_parts", _fake_plan_parts(second))
    result = reproduce("smoke", out)
    assert second.calls == ["other"] and result.ok and "All 2 parts finished" in result.report_md.read_text()
    assert result.summary_md == out / "summary.md" and result.summary_md.is_file()
    with pytest.raises(RunDirError, match="scale 'smoke', not 'cpu'"):
        reproduce("cpu", out)


def test_cli_reproduce_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("x")
    assert main(["reproduce", "--scale", "smoke", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not empty and holds no reproduce.json" in err and err.count("\n") == 1
    assert main(["reproduce", "--scale", "huge", "--out", str(tmp_path / "new")]) == 2
    assert "not one of smoke, cpu, paper" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------ a real part, tiny


def test_subset_scores_cover_every_subset_and_agree_with_predict():
    from cmvae import CMVAE
    from cmvae.reproduce.parts import subset_scores

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    views = [(np.random.default_rng(m).normal(0, 4, (3, 5))[y] + rng.normal(0, 0.5, (90, 5))).astype(np.float32)
             for m in range(3)]
    model = CMVAE(n_clusters=3, shared_dim=3, private_dim=2, epochs=2, batch_size=30, progress=False).fit(views)
    scores = subset_scores(model, views, y)
    assert len(scores) == 7 and all(len(s) for s in scores)
    assert scores[(0, 1, 2)]["nmi"] == pytest.approx(model.score(views, y)["nmi"])
    assert scores[(1,)]["nmi"] == pytest.approx(model.score([None, views[1], None], y)["nmi"])


# ------------------------------------------------------------------------------------------ the real smoke scale


@pytest.mark.slow
def test_smoke_scale_end_to_end_then_a_rerun_reuses_everything(tmp_path):
    out = tmp_path / "smoke"
    result = reproduce("smoke", out)
    assert result.ok and [o.status for o in result.outcomes] == ["done"] * 6
    for o in result.outcomes:
        assert (out / "parts" / o.name / MARKER).is_file()
    md = result.report_md.read_text()
    assert "All 6 parts finished" in md and "| CMVAE | Algorithm 1" in md and "| CMC |" in md
    page = result.report_html.read_text()
    assert page.count("data:image/png;base64,") >= 5
    again = reproduce("smoke", out)
    assert [o.status for o in again.outcomes] == ["reused"] * 6 and again.seconds < 60
