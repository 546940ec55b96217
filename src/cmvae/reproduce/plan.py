"""The plan of a reproduction: a scale's config file and the parts that run, in order.

A scale is a YAML file (``smoke``, ``cpu`` and ``paper`` ship as ``cmvae/configs/reproduce_<scale>.yaml``;
a path to your own file works too) with these sections::

    scale:      the scale's name (recorded in the run folder)
    budget:     hardware, expected_minutes, summary (what this budget is), paper (the paper's setting)
    data:       the data: section of a run config, shared by every part
    seeds:      training seeds of CMVAE and of the clustering baselines
    cmvae:      model: / training: sections of CMVAE (over-specified n_clusters, pruned by Algorithm 1)
    clustering: model: / training: / benchmark: sections of the baselines (cmvae benchmark clustering);
                optional data: {max_train: N} (the test split stays the one CMVAE is scored on)
    compare:    model: / training: / compare: sections of the multimodal VAE comparison (cmvae compare)
    samples:    per_cluster, n_conditional, source, seed of the sample grids

Every section is validated when the scale is loaded, so a bad key fails before any training.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import ConfigError, RunConfig, config_from_dict
from .runner import Part

__all__ = ["SCALES", "Budget", "ScaleConfig", "ScalePlan", "load_scale", "plan_parts", "scale_path"]

#: The packaged scales.
SCALES = ("smoke", "cpu", "paper")

#: Keys of a part's data: section that may differ from the shared one (the test split must not).
PART_DATA_KEYS = ("max_train",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Budget(_Strict):
    """What the scale costs and how it departs from the paper (printed in the report)."""

    hardware: str
    expected_minutes: float = Field(gt=0)
    summary: str
    paper: str


class SamplesSection(_Strict):
    per_cluster: int = Field(3, ge=1)
    n_conditional: int = Field(8, ge=1)
    source: int = Field(0, ge=0)
    seed: int = 0


class ScaleConfig(_Strict):
    scale: str
    budget: Budget
    data: dict[str, Any]
    seeds: list[int] = Field(min_length=1)
    cmvae: dict[str, Any]
    clustering: dict[str, Any]
    compare: dict[str, Any]
    samples: SamplesSection = Field(default_factory=SamplesSection)

    @field_validator("seeds")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds must be distinct, got {value}")
        return value


def scale_path(scale: str | os.PathLike) -> Path:
    """The YAML of a packaged scale (``"smoke"``, ``"cpu"``, ``"paper"``) or a path to a scale file."""
    text = os.fspath(scale)
    if text in SCALES:
        return Path(str(importlib.resources.files("cmvae") / "configs" / f"reproduce_{text}.yaml"))
    path = Path(text).expanduser()
    if path.is_file():
        return path
    raise FileNotFoundError(f"--scale {text!r}: not one of {', '.join(SCALES)} and not a scale file")


@dataclass(frozen=True)
class ScalePlan:
    """A loaded scale: its file, the digest of its text, the validated sections, the run configs of
    the parts (``run_config(part)``), and the accelerator override (None = the file's)."""

    path: Path
    sha256: str
    config: ScaleConfig
    run_configs: dict[str, RunConfig]
    accelerator: str | None = None

    @property
    def name(self) -> str:
        return self.config.scale

    @property
    def seeds(self) -> list[int]:
        return list(self.config.seeds)

    def run_config(self, part: str) -> RunConfig:
        """The :class:`~cmvae.config.RunConfig` of ``part`` (``cmvae``, ``clustering`` or ``compare``)."""
        return self.run_configs[part]


_SECTIONS = {"cmvae": ("model", "training"), "clustering": ("model", "training", "benchmark", "data"),
             "compare": ("model", "training", "compare", "data")}


def _part_config(cfg: ScaleConfig, part: str, source: str, base_dir: Path, accelerator: str | None) -> RunConfig:
    section = copy.deepcopy(getattr(cfg, part))
    unknown = sorted(set(section) - set(_SECTIONS[part]))
    if unknown:
        raise ConfigError(f"{source}: {part}.{unknown[0]}: unknown key; allowed keys: {', '.join(_SECTIONS[part])}")
    data = copy.deepcopy(cfg.data)
    extra = section.pop("data", None) or {}
    bad = sorted(set(extra) - set(PART_DATA_KEYS))
    if bad:
        raise ConfigError(f"{source}: {part}.data.{bad[0]}: only {', '.join(PART_DATA_KEYS)} may differ from the "
                          "shared data: section (every part is scored on the same test split)")
    data.update(extra)
    training = dict(section.get("training") or {})
    if accelerator is not None:
        training["accelerator"] = accelerator
    raw: dict[str, Any] = {"data": data, "model": section.get("model") or {}, "training": training}
    if part == "clustering":
        bench = dict(section.get("benchmark") or {})
        bench.setdefault("seeds", list(cfg.seeds))
        if "cmvae" in (bench.get("methods") or {}):
            raise ConfigError(f"{source}: clustering.benchmark.methods.cmvae: CMVAE's rows come from the cmvae: "
                              "section (trained with Algorithm 1); remove it here")
        raw["benchmark"] = bench
    elif part == "compare":
        raw["compare"] = section.get("compare")
    return config_from_dict(raw, source=f"{source} ({part}: section)", base_dir=base_dir)


def load_scale(scale: str | os.PathLike, accelerator: str | None = None) -> ScalePlan:
    """Read and validate a scale (a packaged name or a file); errors name the file and the key."""
    path = scale_path(scale)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with scale:, budget:, data:, seeds:, cmvae:, clustering:, "
                          "compare: sections")
    try:
        cfg = ScaleConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {key}: {first['msg']}") from None
    base = path.resolve().parent
    configs = {part: _part_config(cfg, part, str(path), base, accelerator) for part in _SECTIONS}
    if configs["compare"].compare is None:
        raise ConfigError(f"{path}: compare.compare: missing (the models and seeds of Figure 1)")
    return ScalePlan(path, hashlib.sha256(text.encode()).hexdigest(), cfg, configs, accelerator)


def plan_parts() -> list[Part]:
    """The parts of a reproduction, cheapest results first: CMVAE (trained per seed, then Algorithm 1),
    Figure 2, clustering from subsets of modalities, sample grids, the clustering table, Figure 1."""
    from . import parts

    return [
        Part("cmvae", "CMVAE trained with an over-specified K, then Algorithm 1", parts.run_cmvae),
        Part("selection", "Figure 2: entropy and NMI/ARI against the number of clusters", parts.run_selection,
             ("cmvae",)),
        Part("subsets", "Clustering from subsets of the modalities", parts.run_subsets, ("cmvae",)),
        Part("samples", "Per-cluster and cross-modal samples", parts.run_samples, ("cmvae",)),
        Part("clustering", "Clustering table: CMVAE vs VaDE, DeepCluster, CMC, k-means", parts.run_clustering,
             ("cmvae",)),
        Part("compare", "Figure 1: coherence against generative quality of multimodal VAEs", parts.run_compare),
    ]
