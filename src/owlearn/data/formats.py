"""Strict parsers for the file formats small image datasets are published in.

Every parser returns plain numpy arrays or an :class:`~owlearn.data.dataset.ImageDataset` and raises
:class:`DatasetFormatError` for anything that does not match the published layout: a wrong magic
number, dimensions, a count mismatch between images and labels, a truncated file, trailing bytes,
a broken compressed stream, a label out of range. A parser never guesses: a silently mis-read dataset
costs far more (wrong benchmark numbers) than an error that names the file.

Formats
-------
- IDX (MNIST, Fashion-MNIST, KMNIST): :func:`read_idx_images`, :func:`read_idx_labels`,
  :func:`load_idx`.
- CIFAR-10 / CIFAR-100 *binary* archives, read straight from the ``.tar.gz``:
  :func:`load_cifar10_archive`, :func:`load_cifar100_archive`.
- USPS in LIBSVM text format, bz2-compressed: :func:`read_libsvm_images`, :func:`load_usps`.
- A folder with one sub-folder of images per class: :func:`load_image_folder`.
- scikit-learn's bundled 8x8 digits: :func:`read_sklearn_digits`.
"""

from __future__ import annotations

import bz2
import gzip
import math
import os
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # Pillow and PyTorch are imported when needed: most datasets never touch Pillow
    from PIL.Image import Image as PILImage

    from owlearn.data.dataset import ImageDataset

__all__ = [
    "DatasetFormatError",
    "IMAGE_EXTENSIONS",
    "load_cifar10_archive",
    "load_cifar100_archive",
    "load_idx",
    "load_image_folder",
    "load_usps",
    "parse_cifar_records",
    "read_compressed",
    "read_idx_images",
    "read_idx_labels",
    "read_libsvm_images",
    "read_sklearn_digits",
]

IDX_IMAGES_MAGIC = 2051
"""Magic number of an IDX file of unsigned bytes with three dimensions (images, rows, columns)."""
IDX_LABELS_MAGIC = 2049
"""Magic number of an IDX file of unsigned bytes with one dimension (labels)."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File name extensions :func:`load_image_folder` and prediction (owlearn.preprocess) read (compared
case-insensitively): a model predicts on what it could have been trained on, and the other way round."""

_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"


class DatasetFormatError(ValueError):
    """A data file does not follow its published format; the message names the file and the fault."""


# --------------------------------------------------------------------------------------------------
# compressed files



def dataset_from_arrays(images: np.ndarray, labels: np.ndarray, class_names: list[str], name: str,
             meta: dict | None = None) -> ImageDataset:
    """The arrays as an :class:`ImageDataset` (tensors sharing their memory).

    PyTorch is imported here, not with the module: ``owlearn data list`` and ``owlearn data info`` need
    only this module's errors, and should not wait seconds for it."""
    import torch

    from owlearn.data.dataset import ImageDataset

    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), class_names, name, meta or {})

def read_compressed(path: str | os.PathLike) -> bytes:
    """The content of ``path``, decompressed when its name ends in ``.gz`` or ``.bz2``.

    The compression is chosen by the file name, not guessed from the content, so that a file that
    claims to be compressed and is not is reported instead of being read as something else.

    Parameters
    ----------
    path
        File to read.

    Returns
    -------
    bytes
        The decompressed content.

    Raises
    ------
    DatasetFormatError
        The compressed stream is not gzip/bz2, is corrupt or is truncated.

    Examples
    --------
    >>> import gzip, tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.gz"
    >>> _ = p.write_bytes(gzip.compress(b"hello"))
    >>> read_compressed(p)
    b'hello'
    """
    path = Path(path)
    raw = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".gz":
        if not raw.startswith(_GZIP_MAGIC):
            raise DatasetFormatError(f"{path}: not a gzip file (it does not start with 1f 8b)")
        try:
            return gzip.decompress(raw)
        except EOFError as err:
            raise DatasetFormatError(f"{path}: gzip data is truncated ({err})") from None
        except (OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise DatasetFormatError(f"{path}: corrupt gzip data ({err})") from None
    if suffix == ".bz2":
        if not raw.startswith(_BZ2_MAGIC):
            raise DatasetFormatError(f"{path}: not a bzip2 file (it does not start with 'BZh')")
        return _bunzip2(raw, path)
    return raw


def _bunzip2(raw: bytes, path: Path) -> bytes:
    """Decompress all bzip2 streams in ``raw``, telling a truncated stream from a corrupt one."""
    parts = []
    while raw:  # a file may hold several streams (pbzip2, concatenated files)
        decompressor = bz2.BZ2Decompressor()
        try:
            parts.append(decompressor.decompress(raw))
        except (OSError, ValueError) as err:
            raise DatasetFormatError(f"{path}: corrupt bzip2 data ({err})") from None
        if not decompressor.eof:
            raise DatasetFormatError(f"{path}: bzip2 data is truncated (no end-of-stream marker)")
        raw = decompressor.unused_data
    return b"".join(parts)


# --------------------------------------------------------------------------------------------------
# IDX (MNIST family)


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes with ``ndim`` dimensions; checks every length exactly."""
    data = read_compressed(path)
    header_len = 4 + 4 * ndim
    if len(data) < 4:
        raise DatasetFormatError(f"{path}: truncated IDX file ({len(data)} bytes, no magic number)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        hint = ""
        if data.startswith(_GZIP_MAGIC):
            hint = " (the content is gzip-compressed: name the file *.gz)"
        elif found in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC):
            hint = " (images and labels files swapped?)"
        raise DatasetFormatError(
            f"{path}: wrong magic number {found} (0x{found:08x}), expected {magic} (0x{magic:08x}) "
            f"for unsigned bytes in {ndim} dimension(s){hint}"
        )
    if len(data) < header_len:
        raise DatasetFormatError(
            f"{path}: truncated IDX header ({len(data)} bytes, the header needs {header_len})"
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if any(d == 0 for d in dims[1:]):
        raise DatasetFormatError(f"{path}: invalid IDX dimensions {dims} (an image side of 0)")
    expected = math.prod(dims)
    body = len(data) - header_len
    if body < expected:
        raise DatasetFormatError(
            f"{path}: truncated: the header declares {'x'.join(map(str, dims))} = {expected} bytes "
            f"of data but the file holds {body}"
        )
    if body > expected:
        raise DatasetFormatError(
            f"{path}: {body - expected} trailing bytes after the {'x'.join(map(str, dims))} data "
            f"the header declares"
        )
    # frombuffer is a view on immutable bytes; the copy makes the array writable for torch.
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header_len).reshape(dims).copy()


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """Images from an IDX ``*-idx3-ubyte`` file (gzip'd when the name ends in ``.gz``).

    Parameters
    ----------
    path
        The file; magic number 2051, big-endian dimensions ``N, rows, cols``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(N, rows, cols)``.

    Examples
    --------
    >>> imgs = read_idx_images("t10k-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> imgs.shape  # doctest: +SKIP
    (10000, 28, 28)
    """
    return _read_idx(Path(path), IDX_IMAGES_MAGIC, 3)


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels from an IDX ``*-idx1-ubyte`` file (gzip'd when the name ends in ``.gz``).

    Parameters
    ----------
    path
        The file; magic number 2049, one big-endian dimension ``N``.

    Returns
    -------
    numpy.ndarray
        ``int64`` array of shape ``(N,)``.

    Examples
    --------
    >>> labels = read_idx_labels("t10k-labels-idx1-ubyte.gz")  # doctest: +SKIP
    >>> labels[:3]  # doctest: +SKIP
    array([7, 2, 1])
    """
    return _read_idx(Path(path), IDX_LABELS_MAGIC, 1).astype(np.int64)


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise DatasetFormatError(
            f"{where}: label {int(labels[bad])} at position {bad} is out of range "
            f"[0, {num_classes}) for {num_classes} classes"
        )


def load_idx(
    images_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    class_names: Sequence[str],
    name: str = "",
) -> ImageDataset:
    """An :class:`ImageDataset` from a pair of IDX files (images and labels).

    Parameters
    ----------
    images_path, labels_path
        The ``*-idx3-ubyte[.gz]`` and ``*-idx1-ubyte[.gz]`` files.
    class_names
        Name of each class; every label must index into it.
    name
        Name given to the dataset (``"mnist/test"``).

    Returns
    -------
    ImageDataset
        Images of shape ``(N, 1, rows, cols)``.

    Examples
    --------
    >>> ds = load_idx("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
    ...               [str(d) for d in range(10)], "mnist/test")  # doctest: +SKIP
    >>> ds.images.shape  # doctest: +SKIP
    torch.Size([10000, 1, 28, 28])
    """
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path)
    if len(images) != len(labels):
        raise DatasetFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    _check_labels(labels, len(class_names), str(labels_path))
    return dataset_from_arrays(images[:, None], labels, list(class_names), name)


# --------------------------------------------------------------------------------------------------
# CIFAR binary archives

_CIFAR_IMAGE_BYTES = 3 * 32 * 32


def parse_cifar_records(
    data: bytes, label_bytes: int, label_index: int, num_classes: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from the records of one CIFAR binary batch file.

    Each record is ``label_bytes`` label bytes followed by 3072 image bytes: the 1024 red, then green,
    then blue values of a 32x32 image, rows first.

    Parameters
    ----------
    data
        The whole batch file.
    label_bytes
        1 for CIFAR-10, 2 for CIFAR-100 (coarse label, then fine label).
    label_index
        Which of the label bytes to use.
    num_classes
        Labels must lie in ``[0, num_classes)``.
    where
        Name of the file for error messages.

    Returns
    -------
    tuple of numpy.ndarray
        ``uint8`` images ``(N, 3, 32, 32)`` and ``int64`` labels ``(N,)``.

    Examples
    --------
    >>> record = bytes([3]) + bytes(3072)
    >>> images, labels = parse_cifar_records(record * 2, 1, 0, 10, "batch")
    >>> images.shape, labels.tolist()
    ((2, 3, 32, 32), [3, 3])
    """
    size = label_bytes + _CIFAR_IMAGE_BYTES
    if len(data) == 0:
        raise DatasetFormatError(f"{where}: empty batch file")
    if len(data) % size:
        raise DatasetFormatError(
            f"{where}: {len(data)} bytes is not a whole number of {size}-byte records "
            f"({len(data) // size} records and {len(data) % size} bytes left over: truncated or "
            f"trailing bytes)"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, size)
    labels = records[:, label_index].astype(np.int64)
    _check_labels(labels, num_classes, where)
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def _safe_member_name(archive: Path, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path, refusing absolute paths, ``..`` and links: this archive is untrusted."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise DatasetFormatError(f"{archive}: refusing tar member with an unsafe path {member.name!r}")
    if not (member.isfile() or member.isdir()):
        raise DatasetFormatError(
            f"{archive}: refusing tar member {member.name!r}: not a regular file or folder (a link or device)"
        )
    return name


def _read_tar_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """Read the regular files whose base names are in ``wanted`` from a ``.tar.gz`` in one pass."""
    found: dict[str, bytes] = {}
    try:
        # Stream mode ("r|gz") reads the archive front to back once: no seeking, no extraction.
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                name = _safe_member_name(archive, member)
                if member.isfile() and name.name in wanted:
                    if name.name in found:
                        raise DatasetFormatError(f"{archive}: two members named {name.name!r}")
                    fh = tar.extractfile(member)
                    assert fh is not None  # a regular file always has content
                    found[name.name] = fh.read()
    except DatasetFormatError:
        raise
    except EOFError as err:
        raise DatasetFormatError(f"{archive}: truncated archive ({err})") from None
    except (tarfile.TarError, OSError, zlib.error) as err:
        raise DatasetFormatError(f"{archive}: not a valid .tar.gz archive ({err})") from None
    missing = sorted(wanted - found.keys())
    if missing:
        raise DatasetFormatError(f"{archive}: missing member(s) {', '.join(missing)}")
    return found


def _names_file(data: bytes, where: str, expected: int) -> list[str]:
    try:
        names = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{where}: not a text file ({err})") from None
    if len(names) != expected:
        raise DatasetFormatError(f"{where}: expected {expected} class names, found {len(names)}")
    return names


def _check_split(split: str, archive: Path) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"{archive}: split must be 'train' or 'test', got {split!r}")


def load_cifar10_archive(archive: str | os.PathLike, split: str = "train", name: str = "") -> ImageDataset:
    """CIFAR-10 from ``cifar-10-binary.tar.gz``, read in place (nothing is extracted or unpickled).

    Parameters
    ----------
    archive
        The binary distribution: ``data_batch_1.bin`` … ``data_batch_5.bin``, ``test_batch.bin``
        and ``batches.meta.txt`` (class names) in a gzip'd tar.
    split
        ``"train"`` (the five data batches, in order) or ``"test"``.
    name
        Name given to the dataset.

    Returns
    -------
    ImageDataset
        ``uint8`` RGB images ``(N, 3, 32, 32)``, class names from ``batches.meta.txt``.

    Examples
    --------
    >>> ds = load_cifar10_archive("cifar-10-binary.tar.gz", "test")  # doctest: +SKIP
    >>> len(ds), ds.class_names[:3]  # doctest: +SKIP
    (10000, ['airplane', 'automobile', 'bird'])
    """
    archive = Path(archive)
    _check_split(split, archive)
    batches = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    members = _read_tar_members(archive, {*batches, "batches.meta.txt"})
    class_names = _names_file(members["batches.meta.txt"], f"{archive}:batches.meta.txt", 10)
    parts = [parse_cifar_records(members[b], 1, 0, 10, f"{archive}:{b}") for b in batches]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return dataset_from_arrays(images, labels, class_names, name)


def load_cifar100_archive(
    archive: str | os.PathLike, split: str = "train", name: str = "", *, label: str = "fine"
) -> ImageDataset:
    """CIFAR-100 from ``cifar-100-binary.tar.gz``, read in place (nothing is extracted or unpickled).

    Parameters
    ----------
    archive
        The binary distribution: ``train.bin``, ``test.bin`` (records of a coarse label byte, a fine
        label byte and 3072 image bytes), ``fine_label_names.txt`` and ``coarse_label_names.txt``.
    split
        ``"train"`` or ``"test"``.
    name
        Name given to the dataset.
    label
        ``"fine"`` (100 classes, the default) or ``"coarse"`` (20 super-classes).

    Returns
    -------
    ImageDataset
        ``uint8`` RGB images ``(N, 3, 32, 32)`` with the chosen labels and their names.

    Examples
    --------
    >>> ds = load_cifar100_archive("cifar-100-binary.tar.gz", "test", label="coarse")  # doctest: +SKIP
    >>> ds.num_classes  # doctest: +SKIP
    20
    """
    archive = Path(archive)
    _check_split(split, archive)
    if label not in ("fine", "coarse"):
        raise ValueError(f"label must be 'fine' or 'coarse', got {label!r}")
    batch = f"{split}.bin"
    names_file = f"{label}_label_names.txt"
    members = _read_tar_members(archive, {batch, names_file})
    num_classes = 100 if label == "fine" else 20
    class_names = _names_file(members[names_file], f"{archive}:{names_file}", num_classes)
    images, labels = parse_cifar_records(
        members[batch], 2, 1 if label == "fine" else 0, num_classes, f"{archive}:{batch}"
    )
    return dataset_from_arrays(images, labels, class_names, name, {"label": label})


# --------------------------------------------------------------------------------------------------
# LIBSVM text (USPS)


def _parse_libsvm_line(line: str, num_features: int, where: str) -> tuple[float, np.ndarray]:
    tokens = line.split()
    try:
        label = float(tokens[0])
    except ValueError:
        raise DatasetFormatError(f"{where}: label {tokens[0]!r} is not a number") from None
    row = np.zeros(num_features, dtype=np.float64)  # LIBSVM semantics: a missing feature is 0
    if len(tokens) == 1:
        return label, row
    try:
        # One vectorised parse of "i:v i:v ..." instead of a Python loop over 256 tokens per line.
        pairs = np.array(" ".join(tokens[1:]).replace(":", " ").split(), dtype=np.float64)
    except ValueError:
        raise DatasetFormatError(f"{where}: features are not 'index:value' pairs of numbers") from None
    if any(t.count(":") != 1 for t in tokens[1:]) or pairs.size % 2:
        raise DatasetFormatError(f"{where}: features are not 'index:value' pairs")
    index, value = pairs[0::2], pairs[1::2]
    if np.any(index != np.round(index)) or index.min() < 1 or index.max() > num_features:
        raise DatasetFormatError(f"{where}: feature indices must be integers in [1, {num_features}]")
    if np.any(np.diff(index) <= 0):
        raise DatasetFormatError(f"{where}: feature indices must be strictly increasing (LIBSVM format)")
    if not np.all(np.isfinite(value)):
        raise DatasetFormatError(f"{where}: feature values must be finite numbers")
    row[index.astype(np.int64) - 1] = value
    return label, row


def read_libsvm_images(
    path: str | os.PathLike,
    shape: tuple[int, int] = (16, 16),
    *,
    value_range: tuple[float, float] = (-1.0, 1.0),
    first_label: int = 1,
    num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale images stored one per line in LIBSVM format (``label index:value ...``).

    Values in ``value_range`` are mapped linearly onto 0..255 and rounded; a feature missing from a
    line is 0, as LIBSVM's sparse format defines it. Lines may be dense (all features) or sparse.

    Parameters
    ----------
    path
        Text file, bz2-compressed when its name ends in ``.bz2``.
    shape
        ``(height, width)``; features are the pixels row by row, so there are ``height * width``.
    value_range
        The range of the stored values (``[-1, 1]`` for USPS).
    first_label
        The label that means class 0 (USPS numbers its digits 1..10 for 0..9).
    num_classes
        Labels must lie in ``[first_label, first_label + num_classes)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``uint8`` images ``(N, height, width)`` and ``int64`` labels ``(N,)`` counted from 0.

    Examples
    --------
    >>> images, labels = read_libsvm_images("usps.t.bz2")  # doctest: +SKIP
    >>> images.shape, int(labels.max())  # doctest: +SKIP
    ((2007, 16, 16), 9)
    """
    path = Path(path)
    try:
        text = read_compressed(path).decode("ascii")
    except UnicodeDecodeError as err:
        raise DatasetFormatError(f"{path}: not a LIBSVM text file ({err})") from None
    num_features = shape[0] * shape[1]
    low, high = value_range
    labels: list[int] = []
    rows: list[np.ndarray] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0]  # svmlight allows trailing comments
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        label, row = _parse_libsvm_line(line, num_features, where)
        if label != int(label) or not first_label <= label < first_label + num_classes:
            raise DatasetFormatError(
                f"{where}: label {label:g} is out of range: expected an integer in "
                f"[{first_label}, {first_label + num_classes - 1}]"
            )
        # A tiny tolerance: the published values are printed with 6 decimals.
        if row.min() < low - 1e-6 or row.max() > high + 1e-6:
            raise DatasetFormatError(f"{where}: pixel values must lie in [{low:g}, {high:g}]")
        labels.append(int(label) - first_label)
        rows.append(row)
    if not rows:
        raise DatasetFormatError(f"{path}: no samples in the file")
    values = np.clip((np.stack(rows) - low) / (high - low), 0.0, 1.0)
    images = np.rint(values * 255.0).astype(np.uint8).reshape(-1, *shape)
    return images, np.asarray(labels, dtype=np.int64)


def load_usps(path: str | os.PathLike, name: str = "") -> ImageDataset:
    """USPS digits from ``usps.bz2`` (7,291 training images) or ``usps.t.bz2`` (2,007 test images).

    Parameters
    ----------
    path
        The LIBSVM file as published on the LIBSVM data page: labels 1..10 for the digits 0..9 and
        256 values in ``[-1, 1]`` per 16x16 image.
    name
        Name given to the dataset.

    Returns
    -------
    ImageDataset
        ``uint8`` images ``(N, 1, 16, 16)``, classes ``"0"`` … ``"9"``.

    Examples
    --------
    >>> ds = load_usps("usps.t.bz2", "usps/test")  # doctest: +SKIP
    >>> ds.shape  # doctest: +SKIP
    (1, 16, 16)
    """
    images, labels = read_libsvm_images(path, (16, 16), value_range=(-1.0, 1.0), first_label=1)
    return dataset_from_arrays(images[:, None], labels, [str(d) for d in range(10)], name)


# --------------------------------------------------------------------------------------------------
# image folders

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def _is_gray(image: PILImage) -> bool:
    """Whether an opened image is grayscale; palette images count when every palette entry is gray."""
    if image.mode in _GRAY_MODES:
        return True
    if image.mode in ("P", "PA"):
        palette = image.getpalette() or []
        return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
    return False


def float_pixels_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Float pixels → uint8: read as [0, 1] when none exceeds 1, else as [0, 255]; clipped, NaN as 0."""
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0)
    if arr.size and arr.max() <= 1:
        arr = arr * 255
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def to_8bit(image: PILImage) -> PILImage:
    """16-bit and float images scaled to 8 bits by their range; other images as they are.

    PIL's ``convert("L")`` clips such values at 255, so a digit saved as a 16-bit PNG would come out nearly
    all white. The one rule for training (image folders) and prediction (owlearn.preprocess), so that a
    model is given what it was trained on: ``I;16`` spans 0..65535 (65535 → 255); mode ``I`` (older Pillow
    reads 16-bit PNGs so) carries no bit depth, so its range is inferred: 8 bits up to 255, 16 bits up to
    65535, beyond that its own maximum; float ``F`` as :func:`float_pixels_to_uint8`.
    """
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max(initial=0))
        peak = 65535.0 if image.mode.startswith("I;16") or 255 < top <= 65535 else max(top, 255.0)
        return Image.fromarray(np.rint(np.clip(array / peak, 0, 1) * 255).astype(np.uint8), "L")
    if image.mode == "F":
        return Image.fromarray(float_pixels_to_uint8(np.asarray(image)), "L")
    return image


def _to_mode(image: PILImage, mode: str) -> PILImage:
    """Convert a PIL image to ``"L"`` or ``"RGB"``, keeping a 16-bit or float image's range."""
    image = to_8bit(image)
    return image if image.mode == mode else image.convert(mode)


UNLABELED = -1  # owlearn.data.dataset.UNLABELED, not imported: that module imports PyTorch


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted (hidden files and other extensions skipped)."""
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _list_images(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names and ``(file, label)`` pairs of an image folder, both in sorted order.

    A folder without sub-folders but with images is one unlabeled set: no class names, every label
    ``UNLABELED`` (what clustering reads).
    """
    if not root.is_dir():
        raise DatasetFormatError(f"{root}: not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        flat = image_files(root)
        if flat:
            return [], [(p, UNLABELED) for p in flat]
        raise DatasetFormatError(
            f"{root}: no images and no class sub-folders; an image folder holds one sub-folder of images per "
            f"class, or its images unlabeled ({', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    files: list[tuple[Path, int]] = []
    for label, cls in enumerate(classes):
        found = image_files(root / cls)
        if not found:
            raise DatasetFormatError(
                f"{root / cls}: class folder without images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}); remove it or add images"
            )
        files += [(p, label) for p in found]
    return classes, files


def _open_image(path: Path) -> PILImage:
    """Open (lazily: header only) an image, turning every Pillow failure into a DatasetFormatError."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DatasetFormatError(f"{path}: cannot read this image ({err})") from None


def load_image_folder(
    root: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    mode: str | None = None,
    name: str = "",
) -> ImageDataset:
    """Images from a folder with one sub-folder per class (``root/cat/1.png``, ``root/dog/a.jpg``), or
    unlabeled images directly in the folder (``root/1.png``: no classes, every label ``-1``).

    Class names are the sorted sub-folder names; images are read in sorted file order. Hidden files
    and folders (``.*``) and files without an image extension are skipped. Transparency is dropped
    and animated images contribute their first frame.

    Parameters
    ----------
    root
        The folder.
    size
        ``(height, width)`` (or one int for square images) every image is resized to. By default all
        images must have the size of the first one.
    mode
        ``"L"`` or ``"RGB"``; by default ``"L"`` when every image is grayscale (a grayscale mode, or
        RGB with three equal channels, as WebP stores gray pictures), else ``"RGB"``.
    name
        Name given to the dataset (default: the folder name).

    Returns
    -------
    ImageDataset
        ``uint8`` images ``(N, C, H, W)`` with ``C`` 1 or 3; ``meta["paths"]`` lists the file of each.

    Examples
    --------
    >>> ds = load_image_folder("photos", size=64)  # doctest: +SKIP
    >>> ds.shape  # doctest: +SKIP
    (3, 64, 64)
    """
    from PIL import Image

    root = Path(root)
    if mode not in (None, "L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    if isinstance(size, int):
        size = (size, size)
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be a positive (height, width), got {size!r}")
    classes, files = _list_images(root)

    # First pass reads headers only (cheap) to settle the common mode and size before any decoding.
    all_gray = True
    first_size: tuple[int, int] | None = None
    for path, _ in files:
        with _open_image(path) as img:
            all_gray = all_gray and _is_gray(img)
            if size is None:
                if first_size is None:
                    first_size = (img.height, img.width)
                elif (img.height, img.width) != first_size:
                    raise DatasetFormatError(
                        f"{root}: images have different sizes: {files[0][0].relative_to(root)} is "
                        f"{first_size[1]}x{first_size[0]} but {path.relative_to(root)} is "
                        f"{img.width}x{img.height} (width x height); resize them all to one size "
                        f"(size=(height, width) in Python, --image-size on the command line)"
                    )
    read_mode = mode or ("L" if all_gray else "RGB")
    height, width = size if size is not None else first_size  # type: ignore[misc]
    channels = 1 if read_mode == "L" else 3

    images = np.empty((len(files), height, width, channels), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        with _open_image(path) as img:
            try:
                img.seek(0)
                img.load()  # decodes the pixels: corrupt or truncated data fails here
                img = _to_mode(img, read_mode)
                if (img.height, img.width) != (height, width):
                    img = img.resize((width, height), Image.Resampling.BILINEAR)
            except (OSError, SyntaxError, ValueError, EOFError) as err:
                raise DatasetFormatError(f"{path}: cannot read this image ({err})") from None
            images[i] = np.asarray(img, dtype=np.uint8).reshape(height, width, channels)
    if mode is None and channels == 3 and (images == images[..., :1]).all():
        # Some formats (WebP, many JPEGs) store gray pictures as RGB: judge by content, not by mode.
        images = images[..., :1]
    labels = np.array([label for _, label in files], dtype=np.int64)
    return dataset_from_arrays(np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels, classes, name or root.name,
                    {"root": str(root), "paths": [str(p) for p, _ in files]})


# --------------------------------------------------------------------------------------------------
# scikit-learn digits


def read_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1,797 images), offline.

    Returns
    -------
    tuple of numpy.ndarray
        ``uint8`` images ``(1797, 8, 8)`` with the original 0..16 values scaled to 0..255 (rounded)
        and ``int64`` labels 0..9.

    Examples
    --------
    >>> images, labels = read_sklearn_digits()
    >>> images.shape, int(images.max())
    ((1797, 8, 8), 255)
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(np.asarray(digits.images, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8)
    return images, np.asarray(digits.target, dtype=np.int64)
