"""Run configuration: YAML files validated with pydantic.

A run config has three sections, and two optional ones for the comparison commands::

    data:      # where the views come from (PolyMNIST, CUBICC, .npz arrays, CSV files / image folders)
    model:     # model type (cmvae or a baseline) and hyper-parameters (defaults = the estimator's)
    training:  # optimisation and hardware
    compare:   # cmvae compare: the models and seeds (optional)
    benchmark: # cmvae benchmark clustering: the methods and seeds (optional)

Unknown keys and wrong types are errors (:class:`ConfigError`) that name the file and
the dotted key, e.g. ``configs/run.yaml: model.n_clusterz: unknown key ...``. The views a
``data:`` section describes are loaded by :func:`cmvae.data.run_data.load_data`.

>>> cfg = load_config("configs/polymnist_cpu.yaml")
>>> model = make_estimator(cfg)          # cmvae.make_estimator: the class of model.type
"""

from __future__ import annotations

import difflib
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .registry import estimator_class, estimator_defaults, estimator_types, find_estimator

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainingConfig",
    "RunConfig",
    "CompareConfig",
    "CompareEntry",
    "known_model_types",
    "BenchmarkConfig",
    "load_config",
    "packaged_config",
    "resolve_config_path",
    "PACKAGED_CONFIGS",
    "dump_config",
    "config_from_dict",
    "RunData",
    "load_arrays",
    "load_data",
]


class ConfigError(ValueError):
    """A configuration file could not be parsed or validated (the message names file and key)."""


def _config_relative(value: str, info: ValidationInfo) -> Path:
    """``value`` as an absolute path; a relative one is taken from the config file's folder."""
    p = Path(value).expanduser()
    if not p.is_absolute():
        base = (info.context or {}).get("base_dir")
        p = Path(base) / p if base is not None else p
    return p.resolve()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _resolve(value: str | None, info: ValidationInfo, *, folder: bool = False) -> str | None:
    """An existing file (or folder), ``$VARS`` expanded, relative paths taken from the config file's folder."""
    if value is None:
        return None
    expanded = os.path.expandvars(value)
    unset = re.findall(r"\$\{?(\w+)", expanded)
    if unset:
        raise ValueError(f"environment variable {unset[0]} is not set (used in {value!r})")
    p = _config_relative(expanded, info)
    if not (p.is_dir() if folder else p.is_file()):
        what = "folder" if folder else "file"
        raise ValueError(f"{what} not found: {p} (a relative path is resolved against the config file's folder)")
    return str(p)


