"""`build_dataset`: turn a recipe's ``data.dataset`` reference into a `datasets.DatasetDict`."""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

import datasets

from .cache import cache_dir
from .catalog import CATALOG, load_catalog_dataset
from .columns import require_columns
from .conll import is_conll, load_conll
from .errors import DatasetError
from .file_checks import check_text_file
from .images import drop_unreadable_images

logger = logging.getLogger(__name__)

# File suffix -> (datasets packaged builder, its extra arguments).
TABULAR_FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
    ".arrow": ("arrow", {}),
}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst"}
# A save_to_disk folder holds dataset_dict.json (DatasetDict) or state.json (Dataset).
_SAVE_TO_DISK_MARKERS = ("dataset_dict.json", "state.json")


def build_dataset(
    ref: str,
    *,
    streaming: bool = False,
    cache: bool = True,
    image_column: str | None = None,
    on_bad_image: str = "fail",
    encoding: str = "utf-8",
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load the dataset a recipe names, as splits.

    ``ref`` is resolved in this order:

    1. an existing local path: a csv/tsv/json/jsonl/parquet/txt/arrow file (split "train"), a folder
       of such files (splits from the file names: train.csv, test.csv, validation.jsonl, ...; otherwise
       all "train"), an image folder in ``imagefolder`` layout (class subfolders, optionally under
       top-level ``train/`` and ``test/``), a ``save_to_disk`` folder (a plain Dataset becomes "train"), or
       CoNLL token/tag files (``.conll``/``.iob``/``.bio``, a file or a folder of them: `hfgen.data.conll`);
    2. a name in `hfgen.data.catalog.CATALOG`, built from its offline source and cached as Arrow under
       ``cache_dir()/datasets``, else loaded from its Hub id;
    3. anything else: ``datasets.load_dataset(ref)`` from the Hub.

    Args:
        ref: the reference (``data.dataset`` in a recipe).
        streaming: return an `IterableDatasetDict` (catalog sets and local save_to_disk folders are
            loaded, then streamed from their Arrow files).
        cache: reuse hfgen's Arrow cache of catalog sets; False rebuilds from the source.
        image_column: when set, check that the column exists and that every image decodes, before
            training (not for catalog sets, which hfgen built itself, nor for streamed Hub datasets).
        on_bad_image: "fail" raises when an image is unreadable; "skip" drops it (logged). Call
            `drop_unreadable_images` yourself to get the count.
        encoding: the text encoding of local csv/tsv/json/jsonl/txt files (``data.encoding``); each file is
            checked first (`hfgen.data.file_checks`), so an empty, header-only, undecodable or malformed file is
            named with its cause.

    Raises:
        DatasetError: the reference cannot be resolved, a file cannot be read, or a column is missing.
    """
    dataset, check_images = _resolve(
        ref, streaming=streaming, cache=cache, load_images_eagerly=image_column is not None, encoding=encoding
    )
    if image_column is not None:
        require_columns(dataset, {"data.image_column": image_column}, ref)
        if check_images:
            dataset, _ = drop_unreadable_images(dataset, image_column, on_bad_image)
        elif streaming and not isinstance(dataset, datasets.DatasetDict):
            logger.info("Not checking images of streamed dataset %s ahead of training.", ref)
    if streaming and isinstance(dataset, datasets.DatasetDict):
        dataset = datasets.IterableDatasetDict({split: part.to_iterable_dataset() for split, part in dataset.items()})
    return dataset


def _resolve(
    ref: str, *, streaming: bool, cache: bool, load_images_eagerly: bool, encoding: str = "utf-8"
) -> tuple[datasets.DatasetDict | datasets.IterableDatasetDict, bool]:
    """The dataset ``ref`` names, and whether its images still need checking."""
    path = Path(ref).expanduser()
    if path.exists():
        # Local files load eagerly (Arrow conversion is cheap) whenever images must be checked first.
        return _load_local(path, streaming=streaming and not load_images_eagerly, encoding=encoding), True
    if _looks_like_path(ref):
        raise DatasetError(f"Dataset path {str(path)!r} does not exist (resolved from {ref!r}, cwd {os.getcwd()}).")
    if ref in CATALOG:
        return load_catalog_dataset(ref, cache=cache), False
    try:
        loaded = datasets.load_dataset(ref, streaming=streaming)
    except Exception as err:
        hub_error = " ".join(f"{type(err).__name__}: {err}".split()).rstrip(".")
        closest = difflib.get_close_matches(ref, CATALOG, n=1)
        suggestion = f" Did you mean {closest[0]!r}?" if closest else ""
        raise DatasetError(
            f"Dataset {ref!r} is not an existing path, not a catalog name ({', '.join(sorted(CATALOG))}), "
            f"and loading it from the Hub failed: {hub_error}.{suggestion}"
        ) from err
    return _as_dict(loaded), not streaming


def _looks_like_path(ref: str) -> bool:
    if ref.startswith((".", "/", "~")):
        return True
    suffixes = [suffix.lower() for suffix in Path(ref).suffixes]
    return bool(set(suffixes) & (set(TABULAR_FORMATS) | IMAGE_SUFFIXES | _COMPRESSION_SUFFIXES))


def _load_local(path: Path, *, streaming: bool, encoding: str = "utf-8") -> datasets.DatasetDict | datasets.IterableDatasetDict:
    # Arrow conversions of local files live in hfgen's cache, beside the catalog sets.
    hf_cache = str(cache_dir() / "hf-datasets")
    try:
        if is_conll(path):  # token/tag lines (NER): hfgen's reader, no datasets builder exists for them
            return load_conll(path)
        if path.is_file():
            builder, kwargs = _tabular_format(path)
            check_text_file(path, encoding)
            loaded = datasets.load_dataset(
                builder, data_files={"train": str(path)}, streaming=streaming, cache_dir=hf_cache,
                **_with_encoding(builder, kwargs, encoding),
            )
        elif any((path / marker).is_file() for marker in _SAVE_TO_DISK_MARKERS):
            loaded = datasets.load_from_disk(str(path))
        else:
            builder, kwargs = _folder_format(path)
            if builder != "imagefolder":
                for file in sorted(p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)):
                    check_text_file(file, encoding)
            loaded = datasets.load_dataset(
                builder, data_dir=str(path), streaming=streaming, cache_dir=hf_cache, **_with_encoding(builder, kwargs, encoding)
            )
    except DatasetError:
        raise
    except Exception as err:
        raise DatasetError(
            f"Cannot load dataset from {path}: {' '.join(f'{type(err).__name__}: {err}'.split())}"
        ) from err
    return _as_dict(loaded)


def _with_encoding(builder: str, kwargs: dict, encoding: str) -> dict:
    """The builder's arguments plus the text encoding, for the builders that read text."""
    return {**kwargs, "encoding": encoding} if builder in ("csv", "json", "text") else kwargs


def _tabular_format(path: Path) -> tuple[str, dict]:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()  # train.csv.gz reads like train.csv; datasets decompresses it
    if suffixes and suffixes[-1] in TABULAR_FORMATS:
        return TABULAR_FORMATS[suffixes[-1]]
    hint = " (for images, point at the folder that holds them)" if suffixes and suffixes[-1] in IMAGE_SUFFIXES else ""
    raise DatasetError(
        f"Cannot load {path}: unsupported file type{hint}. Supported: {', '.join(TABULAR_FORMATS)} "
        "(optionally .gz/.bz2/.xz/.zst compressed), a folder of them, an image folder, or a save_to_disk folder."
    )


def _folder_format(folder: Path) -> tuple[str, dict]:
    """Which datasets builder reads ``folder``: its one tabular format, else imagefolder."""
    tabular: dict[str, list[str]] = {}  # format (a builder, or ".tsv": csv with tabs) -> file names
    has_images = False
    for _root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                has_images = True
            elif suffix in TABULAR_FORMATS and Path(name).stem != "metadata":  # imagefolder's metadata.csv/jsonl
                tabular.setdefault(suffix if suffix == ".tsv" else TABULAR_FORMATS[suffix][0], []).append(name)
    if len(tabular) > 1:
        found = "; ".join(f"{fmt.lstrip('.')}: {', '.join(names[:3])}" for fmt, names in tabular.items())
        raise DatasetError(f"Folder {folder} mixes file formats ({found}); keep one format per dataset folder.")
    if tabular:
        fmt = next(iter(tabular))
        return TABULAR_FORMATS[".tsv"] if fmt == ".tsv" else (fmt, {})
    if has_images:
        return "imagefolder", {}
    raise DatasetError(
        f"Folder {folder} holds no dataset files: expected {', '.join(TABULAR_FORMATS)} files, image class "
        "subfolders (imagefolder layout), or a save_to_disk folder."
    )


def _as_dict(loaded) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    if isinstance(loaded, datasets.Dataset):
        return datasets.DatasetDict({"train": loaded})
    if isinstance(loaded, datasets.IterableDataset):
        return datasets.IterableDatasetDict({"train": loaded})
    return loaded
