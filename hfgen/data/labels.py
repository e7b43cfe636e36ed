"""Labels for classifiers of any modality: names and ids read off the data, checked, encoded, and a
seeded (stratified) validation split carved out of training when the dataset has none.

`encode_labels` turns a label column into a ``labels`` column the model trains on:

- ``single_label``: one class per example (a string, an int, a bool or a ClassLabel) -> int64 id;
- ``multi_label``: a list of classes per example -> multi-hot float32 vector;
- ``regression``: a number per example -> float32;
- ``token``: a list of tags per word -> list of int64 ids.

Class names (saved as ``config.id2label``) are a ClassLabel's names, else the recipe's list, else
the sorted distinct training labels, so ``pipeline()`` prints names rather than ``LABEL_0``.
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


def _flatten(values: list, column: str, split: str, ref: str, task: str) -> list:
    flat = []
    for value in values:
        if not isinstance(value, (list, tuple)):
            kind = "a list of classes per example" if task == "multi_label" else "a list of tags per word"
            raise DatasetError(
                f"data.label_column={column!r} in split {split!r} of {ref} holds {value!r}; classifier.task "
                f"{task!r} needs {kind}."
            )
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
        values = column_values(split, label_column)
        null_rows = [i for i, v in enumerate(values) if _is_null(v)]
        if null_rows:
            keep = sorted(set(range(len(values))) - set(null_rows))
            splits[name] = split.select(keep)
            values = [values[i] for i in keep]
            report.null_dropped[name] = len(null_rows)
            logger.warning("Dropped %d row(s) of split %r with a null %r label.", len(null_rows), name, label_column)
        raw[name] = values

    if task == "regression":
        for name, values in raw.items():
            bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:
                raise DatasetError(
                    f"data.label_column={label_column!r} in split {name!r} of {ref} holds {bad[:3]}; "
                    "classifier.task regression needs numbers."
                )
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

            def convert(value, split_names=split_names):
                is_id = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(split_names)
                return split_names[value] if is_id else _as_name(value)

            raw[name] = [[convert(v) for v in row] for row in values] if per_example else [convert(v) for v in values]
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

    def encode(value) -> int:
        return index.get(_as_name(value), index.get(unknown_label, -1))

    encoded: dict[str, object] = {}
    if task == "single_label":
        encoded = {name: np.asarray([encode(v) for v in values], dtype=np.int64) for name, values in raw.items()}
        feature_type = datasets.Value("int64")
    elif task == "token":
        encoded = {name: [[encode(v) for v in row] for row in values] for name, values in raw.items()}
        feature_type = datasets.List(datasets.Value("int64"))
    else:  # multi_label
        encoded = {}
        for name, values in raw.items():
            hot = np.zeros((len(values), len(names)), dtype=np.float32)  # (examples, labels)
            for row, labels in enumerate(values):
                hot[row, [encode(v) for v in labels]] = 1.0
            encoded[name] = hot
        feature_type = datasets.List(datasets.Value("float32"))
    report.names = names
    return _with_labels(splits, encoded, feature_type), report


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
    train: datasets.Dataset, fraction: float, seed: int, stratify: bool
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Hold out ``fraction`` of ``train`` as a validation split, seeded; stratified by the int
    ``labels`` column when ``stratify`` (each class keeps its share, rounded; a class with one
    example stays in training). Returns (train, validation)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    if stratify:
        labels = np.asarray(column_values(train, "labels"))
        held_out = []
        for label in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == label))
            take = int(round(fraction * len(members))) if len(members) > 1 else 0
            held_out.extend(members[:take].tolist())
    else:
        held_out = rng.permutation(len(train))[: int(round(fraction * len(train)))].tolist()
    if not held_out:
        raise DatasetError(
            f"cannot hold out {fraction:.0%} of {len(train)} training examples for validation; add a validation "
            "split, use more data, or set classifier.validation_size: 0 to skip model selection."
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
