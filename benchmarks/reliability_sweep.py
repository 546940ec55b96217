"""Hostile-but-realistic inputs through the public API and the CLI (issue #12), classified by outcome.

Every case says what a careful user expects: an error, or a correct result (with a check). The
outcome is one of

* ``clear error``: a cmvae user error (DataValidationError, ParameterError, ModelFileError, ...;
  CLI: exit 2) with a one-line message;
* ``correct``: no error and the check holds (files kept, outputs right);
* ``silent``: no error where one was due, or a check that fails (wrong output, a lost file);
* ``deep traceback``: any other exception (torch/numpy/safetensors/KeyError ...; CLI: exit 1).

    PYTHONPATH=src python benchmarks/reliability_sweep.py [--out benchmarks/reliability_sweep.md]

Takes about a minute on one CPU core; prints the table and the cases that are not clean.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml

from cmvae import CMVAE, DataValidationError, ModelFileError, NotFittedError, ParameterError, cli
from cmvae.config import ConfigError
from cmvae.training import NonFiniteLossError

USER_ERRORS = (DataValidationError, ParameterError, ModelFileError, NotFittedError, ConfigError, FileNotFoundError,
               NonFiniteLossError)
TINY = dict(n_clusters=2, shared_dim=2, private_dim=1, epochs=1, batch_size=16, progress=False,
            accelerator="cpu", likelihood="gaussian", seed=0)
CASES: list[tuple[str, str, bool, Callable[[Path], object]]] = []  # (class, name, error expected, run)


def case(klass: str, name: str, *, error: bool):
    def register(fn: Callable[[Path], object]) -> Callable[[Path], object]:
        CASES.append((klass, name, error, fn))
        return fn
    return register


def views(n: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return [(rng.normal(size=(n, 3)) + 3 * labels[:, None]).astype(np.float32),
            (rng.normal(size=(n, 2)) - 3 * labels[:, None]).astype(np.float32)]


_FITTED: dict[str, CMVAE] = {}


def fitted() -> CMVAE:
    if "m" not in _FITTED:
        _FITTED["m"] = CMVAE(**TINY).fit(views())
    return _FITTED["m"]


def saved(tmp: Path, legacy: bool = False) -> Path:
    path = fitted().save(tmp / "model")
    if legacy:
        (path / "SHA256SUMS").unlink()
    return path


def check(condition: bool, what: str) -> None:
    if not condition:
        raise _Silent(what)


class _Silent(Exception):
    """A check of a case that ran without error failed: a silently wrong outcome."""


# ------------------------------------------------------------------ 1. files: save and load
@case("save/load files", "save onto a folder with user data", error=True)
def _(tmp):
    (tmp / "p" / "data").mkdir(parents=True)
    (tmp / "p" / "data" / "raw.csv").write_text("x")
    try:
        fitted().save(tmp / "p", overwrite=True)
    finally:
        check((tmp / "p" / "data" / "raw.csv").exists(), "user file deleted")


@case("save/load files", "save onto the run folder of fit(out_dir=)", error=True)
def _(tmp):
    model = CMVAE(**TINY).fit(views(), out_dir=tmp / "run")
    try:
        model.save(tmp / "run")
    finally:
        check((tmp / "run" / "checkpoints" / "last.ckpt").exists(), "checkpoints deleted")


@case("save/load files", "save onto an existing file", error=True)
def _(tmp):
    (tmp / "m").write_text("precious")
    try:
        fitted().save(tmp / "m", overwrite=True)
    finally:
        check((tmp / "m").read_text() == "precious", "file replaced")


@case("save/load files", "save twice to one path, overwrite=True", error=False)
def _(tmp):
    path = saved(tmp)
    fitted().save(path, overwrite=True)
    check(sorted(p.name for p in tmp.iterdir()) == ["model"], "temporary folders left")


@case("save/load files", "failure between save's two renames", error=False)
def _(tmp):
    from cmvae import saving

    path = saved(tmp)
    real, calls = os.replace, []

    def fail_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("simulated")
        real(src, dst)

    saving.os.replace = fail_second  # type: ignore[assignment]
    try:
        with contextlib.suppress(OSError):
            fitted().save(path, overwrite=True)
    finally:
        saving.os.replace = real  # type: ignore[assignment]
    check(CMVAE.load(path).n_clusters == 2, "previous model lost")


@case("save/load files", "kill -9 during save, then save again", error=False)
def _(tmp):
    import subprocess

    script = ("import os\nfrom pathlib import Path\nfrom cmvae import saving\n"
              f"saving.write_model_folder(Path({str(tmp / 'model')!r}), lambda folder: os._exit(9))\n")
    subprocess.run([sys.executable, "-c", script], check=False)
    fitted().save(tmp / "model")
    check(sorted(p.name for p in tmp.iterdir()) == ["model"], "stale temporary folder left")


for _name, _mutate in {
    "64 bytes overwritten in weights": lambda p: _overwrite(p / "weights.safetensors"),
    "truncated weights": lambda p: _truncate(p / "weights.safetensors"),
    "truncated config.json": lambda p: _truncate(p / "config.json"),
    "truncated SHA256SUMS": lambda p: _truncate(p / "SHA256SUMS"),
    "edited config.json (checksummed save)": lambda p: _edit(p, lambda c: c["params"].update(beta=1.0)),
}.items():
    case("save/load files", _name, error=True)(lambda tmp, m=_mutate: CMVAE.load(_mutated(saved(tmp), m)))

for _name, _mutate in {
    "old save (no SHA256SUMS): 64 bytes overwritten in weights": lambda p: _overwrite(p / "weights.safetensors"),
    "old save: truncated weights": lambda p: _truncate(p / "weights.safetensors"),
    "old save: config.json without schema": lambda p: _edit(p, lambda c: c.pop("schema")),
    "old save: invalid JSON": lambda p: (p / "config.json").write_text("{"),
    "old save: format_version '1' (string)": lambda p: _edit(p, lambda c: c.update(format_version="1")),
    "old save: shared_dim edited": lambda p: _edit(p, lambda c: c["params"].update(shared_dim=5)),
    "old save: standardisation removed": lambda p: _edit(p, lambda c: c["schema"]["modalities"][0].update(mean=None)),
}.items():
    case("save/load files", _name, error=True)(lambda tmp, m=_mutate: _load_checked(_mutated(saved(tmp, True), m)))


def _load_checked(path: Path) -> None:
    """Load and predict: NaN outputs from a silently corrupted model count as silent."""
    model = CMVAE.load(path)
    check(np.isfinite(model.transform(views())).all(), "NaN outputs")
    check(np.allclose(model.transform(views()), fitted().transform(views()), atol=1e-5), "outputs changed")


def _mutated(path: Path, mutate) -> Path:
    mutate(path)
    return path


def _overwrite(file: Path) -> None:
    data = bytearray(file.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = np.random.default_rng(1).integers(0, 256, 64, dtype=np.uint8).tobytes()
    file.write_bytes(bytes(data))


def _truncate(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _edit(path: Path, fn) -> None:
    config = json.loads((path / "config.json").read_text())
    fn(config)
    (path / "config.json").write_text(json.dumps(config))


@case("save/load files", "the format-1 fixture of cmvae 0.1.0", error=False)
def _(tmp):
    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "model_format1"
    check(CMVAE.load(fixture).n_clusters == 2, "fixture")


# ------------------------------------------------------------------ 2. settings
for _name, _kwargs in {"n_clusters=2.5": {"n_clusters": 2.5}, "epochs=1.5": {"epochs": 1.5},
                       "lr=nan": {"lr": float("nan")}, "lr=-1": {"lr": -1.0}, "batch_size='16'": {"batch_size": "16"},
                       "beta=inf": {"beta": float("inf")}, "likelihood='poisson'": {"likelihood": "poisson"},
                       "accelerator=''": {"accelerator": ""}, "progress='no'": {"progress": "no"},
                       "shared_dim=True": {"shared_dim": True}}.items():
    case("settings", _name, error=True)(lambda tmp, k=_kwargs: CMVAE(**{**TINY, **k}))

case("settings", "seed=None fits", error=False)(
    lambda tmp: check(CMVAE(**{**TINY, "seed": None}).fit(views()).predict(views()).shape == (32,), "shape"))
case("settings", "n_clusters > N", error=True)(lambda tmp: CMVAE(**{**TINY, "n_clusters": 40}).fit(views()))
case("settings", "likelihood list of the wrong length", error=True)(
    lambda tmp: CMVAE(**{**TINY, "likelihood": ["gaussian"] * 3}).fit(views()))
if not torch.cuda.is_available():
    case("settings", "accelerator='gpu' without a GPU", error=True)(
        lambda tmp: CMVAE(**{**TINY, "accelerator": "gpu"}).fit(views()))


@case("settings", "n_clusters > N leaves the model unfitted", error=False)
def _(tmp):
    model = CMVAE(**{**TINY, "n_clusters": 40})
    with contextlib.suppress(DataValidationError):
        model.fit(views())
    check(model.module_ is None, "left fitted")


# ------------------------------------------------------------------ 3. data
def _replace(m: int, x) -> list:
    v = views()
    v[m] = x
    return v


for _name, _data in {
    "NaN in a view": lambda: _replace(0, np.where(np.eye(32, 3) > 0, np.nan, views()[0])),
    "inf in a view": lambda: _replace(1, np.full((32, 2), np.inf, np.float32)),
    "views of different lengths": lambda: _replace(1, views()[1][:30]),
    "strings": lambda: _replace(0, views()[0].astype(str)),
    "Python objects": lambda: _replace(1, views()[1].astype(object)),
    "complex numbers": lambda: _replace(1, views()[1].astype(np.complex64)),
    "booleans": lambda: _replace(1, views()[1] > 0),
    "1-D array": lambda: _replace(0, views()[0][:, 0]),
    "zero-width array": lambda: _replace(0, np.zeros((32, 0), np.float32)),
    "no samples": lambda: [v[:0] for v in views()],
    "a path instead of views": lambda: "views.npz",
    "a single array instead of a list": lambda: views()[0],
    "one modality": lambda: views()[:1],
    "ragged nested lists": lambda: _replace(1, [[1.0, 2.0], [3.0]] * 16),
}.items():
    case("data", f"fit: {_name}", error=True)(lambda tmp, d=_data: CMVAE(**TINY).fit(d()))

for _name, _data in {
    "width mismatch": lambda: _replace(0, np.zeros((32, 4), np.float32)),
    "strings": lambda: _replace(0, views()[0].astype(str)),
    "uint8 instead of float": lambda: _replace(0, views()[0].astype(np.uint8)),
    "wrong number of modalities": lambda: views() + [views()[0]],
}.items():
    case("data", f"predict: {_name}", error=True)(lambda tmp, d=_data: fitted().predict(d()))


@case("data", "a feature constant at fit drifts by 1e-3 at predict", error=False)
def _(tmp):
    v = views()
    v[0][:, 1] = 0.45
    model = CMVAE(**TINY).fit(v)
    drifted = [v[0].copy(), v[1]]
    drifted[0][:, 1] += 1e-3
    check(np.abs(model.transform(drifted) - model.transform(v)).max() < 0.05, "codes jump")


case("data", "float64 and int inputs", error=False)(
    lambda tmp: check(fitted().predict([views()[0].astype(np.float64), views()[1]]).shape == (32,), "shape"))

# ------------------------------------------------------------------ 4. generation arguments
for _name, _call in {
    "generate(targets=[1.7])": lambda m: m.generate([views()[0], None], targets=[1.7]),
    "generate(targets=1)": lambda m: m.generate([views()[0], None], targets=1),
    "generate(targets=[5])": lambda m: m.generate([views()[0], None], targets=[5]),
    "generate(targets=[])": lambda m: m.generate([views()[0], None], targets=[]),
    "sample(cluster=1.5)": lambda m: m.sample(2, cluster=1.5),
    "sample(cluster=9)": lambda m: m.sample(2, cluster=9),
    "sample(0)": lambda m: m.sample(0),
    "sample(2.5)": lambda m: m.sample(2.5),
    "apply_selection of another model": lambda m: m.apply_selection(
        CMVAE(**{**TINY, "seed": 3}).fit(views(seed=3)).select_clusters(views(seed=3))),
    "predict before fit": lambda m: CMVAE(**TINY).predict(views()),
}.items():
    case("generation and selection", _name, error=True)(lambda tmp, c=_call: c(fitted()))

case("generation and selection", "generate(targets=[1]) from modality 0", error=False)(
    lambda tmp: check(fitted().generate([views()[0], None], targets=[1])[1].shape == (32, 2), "shape"))


# ------------------------------------------------------------------ 5. CLI
def _write_run_data(tmp: Path, dtype=np.float32, **sections) -> Path:
    np.savez(tmp / "d.npz", **{f"view{m}": v.astype(dtype) for m, v in enumerate(views())},
             labels=np.arange(32) % 2)
    config = {"data": {"name": "arrays", "path": str(tmp / "d.npz")},
              "model": {"n_clusters": 2, "shared_dim": 2, "private_dim": 1, "likelihood": "gaussian"},
              "training": {"epochs": 2, "batch_size": 16, "accelerator": "cpu", "devices": 1, "progress": False}}
    for key, values in sections.items():
        config[key].update(values)
    (tmp / "c.yaml").write_text(yaml.safe_dump(config))
    return tmp / "c.yaml"


def _cli(*argv: str) -> None:
    """Run the CLI; exit 2 with one line is a clear error, exit 1 a deep one, 0 fine."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    if code == 2 and len(lines) == 1:
        raise _ClearCLIError(lines[0])
    if code != 0:
        raise RuntimeError(f"exit {code}: {err.getvalue()[-300:]}")


