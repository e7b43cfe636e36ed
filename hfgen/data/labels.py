"""Labels for classifiers of any modality: names and ids read off the data, checked, encoded, and a
seeded (stratified) validation split carved out of training when the dataset has none.

`encode_labels` turns a label column into a ``labels`` column the model trains on:

- ``single_label``: one class per example (a string, an int, a bool or a ClassLabel) -> int64 id;
- ``multi_label``: a list of classes per example -> multi-hot float32 vector;
- ``regression``: a number per example -> float32;
- ``token``: a list of tags per word -> list of int64 ids.

Class names (saved as ``config.id2label``) are a ClassLabel's names, else the recipe's list, else
the sorted distinct training labels, so ``pipeline()`` prints names rather than ``LABEL_0``.

`encode_labels_for_model` does the same for one split scored by a trained model
(``scripts/evaluate.py``): the classes are the model's ``config.id2label``, not read off the data.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import datasets
import numpy as np

from .errors import DatasetError

logger = logging.getLogger(__name__)

TASKS = ("single_label", "multi_label", "regression", "token")


def column_values(split: datasets.Dataset, column: str) -> list:
    """A column as a Python list (through Arrow in one go: indexing a `Column` item by item is ~100x slower)."""
    return split.select_columns([column])[:][column]


@dataclass
class LabelReport:
    """What `encode_labels` did, for the log and eval_results.json."""

    names: list[str] | None  # class names by id (None for regression)
    null_dropped: dict[str, int] = field(default_factory=dict)  # split -> rows dropped for a null label
    unseen_mapped: dict[str, int] = field(default_factory=dict)  # split -> rows whose label became unknown_label


def _feature_names(feature) -> list[str] | None:
    """Class names of a ClassLabel column, or of a list-of-ClassLabel column (multi-label, token tags)."""
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    inner = getattr(feature, "feature", None)
    if inner is None and isinstance(feature, list) and feature:
        inner = feature[0]
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    return None


def _as_name(value) -> str:
    """A label value as the name stored in id2label: ints and bools as their text."""
    return str(value)


def _is_null(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_not_floats(values: list, feature, column: str, split: str, ref: str) -> None:
    """Class labels are strings, ints or bools; floats are a regression target (or ids stored as floats)."""
    inner = getattr(feature, "feature", feature)
    floats = [v for v in values if isinstance(v, float)]
    if floats or str(getattr(inner, "dtype", "")).startswith("float"):
        raise DatasetError(
            f"data.label_column={column!r} in split {split!r} of {ref} holds floats (e.g. {floats[:3]}); a classifier "
            "needs class labels (strings or ints). For a real-valued target set classifier.task: regression; if "
            "these are class ids, store them as ints."
        )


def _flatten(values: list, column: str, split: str, ref: str, task: str, key: str = "data.label_column") -> list:
    flat = []
    for value in values:
        if not isinstance(value, (list, tuple)):
            kind = "a list of classes per example" if task == "multi_label" else "a list of tags per word"
            needs = f"classifier.task {task!r} needs" if key.startswith("data.") else f"a {task} model needs"
            raise DatasetError(f"{key}={column!r} in split {split!r} of {ref} holds {value!r}; {needs} {kind}.")
        flat.extend(value)
    return flat


def encode_labels(
    splits: dict[str, datasets.Dataset],
    label_column: str,
    task: str,
    *,
    train_split: str,
    label_names: list[str] | None = None,
    unseen: str = "error",
    unknown_label: str = "UNKNOWN",
    ref: str = "the dataset",
) -> tuple[dict[str, datasets.Dataset], LabelReport]:
    """Add a ``labels`` column to every split (see the module docstring for its form per task).

    Rows with a null label are dropped and counted. Labels of other splits must be among the
    training labels: with ``unseen="error"`` anything else stops the run naming the values; with
    ``"unknown"`` they map to an extra class ``unknown_label`` (appended to the names, never a
    training target, so those rows count as errors unless the model predicts it).

    Raises:
        DatasetError: non-integer numbers for a classification task (suggesting regression),
            non-numbers for regression, a single class in training, labels outside
            ``label_names``, or unseen labels with ``unseen="error"``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    report = LabelReport(names=None)
    raw: dict[str, list] = {}
    for name, split in list(splits.items()):
        splits[name], raw[name], dropped = _drop_null_labels(split, label_column, name)
        if dropped:
            report.null_dropped[name] = dropped

    if task == "regression":
        for name, values in raw.items():
            _check_numbers(values, label_column, name, ref)
        encoded = {name: np.asarray(values, dtype=np.float32) for name, values in raw.items()}
        return _with_labels(splits, encoded, datasets.Value("float32")), report

    feature = splits[train_split].features[label_column]
    names = _feature_names(feature)
    per_example = task in ("multi_label", "token")
    train_values = raw[train_split]
    train_flat = _flatten(train_values, label_column, train_split, ref, task) if per_example else train_values
    if names is not None:
        # ClassLabel ids -> names, so every split is compared by name (their ClassLabels may differ)
        for name, values in raw.items():
            split_names = _feature_names(splits[name].features[label_column]) or names  # ints are ids of the train names
            raw[name] = _ids_as_names(values, split_names, per_example)
        train_values = raw[train_split]
        train_flat = _flatten(train_values, label_column, train_split, ref, task) if per_example else train_values
    else:
        _check_not_floats(train_flat, feature, label_column, train_split, ref)
    seen = sorted({_as_name(v) for v in train_flat}, key=_natural_key)
    if label_names is not None:
        outside = sorted(set(seen) - set(label_names))
        if outside:
            raise DatasetError(
                f"split {train_split!r} of {ref} has labels {outside[:10]} that are not in classifier.label_names "
                f"{label_names}; add them or fix the data."
            )
        names = list(label_names)
    elif names is None:
        names = seen
    if task == "single_label" and len(seen) < 2:
        raise DatasetError(
            f"split {train_split!r} of {ref} has a single class ({seen}) in data.label_column={label_column!r}; "
            "a classifier needs at least two classes to tell apart."
        )

    index = {name: i for i, name in enumerate(names)}
    for name, values in raw.items():
        if name == train_split:
            continue
        flat = _flatten(values, label_column, name, ref, task) if per_example else values
        if _feature_names(splits[name].features[label_column]) is None:
            _check_not_floats(flat, splits[name].features[label_column], label_column, name, ref)
        unknown = sorted({_as_name(v) for v in flat} - set(index), key=_natural_key)
        if not unknown:
            continue
        if unseen == "error":
            raise DatasetError(
                f"split {name!r} of {ref} has labels never seen in training: {unknown[:10]} "
                f"(training labels: {names[:20]}{' ...' if len(names) > 20 else ''}). Fix the data, or set "
                f"classifier.unseen_labels: unknown to score them as an extra class {unknown_label!r}."
            )
        if unknown_label not in index:
            index[unknown_label] = len(names)
            names = [*names, unknown_label]
        unknown_set = set(unknown)
        mapped = sum(
            any(_as_name(v) in unknown_set for v in row) if per_example else _as_name(row) in unknown_set for row in values
        )
        report.unseen_mapped[name] = mapped
        logger.warning("Split %r: %d row(s) with labels unseen in training (%s) map to %r.", name, mapped, unknown[:5], unknown_label)

    fallback = index.get(unknown_label, -1)
    encoded = {name: _encode(values, index, task, len(names), fallback) for name, values in raw.items()}
    report.names = names
    return _with_labels(splits, encoded, _ENCODED_FEATURES[task]), report


