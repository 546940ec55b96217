"""Running the parts of a reproduction resumably inside one output folder.

Layout of ``DIR``::

    DIR/reproduce.json          what run this folder holds (scale, cmvae version, config digest)
    DIR/parts/NAME/             everything part NAME writes (its JSON results and PNG figures)
    DIR/parts/NAME/result.json  the part's result, written when it succeeded...
    DIR/parts/NAME/DONE.json    ...then its completion marker (wall time, when, which attempt)
    DIR/parts/NAME/attempts.json  every attempt (start, seconds, outcome); error.txt: the last traceback

A rerun reuses every part whose marker exists and runs the others again (a part may continue its
own unfinished work, e.g. per seed). The folder must be new, empty, or hold a run of the same
scale, version and config: anything else is refused (:class:`RunDirError`), so files the
program did not write are never overwritten or deleted.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .document import write_atomic

__all__ = ["MANIFEST", "MARKER", "RESULT", "Part", "PartContext", "PartOutcome", "RunDirError",
           "prepare_out_dir", "run_parts"]

MANIFEST = "reproduce.json"
MARKER = "DONE.json"
RESULT = "result.json"
ATTEMPTS = "attempts.json"
ERROR = "error.txt"
PROGRAM = "cmvae reproduce"
FORMAT = 1


class RunDirError(ConfigError):
    """The output folder cannot hold this run (another scale, version or config; foreign files)."""


@dataclass
class PartContext:
    """What a part's ``run`` receives: its own folder, the run folder, the results of the parts it
    needs, the plan (opaque to the runner) and ``say(text)`` for progress."""

    name: str
    folder: Path
    out: Path
    results: dict[str, dict[str, Any]]
    plan: Any
    say: Callable[[str], None]

    def rel(self, path: Path) -> str:
        """``path`` relative to the run folder (results store relative paths: the folder may move)."""
        return Path(path).resolve().relative_to(self.out.resolve()).as_posix()


@dataclass(frozen=True)
class Part:
    """One part: ``run(context) -> result`` (a JSON-able dict); ``needs``: parts whose results it reads."""

    name: str
    title: str
    run: Callable[[PartContext], dict[str, Any]]
    needs: tuple[str, ...] = ()


@dataclass
class PartOutcome:
    """What happened to a part in this call: ``done`` (ran now), ``reused`` (finished earlier),
    ``failed`` (raised; ``error`` is one line) or ``blocked`` (a part it needs did not finish)."""

    name: str
    title: str
    status: str
    seconds: float | None = None
    finished: str | None = None
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: str | None = None
    earlier_seconds: float = field(default=0.0)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "reused")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, json.dumps(value, indent=2, default=float) + "\n")


_MISMATCH = {
    "scale": "{out} holds a reproduction at scale {have!r}, not {want!r}: choose another --out (one folder holds one scale)",
    "cmvae_version": "{out} was written by cmvae {have}, this is cmvae {want}: choose another --out "
                     "(results of two versions are not mixed)",
    "config_sha256": "{out} was started with another version of the {scale!r} scale config: choose another --out "
                     "(parts of two configs are not mixed)",
}


def prepare_out_dir(out: Path, identity: dict[str, str]) -> dict[str, Any]:
    """Check that ``out`` may hold the run ``identity`` (``scale``, ``cmvae_version``, ``config_sha256``)
    and write its manifest when the folder is new or empty. Returns the manifest.

    Raises :class:`RunDirError` naming the folder: a file; a folder with files but no manifest; a
    manifest of another program, scale, version or config; an unreadable manifest.
    """
    manifest_path = out / MANIFEST
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out} is a file, not a folder")
    if manifest_path.exists():
        manifest = _read_json(manifest_path)
        if not isinstance(manifest, dict) or manifest.get("program") != PROGRAM:
            raise RunDirError(f"{manifest_path} is not a cmvae reproduce manifest: choose another --out")
        for key, want in identity.items():
            have = manifest.get(key)
            if have != want:
                raise RunDirError(_MISMATCH.get(key, "{out}: {key} is {have!r}, this run has {want!r}").format(
                    out=out, have=have, want=want, key=key, scale=identity.get("scale")))
        return manifest
    if out.is_dir() and any(out.iterdir()):
        raise RunDirError(f"{out} is not empty and holds no {MANIFEST}: choose a new or empty folder "
                          "(cmvae reproduce never writes among files it did not create)")
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"program": PROGRAM, "format": FORMAT, **identity, "created": _now()}
    _write_json(manifest_path, manifest)
    return manifest


def _finished(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(marker, result)`` of a finished part, or None (no marker, or an unreadable result)."""
    marker, result = _read_json(folder / MARKER), _read_json(folder / RESULT)
    if isinstance(marker, dict) and isinstance(result, dict):
        return marker, result
    return None


