"""``cmvae reproduce``: the paper's results at a chosen scale, resumably, with a report a reader can check.

>>> import cmvae.reproduce
>>> result = cmvae.reproduce("smoke", "runs/repro_smoke")        # the module itself is callable
>>> result.report_html                                             # runs/repro_smoke/report.html

Modules: :mod:`.plan` (the scale files and the parts), :mod:`.runner` (running parts resumably in
the output folder), :mod:`.parts` (what each part trains and writes), :mod:`.report` and
:mod:`.document` (report.md and the self-contained report.html), :mod:`.summary` (summary.md, the
short form for a README), :mod:`.paper` (the paper's
reference values, each with its source), :mod:`.environment` (machine and versions).
"""

from __future__ import annotations

import os
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from .environment import machine_info, package_versions
from .plan import SCALES, ScalePlan, load_scale, plan_parts
from .report import RunInfo, now, write_report
from .runner import PartOutcome, RunDirError, prepare_out_dir, run_parts
from .summary import write_summary

__all__ = ["SCALES", "PartsFailedError", "ReproduceResult", "RunDirError", "reproduce"]


@dataclass
class ReproduceResult:
    """Where the report is and what happened to every part in this call."""

    out: Path
    report_md: Path
    report_html: Path
    summary_md: Path
    outcomes: list[PartOutcome]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


class PartsFailedError(RuntimeError):
    """Some parts failed (the report was written with what finished); ``result`` holds the outcomes."""

    def __init__(self, result: ReproduceResult) -> None:
        self.result = result
        bad = [o for o in result.outcomes if o.status == "failed"]
        detail = "; ".join(f"{o.name}: {o.error} (traceback in {result.out / 'parts' / o.name / 'error.txt'})"
                           for o in bad)
        super().__init__(f"{len(bad)} part(s) failed: {detail}. The report shows what finished; rerun the same "
                         "command to retry (finished parts are reused)")


def _command(plan: ScalePlan, scale: str | os.PathLike, out: Path, accelerator: str | None) -> str:
    text = f"cmvae reproduce --scale {os.fspath(scale)} --out {out}"
    return text + (f" --accelerator {accelerator}" if accelerator else "")


def reproduce(scale: str | os.PathLike = "smoke", out: str | os.PathLike = "runs/reproduce", *,
              accelerator: str | None = None, say: Callable[[str, str], None] | None = None) -> ReproduceResult:
    """Run (or continue) every part of the reproduction at ``scale`` in ``out``, then write
    ``out/report.md``, ``out/report.html`` and the README-sized ``out/summary.md``.

    ``scale``: ``"smoke"``, ``"cpu"``, ``"paper"`` or a scale file (see :mod:`.plan`); ``accelerator``:
    ``cpu``/``gpu``/``auto`` for every part (default: the scale file's). ``say(part, text)`` reports progress.
    Raises :class:`RunDirError` when ``out`` holds another run or foreign files (nothing is written),
    :class:`cmvae.config.ConfigError` for a bad scale file, and :class:`PartsFailedError` after
    writing the report when a part failed.
    """
    plan = load_scale(scale, accelerator)
    folder = Path(out)
    prepare_out_dir(folder, {"scale": plan.name, "cmvae_version": __version__, "config_sha256": plan.sha256})
    started, start = now(), time.monotonic()
    outcomes = run_parts(folder, plan_parts(), plan=plan, say=say)
    accel = accelerator or plan.run_config("cmvae").training.accelerator
    info = RunInfo(plan.name, str(plan.path), _command(plan, scale, folder, accelerator), plan.config.budget.model_dump(),
                   plan.seeds, dict(plan.config.data), str(accel), machine_info(), package_versions(), started,
                   time.monotonic() - start)
    md, page = write_report(folder, info, outcomes)
    summary = write_summary(folder, info, outcomes)
    result = ReproduceResult(folder, md, page, summary, outcomes, info.wall_seconds)
    if any(o.status == "failed" for o in outcomes):
        raise PartsFailedError(result)
    return result


class _CallableModule(types.ModuleType):
    """``cmvae.reproduce(...)`` calls :func:`reproduce` (the package and its entry point share the name)."""

    def __call__(self, *args, **kwargs) -> ReproduceResult:
        return reproduce(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