class _ClearCLIError(Exception):
    """``cmvae`` exited 2 with one line."""


def _trained_run(tmp: Path) -> Path:
    _cli("train", "--config", str(_write_run_data(tmp)), "--out", str(tmp / "run"))
    return tmp / "run"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@case("CLI", "--resume with a changed config (shared_dim 2 -> 4)", error=True)
def _(tmp):
    run = _trained_run(tmp)
    before = _snapshot(run)
    changed = _write_run_data(tmp, model={"shared_dim": 4})
    try:
        _cli("train", "--config", str(changed), "--out", str(run), "--resume", "--epochs", "3")
    finally:
        check(_snapshot(run) == before, "run folder changed")
        _cli("train", "--out", str(run), "--resume", "--epochs", "3")  # still resumable


@case("CLI", "--resume with --epochs below the epochs trained", error=True)
def _(tmp):
    run = _trained_run(tmp)
    before = _snapshot(run)
    try:
        _cli("train", "--out", str(run), "--resume", "--epochs", "1")
    finally:
        check(_snapshot(run) == before, "run folder changed")


@case("CLI", "--resume from a truncated last.ckpt", error=True)
def _(tmp):
    run = _trained_run(tmp)
    _truncate(run / "checkpoints" / "last.ckpt")
    _cli("train", "--out", str(run), "--resume", "--epochs", "3")