class ModalitySource(_Strict):
    """One modality of ``name: files``: ``csv: table.csv`` or ``images: folder/``.

    CSV: ``columns`` (names or glob patterns; default all but id/label), ``id_column`` (pairs
    samples across modalities), ``label_column``. Images: ``size`` (int or [H, W]),
    ``mode`` (Pillow mode, e.g. RGB or L), ``labels_from_subfolders``. See :mod:`cmvae.data.datasets`.
    """

    csv: str | None = None
    images: str | None = None
    name: str | None = None
    columns: list[str] | None = None
    id_column: str | None = None
    label_column: str | None = None
    size: int | list[int] | None = None
    mode: str | None = None
    labels_from_subfolders: bool = False

    @field_validator("csv")
    @classmethod
    def _resolve_csv(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(value, info)

    @field_validator("images")
    @classmethod
    def _resolve_images(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _resolve(value, info, folder=True)

    @model_validator(mode="after")
    def _check_kind(self) -> "ModalitySource":
        if (self.csv is None) == (self.images is None):
            raise ValueError("give exactly one of csv: (a CSV file) or images: (a folder of images)")
        wrong = (
            ["columns", "id_column", "label_column"] if self.images is not None
            else ["size", "mode", "labels_from_subfolders"]
        )
        given = [k for k in wrong if getattr(self, k) not in (None, False)]
        if given:
            kind = "images" if self.images is not None else "csv"
            raise ValueError(f"{', '.join(given)} do(es) not apply to a {kind} modality")
        return self

    def reader(self) -> Any:
        """The :mod:`cmvae.data.datasets` reader of this modality."""
        from .data.datasets import CSVModality, ImageFolderModality

        if self.csv is not None:
            return CSVModality(self.csv, self.columns, self.id_column, self.label_column, name=self.name)
        assert self.images is not None
        return ImageFolderModality(self.images, self.size, self.mode, self.labels_from_subfolders, name=self.name)


class DataConfig(_Strict):
    """Where the views come from.

    ``name: polymnist`` builds (or loads from cache) PolyMNIST offline; ``name: arrays``
    reads an ``.npz`` with ``view0, view1, ...`` (each ``[N, ...]``), optional ``labels``
    ``[N]``, and optional test split ``test_view0, ...`` / ``test_labels``. ``name: files`` reads one
    CSV file or image folder per modality (``modalities: [{csv: a.csv}, {images: dir/}]``,
    optional ``test_modalities`` in the same form), paired by id (image file stems, CSV
    ``id_column``) or else by position. ``name: cubicc``
    builds CUBICC (images + captions, species labels) from local ``cub_dir`` (CUB_200_2011) and
    ``captions_dir`` (Reed et al.'s text_c10) folders, see :mod:`cmvae.data.cubicc`. Relative
    ``path``, ``cub_dir``, ``captions_dir`` and ``grouping`` are resolved against the config file's folder.
    """

    name: Literal["polymnist", "arrays", "files", "cubicc"] = "polymnist"
    root: str | None = Field(None, description="cache folder (default: cmvae.data.default_cache_dir())")
    seed: int = 0
    max_train: int | None = Field(None, ge=1)
    max_test: int | None = Field(None, ge=1)
    n_modalities: int | None = Field(None, ge=1, description="PolyMNIST modalities (default 5)")
    path: str | None = Field(None, description="the .npz file for name: arrays")
    modalities: list[ModalitySource] | None = Field(None, description="name: files: one source per modality")
    test_modalities: list[ModalitySource] | None = Field(None, description="name: files: optional test split")
    cub_dir: str | None = Field(None, description="name: cubicc: the CUB_200_2011 folder")
    captions_dir: str | None = Field(None, description="name: cubicc: the captions folder (text_c10)")
    grouping: str | None = Field(None, description="name: cubicc: species grouping YAML (null = packaged 8 species)")
    image_size: int = Field(64, ge=4, description="name: cubicc: images resized to image_size x image_size")
    max_len: int = Field(32, ge=2, description="name: cubicc: tokens per caption (words + <eos> + padding)")
    min_word_count: int = Field(3, ge=1, description="name: cubicc: vocabulary = words seen >= this often in training")

    @field_validator("path", "grouping")
    @classmethod
    def _resolve_path(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve(value, info, folder=False)

    @field_validator("cub_dir", "captions_dir")
    @classmethod
    def _resolve_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _resolve(value, info, folder=True)

    @model_validator(mode="after")
    def _check_source(self) -> "DataConfig":
        if self.name == "arrays" and self.path is None:
            raise ValueError("name: arrays needs path: an .npz file with view0, view1, ... (and optional labels)")
        if self.name == "cubicc" and (self.cub_dir is None or self.captions_dir is None):
            raise ValueError("name: cubicc needs cub_dir (the CUB_200_2011 folder) and captions_dir (text_c10)")
        if self.name == "files":
            if not self.modalities:
                raise ValueError("name: files needs modalities: a list like [{csv: a.csv}, {images: folder/}]")
            if self.test_modalities is not None and len(self.test_modalities) != len(self.modalities):
                raise ValueError(
                    f"test_modalities lists {len(self.test_modalities)} sources for {len(self.modalities)} modalities"
                )
        elif self.modalities is not None or self.test_modalities is not None:
            raise ValueError(f"modalities/test_modalities apply to name: files, not name: {self.name}")
        return self


ModelType = Literal["cmvae", "mvae", "mmvae", "mopoe", "mmjsd", "mvtcae", "mmvae_plus"]
BASELINE_ONLY_KEYS = ("alpha", "subsampled_subsets", "subset_sampling")  # one baseline's (MVTCAE, MVAE, MoPoE)


class ModelConfig(_Strict):
    """Model hyper-parameters. ``type`` picks the model: ``cmvae`` (default) or a baseline of
    :mod:`cmvae.baselines`. The defaults are :class:`cmvae.CMVAE`'s (a test keeps them in sync);
    for a baseline, keys left out take that baseline's defaults (e.g. ``private_dim: 0``,
    ``latent_family: gaussian`` for ``mopoe``), and a key it does not use (e.g. ``cluster_init``
    for ``mvae``) must be left out or at its default, else it is an error naming the key.
    ``n_clusters`` is used by every model (the baselines' ``predict`` runs k-means with it).
    """

    type: ModelType = "cmvae"
    n_clusters: int = Field(10, ge=1)
    shared_dim: int = Field(32, ge=1)
    private_dim: int = Field(32, ge=0)
    latent_family: Literal["laplace", "gaussian"] = "laplace"
    likelihood: Literal["laplace", "gaussian", "bernoulli", "categorical"] | list[
        Literal["laplace", "gaussian", "bernoulli", "categorical"]
    ] = "laplace"
    likelihood_scale: float | list[float] = Field(0.75, description="one scale, or one per modality")

    @field_validator("likelihood_scale")
    @classmethod
    def _positive_scales(cls, value: float | list[float]) -> float | list[float]:
        if not all(s > 0 for s in (value if isinstance(value, list) else [value])):
            raise ValueError(f"likelihood scales must be positive, got {value}")
        return value
    likelihood_weights: list[float] | None = None
    beta: float = Field(2.5, ge=0)
    beta_warmup_epochs: int = Field(0, ge=0)
    contrastive_warmup_epochs: int | Literal["auto"] = Field(
        0, description="epochs that train the shared-code encoders alone, by the modalities' InfoNCE (CMC), "
        "before the objective; 0: the objective from the first step; auto: 4, or one in 6 of shorter runs")
    contrastive_warmup_lr: float | None = Field(
        None, gt=0, le=1000, allow_inf_nan=False, description="Adam's learning rate during the contrastive warm-up "
        "(null: training's lr); the objective's epochs then train at training's lr")
    warmup_freeze_epochs: int | Literal["auto"] = Field(
        0, description="epochs after the contrastive warm-up in which the objective trains every network but "
        "the encoders' shared-code branches (frozen: the warm-up's codes are kept while the decoders learn to use them); "
        "auto: half the warm-up")

    @field_validator("contrastive_warmup_epochs", "warmup_freeze_epochs")
    @classmethod
    def _epochs_or_auto(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"must be an integer >= 0 or 'auto', got {value}")
        return value
    n_samples: int = Field(1, ge=1)
    estimator: Literal["elbo", "iwae", "dreg"] = "elbo"
    arch: Literal["light", "resnet", "paper"] = "light"
    learn_prior_scales: bool = False
    prior_mean_init_std: float = Field(1.0, ge=0)
    cluster_init: Literal["kmeans", "random", "uniform"] = "kmeans"
    cluster_init_epoch: int | None = Field(None, ge=0)
    cluster_init_when: Literal["epoch", "ready", "plateau"] = "epoch"
    early_stopping: bool = Field(
        True, description="with cluster_init_when: plateau, training ends once the held-out bound has not risen "
        "for 3 epochs after the placement (the weights kept are those of its best epoch either way); false: every "
        "epoch, or the whole time limit, is trained")
    posterior_samples: int = Field(16, ge=0)
    scale_param: Literal["softplus", "softmax"] = "softplus"
    encoder_branches: Literal["shared", "separate"] = "separate"
    weight_init: Literal["torch", "he", "he-decoders"] = Field(
        "torch", description="initial weights of the built-in networks: 'torch' (PyTorch's default), 'he' "
        "(variance-preserving) or 'he-decoders' (variance-preserving decoders, PyTorch's encoders)")
    assignment: Literal["evidence", "vote"] = "evidence"
    alpha: float | None = Field(None, ge=0, le=1, description="MVTCAE only (default 0.1)")
    subsampled_subsets: int | None = Field(None, ge=0, description="MVAE only (default 0)")
    subset_sampling: bool | None = Field(None, description="MoPoE only (default true)")

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_type(cls, data: Any) -> Any:
        """Fill the chosen model's defaults; reject keys it does not use (unless at their default)."""
        if not isinstance(data, dict) or not isinstance(data.get("type", "cmvae"), str):
            return data
        try:
            klass = estimator_class(data.get("type", "cmvae"))
        except ValueError:
            return data  # the type field reports the unknown name
        accepted, defaults = set(klass._param_names()), estimator_defaults(klass)
        data = dict(data)
        unused = []
        for name, info in cls.model_fields.items():
            if name in accepted:
                data.setdefault(name, defaults.get(name, info.default))
            elif name != "type" and name in data and data[name] != info.default:
                unused.append(name)
        if unused:
            raise ValueError(
                f"{', '.join(unused)}: not a parameter of model type {data.get('type', 'cmvae')!r} "
                f"({klass.__name__}); remove {'it' if len(unused) == 1 else 'them'}"
            )
        return data


class TrainingConfig(_Strict):
    """Optimisation and hardware (Lightning Trainer settings)."""

    epochs: int | None = Field(
        None, ge=1, description="training epochs; null: enough for 1,000 optimiser steps and at least 30 epochs, "
        "resolved from the data size when training starts (config.yaml of a run records the number)")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0, le=1000, description="Adam's learning rate (above 1000 it is certainly a mistake)")
    lr_decay: float = Field(0.0, ge=0, le=1, description="fraction of training, at its end, over which the "
                            "learning rate falls along a half cosine to 0 (0: constant)")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="decoupled weight decay (AdamW) on "
                                "the encoders' and decoders' weights; 0: plain Adam")
    weight_decay_from: Literal["start", "placement"] = Field(
        "start", description="when the weight decay starts: from the first step, or once k-means places the "
        "cluster components (CMVAE with cluster_init: kmeans)")
    amsgrad: bool = True
    gradient_clip_norm: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="largest L2 norm of the gradient of a step (over all the "
        "parameters): a larger one is scaled down to it; null: no clipping")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    strategy: str = "auto"  # "ddp": one process per device (and per node), see README "Scaling out"
    num_nodes: int = Field(1, ge=1)
    precision: int | str = "32-true"
    num_workers: int = Field(0, ge=0)
    max_time_minutes: float | None = Field(None, gt=0, le=1e9)
    progress: bool = True
    low_memory: bool = False
    compile_networks: bool = Field(False, description="train with the encoders and decoders compiled by "
                                   "torch.compile (same objective, faster steps once compiled)")


