"""Natural background images for Poly-X datasets, read from installed wheels.

The images ship inside scikit-image (``skimage/data/``) and scikit-learn
(``sklearn/datasets/images/``), both dependencies of this package, so nothing
is downloaded. Files are read directly (no ``skimage.data`` fetchers).

:func:`load_backgrounds` returns uint8 RGB arrays ``[H, W, 3]``; grayscale
images are repeated over the three channels and an alpha channel is dropped.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_BACKGROUNDS",
    "available_backgrounds",
    "background_path",
    "load_background",
    "load_backgrounds",
]

# name -> (package, path inside the package)
_BUILTIN: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle_left": ("skimage", "data/motorcycle_left.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
}

#: The five colourful backgrounds used by default (modality m uses the m-th).
DEFAULT_BACKGROUNDS: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "china", "flower")


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # locates without importing
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def background_path(name: str) -> Path | None:
    """File path of the built-in background ``name``, or None if it is not installed."""
    if name not in _BUILTIN:
        return None
    package, rel = _BUILTIN[name]
    root = _package_dir(package)
    if root is None:
        return None
    path = root / rel
    return path if path.is_file() else None


def available_backgrounds() -> list[str]:
    """Names of the built-in backgrounds whose files are present, defaults first."""
    order = list(DEFAULT_BACKGROUNDS) + [n for n in _BUILTIN if n not in DEFAULT_BACKGROUNDS]
    return [n for n in order if background_path(n) is not None]


def _to_rgb_uint8(img: np.ndarray, where: str) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if np.issubdtype(img.dtype, np.floating) and img.size and img.max() <= 1.0:
            img = np.rint(img * 255.0)
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{where}: cannot use an image of shape {img.shape} as background")
    return np.ascontiguousarray(img)


def load_background(name_or_path: str | os.PathLike) -> np.ndarray:
    """One background as uint8 ``[H, W, 3]``: a built-in name or an image file path."""
    from skimage.io import imread  # local import: skimage is slowish to import

    key = str(name_or_path)
    path = background_path(key) if key in _BUILTIN else None
    if path is None:
        candidate = Path(key).expanduser()
        if candidate.is_file():
            path = candidate
        else:
            raise ValueError(
                f"unknown background {key!r}: not an image file and not one of the "
                f"available built-in backgrounds {available_backgrounds()}"
            )
    return _to_rgb_uint8(imread(str(path)), str(path))


def load_backgrounds(names: list[str] | tuple[str, ...] | None = None) -> list[np.ndarray]:
    """Backgrounds as a list of uint8 ``[H, W, 3]`` arrays.

    Args:
        names: built-in names (see :func:`available_backgrounds`) or image file
            paths; None means :data:`DEFAULT_BACKGROUNDS`.
    """
    if names is None:
        names = DEFAULT_BACKGROUNDS
    if isinstance(names, (str, os.PathLike)):
        raise TypeError("names must be a list of names/paths, not a single string")
    return [load_background(n) for n in names]