@case("CLI", "evaluate with corrupted weights", error=True)
def _(tmp):
    run = _trained_run(tmp)
    _overwrite(run / "model" / "weights.safetensors")
    _cli("evaluate", str(run))


@case("CLI", "--out naming a file", error=True)
def _(tmp):
    (tmp / "f").write_text("keep")
    try:
        _cli("train", "--config", str(_write_run_data(tmp)), "--out", str(tmp / "f"))
    finally:
        check((tmp / "f").read_text() == "keep", "file changed")


for _name, _sections in {"n_clusters > N": {"model": {"n_clusters": 40}},
                         "likelihood list of the wrong length": {"model": {"likelihood": ["gaussian"] * 3}},
                         "accelerator: gpu without a GPU": {"training": {"accelerator": "gpu"}}}.items():
    if "gpu" in _name and torch.cuda.is_available():
        continue

    def _run(tmp, s=_sections):
        try:
            _cli("train", "--config", str(_write_run_data(tmp, **s)), "--out", str(tmp / "run"))
        finally:
            check(not (tmp / "run").exists(), "files left behind (the rerun would need --overwrite)")

    case("CLI", _name, error=True)(_run)


@case("CLI", "string data in the .npz", error=True)
def _(tmp):
    _cli("train", "--config", str(_write_run_data(tmp, dtype=str)), "--out", str(tmp / "run"))


