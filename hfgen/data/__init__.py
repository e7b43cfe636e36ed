"""Datasets for hfgen: references (path, catalog name, Hub id) -> `datasets.DatasetDict`, and image tensors."""

from .cache import cache_dir
from .catalog import CATALOG, CatalogEntry, load_catalog_dataset
from .columns import require_columns, select_split
from .errors import DatasetError
from .grids import make_image_grid, save_image_grid
from .images import ImageDataset, drop_unreadable_images, pil_to_tensor
from .loading import build_dataset
from .transforms import denormalize_from_symmetric, normalize_to_symmetric, random_horizontal_flip, to_float

__all__ = [
    "CATALOG",
    "CatalogEntry",
    "DatasetError",
    "ImageDataset",
    "build_dataset",
    "cache_dir",
    "denormalize_from_symmetric",
    "drop_unreadable_images",
    "load_catalog_dataset",
    "make_image_grid",
    "normalize_to_symmetric",
    "pil_to_tensor",
    "random_horizontal_flip",
    "require_columns",
    "save_image_grid",
    "select_split",
    "to_float",
]