# ------------------------------------------------------------------------ compare

#: Settings every model of a comparison shares: the training budget and the seeds.
SHARED_KEYS = ("epochs", "max_time_minutes", "seed")
#: How tables and figures name the model types (the papers' spellings).
DISPLAY_NAMES = {"cmvae": "CMVAE", "mvae": "MVAE", "mmvae": "MMVAE", "mopoe": "MoPoE", "mmjsd": "MMJSD",
                 "mvtcae": "MVTCAE", "mmvae_plus": "MMVAE+"}


def known_model_types() -> list[str]:
    """Model types a config may name: those of ``model.type`` and every registered estimator."""
    return sorted(set(get_args(ModelConfig.model_fields["type"].annotation)) | set(estimator_types()))


def _check_values(section: type[_Strict], values: dict[str, Any]) -> None:
    """Validate ``values`` as keys of ``section`` (a ValueError names the key)."""
    try:
        section.model_validate(values)
    except ValidationError as err:
        raise ValueError("; ".join(_describe(dict(e)) for e in err.errors())) from None


class CompareEntry(BaseModel):
    """One model of a comparison: ``type`` (a model type), an optional display ``label`` and
    overrides of the ``model``/``training`` settings (checked against the class when it is registered)."""

    model_config = ConfigDict(extra="allow")

    type: str
    label: str | None = Field(None, min_length=1)

    @property
    def overrides(self) -> dict[str, Any]:
        """The settings this entry changes: ``{key: value}``."""
        return dict(self.model_extra or {})

    @property
    def display_label(self) -> str:
        """``label``, or the model's usual name (``MMVAE+`` for ``mmvae_plus``)."""
        return self.label or DISPLAY_NAMES.get(self.type, self.type)

    @property
    def folder(self) -> str:
        """Run-folder name derived from the label (``MMVAE+`` -> ``MMVAEplus``)."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.display_label.replace("+", "plus")).strip("._")
        return name or self.type

    @model_validator(mode="after")
    def _check(self) -> "CompareEntry":
        known = known_model_types()
        if self.type not in known:
            close = difflib.get_close_matches(self.type, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown model type {self.type!r}{hint}; known types: {', '.join(known)}")
        shared = [k for k in self.overrides if k in SHARED_KEYS]
        if shared:
            raise ValueError(
                f"{shared[0]} cannot differ between models: every model gets the same training budget "
                "(training.epochs, training.max_time_minutes) and the seeds of compare.seeds"
            )
        klass = find_estimator(self.type)
        accepted = set(klass._param_names()) if klass is not None else None
        model_keys = set(ModelConfig.model_fields) - {"type"}
        for key, value in self.overrides.items():
            if accepted is not None and key not in accepted:
                raise ValueError(f"{key}: not a parameter of model type {self.type!r}; "
                                 f"its parameters: {', '.join(sorted(accepted - set(SHARED_KEYS)))}")
            if key in model_keys:
                _check_values(ModelConfig, {key: value})
            elif key in TrainingConfig.model_fields:
                _check_values(TrainingConfig, {key: value})
            elif accepted is None:
                raise ValueError(f"{key}: unknown key for model type {self.type!r} (not a model or training setting)")
        return self


class CompareConfig(_Strict):
    """``compare:`` section of ``cmvae compare``: the models, the seeds and the generation evaluation."""

    models: list[CompareEntry] = Field(min_length=1, description="the models to train (type, label, overrides)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="training seeds of every model")
    n_samples: int = Field(1000, ge=2, description="unconditional samples per model")
    max_samples: int | None = Field(1000, ge=1, description="test tuples for conditional coherence and FD (null = all)")
    max_subsets_per_size: int | None = Field(None, ge=1, description="observed subsets scored per size (null = all)")
    classifier_epochs: int = Field(4, ge=1, description="epochs of the coherence classifiers (trained once)")
    classifier_max_train: int | None = Field(None, ge=1, description="train the classifiers on at most this many tuples")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError(f"seeds repeat a value: {value}")
        return value

    @model_validator(mode="after")
    def _unique_labels(self) -> "CompareConfig":
        seen: dict[str, int] = {}
        for i, entry in enumerate(self.models):
            folder = entry.folder
            if folder in seen:
                raise ValueError(
                    f"models[{i}] and models[{seen[folder]}] would share the run folder {folder!r}: "
                    "give them different labels"
                )
            seen[folder] = i
        return self


# ---------------------------------------------------------------------- benchmark


class MethodSection(_Strict):
    """A method of the clustering benchmark (``method: null`` = run it with the defaults)."""

    epochs: int | None = Field(None, ge=1, description="training epochs (default: training.epochs)")
    lr: float | None = Field(None, gt=0, description="learning rate (default: training.lr)")
    max_time_minutes: float | None = Field(
        None, gt=0, le=1e9, description="wall-clock limit of each fit's training, in minutes (whichever of it and "
        "epochs comes first); give every trained method the same limit to compare them at one budget (default: "
        "training.max_time_minutes for a trained CMVAE, none for the baselines)")


class KMeansBenchmark(_Strict):
    """The floor: k-means on PCA of the pixels, of all views concatenated and of each modality."""

    pca_dim: int = Field(50, ge=1)


class VaDEBenchmark(MethodSection):
    """Unimodal VaDE, one run per beta and modality."""

    betas: list[float] = Field(default_factory=lambda: [1.0, 2.5], min_length=1)
    latent_family: Literal["laplace", "gaussian"] = "gaussian"
    learn_prior_scales: bool = False
    cluster_init_epoch: int | None = Field(None, ge=0)


class DeepClusterBenchmark(MethodSection):
    """Unimodal DeepCluster, one run per K and modality."""

    ks: list[int] = Field(default_factory=lambda: [10, 35, 100])
    include_true_k: bool = True
    pca_dim: int = Field(256, ge=1)


class CMCBenchmark(MethodSection):
    """Multi-view CMC + k-means with the benchmark's number of clusters."""

    temperature: float = Field(0.1, gt=0)
    early_stopping: bool = Field(True, description="stop once the InfoNCE on 10 % of the training rows held out of "
                                 "the steps has not fallen for 3 epochs, with the best epoch's weights")