def encode_labels_for_model(
    split: datasets.Dataset,
    label_column: str,
    task: str,
    label_names: list[str] | None,
    *,
    split_name: str,
    ref: str = "the dataset",
    key: str = "--label-column",
) -> tuple[datasets.Dataset, int]:
    """Add a ``labels`` column to one split for a model that is already trained: its classes are
    ``label_names`` (``config.id2label`` in id order; None for regression), so nothing is read off the
    data. Labels are matched by name: strings as they are, ints and bools as their text, ClassLabel ids
    through the column's names; a model without class names (transformers' ``LABEL_0``, ...) takes
    ints as ids. Rows with a null label are dropped; returns the split and how many were.

    Raises:
        DatasetError: a label the model does not know (naming it and the model's labels), or a
            label column of the wrong form for ``task``.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    split, values, dropped = _drop_null_labels(split, label_column, split_name)
    if task == "regression":
        _check_numbers(values, label_column, split_name, ref, key)
        labelled = _with_labels({split_name: split}, {split_name: np.asarray(values, dtype=np.float32)}, datasets.Value("float32"))
        return labelled[split_name], dropped
    per_example = task in ("multi_label", "token")
    column_names = _feature_names(split.features[label_column])
    if column_names is not None:
        values = _ids_as_names(values, column_names, per_example)
    index = {name: i for i, name in enumerate(label_names)}
    if all(name == f"LABEL_{i}" for i, name in enumerate(label_names)):  # no class names: ints are ids
        index.update({str(i): i for i in range(len(label_names))})
    flat = _flatten(values, label_column, split_name, ref, task, key) if per_example else values
    unknown = sorted({_as_name(v) for v in flat} - set(index), key=_natural_key)
    if unknown:
        raise DatasetError(
            f"{key}={label_column!r} in split {split_name!r} of {ref} holds labels the model does not know: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}; the model's labels (config.label2id): "
            f"{label_names[:20]}{' ...' if len(label_names) > 20 else ''}. Fix the data, or evaluate a model trained on these labels."
        )
    encoded = _encode(values, index, task, len(label_names), fallback=-1)
    return _with_labels({split_name: split}, {split_name: encoded}, _ENCODED_FEATURES[task])[split_name], dropped


_ENCODED_FEATURES = {
    "single_label": datasets.Value("int64"),
    "token": datasets.List(datasets.Value("int64")),
    "multi_label": datasets.List(datasets.Value("float32")),
}


def _drop_null_labels(split: datasets.Dataset, column: str, split_name: str) -> tuple[datasets.Dataset, list, int]:
    """(the split without rows whose label is null, their labels, how many rows were dropped)."""
    values = column_values(split, column)
    null_rows = [i for i, v in enumerate(values) if _is_null(v)]
    if not null_rows:
        return split, values, 0
    keep = sorted(set(range(len(values))) - set(null_rows))
    logger.warning("Dropped %d row(s) of split %r with a null %r label.", len(null_rows), split_name, column)
    return split.select(keep), [values[i] for i in keep], len(null_rows)


def _check_numbers(values: list, column: str, split: str, ref: str, key: str = "data.label_column") -> None:
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise DatasetError(f"{key}={column!r} in split {split!r} of {ref} holds {bad[:3]}; classifier.task regression needs numbers.")


def _ids_as_names(values: list, names: list[str], per_example: bool) -> list:
    """ClassLabel ids -> their names (anything else as its text), so labels are compared by name."""

    def convert(value):
        is_id = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names)
        return names[value] if is_id else _as_name(value)

    return [[convert(v) for v in row] for row in values] if per_example else [convert(v) for v in values]


def _encode(values: list, index: dict[str, int], task: str, num_names: int, fallback: int):
    """Labels as the ``labels`` column holds them (see the module docstring); names outside ``index`` get ``fallback``."""

    def encode(value) -> int:
        return index.get(_as_name(value), fallback)

    if task == "single_label":
        return np.asarray([encode(v) for v in values], dtype=np.int64)
    if task == "token":
        return [[encode(v) for v in row] for row in values]
    hot = np.zeros((len(values), num_names), dtype=np.float32)  # multi_label: (examples, labels)
    for row, labels in enumerate(values):
        hot[row, [encode(v) for v in labels]] = 1.0
    return hot


def _natural_key(name: str):
    """Sort numbers numerically ('2' < '10') and everything else alphabetically."""
    try:
        return (0, float(name), "")
    except ValueError:
        return (1, 0.0, name)


def _with_labels(splits: dict[str, datasets.Dataset], encoded: dict, feature) -> dict[str, datasets.Dataset]:
    out = {}
    for name, split in splits.items():
        values = encoded[name]
        values = values.tolist() if isinstance(values, np.ndarray) else values
        if "labels" in split.column_names:
            split = split.remove_columns("labels")
        out[name] = split.add_column("labels", values, feature=feature)
    return out


def split_off_validation(
    train: datasets.Dataset, fraction: float, seed: int, stratify: bool, label_column: str = "labels",
    purpose: str = "validation", key: str = "classifier.validation_size",
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out ``fraction`` of ``train`` as a `purpose` split (validation, test), seeded; stratified by the int
    `label_column` when ``stratify`` (each class keeps its share, rounded; a class with one
    example stays in training). Returns (train, held out)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{key}: the held-out fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if stratify:
        labels = np.asarray(column_values(train, label_column))
        held_out = []
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            take = int(round(fraction * len(members))) if len(members) > 1 else 0
            held_out.extend(members[:take].tolist())
    else:
        held_out = rng.permutation(len(train))[: int(round(fraction * len(train)))].tolist()
    if not held_out:
        skip = "0 to skip model selection" if purpose == "validation" else "a larger fraction"
        raise DatasetError(
            f"cannot hold out {fraction:.0%} of {len(train)} training examples for {purpose}; add a {purpose} "
            f"split, use more data, or set {key}: {skip}."
        )
    held = set(held_out)
    kept = [i for i in range(len(train)) if i not in held]
    return train.select(kept), train.select(sorted(held_out))


def class_counts(train_labels, num_labels: int) -> np.ndarray:
    """Examples per class of int labels (or per label of multi-hot rows)."""
    labels = np.asarray(train_labels)
    if labels.ndim == 2:
        return labels.sum(0).astype(np.int64)
    return np.bincount(labels[labels >= 0], minlength=num_labels).astype(np.int64)


def balanced_class_weights(counts: np.ndarray) -> np.ndarray:
    """scikit-learn's 'balanced' weights n / (k * count); a class without examples gets weight 0."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights
