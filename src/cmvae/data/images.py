"""Folders of image files (PNG, JPEG, ... read with Pillow): listing, checking and reading them,
either all at once or lazily, one batch at a time (:class:`ImageFiles`).

:class:`ImageFiles` is a :class:`~cmvae.lazyrows.LazyRows` ``[N, C, H, W]`` uint8: building it reads
only each file's header (that it opens as an image, its size and mode), and each index operation
decodes just the images it selects. :func:`cmvae.data.from_image_folders` with ``lazy=True`` pairs
one per modality into a dataset that ``fit``/``predict``/``transform``/``select_clusters`` read a
batch at a time (under DDP each process decodes its share only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..lazyrows import LazyRows
from ..schema import DataValidationError

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "files_by_stem", "image_files", "read_image", "subfolder_labels"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Pillow's errors for a file that is not an image, or a damaged one.
_READ_ERRORS = (OSError, SyntaxError, ValueError)


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def image_files(root: Path) -> list[Path]:
    """The image files below ``root`` (sub-folders included), sorted by path; errors name the folder."""
    if not root.is_dir():
        raise DataValidationError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataValidationError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")
    return files


def files_by_stem(root: Path, files: Sequence[Path]) -> dict[str, Path]:
    """``{stem: file}`` (stems pair modalities, so two files with one stem are refused)."""
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise DataValidationError(
                f"{root}: two files with the stem {p.stem!r} ({stems[p.stem]} and {p}); stems pair modalities "
                "and must be unique"
            )
        stems[p.stem] = p
    return stems


def subfolder_labels(root: Path, files: Sequence[Path]) -> tuple[np.ndarray, list[str]]:
    """Labels ``[N]`` from the first-level sub-folder of each file (``root/<label>/x.png``) and the label names."""
    rel = [p.relative_to(root).parts for p in files]
    flat = [str(p.relative_to(root)) for p, parts in zip(files, rel) if len(parts) < 2]
    if flat:
        shown = ", ".join(flat[:5]) + (f" (and {len(flat) - 5} more)" if len(flat) > 5 else "")
        raise DataValidationError(
            f"{root}: labels_from_subfolders needs every image in a sub-folder named by its label; not in one: {shown}"
        )
    names = sorted({parts[0] for parts in rel})
    lookup = {v: i for i, v in enumerate(names)}
    return np.array([lookup[parts[0]] for parts in rel], dtype=np.int64), names


def default_mode(pillow_mode: str) -> str:
    """``"L"`` for a greyscale image mode, else ``"RGB"``."""
    return "L" if pillow_mode in ("1", "L", "I;16", "I", "F") else "RGB"


def read_image(path: Path, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as uint8 ``[C, H, W]`` in Pillow ``mode``, resized to ``size`` ``(H, W)`` when given."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            if size is not None:
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            a = np.asarray(img, dtype=np.uint8)
    except _READ_ERRORS as err:
        raise DataValidationError(f"{path}: cannot read as an image ({_short(err)})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """``((H, W), Pillow mode)`` of an image file, from its header (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return (img.size[1], img.size[0]), img.mode
    except _READ_ERRORS as err:
        raise DataValidationError(f"{path}: cannot read as an image ({_short(err)})") from None


def _channels(mode: str) -> int:
    from PIL import Image

    try:
        return len(Image.new(mode, (1, 1)).getbands())
    except ValueError:
        raise ValueError(f"mode must be a Pillow image mode such as 'L' or 'RGB', got {mode!r}") from None


class ImageFiles(LazyRows):
    """Image files as a lazy uint8 view ``[N, C, H, W]``: an index operation decodes only the files it selects.

    Build it with :meth:`scan`, which opens every file's header: a file that is not an image, or
    (without ``size``) an image whose size differs from the first one, raises
    :class:`~cmvae.schema.DataValidationError` naming the folder and the files. A file damaged after
    its header is found when a batch decodes it (the error names it), or up front by :meth:`verify`.
    """

    def __init__(self, files: Sequence[Path], mode: str, shape: tuple[int, int, int],
                 resize: tuple[int, int] | None = None) -> None:
        self.files = [Path(p) for p in files]
        self.mode = mode
        self.resize = resize
        self.shape = torch.Size([len(self.files), *shape])
        self.dtype = torch.uint8

    @classmethod
    def scan(cls, files: Sequence[Path], root: Path, *, size: int | Sequence[int] | None = None,
             mode: str | None = None) -> "ImageFiles":
        """Check the headers of ``files`` (of folder ``root``, for messages) and view them lazily.

        ``size``: ``int`` or ``(H, W)`` resizes every image (else all must have the first one's size);
        ``mode``: a Pillow mode (default: ``"L"`` if the first image is greyscale, else ``"RGB"``).
        """
        resize = None if size is None else (
            (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size))
        if resize is not None and (len(resize) != 2 or min(resize) < 1):
            raise ValueError(f"size must be an int or (height, width), got {size!r}")
        first: tuple[tuple[int, int], Path] | None = None
        for p in files:
            hw, file_mode = _header(p)
            mode = mode or default_mode(file_mode)
            if first is None:
                first = (hw, p)
            elif resize is None and hw != first[0]:
                (h0, w0), p0 = first
                raise DataValidationError(
                    f"{root}: images have different sizes ({p0.relative_to(root)}: {h0}x{w0}, "
                    f"{p.relative_to(root)}: {hw[0]}x{hw[1]}); pass size= to resize them"
                )
        if first is None or mode is None:
            raise DataValidationError(f"{root}: no image files")
        height, width = resize or first[0]
        return cls(files, mode, (_channels(mode), height, width), resize)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        for j, i in enumerate(indices):
            path = self.files[int(i)]
            image = read_image(path, self.mode, self.resize)
            if image.shape != out.shape[1:]:
                raise DataValidationError(
                    f"{path}: decodes to {list(image.shape)}, not the [C, H, W] = {list(out.shape[1:])} of its folder"
                )
            out[j] = image
        return torch.from_numpy(out)

    def subset(self, rows: Sequence[int] | np.ndarray) -> "ImageFiles":
        picked = [self.files[int(i)] for i in self.row_indices(rows)]
        return ImageFiles(picked, self.mode, tuple(self.shape[1:]), self.resize)  # type: ignore[arg-type]

    def verify(self, batch: int = 256) -> None:
        """Decode every image once, ``batch`` at a time (nothing kept): a damaged file raises now."""
        for start in range(0, len(self), batch):
            self.read(np.arange(start, min(len(self), start + batch)))

    def __repr__(self) -> str:
        folder = self.files[0].parent if self.files else "-"
        return f"ImageFiles({len(self)} files in {folder}, [C, H, W] = {list(self.shape[1:])}, mode {self.mode!r})"
