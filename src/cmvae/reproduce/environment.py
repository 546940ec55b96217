"""The machine and the package versions a reproduction ran with (printed in its report)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "machine_info", "package_versions"]

#: Distributions whose versions the report lists.
PACKAGES = ("cmvae", "torch", "lightning", "numpy", "scipy", "scikit-learn", "pydantic", "matplotlib")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``{distribution: version}``; ``"not installed"`` for a missing one. ``cmvae`` is this package's own
    version (the editable install's metadata may lag behind the source)."""
    from .._version import __version__

    out = {}
    for name in names:
        if name == "cmvae":
            out[name] = __version__
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores (all and usable by this process), torch threads, ``OMP_NUM_THREADS``, GPUs, OS, Python."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count() or 0,
        "cpu_cores_usable": usable,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "gpus": gpus,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
