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
