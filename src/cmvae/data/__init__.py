"""Datasets: your own data (arrays, CSV, image folders), offline PolyMNIST (and Poly-X from any labelled image set),
digit sources, backgrounds; CUBICC (images + captions) from local CUB folders (:mod:`cmvae.data.cubicc`, :mod:`cmvae.data.text`)."""

from .datasets import (
    ArrayDataset,
    CSVModality,
    ImageFolderModality,
    MultimodalDataset,
    from_csv,
    from_image_folders,
    from_modalities,
    from_npy,
)
from .images import ImageFiles
from .backgrounds import DEFAULT_BACKGROUNDS, available_backgrounds, load_backgrounds
from .mnist_sources import MNIST_SOURCES, DataSourceError, DigitSet, default_cache_dir, load_mnist
from .polymnist import (
    PolyMNIST,
    PolySplit,
    build_polymnist,
    load_polymnist_split,
    make_poly_dataset,
    save_polymnist_split,
    split_digits,
)

__all__ = [
    "ArrayDataset",
    "CSVModality",
    "ImageFiles",
    "ImageFolderModality",
    "MultimodalDataset",
    "from_csv",
    "from_image_folders",
    "from_modalities",
    "from_npy",
    "DEFAULT_BACKGROUNDS",
    "MNIST_SOURCES",
    "DataSourceError",
    "DigitSet",
    "PolyMNIST",
    "PolySplit",
    "available_backgrounds",
    "build_polymnist",
    "default_cache_dir",
    "load_backgrounds",
    "load_mnist",
    "load_polymnist_split",
    "make_poly_dataset",
    "save_polymnist_split",
    "split_digits",
]
