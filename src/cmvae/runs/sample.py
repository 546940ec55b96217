"""Sample grids from a trained run; ``cmvae sample`` and :func:`cmvae.sample_run`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .folder import RunError, load_run
from .output import make_console


def sample_run(
    run_dir: str | os.PathLike,
    *,
    per_cluster: int = 3,
    out: str | os.PathLike | None = None,
    conditional_out: str | os.PathLike | None = None,
    source: int | None = None,
    n_conditional: int = 8,
    seed: int = 0,
    temperature: float = 1.0,
    accelerator: str = "auto",
    console: Any = None,
) -> list[Path]:
    """Sample grids of a trained run: unconditional samples (one row per active cluster, one column block
    per image modality) to ``out`` (default ``RUN_DIR/samples.png``), and cross-modal samples from
    ``n_conditional`` test inputs of modality ``source`` (default: the first image modality) to
    ``conditional_out`` (default ``RUN_DIR/conditional_samples.png``); ``temperature`` multiplies the scales of
    p(z|c) in the unconditional grid (:meth:`cmvae.CMVAE.sample`). Returns the files written."""
    from ..generation import image_modalities, save_conditional_grid, save_sample_grid

    run_dir = Path(run_dir)
    if per_cluster < 1 or n_conditional < 1:
        raise RunError("--per-cluster and --n-conditional must be >= 1")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise RunError(f"--temperature must be a finite number > 0, got {temperature!r}")
    cfg, model, data = load_run(run_dir, accelerator)
    console = console or make_console()
    mods = image_modalities(model)
    if not mods:
        raise RunError("the model has no image modality ([C, H, W] with 1 or 3 channels): nothing to draw")
    out = Path(out) if out else run_dir / "samples.png"
    png = save_sample_grid(model, out, per_cluster, seed=seed, temperature=temperature)
    written = [png]
    source = mods[0] if source is None else source
    if source not in mods:
        raise RunError(f"--source {source} is not an image modality (image modalities: {mods})")
    if len(mods) > 1:
        split = "test" if data.test_views is not None else "train"
        views, labels = data.split(split)
        cond_out = Path(conditional_out) if conditional_out else run_dir / "conditional_samples.png"
        written.append(save_conditional_grid(model, views, cond_out, source=source, n=n_conditional,
                                             labels=labels, seed=seed))
        console.print(f"conditional grid: {n_conditional} {split} inputs of modality {source}, "
                      f"generated modalities {[m for m in mods if m != source]}")
    else:
        console.print("one image modality: no conditional grid")
    console.print("wrote " + ", ".join(str(p) for p in written))
    return written
