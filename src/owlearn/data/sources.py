"""The dataset registry: what each dataset is, where its files come from, and how to load it.

``load_dataset("fashion-mnist", "test")`` looks for the published files in

1. ``<data_dir>/<name>/`` where ``data_dir`` is the argument, else ``$OWLEARN_DATA``, else
   ``$XDG_CACHE_HOME/owlearn`` (``~/.cache/owlearn``);
2. system folders some distributions install datasets to (Fashion-MNIST:
   ``/usr/share/datasets/fashion-mnist/`` from Debian's ``dataset-fashion-mnist``),

checks each file against its published checksum (once per file version: the result is cached in
memory by path, mtime and size) and parses it with :mod:`owlearn.data.formats`.

Checksums
---------
Each file carries the digest its publisher or a widely used loader lists, with the source noted next
to it. SHA-256 where one is published (TensorFlow Datasets' ``url_checksums`` lists SHA-256 of the
canonical files), MD5 where only an MD5 is (USPS: torchvision lists MD5s only). MD5 is no defence
against a forged file, but it does catch corruption, truncation and a different version, which is
what the check is for here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from owlearn.data.download import ChecksumError, OfflineError, download, file_digest
from owlearn.data.formats import (
    DatasetFormatError,
    dataset_from_arrays,
    image_files,
    load_cifar10_archive,
    load_cifar100_archive,
    load_idx,
    load_image_folder,
    load_usps,
    read_sklearn_digits,
)

if TYPE_CHECKING:  # PyTorch is imported when a dataset is built, not to list or describe datasets
    from owlearn.data.dataset import ImageDataset

__all__ = [
    "DATA_ENV",
    "DatasetNotFoundError",
    "DatasetSpec",
    "RemoteFile",
    "dataset_info",
    "default_data_dir",
    "download_dataset",
    "get_dataset_spec",
    "is_image_folder",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]

DATA_ENV = "OWLEARN_DATA"
"""Environment variable naming the data folder (overrides ``~/.cache/owlearn``)."""

FOLDER_PREFIX = "folder:"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not on this machine; the message says how to get them."""


@dataclass(frozen=True)
class RemoteFile:
    """One published file of a dataset.

    Parameters
    ----------
    name
        File name, the same in the cache folder and at the end of every URL.
    urls
        Canonical URLs, tried in order.
    sha256, md5
        Published digest (``sha256`` preferred; ``md5`` where only an MD5 is published). ``None`` for
        both means no published checksum: the file is used with a warning.
    size
        Size in bytes of the canonical file (for display).
    also_sha256
        SHA-256 of other byte-for-byte copies known to hold the same data (a distribution's repack).
    checksum_source
        Where the digest comes from.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    also_sha256: tuple[str, ...] = ()
    checksum_source: str = ""

    @property
    def checksum_kind(self) -> str:
        return "sha256" if self.sha256 else "md5" if self.md5 else "none"


Options = dict[str, Any]
Loader = Callable[["DatasetSpec", str, list[Path], Options], "ImageDataset"]


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """Everything owlearn knows about a dataset before touching its files.

    Parameters
    ----------
    name
        Registry name (``"fashion-mnist"``), also the name of its folder in the data dir.
    title, homepage
        For people.
    shape
        ``(C, H, W)`` of one image.
    num_classes
        Number of classes (with default options).
    split_sizes
        Number of images per split.
    split_files
        File names each split needs, in the order the loader takes them.
    files
        The published files.
    loader
        ``loader(spec, split, paths, options)`` → :class:`ImageDataset`.
    class_names
        Class names, or ``None`` when they are read from the data files (CIFAR).
    options
        Keyword options :func:`load_dataset` passes on to the loader, with their defaults.
    system_dirs
        Folders searched after the data dir.
    aliases
        Other accepted spellings of the name.
    """

    name: str
    title: str
    homepage: str
    shape: tuple[int, int, int]
    num_classes: int
    split_sizes: dict[str, int]
    split_files: dict[str, tuple[str, ...]]
    files: tuple[RemoteFile, ...]
    loader: Loader
    class_names: tuple[str, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    system_dirs: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def file(self, name: str) -> RemoteFile:
        return next(f for f in self.files if f.name == name)

    @property
    def builtin(self) -> bool:
        """Whether the data ships with an installed package (nothing to download)."""
        return not self.files


# --------------------------------------------------------------------------------------------------
# loaders


def _idx_loader(spec: DatasetSpec, split: str, paths: list[Path], options: Options) -> ImageDataset:
    assert spec.class_names is not None
    return load_idx(paths[0], paths[1], spec.class_names)


def _cifar10_loader(spec: DatasetSpec, split: str, paths: list[Path], options: Options) -> ImageDataset:
    return load_cifar10_archive(paths[0], split)


def _cifar100_loader(spec: DatasetSpec, split: str, paths: list[Path], options: Options) -> ImageDataset:
    return load_cifar100_archive(paths[0], split, label=options["label"])


def _usps_loader(spec: DatasetSpec, split: str, paths: list[Path], options: Options) -> ImageDataset:
    return load_usps(paths[0])


def digits_split(labels: np.ndarray, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean test mask of a seeded stratified split: ``round(n_c * test_fraction)`` of each class.

    Implemented here rather than with scikit-learn's ``train_test_split`` so that the split cannot
    change with a scikit-learn release.

    Examples
    --------
    >>> mask = digits_split(np.array([0] * 10 + [1] * 5), 0.2, seed=0)
    >>> int(mask.sum())
    3
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        mask[rng.permutation(members)[: round(len(members) * test_fraction)]] = True
    return mask


def _digits_loader(spec: DatasetSpec, split: str, paths: list[Path], options: Options) -> ImageDataset:
    images, labels = read_sklearn_digits()
    test = digits_split(labels, float(options["test_fraction"]), int(options["seed"]))
    keep = test if split == "test" else ~test
    assert spec.class_names is not None
    return dataset_from_arrays(images[keep][:, None].copy(), labels[keep], list(spec.class_names), "")


# --------------------------------------------------------------------------------------------------
# the registry

_DIGITS = tuple(str(d) for d in range(10))


def _mnist_like_files(
    base_urls: Sequence[str], entries: Sequence[tuple[str, str, int, str]], source: str
) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(name, tuple(b + name for b in base_urls), sha256=sha, size=size,
                   also_sha256=(alt,) if alt else (), checksum_source=source)
        for name, sha, size, alt in entries
    )


_MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_REGISTRY: dict[str, DatasetSpec] = {}
_ALIASES: dict[str, str] = {}


def register_dataset(spec: DatasetSpec, *, replace: bool = False) -> None:
    """Add a dataset to the registry (for datasets owlearn does not ship).

    Examples
    --------
    >>> register_dataset(get_dataset_spec("mnist"), replace=True)
    """
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"a dataset named {spec.name!r} is already registered (pass replace=True)")
    _REGISTRY[spec.name] = spec
    for alias in (spec.name, *spec.aliases):
        _ALIASES[alias] = spec.name


register_dataset(DatasetSpec(
    name="mnist",
    title="MNIST handwritten digits",
    homepage="http://yann.lecun.com/exdb/mnist/",
    shape=(1, 28, 28),
    num_classes=10,
    class_names=_DIGITS,
    split_sizes={"train": 60000, "test": 10000},
    split_files=_MNIST_SPLITS,
    # SHA-256 and sizes: TensorFlow Datasets, url_checksums/mnist.txt (the CVDF mirror holds the original
    # files: the MD5s torchvision lists match). The t10k values equal shared/data/mnist/SHA256SUMS.
    files=_mnist_like_files(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/",
         "http://yann.lecun.com/exdb/mnist/"),
        [
            ("train-images-idx3-ubyte.gz",
             "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422, ""),
            ("train-labels-idx1-ubyte.gz",
             "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881, ""),
            ("t10k-images-idx3-ubyte.gz",
             "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877, ""),
            ("t10k-labels-idx1-ubyte.gz",
             "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542, ""),
        ],
        "TensorFlow Datasets url_checksums/mnist.txt",
    ),
    loader=_idx_loader,
))

register_dataset(DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando article images)",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    shape=(1, 28, 28),
    num_classes=10,
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"),
    split_sizes={"train": 60000, "test": 10000},
    split_files=_MNIST_SPLITS,
    # SHA-256 and sizes of the upstream files: TensorFlow Datasets, url_checksums/fashion_mnist.txt
    # (their MD5s are the ones the Fashion-MNIST README lists). Debian's dataset-fashion-mnist ships
    # the same data re-gzipped without the stored file name (24 bytes shorter), so its bytes differ:
    # those SHA-256 (shared/data/fashion-mnist/SHA256SUMS, checked against the installed package) are
    # accepted as known copies.
    files=_mnist_like_files(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
         "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
        [
            ("train-images-idx3-ubyte.gz",
             "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880,
             "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
            ("train-labels-idx1-ubyte.gz",
             "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515,
             "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
            ("t10k-images-idx3-ubyte.gz",
             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102,
             "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
            ("t10k-labels-idx1-ubyte.gz",
             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148,
             "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
        ],
        "TensorFlow Datasets url_checksums/fashion_mnist.txt; Debian repack: shared SHA256SUMS",
    ),
    loader=_idx_loader,
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    aliases=("fashion_mnist", "fashionmnist"),
))

register_dataset(DatasetSpec(
    name="kmnist",
    title="Kuzushiji-MNIST (cursive Japanese hiragana)",
    homepage="https://github.com/rois-codh/kmnist",
    shape=(1, 28, 28),
    num_classes=10,
    class_names=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    split_sizes={"train": 60000, "test": 10000},
    split_files=_MNIST_SPLITS,
    # SHA-256 and sizes: TensorFlow Datasets, url_checksums/kmnist.txt.
    files=_mnist_like_files(
        ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        [
            ("train-images-idx3-ubyte.gz",
             "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", 18165135, ""),
            ("train-labels-idx1-ubyte.gz",
             "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17", 29497, ""),
            ("t10k-images-idx3-ubyte.gz",
             "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", 3041136, ""),
            ("t10k-labels-idx1-ubyte.gz",
             "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c", 5120, ""),
        ],
        "TensorFlow Datasets url_checksums/kmnist.txt",
    ),
    loader=_idx_loader,
    aliases=("k-mnist", "kuzushiji-mnist"),
))

register_dataset(DatasetSpec(
    name="cifar10",
    title="CIFAR-10 (binary version)",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    shape=(3, 32, 32),
    num_classes=10,
    split_sizes={"train": 50000, "test": 10000},
    split_files={"train": ("cifar-10-binary.tar.gz",), "test": ("cifar-10-binary.tar.gz",)},
    # SHA-256 and size: TensorFlow Datasets, url_checksums/cifar10.txt (the CIFAR page lists the MD5
    # c32a1d4ab5d03f1284b67883e8d87530 for this file).
    files=(RemoteFile(
        "cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
        sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", size=170052171,
        checksum_source="TensorFlow Datasets url_checksums/cifar10.txt",
    ),),
    loader=_cifar10_loader,
    aliases=("cifar-10",),
))

register_dataset(DatasetSpec(
    name="cifar100",
    title="CIFAR-100 (binary version; fine labels, or coarse with label='coarse')",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    shape=(3, 32, 32),
    num_classes=100,
    split_sizes={"train": 50000, "test": 10000},
    split_files={"train": ("cifar-100-binary.tar.gz",), "test": ("cifar-100-binary.tar.gz",)},
    # SHA-256 and size: TensorFlow Datasets, url_checksums/cifar100.txt (the CIFAR page lists the MD5
    # 03b5dce01913d631647c71ecec9e9cb8 for this file).
    files=(RemoteFile(
        "cifar-100-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",),
        sha256="58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec", size=168513733,
        checksum_source="TensorFlow Datasets url_checksums/cifar100.txt",
    ),),
    loader=_cifar100_loader,
    options={"label": "fine"},
    aliases=("cifar-100",),
))

_USPS_BASE = "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/"
register_dataset(DatasetSpec(
    name="usps",
    title="USPS handwritten digits (LIBSVM version, 16x16)",
    homepage="https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass.html#usps",
    shape=(1, 16, 16),
    num_classes=10,
    class_names=_DIGITS,
    split_sizes={"train": 7291, "test": 2007},
    split_files={"train": ("usps.bz2",), "test": ("usps.t.bz2",)},
    # Only MD5s are published for these files (torchvision, datasets/usps.py); no SHA-256 was found.
    files=(
        RemoteFile("usps.bz2", (_USPS_BASE + "usps.bz2",), md5="ec16c51db3855ca6c91edd34d0e9b197",
                   checksum_source="torchvision datasets/usps.py (MD5 only)"),
        RemoteFile("usps.t.bz2", (_USPS_BASE + "usps.t.bz2",), md5="8ea070ee2aca1ac39742fdd1ef5ed118",
                   checksum_source="torchvision datasets/usps.py (MD5 only)"),
    ),
    loader=_usps_loader,
))

register_dataset(DatasetSpec(
    name="digits",
    title="scikit-learn digits (8x8, bundled; seeded stratified 80/20 split)",
    homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    shape=(1, 8, 8),
    num_classes=10,
    class_names=_DIGITS,
    split_sizes={"train": 1438, "test": 359},  # for the default test_fraction=0.2 (any seed)
    split_files={"train": (), "test": ()},
    files=(),
    loader=_digits_loader,
    options={"seed": 0, "test_fraction": 0.2},
    aliases=("sklearn-digits",),
))


# --------------------------------------------------------------------------------------------------
# finding and verifying files


def default_data_dir() -> Path:
    """The data folder: ``$OWLEARN_DATA``, else ``$XDG_CACHE_HOME/owlearn``, else ``~/.cache/owlearn``.

    Examples
    --------
    >>> default_data_dir()  # doctest: +SKIP
    PosixPath('/home/me/.cache/owlearn')
    """
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "owlearn"


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def get_dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name`` (any accepted spelling).

    Examples
    --------
    >>> get_dataset_spec("Fashion_MNIST").name
    'fashion-mnist'
    """
    key = name.strip().lower()
    if key not in _ALIASES:
        raise ValueError(
            f"unknown dataset {name!r}: choose one of {', '.join(list_datasets())}, "
            f"or give 'folder:PATH' for a folder of images"
        )
    return _REGISTRY[_ALIASES[key]]


