"""Checking that the columns a recipe names exist, before any work starts."""

from __future__ import annotations

import datasets

from .errors import DatasetError


def require_columns(
    dataset: datasets.DatasetDict | datasets.IterableDatasetDict | datasets.Dataset | datasets.IterableDataset,
    columns: dict[str, str | None],
    ref: str = "the dataset",
) -> None:
    """Fail unless every split has every named column.

    Args:
        dataset: the loaded splits, or one split (named by its ``.split``).
        columns: recipe key -> column name, e.g. ``{"data.image_column": "img"}``; None values
            (optional keys left unset) are skipped.
        ref: how the dataset was referenced, for the message.

    Raises:
        DatasetError: e.g. "data.image_column='img' not found in split 'train' of fashion_mnist;
            columns present: ['image', 'label']".
    """
    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        dataset = {str(dataset.split or "dataset"): dataset}
    problems = []
    for split, split_data in dataset.items():
        present = split_data.column_names
        if present is None:  # a streamed dataset whose features are unknown until read
            continue
        for key, column in columns.items():
            if column is not None and column not in present:
                problems.append(f"{key}={column!r} not found in split {split!r} of {ref}; columns present: {present}")
    if problems:
        raise DatasetError("\n".join(problems))


def select_split(dataset: datasets.DatasetDict | datasets.IterableDatasetDict, split: str, key: str, ref: str = "the dataset"):
    """`dataset[split]`, or a `DatasetError` naming the recipe key and the splits that exist."""
    if split not in dataset:
        raise DatasetError(f"{key}={split!r}: no such split in {ref}; splits present: {list(dataset)}")
    return dataset[split]


def require_text_columns(split, columns: dict[str, str | None], ref: str = "the dataset", word_lists: bool = False) -> None:
    """Fail unless every named column of `split` holds strings (or, with `word_lists`, lists of strings: token
    tasks), naming the column and the type found, before any tokenizer sees it.

    Raises:
        DatasetError: e.g. "data.text_column='review' of reviews.parquet (split 'train') holds
            struct {'title': string, 'body': string}, not text; ..."
    """
    features = getattr(split, "features", None)
    if not features:
        return  # a streamed dataset whose features are unknown until read
    for key, column in columns.items():
        if column is None or column not in features:
            continue
        feature = features[column]
        if _is_string(feature) or (word_lists and _is_string(getattr(feature, "feature", None))):
            continue
        wanted = "text (strings)" + (", or lists of words" if word_lists else "")
        raise DatasetError(
            f"{key}={column!r} of {ref} (split {split.split or 'train'!r}) holds {_describe(feature)}, not {wanted}; "
            f"point {key} at a text column (columns present: {list(features)})"
        )


def _is_string(feature) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _describe(feature) -> str:
    if isinstance(feature, datasets.Value):
        return f"values of type {feature.dtype}"
    if isinstance(feature, dict):
        return "structs {" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in feature.items()) + "}"
    if isinstance(feature, datasets.ClassLabel):
        return f"class labels {feature.names[:5]}"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"lists of {_describe(inner)}"
    return type(feature).__name__