class CMVAEBenchmark(MethodSection):
    """CMVAE: trained per seed with the run's model/training sections, or a saved model evaluated once."""

    run_dir: str | None = Field(
        None, description="a saved model folder (config.json + weights) or a run folder holding model/"
    )

    @field_validator("run_dir")
    @classmethod
    def _resolve_run_dir(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        p = _config_relative(value, info)
        if not (p / "config.json").is_file() and not (p / "model" / "config.json").is_file():
            raise ValueError(f"no saved model at {p} (expected config.json or model/config.json; a relative "
                             "path is resolved against the config file's folder)")
        return str(p)


class BenchmarkMethods(_Strict):
    """Which methods run (an omitted key does not run; ``key: null`` or ``{}`` runs with defaults)."""

    kmeans: KMeansBenchmark | None = None
    vade: VaDEBenchmark | None = None
    deepcluster: DeepClusterBenchmark | None = None
    cmc: CMCBenchmark | None = None
    cmvae: CMVAEBenchmark | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _null_means_defaults(cls, value: Any) -> Any:
        return {} if value is None else value

    def selected(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class BenchmarkConfig(_Strict):
    """``cmvae benchmark clustering``: every method over ``seeds`` (NMI/ARI/ACC, mean and std)."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    modalities: list[int] | None = Field(None, description="modalities of the unimodal methods (default all)")
    n_clusters: int | None = Field(None, ge=1, description="clusters of VaDE/CMC/k-means (default: true K)")
    split: Literal["test", "train"] | None = Field(None, description="scored split (default: test if labelled)")
    methods: BenchmarkMethods = Field(default_factory=BenchmarkMethods)

    @model_validator(mode="after")
    def _check_methods(self) -> "BenchmarkConfig":
        if not self.methods.selected():
            raise ValueError("benchmark.methods selects no method; name at least one of "
                             + ", ".join(BenchmarkMethods.model_fields))
        return self


class RunConfig(_Strict):
    """A whole run: ``data``, ``model`` and ``training`` sections (and ``compare`` for ``cmvae compare``,
    ``benchmark`` for ``cmvae benchmark clustering``)."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    compare: CompareConfig | None = None
    benchmark: BenchmarkConfig | None = None

    def estimator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the estimator of ``model.type`` (``CMVAE(**kwargs)`` by default):
        the model settings that estimator takes, and the training settings.
        :func:`cmvae.baselines.make_estimator` builds the right class."""
        accepted = set(estimator_class(self.model.type)._param_names())
        kwargs = {k: v for k, v in self.model.model_dump(exclude={"type"}).items() if k in accepted}
        kwargs.update(self.training.model_dump())
        return kwargs


# ------------------------------------------------------------------------ loading


def _dotted(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif parts:
            parts.append(f".{item}")
        else:
            parts.append(str(item))
    return "".join(parts) or "(top level)"


def _section_model(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that holds the key at ``loc`` (for listing allowed keys)."""
    model: type[BaseModel] = RunConfig
    for item in loc[:-1]:
        info = model.model_fields.get(str(item))
        ann = info.annotation if info is not None else None
        members = [a for a in get_args(ann) if isinstance(a, type) and issubclass(a, BaseModel)]
        ann = members[0] if len(members) == 1 else ann  # an optional section: `Section | None`
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "extra_forbidden" and loc:
        key = _dotted(loc)
        model = _section_model(loc)
        allowed = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{key}: unknown key{hint}; allowed keys: {', '.join(allowed)}"
    # Errors inside a member of a union carry the member's name in loc ("int", "literal[...]"): drop it.
    loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or x in ("int", "str", "float", "bool"))))
    key = _dotted(loc)
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") not in ("value_error", "assertion_error") and "input" in err:
        got = err["input"]
        if not isinstance(got, (dict, list)):
            msg += f" (got {got!r})"
    return f"{key}: {msg}"


