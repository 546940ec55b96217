"""A run folder: what a run writes there, preparing it (fresh, ``--overwrite``, ``--resume``), keeping the
metrics logged before a resume, cleaning up a run that failed, and loading a finished run.

A run folder holds ``config.yaml`` (the resolved config), ``checkpoints/last.ckpt``, ``logs/metrics.csv``
(and TensorBoard events), ``model/`` (:meth:`cmvae.CMVAE.save`), ``training_curves.png`` and the
reports of ``evaluate``, ``sample`` and ``select-clusters``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# Files a run writes; --overwrite removes exactly these.
RUN_OUTPUTS = (
    "checkpoints",
    "logs",
    "model",
    "config.yaml",
    "training_curves.png",
    "evaluation.md",
    "evaluation.json",
    "samples.png",
    "conditional_samples.png",
    "generation.md",
    "generation.json",
)


class RunError(Exception):
    """A run folder, or what is asked of it, cannot be used; the message says why and what to do (the
    command line prints it as one line and exits with status 2)."""


def is_rank_zero() -> bool:
    """False in the extra processes of multi-process (DDP) training, which only help fit."""
    from ..training import is_global_zero

    return is_global_zero()


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Make ``out`` ready for a run: with ``resume`` it must hold a checkpoint; otherwise a previous run's
    outputs (:data:`RUN_OUTPUTS`) are refused, or removed with ``overwrite``; nothing else is touched."""
    if resume and overwrite:
        raise RunError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a run folder: choose a folder path")
    if resume:
        if not (out / "checkpoints" / "last.ckpt").is_file():
            raise RunError(f"--resume: no checkpoint at {out / 'checkpoints' / 'last.ckpt'}")
        return
    existing = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if existing and not overwrite:
        raise RunError(
            f"{out} already holds a run ({', '.join(existing)}): pass --resume to continue it, "
            "--overwrite to start again, or choose another --out"
        )
    for name in existing:
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The field names and rows of a CSV file."""
    import csv

    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _row_key(row: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in row.items() if k is not None and v not in ("", None)))


def write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """Write ``rows`` to ``path`` atomically (a temporary file moved into place)."""
    import csv

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _merge_rows(
    first: tuple[list[str], list[dict[str, str]]], second: tuple[list[str], list[dict[str, str]]]
) -> tuple[list[str], list[dict[str, str]]]:
    """The rows of ``first`` then those of ``second`` not already in ``first`` (fields: the union)."""
    seen = {_row_key(r) for r in first[1]}
    rows = first[1] + [r for r in second[1] if _row_key(r) not in seen]
    return list(dict.fromkeys(first[0] + second[0])), rows


def metrics_backup(metrics_csv: Path) -> Path:
    """Where :func:`keep_metrics_before_resume` copies the rows of ``metrics_csv``."""
    return metrics_csv.with_name(".metrics.before-resume.csv")


def keep_metrics_before_resume(metrics_csv: Path) -> tuple[list[str], list[dict[str, str]]] | None:
    """Lightning's CSV logger deletes metrics.csv when a resumed fit starts: copy its rows to a backup
    first, so that a kill -9 during the resume loses none. A backup left by a killed resume is merged in."""
    backup = metrics_backup(metrics_csv)
    current = read_csv(metrics_csv) if metrics_csv.is_file() else None
    earlier = read_csv(backup) if backup.is_file() else None
    if current is None and earlier is None:
        return None
    previous = _merge_rows(earlier, current) if earlier and current else (earlier or current)
    assert previous is not None
    write_csv(backup, *previous)
    return previous


def restore_metrics(previous: tuple[list[str], list[dict[str, str]]], path: Path) -> None:
    """Put the rows logged before a resume back in front of ``path``; then drop the backup."""
    current = read_csv(path) if path.is_file() else ([], [])
    merged = _merge_rows(previous, current)
    if merged[1] != current[1]:  # the logger restarted the file (a resume that got to train)
        write_csv(path, *merged)
    metrics_backup(path).unlink(missing_ok=True)


def check_resume_config(cfg: Any, out: Path) -> None:
    """``--resume`` may change training settings only: the model and data sections must be the run's."""
    from ..config import load_config

    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return  # nothing to compare with: the checkpoint check in fit still guards the weights
    saved = load_config(saved_path).model_dump(mode="json")
    new = cfg.model_dump(mode="json")
    changed = [f"{section}.{key}: {saved[section].get(key)!r} -> {new[section].get(key)!r}"
               for section in ("model", "data") for key in sorted(set(saved[section]) | set(new[section]))
               if saved[section].get(key) != new[section].get(key)]
    if changed:
        raise RunError(
            f"--resume with a config whose model/data differ from {saved_path} ({'; '.join(changed[:3])}"
            f"{' ...' if len(changed) > 3 else ''}): resume with the run's own config (omit --config), or start "
            "a new run in another --out"
        )


def config_writer(cfg: Any, path: Path) -> Any:
    """A Lightning callback writing the run's config.yaml once training starts (after every check passed)."""
    import lightning as L

    from ..config import dump_config

    class WriteConfig(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            if trainer.is_global_zero:
                dump_config(cfg, path)

    return WriteConfig()


def remove_failed_run(out: Path, created: bool) -> None:
    """A fresh run that failed before its first checkpoint: remove what it wrote (nothing else was there)."""
    if (out / "checkpoints" / "last.ckpt").exists():
        return  # resumable: keep it
    for name in ("config.yaml", "logs", "checkpoints"):
        target = out / name
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink()
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def load_run(run_dir: str | Path, accelerator: str = "auto") -> tuple[Any, Any, Any]:
    """(config, model, data) of a finished run folder, with one-line errors for what is missing."""
    from ..config import load_config, load_data
    from ..estimator import MultimodalEstimator

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder not found: {run_dir}")
    if not (run_dir / "model" / "config.json").is_file():
        raise RunError(f"no saved model in {run_dir} (missing model/config.json): train it with `cmvae train --out {run_dir}`")
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"no run config in {run_dir} (missing config.yaml)")
    cfg = load_config(run_dir / "config.yaml")
    model = MultimodalEstimator.load(run_dir / "model", accelerator=accelerator)
    return cfg, model, load_data(cfg.data)