def list_datasets() -> list[str]:
    """Names of the registered datasets.

    Examples
    --------
    >>> list_datasets()[:3]
    ['mnist', 'fashion-mnist', 'kmnist']
    """
    return list(_REGISTRY)


def _search_dirs(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    return [data_dir / spec.name, *map(Path, spec.system_dirs)]


# (resolved path, mtime_ns, size) -> what was verified; hashing a 170 MB archive on every load would
# dominate loading time, and a changed file gets a new mtime or size.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def _verify(path: Path, remote: RemoteFile) -> str:
    """Check ``path`` against ``remote``'s checksum (cached); returns what was checked."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _VERIFIED:
        return _VERIFIED[key]
    if remote.sha256:
        actual = file_digest(path, "sha256")
        if actual == remote.sha256:
            result = "sha256"
        elif actual in remote.also_sha256:
            result = "sha256 (known repack)"
        else:
            raise ChecksumError(
                f"{path} does not match the published SHA-256 of {remote.name}: expected {remote.sha256}, "
                f"got {actual}; it is corrupt, incomplete or a different version"
            )
    elif remote.md5:
        actual = file_digest(path, "md5")
        if actual != remote.md5:
            raise ChecksumError(
                f"{path} does not match the published MD5 of {remote.name}: expected {remote.md5}, "
                f"got {actual}; it is corrupt, incomplete or a different version"
            )
        result = "md5"
    else:
        warnings.warn(f"{path}: no published checksum, the file is used unverified", stacklevel=3)
        result = "no published checksum"
    _VERIFIED[key] = result
    return result


def _remember(path: Path, remote: RemoteFile) -> None:
    """Record a fresh download as verified: its digest was checked while it streamed in."""
    stat = path.stat()
    kind = remote.checksum_kind
    _VERIFIED[(str(path.resolve()), stat.st_mtime_ns, stat.st_size)] = (
        kind if kind != "none" else "no published checksum"
    )


def _find_file(
    spec: DatasetSpec, remote: RemoteFile, data_dir: Path
) -> tuple[Path | None, list[ChecksumError]]:
    """The first copy of ``remote`` that passes verification, and the errors of those that did not."""
    errors: list[ChecksumError] = []
    for folder in _search_dirs(spec, data_dir):
        path = folder / remote.name
        if path.is_file():
            try:
                _verify(path, remote)
                return path, errors
            except ChecksumError as err:
                errors.append(err)
    return None, errors


def _split_names(spec: DatasetSpec, splits: Sequence[str] | None) -> list[str]:
    if splits is None:
        return list(spec.split_files)
    for split in splits:
        if split not in spec.split_files:
            raise ValueError(f"{spec.name} has splits {', '.join(spec.split_files)}; got {split!r}")
    return list(splits)


def _files_of(spec: DatasetSpec, splits: Sequence[str]) -> list[RemoteFile]:
    names = dict.fromkeys(n for s in splits for n in spec.split_files[s])  # ordered, no duplicates
    return [spec.file(n) for n in names]


def _manual_hint(spec: DatasetSpec, files: Sequence[RemoteFile], folder: Path) -> str:
    listing = ", ".join(f"{f.name} ({f.urls[0]})" for f in files)
    return f"download these files by hand into {folder}/ : {listing}"


def download_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    mirror: str | os.PathLike | None = None,
    *,
    splits: Sequence[str] | None = None,
    timeout: float = 60.0,
    progress: bool = True,
) -> list[Path]:
    """Make sure a dataset's files are on this machine, downloading the missing ones.

    A file already present (in the data dir or a system folder) and matching its checksum is kept; a
    missing or corrupt one is downloaded into ``<data_dir>/<name>/`` and verified before it appears.

    Parameters
    ----------
    name
        Registered dataset name.
    data_dir
        Data folder (default :func:`default_data_dir`).
    mirror
        Base URL or local folder replacing the canonical hosts (default ``$OWLEARN_MIRROR``).
    splits
        Only the files of these splits (default: all).
    timeout
        Seconds to wait for each connection and read.
    progress
        Show a progress bar per file.

    Returns
    -------
    list of pathlib.Path
        Where each file of the dataset is (empty for built-in datasets).

    Raises
    ------
    OfflineError
        No connection; the message lists the files and the folder to put them in by hand.
    ChecksumError, DownloadError
        A download failed or did not match its checksum (nothing was saved).

    Examples
    --------
    >>> download_dataset("mnist", splits=["test"])  # doctest: +SKIP
    [PosixPath('/home/me/.cache/owlearn/mnist/t10k-images-idx3-ubyte.gz'), ...]
    """
    if _folder_path(name) is not None:
        raise ValueError(f"{name}: an image folder is local, there is nothing to download")
    spec = get_dataset_spec(name)
    folder = _data_dir(data_dir) / spec.name
    files = _files_of(spec, _split_names(spec, splits))
    found = {f.name: _find_file(spec, f, folder.parent)[0] for f in files}
    missing = [f for f in files if found[f.name] is None]
    for i, remote in enumerate(missing):
        try:
            found[remote.name] = download(
                remote.urls, folder / remote.name, remote.sha256, md5=remote.md5, timeout=timeout,
                progress=progress, mirror=mirror,
                manual_hint=_manual_hint(spec, missing[i:], folder),
            )
        except OfflineError as err:
            raise OfflineError(f"{spec.name}: {err}") from None
        _remember(found[remote.name], remote)
    return [p for p in found.values() if p is not None]


def _missing_message(spec: DatasetSpec, split: str, missing: Sequence[str], data_dir: Path) -> str:
    folders = ", ".join(str(d) for d in _search_dirs(spec, data_dir))
    needed = ", ".join(spec.split_files[split])
    return (
        f"{spec.name} ({split}): {', '.join(missing)} not found (looked in {folders}). "
        f"Run `owlearn data download {spec.name}` (or pass download=True, --download), or put {needed} "
        f"in {data_dir / spec.name}/ by hand"
    )


def _resolve_split(spec: DatasetSpec, split: str, data_dir: Path, fetch: bool) -> list[Path]:
    paths: dict[str, Path | None] = {}
    errors: list[ChecksumError] = []
    for name in spec.split_files[split]:
        paths[name], errs = _find_file(spec, spec.file(name), data_dir)
        errors += errs
    missing = [n for n, p in paths.items() if p is None]
    if missing and fetch:
        download_dataset(spec.name, data_dir, splits=[split])
        return _resolve_split(spec, split, data_dir, fetch=False)  # finds them, verified, from the cache
    if missing and errors:
        raise ChecksumError(
            f"{errors[0]}. Delete it and run `owlearn data download {spec.name}` (or pass download=True, --download)"
        )
    if missing:
        raise DatasetNotFoundError(_missing_message(spec, split, missing, data_dir))
    return [p for p in paths.values() if p is not None]


# --------------------------------------------------------------------------------------------------
# image folders

_SPLIT_DIRS = ("train", "val", "valid", "validation", "test")


def _folder_path(name: str | os.PathLike) -> Path | None:
    """The folder ``name`` refers to (``folder:PATH``, or a path that is not a registered name)."""
    text = os.fspath(name)
    if text.startswith(FOLDER_PREFIX):
        return Path(text[len(FOLDER_PREFIX):]).expanduser()
    if text.strip().lower() in _ALIASES:
        return None
    path = Path(text).expanduser()
    return path if path.is_dir() else None


def is_image_folder(name: str | os.PathLike) -> bool:
    """Whether :func:`load_dataset` reads ``name`` as a folder of images (which takes ``size`` and ``mode``).

    >>> is_image_folder("digits"), is_image_folder("folder:photos")
    (False, True)
    """
    return _folder_path(name) is not None


def _folder_root(path: Path, split: str) -> Path:
    if not path.is_dir():
        what = "a file, not a folder of images" if path.exists() else "no such folder"
        raise DatasetNotFoundError(f"{path}: {what}")
    split_dirs = [d for d in _SPLIT_DIRS if (path / d).is_dir()]
    if split_dirs:
        if split not in split_dirs:
            raise ValueError(
                f"{path} has split folders {', '.join(split_dirs)}; choose one of them, not {split!r}"
            )
        return path / split
    if split not in ("train", "all"):
        raise ValueError(
            f"{path} has no split sub-folders ({', '.join(_SPLIT_DIRS)}), so the whole folder is one split: "
            f"use split 'all' (or 'train'; on the command line --split all), not {split!r}"
        )
    return path


def _load_folder(path: Path, split: str, options: dict[str, Any]) -> ImageDataset:
    unknown = set(options) - {"size", "mode"}
    if unknown:
        raise TypeError(
            f"unknown option(s) for an image folder: {', '.join(sorted(unknown))} (allowed: size, mode)"
        )
    root = _folder_root(path, split)
    ds = load_image_folder(root, name=f"{path.name}/{split}", **options)
    ds.meta.update(dataset=f"{FOLDER_PREFIX}{path}", split=split)
    return ds


# --------------------------------------------------------------------------------------------------
# public entry points


def _concat(parts: Sequence[ImageDataset], name: str) -> ImageDataset:
    if any(p.class_names != parts[0].class_names for p in parts):
        raise DatasetFormatError(f"{name}: the splits have different class names")
    import torch

    from owlearn.data.dataset import ImageDataset

    return ImageDataset(
        torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
        list(parts[0].class_names), name,
    )


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    **options: Any,
) -> ImageDataset:
    """Load a dataset split into memory.

    Parameters
    ----------
    name
        A registered name (``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``cifar100``,
        ``usps``, ``digits``; see :func:`list_datasets`), or ``folder:PATH`` / the path of an existing
        folder with one sub-folder of images per class (a registered name wins over a folder of the
        same name: write ``folder:`` to be explicit). A folder with ``train/``, ``test/``, …
        sub-folders has those splits; any other folder is a single split (``"all"`` or ``"train"``).
    split
        ``"train"``, ``"test"``, or ``"all"`` (both, train first).
    data_dir
        Data folder (default :func:`default_data_dir`).
    download
        Download missing files instead of raising :class:`DatasetNotFoundError`.
    **options
        Dataset options: ``label="fine"|"coarse"`` (cifar100); ``seed``, ``test_fraction`` (digits);
        ``size``, ``mode`` (image folders, see :func:`~owlearn.data.formats.load_image_folder`).

    Returns
    -------
    ImageDataset
        Named ``"<name>/<split>"``; ``meta`` records the dataset, split and files.

    Raises
    ------
    DatasetNotFoundError
        Files missing and ``download`` is false; the message gives the command and the folder.
    ChecksumError
        A file is present but does not match its published checksum.
    DatasetFormatError
        A file does not follow its format.

    Examples
    --------
    >>> ds = load_dataset("digits", "test")
    >>> len(ds), ds.shape, ds.num_classes
    (359, (1, 8, 8), 10)
    >>> load_dataset("fashion-mnist", "test").name  # doctest: +SKIP
    'fashion-mnist/test'
    """
    folder = _folder_path(name)
    if folder is not None:
        return _load_folder(folder, split, options)
    spec = get_dataset_spec(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise TypeError(
            f"unknown option(s) for {spec.name}: {', '.join(sorted(unknown))} (allowed: {allowed})"
        )
    opts = {**spec.options, **options}
    if split == "all":
        parts = [load_dataset(spec.name, s, data_dir=data_dir, download=download, **options)
                 for s in spec.split_files]
        ds = _concat(parts, f"{spec.name}/all")
        ds.meta.update(dataset=spec.name, split="all", options=opts,
                       files=sorted({f for p in parts for f in p.meta["files"]}))
        return ds
    _split_names(spec, [split])
    root = _data_dir(data_dir)
    paths = _resolve_split(spec, split, root, download)
    ds = spec.loader(spec, split, paths, opts)
    expected = spec.split_sizes.get(split)
    # Only meaningful with default options (digits' split size depends on test_fraction).
    if expected is not None and opts == spec.options and len(ds) != expected:
        raise DatasetFormatError(
            f"{', '.join(map(str, paths)) or spec.name}: {len(ds)} images, but {spec.name} {split} "
            f"has {expected}"
        )
    ds.name = f"{spec.name}/{split}"
    ds.meta.update(dataset=spec.name, split=split, options=opts, files=[str(p) for p in paths])
    return ds


def _folder_info(path: Path) -> dict[str, Any]:
    if not path.is_dir():
        raise DatasetNotFoundError(f"{path}: no such folder")
    split_dirs = [d for d in _SPLIT_DIRS if (path / d).is_dir()]
    roots = {d: path / d for d in split_dirs} if split_dirs else {"all": path}
    sizes: dict[str, int] = {}
    classes: list[str] = []
    for split, root in roots.items():
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        # without class sub-folders, the folder's own images are one unlabeled set (as the loader reads them)
        sizes[split] = sum(len(image_files(root / c)) for c in classes) if classes else len(image_files(root))
    if not any(sizes.values()):
        raise DatasetFormatError(f"{path}: no images and no class sub-folders; an image folder holds one "
                                 "sub-folder of images per class, or its images unlabeled")
    return {
        "name": f"{FOLDER_PREFIX}{path}", "title": "image folder", "homepage": None, "splits": sizes,
        "shape": None, "num_classes": len(classes), "classes": classes,
        "options": {"size": None, "mode": None},
        "builtin": False, "files": [], "found": True, "locations": [str(path)], "data_dir": None,
    }


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What is known about a dataset and which of its files are on this machine.

    Files are only looked for here (no checksum is computed, so this is fast); loading verifies them.

    Parameters
    ----------
    name
        Registered name or image folder.
    data_dir
        Data folder (default :func:`default_data_dir`).

    Returns
    -------
    dict
        ``name``, ``title``, ``homepage``, ``splits`` (images per split), ``shape``, ``num_classes``,
        ``classes`` (``None`` when read from the data files), ``options``, ``builtin``, ``files``
        (per file: ``name``, ``urls``, ``size``, ``checksum`` kind and value, ``checksum_source``,
        ``path`` where found or ``None``), ``found`` (all files present), ``locations`` (folders
        holding them), ``data_dir`` (where downloads go).

    Examples
    --------
    >>> info = dataset_info("mnist")
    >>> info["splits"], info["shape"]
    ({'train': 60000, 'test': 10000}, (1, 28, 28))
    """
    folder = _folder_path(name)
    if folder is not None:
        return _folder_info(folder)
    spec = get_dataset_spec(name)
    root = _data_dir(data_dir)
    files = []
    for remote in spec.files:
        where = next((d / remote.name for d in _search_dirs(spec, root) if (d / remote.name).is_file()), None)
        files.append({
            "name": remote.name, "urls": list(remote.urls), "size": remote.size,
            "checksum": remote.checksum_kind, "sha256": remote.sha256, "md5": remote.md5,
            "checksum_source": remote.checksum_source, "path": str(where) if where else None,
        })
    return {
        "name": spec.name, "title": spec.title, "homepage": spec.homepage, "splits": dict(spec.split_sizes),
        "shape": spec.shape, "num_classes": spec.num_classes,
        "classes": list(spec.class_names) if spec.class_names else None, "options": dict(spec.options),
        "builtin": spec.builtin, "files": files, "found": all(f["path"] for f in files),
        "locations": sorted({str(Path(f["path"]).parent) for f in files if f["path"]}),
        "data_dir": str(root / spec.name),
    }