def _format_validation_error(error: ValidationError, source: str) -> str:
    by_key: dict[str, str] = {}  # a union reports one error per member: keep the first per key
    for err in error.errors():
        key, _, text = _describe(dict(err)).partition(": ")
        by_key.setdefault(key, text)
    return f"{source}: " + "; ".join(f"{k}: {v}" for k, v in by_key.items())


def config_from_dict(data: Any, *, source: str = "<config>", base_dir: str | os.PathLike | None = None) -> RunConfig:
    """Validate a mapping (e.g. parsed YAML) into a :class:`RunConfig`; errors raise :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with data/model/training sections, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data, context={"base_dir": str(base_dir) if base_dir is not None else None})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


#: Configs shipped inside the package, usable by name (``load_config("polymnist_cpu")``, ``cmvae train --config``).
PACKAGED_CONFIGS = ("polymnist_cpu.yaml", "polymnist.yaml", "cubicc.yaml")


def packaged_config(name: str) -> Path:
    """Path of a config shipped inside the package (``polymnist_cpu.yaml``, ``polymnist.yaml``)."""
    if not name.endswith(".yaml"):
        name += ".yaml"
    resource = importlib.resources.files("cmvae") / "configs" / name
    if name not in PACKAGED_CONFIGS or not resource.is_file():
        raise FileNotFoundError(f"no packaged config {name!r}; packaged: {', '.join(PACKAGED_CONFIGS)}")
    return Path(str(resource))


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config file path, or the name of a packaged config (``polymnist_cpu``): the file to read."""
    text = os.fspath(path)
    found = Path(text).expanduser()
    if found.is_file():
        return found
    name = text if text.endswith(".yaml") else text + ".yaml"
    if "/" not in text and name in PACKAGED_CONFIGS:
        return packaged_config(name)
    raise FileNotFoundError(
        f"config file not found: {text} (packaged configs, usable by name: {', '.join(PACKAGED_CONFIGS)})"
    )


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a YAML run config: a file, or the name of a packaged config
    (``load_config("polymnist_cpu")``, one of :data:`PACKAGED_CONFIGS`), as the CLI's ``--config`` takes.

    Raises:
        FileNotFoundError: ``path`` is neither a file nor a packaged config name.
        ConfigError: YAML syntax error, unknown key or invalid value (names the file and key).
    """
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = ""
        mark = getattr(err, "problem_mark", None)
        if mark is not None:
            where = f" (line {mark.line + 1}, column {mark.column + 1})"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path} is empty: a run config needs at least a data: section (see configs/)")
    return config_from_dict(data, source=str(path), base_dir=path.resolve().parent)


def dump_config(cfg: RunConfig, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as YAML (all values, defaults included); :func:`load_config` reads it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=False)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# The data a config describes is loaded by :mod:`cmvae.data.run_data` (re-exported here).
from .data.run_data import RunData, load_arrays, load_data  # noqa: E402
