"""Datasets: in-memory tensors, file formats, downloads and batched augmentation."""

from typing import TYPE_CHECKING

from owlearn._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "dataset": ("UNLABELED", "ImageDataset"),
    "download": ("ChecksumError", "DownloadError", "OfflineError"),
    "formats": ("DatasetFormatError",),
    "sources": ("DatasetNotFoundError", "dataset_info", "default_data_dir", "download_dataset", "list_datasets",
                "load_dataset"),
})

if TYPE_CHECKING:  # for type checkers and IDEs; at run time each name is imported on first use
    from owlearn.data.dataset import UNLABELED, ImageDataset
    from owlearn.data.download import ChecksumError, DownloadError, OfflineError
    from owlearn.data.formats import DatasetFormatError
    from owlearn.data.sources import (
        DatasetNotFoundError,
        dataset_info,
        default_data_dir,
        download_dataset,
        list_datasets,
        load_dataset,
    )