def run_parts(out: Path, parts: list[Part], *, plan: Any = None,
              say: Callable[[str, str], None] | None = None) -> list[PartOutcome]:
    """Run ``parts`` in order inside ``out`` (prepared by :func:`prepare_out_dir`).

    A part whose marker exists is reused; a part that raises is recorded (``attempts.json``,
    ``error.txt``) and left without a marker, so the next call runs it again; parts that need it
    are ``blocked``. ``KeyboardInterrupt`` stops at once (the attempt is recorded as interrupted).
    ``say(part, text)`` reports progress.
    """
    tell = say or (lambda name, text: None)
    outcomes: dict[str, PartOutcome] = {}
    for part in parts:
        folder = out / "parts" / part.name
        attempts = _read_json(folder / ATTEMPTS)
        attempts = attempts if isinstance(attempts, list) else []
        for entry in attempts:  # an attempt still "running" belonged to a process that was killed
            if isinstance(entry, dict) and entry.get("status") == "running":
                entry["status"] = "killed"
        earlier = float(sum(a.get("seconds") or 0.0 for a in attempts if a.get("status") != "done"))
        found = _finished(folder)
        if found is not None:
            marker, result = found
            outcomes[part.name] = PartOutcome(part.name, part.title, "reused", marker.get("seconds"),
                                              marker.get("finished"), len(attempts), result, None, earlier)
            tell(part.name, "finished earlier: reused")
            continue
        missing = [n for n in part.needs if n not in outcomes or not outcomes[n].ok]
        if missing:
            outcomes[part.name] = PartOutcome(part.name, part.title, "blocked", attempts=len(attempts),
                                              error=f"needs {', '.join(missing)}, which did not finish",
                                              earlier_seconds=earlier)
            tell(part.name, f"blocked: needs {', '.join(missing)}")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"started": _now(), "seconds": None, "status": "running"}
        attempts.append(entry)
        _write_json(folder / ATTEMPTS, attempts)
        context = PartContext(part.name, folder, out, {n: outcomes[n].result or {} for n in part.needs}, plan,
                              lambda text, name=part.name: tell(name, text))
        tell(part.name, "running")
        start = time.monotonic()
        try:
            result = part.run(context)
            if not isinstance(result, dict):
                raise TypeError(f"part {part.name} returned {type(result).__name__}, not a dict")
            _write_json(folder / RESULT, result)
        except BaseException as err:
            entry.update(seconds=round(time.monotonic() - start, 1),
                         status="interrupted" if isinstance(err, KeyboardInterrupt) else "failed",
                         error=f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__)
            _write_json(folder / ATTEMPTS, attempts)
            write_atomic(folder / ERROR, "".join(traceback.format_exception(err)))
            if not isinstance(err, Exception):
                raise
            outcomes[part.name] = PartOutcome(part.name, part.title, "failed", entry["seconds"], None, len(attempts),
                                              None, entry["error"], earlier + entry["seconds"])
            tell(part.name, f"failed: {entry['error']}")
            continue
        seconds = round(time.monotonic() - start, 1)
        entry.update(seconds=seconds, status="done")
        _write_json(folder / ATTEMPTS, attempts)
        finished = _now()
        _write_json(folder / MARKER, {"part": part.name, "seconds": seconds, "finished": finished,
                                      "attempt": len(attempts)})
        outcomes[part.name] = PartOutcome(part.name, part.title, "done", seconds, finished, len(attempts), result,
                                          None, earlier)
        tell(part.name, f"done in {seconds:.0f} s")
    return [outcomes[p.name] for p in parts]