@case("CLI", "an empty config file", error=True)
def _(tmp):
    (tmp / "e.yaml").write_text("")
    _cli("train", "--config", str(tmp / "e.yaml"), "--out", str(tmp / "run"))


@case("CLI", "train, then --resume to more epochs", error=False)
def _(tmp):
    run = _trained_run(tmp)
    _cli("train", "--out", str(run), "--resume", "--epochs", "3")
    rows = (run / "logs" / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("epoch")
    check({"0", "1", "2"} <= {r.split(",")[col] for r in rows[1:]}, "epochs missing from metrics.csv")


# ------------------------------------------------------------------ running
def classify(error_expected: bool, fn: Callable[[Path], object]) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            fn(Path(tmp))
        except _Silent as err:
            return "silent", str(err)
        except _ClearCLIError as err:
            return ("clear error", str(err)) if error_expected else ("silent", f"unexpected error: {err}")
        except USER_ERRORS as err:
            text = str(err)
            if "\n" in text or len(text) > 500:
                return "deep traceback", f"{type(err).__name__}: multi-line/long message"
            return ("clear error", f"{type(err).__name__}: {text}") if error_expected else (
                "silent", f"unexpected {type(err).__name__}: {text}")
        except Exception as err:  # noqa: BLE001
            return "deep traceback", f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
    return ("silent", "no error") if error_expected else ("correct", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="write the per-case table as Markdown")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    start = time.monotonic()
    results = []
    for klass, name, expected, fn in CASES:
        outcome, detail = classify(expected, fn)
        results.append((klass, name, outcome, detail))
    classes = list(dict.fromkeys(r[0] for r in results))
    kinds = ("clear error", "correct", "silent", "deep traceback")
    table = ["| class | cases | " + " | ".join(kinds) + " |", "|---|---:|" + "---:|" * len(kinds)]
    for klass in classes + ["total"]:
        rows = [r for r in results if klass in ("total", r[0])]
        table.append(f"| {klass} | {len(rows)} | " + " | ".join(str(sum(r[2] == k for r in rows)) for k in kinds) + " |")
    print("\n".join(table))
    bad = [r for r in results if r[2] in ("silent", "deep traceback")]
    for r in bad:
        print(f"NOT CLEAN [{r[0]}] {r[1]}: {r[2]}: {r[3]}")
    print(f"{len(results)} cases in {time.monotonic() - start:.0f} s")
    if args.out:
        lines = ["| class | case | outcome | message |", "|---|---|---|---|"]
        lines += [f"| {k} | {n} | {o} | {d.replace('|', '/')[:160]} |" for k, n, o, d in results]
        Path(args.out).write_text("\n".join(table) + "\n\n" + "\n".join(lines) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
