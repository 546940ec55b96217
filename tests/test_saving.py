"""save never loses a user's file; load checks integrity and names the damaged file (issue #12)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmvae import CMVAE, ModelFileError
from cmvae import saving
from cmvae.saving import CHECKSUM_FILE, CONFIG_FILE, WEIGHTS_FILE

TINY = dict(n_clusters=2, shared_dim=2, private_dim=1, epochs=1, batch_size=16, progress=False,
            accelerator="cpu", likelihood="gaussian", seed=0)


def tiny_views(n: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 3)).astype(np.float32), rng.normal(size=(n, 2)).astype(np.float32)]


@pytest.fixture(scope="module")
def fitted() -> CMVAE:
    return CMVAE(**TINY).fit(tiny_views())


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("saved") / "model")


def copy_model(saved: Path, where: Path) -> Path:
    target = where / "model"
    shutil.copytree(saved, target)
    return target


# ------------------------------------------------------------------ save never deletes or hides
def test_save_refuses_a_folder_holding_user_files(fitted, tmp_path):
    data = tmp_path / "p" / "data"
    data.mkdir(parents=True)
    (data / "raw.csv").write_text("a,b\n1,2\n")
    for overwrite in (False, True):
        with pytest.raises(ModelFileError, match="not a saved cmvae model"):
            fitted.save(tmp_path / "p", overwrite=overwrite)
    assert (data / "raw.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary folder left


def test_save_refuses_the_run_folder_of_fit(tmp_path):
    run = tmp_path / "run"
    model = CMVAE(**TINY).fit(tiny_views(), out_dir=run)
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert "checkpoints/last.ckpt" in before
    with pytest.raises(ModelFileError, match="run"):
        model.save(run, overwrite=True)
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


def test_save_refuses_an_existing_file(fitted, tmp_path):
    target = tmp_path / "model"
    target.write_text("precious")
    with pytest.raises(ModelFileError, match="is a file"):
        fitted.save(target, overwrite=True)
    assert target.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_under_a_file_is_refused(fitted, tmp_path):
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(ModelFileError, match="notes.txt is a file"):
        fitted.save(tmp_path / "notes.txt" / "model")
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_failure_between_the_renames_keeps_the_previous_model(fitted, saved, tmp_path, monkeypatch):
    path = copy_model(saved, tmp_path)
    before = (path / WEIGHTS_FILE).read_bytes()
    real_replace = os.replace
    calls = []

    def failing_second_rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(saving.os, "replace", failing_second_rename)
    with pytest.raises(OSError, match="disk full"):
        fitted.save(path, overwrite=True)
    monkeypatch.undo()
    assert (path / WEIGHTS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_kill_between_the_renames_is_repaired_by_the_next_load(saved, tmp_path):
    path = copy_model(saved, tmp_path)
    os.replace(path, tmp_path / ".model.cmvae-old-abc123")  # what a kill -9 between the renames leaves
    loaded = CMVAE.load(path)
    assert loaded.n_clusters == 2 and path.is_dir()


def test_stale_temporaries_of_a_killed_save_are_removed_and_others_kept(fitted, tmp_path):
    script = (  # cmvae.saving needs only the standard library: load it alone (no torch import)
        "import importlib.util, os\n"
        f"spec = importlib.util.spec_from_file_location('saving', {saving.__file__!r})\n"
        "saving = importlib.util.module_from_spec(spec); spec.loader.exec_module(saving)\n"
        "def write(folder):\n    os._exit(9)  # killed in the middle of writing\n"
        f"saving.write_model_folder(saving.Path({str(tmp_path / 'model')!r}), write)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    stale = [p for p in tmp_path.iterdir() if ".cmvae-tmp-" in p.name]
    assert len(stale) == 1, "the killed save should have left its temporary folder"
    users = tmp_path / ".model.cmvae-tmp-mine"  # same name pattern, no marker: not cmvae's
    users.mkdir()
    (users / "keep.txt").write_text("x")
    fitted.save(tmp_path / "model")
    assert not stale[0].exists()
    assert (users / "keep.txt").read_text() == "x"
    assert CMVAE.load(tmp_path / "model").n_clusters == 2


# ------------------------------------------------------------------ load checks integrity
def overwrite_middle(file: Path, n: int = 64) -> None:
    data = bytearray(file.read_bytes())
    mid = len(data) // 2
    data[mid : mid + n] = os.urandom(n)
    file.write_bytes(bytes(data))


def test_corrupted_weights_are_reported_by_name(saved, tmp_path):
    path = copy_model(saved, tmp_path)
    overwrite_middle(path / WEIGHTS_FILE)
    with pytest.raises(ModelFileError, match=rf"{WEIGHTS_FILE} is damaged"):
        CMVAE.load(path)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE, CHECKSUM_FILE])
def test_truncated_files_are_reported_by_name(saved, tmp_path, name):
    path = copy_model(saved, tmp_path)
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=name):
        CMVAE.load(path)


def legacy(saved: Path, where: Path) -> Path:
    """A copy without SHA256SUMS, as cmvae 0.1.0 saved it."""
    path = copy_model(saved, where)
    (path / CHECKSUM_FILE).unlink()
    return path


def test_models_without_checksums_still_load_and_are_checked_for_consistency(fitted, saved, tmp_path):
    path = legacy(saved, tmp_path)
    np.testing.assert_array_equal(CMVAE.load(path).predict(tiny_views()), fitted.predict(tiny_views()))
    weights = (path / WEIGHTS_FILE).read_bytes()
    (path / WEIGHTS_FILE).write_bytes(weights[:-40])
    with pytest.raises(ModelFileError, match=f"{WEIGHTS_FILE} is damaged or truncated"):
        CMVAE.load(path)


def test_nan_weights_in_an_old_save_are_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    path = legacy(saved, tmp_path)
    state = load_file(str(path / WEIGHTS_FILE))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel())
    state[key].view(-1)[0] = float("nan")
    save_file(state, str(path / WEIGHTS_FILE))
    with pytest.raises(ModelFileError, match="NaN"):
        CMVAE.load(path)


def edit_config(path: Path, edit) -> None:
    config = json.loads((path / CONFIG_FILE).read_text())
    edit(config)
    (path / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda c: c.pop("schema"), "schema: missing key"),
        (lambda c: c.pop("model_type"), "unknown model type"),
        (lambda c: c.update(format_version="1"), "format_version must be an integer, got '1'"),
        (lambda c: c["params"].update(shared_dim=6), "does not fit"),
        (lambda c: c["params"].update(n_clusters="two"), "invalid params"),
        (lambda c: c["schema"]["modalities"][0].update(mean=None, std=None), "standardisation"),
        (lambda c: c["schema"]["modalities"][0].pop("kind"), "schema"),
    ],
)
def test_edited_config_of_an_old_save_gives_one_clear_error(saved, tmp_path, edit, needle):
    path = legacy(saved, tmp_path)
    edit_config(path, edit)
    with pytest.raises(ModelFileError, match=needle) as err:
        CMVAE.load(path)
    assert CONFIG_FILE in str(err.value) or "model" in str(err.value)


def test_invalid_json_names_the_file(saved, tmp_path):
    path = legacy(saved, tmp_path)
    (path / CONFIG_FILE).write_text('{"format_version": 1,')
    with pytest.raises(ModelFileError, match=rf"{CONFIG_FILE} is damaged: invalid JSON at line 1"):
        CMVAE.load(path)


def test_an_edit_of_a_checksummed_save_is_detected(saved, tmp_path):
    path = copy_model(saved, tmp_path)
    edit_config(path, lambda c: c["schema"]["modalities"][0].update(mean=[0.0, 0.0, 0.0]))
    with pytest.raises(ModelFileError, match=f"{CONFIG_FILE} is damaged"):
        CMVAE.load(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from([CONFIG_FILE, WEIGHTS_FILE, CHECKSUM_FILE]),
    truncate=st.booleans(),
    where=st.floats(0, 1, exclude_max=True),
    value=st.integers(0, 255),
)
def test_load_over_random_byte_flips_and_truncations(fitted, saved, name, truncate, where, value):
    """Every damage to every saved file is either harmless (same outputs) or one error naming the file."""
    views = tiny_views()
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_model(saved, Path(tmp))
        data = bytearray((path / name).read_bytes())
        pos = int(where * len(data))
        if truncate:
            del data[pos:]
        else:
            data[pos] = value
        (path / name).write_bytes(bytes(data))
        try:
            loaded = CMVAE.load(path)
        except ModelFileError as err:
            assert name in str(err) and "\n" not in str(err)
        else:
            np.testing.assert_array_equal(loaded.transform(views), fitted.transform(views))


def test_a_save_from_before_a_parameter_existed_loads_with_the_value_it_was_trained_with(saved, tmp_path):
    # early_stopping (added with the held-out bound's stop) and scale_param were not recorded by older saves:
    # such a model trained on to its last epoch, with softplus scales, whatever today's defaults are
    path = legacy(saved, tmp_path)
    edit_config(path, lambda c: [c["params"].pop(k, None) for k in ("early_stopping", "scale_param")])
    old = CMVAE.load(path)
    assert old.early_stopping is False and old.scale_param == "softplus"
    assert CMVAE.load(saved).early_stopping is True
