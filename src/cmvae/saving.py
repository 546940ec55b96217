"""Safe writing and checked reading of saved-model folders (used by ``save``/``load``).

Guarantees (kept by ``tests/test_saving.py``):

* ``save`` never deletes or hides anything it did not write. A path that exists and is not a
  saved cmvae model (a folder whose files are exactly those :meth:`save` writes, with a
  ``config.json`` naming a ``model_type``) is refused, with or without ``overwrite``; a saved
  model is replaced only with ``overwrite=True``.
* The new model is written into a temporary folder next to the target and moved into place;
  if the replacement fails half-way the previous model is put back. Temporary folders left
  behind by a killed process are recognised by name and marker and removed by the next save
  into the same parent folder; a previous model left aside by a kill between the two renames
  is restored by the next ``save`` or ``load``.
* Every file's SHA-256 is recorded in ``SHA256SUMS`` (``sha256sum -c`` format) and checked at
  load: a damaged or truncated file is reported by name (:class:`ModelFileError`).
  Models saved before checksums existed (no ``SHA256SUMS``) still load.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
CHECKSUM_FILE = "SHA256SUMS"
#: The files a saved model consists of (SHA256SUMS is absent from models saved by cmvae <= 0.1).
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, CHECKSUM_FILE)
_PARTIAL_MARKER = ".cmvae-partial"  # inside a temporary folder: the pid of the writing process
_TMP_INFIX = ".cmvae-tmp-"
_OLD_INFIX = ".cmvae-old-"
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9_.-]+)$")


class ModelFileError(ValueError):
    """A saved model (or a path given to save) cannot be used; the message names the file and the problem."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_saved_model(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``save``: only model files, and a ``config.json``
    that is a JSON object with a ``model_type`` (damaged models count: they are still ours)."""
    if not path.is_dir() or path.is_symlink():
        return False
    names = {p.name for p in path.iterdir()}
    if CONFIG_FILE not in names or not names <= {*MODEL_FILES, _PARTIAL_MARKER}:
        return False
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return CHECKSUM_FILE in names  # a damaged config of a checksummed save is still our file
    return isinstance(config, dict) and "model_type" in config


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _leftovers(path: Path, infix: str) -> list[Path]:
    """Folders ``.NAME.cmvae-tmp-*`` / ``.NAME.cmvae-old-*`` next to ``path``."""
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{glob.escape(path.name)}{infix}*"))


def clean_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporary folders of saves to ``path`` whose writing process is gone (a kill -9).

    Only folders carrying cmvae's name pattern *and* its marker file are touched."""
    removed = []
    for tmp in _leftovers(path, _TMP_INFIX):
        marker = tmp / _PARTIAL_MARKER
        try:
            pid = int(marker.read_text().strip())
        except (OSError, ValueError):
            continue  # not ours, or not readable: leave it alone
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def restore_interrupted_replacement(path: Path) -> Path | None:
    """When a kill hit between the two renames of a replacement, ``path`` is missing and the previous
    model sits in ``.NAME.cmvae-old-*``: move it back. Returns the restored path, if any."""
    if path.exists() or path.is_symlink():
        return None
    for old in _leftovers(path, _OLD_INFIX):
        if is_saved_model(old):
            os.replace(old, path)
            return path
    return None


def check_save_target(path: Path, overwrite: bool) -> bool:
    """Raise :class:`ModelFileError` unless ``path`` may receive a model; True when it holds one to replace."""
    if not (path.exists() or path.is_symlink()):
        return False
    if not is_saved_model(path):
        what = "a file" if path.is_file() else "a folder that is not a saved cmvae model" if path.is_dir() else "not a folder"
        raise ModelFileError(
            f"cannot save to {path}: it exists and is {what}; save never replaces what it did not write: "
            "choose a new path (or an earlier saved model with overwrite=True)"
        )
    if not overwrite:
        raise ModelFileError(f"cannot save to {path}: it already holds a saved model; pass overwrite=True to replace it")
    return True


def write_model_folder(path: Path, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Write a model with ``write(folder)`` into a temporary folder next to ``path`` and move it into place.

    ``write`` creates the model files; their checksums are added here. See the module docstring
    for what is refused and what is guaranteed.
    """
    path = Path(path)
    blocking = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ModelFileError(f"cannot save to {path}: {blocking} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted_replacement(path)
    replace = check_save_target(path, overwrite)
    clean_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{_TMP_INFIX}", dir=path.parent))
    try:
        (tmp / _PARTIAL_MARKER).write_text(str(os.getpid()))
        write(tmp)
        write_checksums(tmp)
        _fsync_folder(tmp)
        if replace:
            _swap_in(tmp, path)
        else:
            os.replace(tmp, path)
        # the marker travels with the move (a kill just before it must leave a recognisable folder)
        (path / _PARTIAL_MARKER).unlink(missing_ok=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _swap_in(new: Path, path: Path) -> None:
    """Replace the saved model at ``path`` by ``new``; on failure the old model is put back."""
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}{_OLD_INFIX}", dir=path.parent))
    old.rmdir()
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    """Flush the files of ``folder`` to disk before it is moved into place."""
    for p in folder.iterdir():
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_checksums(folder: Path) -> None:
    """``SHA256SUMS`` listing every model file of ``folder`` (readable by ``sha256sum -c``)."""
    lines = [f"{sha256_of(folder / name)}  {name}" for name in (CONFIG_FILE, WEIGHTS_FILE) if (folder / name).is_file()]
    (folder / CHECKSUM_FILE).write_text("\n".join(lines) + "\n")


def verify_checksums(folder: Path) -> bool:
    """Check the files listed in ``SHA256SUMS``; False when there is none (a model saved before checksums)."""
    sums = folder / CHECKSUM_FILE
    if not sums.exists():
        return False
    try:
        text = sums.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{sums}: unreadable checksum file ({err.__class__.__name__})") from None
    expected: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = _CHECKSUM_LINE.match(line)
        if match is None:
            raise ModelFileError(f"{sums}: line {number} is damaged (expected '<sha256>  <file name>')")
        expected[match.group(2)] = match.group(1)
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if name not in expected]
    if missing or not text.endswith("\n"):
        raise ModelFileError(f"{sums} is damaged or truncated: it does not list {', '.join(missing) or 'every file'}")
    for name, digest in expected.items():
        file = folder / name
        if not file.is_file():
            raise ModelFileError(f"{file} is missing (listed in {CHECKSUM_FILE})")
        if sha256_of(file) != digest:
            raise ModelFileError(
                f"{file} is damaged: its SHA-256 differs from the one recorded at save in {CHECKSUM_FILE} "
                "(the file was changed, truncated or corrupted after saving)"
            )
    return True


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a saved model as a dict, with errors naming the file."""
    file = folder / CONFIG_FILE
    try:
        config = json.loads(file.read_text())
    except UnicodeDecodeError:
        raise ModelFileError(f"{file} is damaged: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{file} is damaged: invalid JSON at line {err.lineno}, column {err.colno} ({err.msg})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{file} is damaged: expected a JSON object, got {type(config).__name__}")
    return config
