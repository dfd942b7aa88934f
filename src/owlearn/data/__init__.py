"""Datasets: in-memory tensors, file formats, downloads and batched augmentation."""

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

__all__ = [
    "UNLABELED",
    "ChecksumError",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DownloadError",
    "ImageDataset",
    "OfflineError",
    "dataset_info",
    "default_data_dir",
    "download_dataset",
    "list_datasets",
    "load_dataset",
]
