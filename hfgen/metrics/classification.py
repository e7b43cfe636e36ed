"""Classification and regression metrics in plain numpy, for any modality.

Every function takes the predictions and labels of a whole split (already gathered from every
process with `gather_for_metrics`, so each example counts once) and returns a flat dict of
floats whose keys are the metric names recipes use (``metric_for_best_model: f1_macro``).
Definitions follow scikit-learn (a class with no predicted or no true examples contributes 0 to
a macro average) and, for entities, CoNLL's ``conlleval`` / seqeval's default mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"loss", "mse", "rmse", "mae", "hamming_loss"})


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    flat = np.bincount(labels * num_labels + predictions, minlength=num_labels * num_labels)
    return flat.reshape(num_labels, num_labels)


def _precision_recall_f1(true_positive: np.ndarray, predicted: np.ndarray, actual: np.ndarray) -> tuple:
    """Per-class (or pooled) precision, recall, F1 with 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    true_positive, predicted, actual = (np.asarray(x, dtype=np.float64) for x in (true_positive, predicted, actual))
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return precision, recall, f1


def single_label_metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro/micro precision, recall and F1 of class ids (one label per example).

    Macro averages run over the classes that occur in ``labels`` or ``predictions`` (as
    scikit-learn does with ``labels=None``), so a class absent from a small split does not drag
    the average down.
    """
    matrix = confusion_matrix(labels, predictions, num_labels)
    true_positive, predicted, actual = np.diag(matrix), matrix.sum(0), matrix.sum(1)
    present = (predicted + actual) > 0
    precision, recall, f1 = _precision_recall_f1(true_positive[present], predicted[present], actual[present])
    micro = _precision_recall_f1(true_positive.sum(), predicted.sum(), actual.sum())
    return {
        "accuracy": float(true_positive.sum() / max(1, matrix.sum())),
        "precision_macro": float(precision.mean()) if present.any() else 0.0,
        "recall_macro": float(recall.mean()) if present.any() else 0.0,
        "f1_macro": float(f1.mean()) if present.any() else 0.0,
        "precision_micro": float(micro[0]),
        "recall_micro": float(micro[1]),
        "f1_micro": float(micro[2]),
    }


def multi_label_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Metrics of multi-hot (examples, labels) 0/1 arrays: subset accuracy (every label right),
    micro/macro precision, recall and F1 over labels, and the Hamming loss."""
    labels, predictions = np.asarray(labels).astype(bool), np.asarray(predictions).astype(bool)
    true_positive = (labels & predictions).sum(0)
    predicted, actual = predictions.sum(0), labels.sum(0)
    precision, recall, f1 = _precision_recall_f1(true_positive, predicted, actual)
    micro = _precision_recall_f1(true_positive.sum(), predicted.sum(), actual.sum())
    return {
        "subset_accuracy": float((labels == predictions).all(1).mean()) if len(labels) else 0.0,
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "precision_micro": float(micro[0]),
        "recall_micro": float(micro[1]),
        "f1_micro": float(micro[2]),
        "hamming_loss": float((labels != predictions).mean()) if labels.size else 0.0,
    }


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    # boundaries of runs of equal values
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE, Pearson and Spearman correlation of real-valued predictions (0 for a constant series)."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    error = predictions - labels
    mse = float((error**2).mean()) if len(error) else 0.0
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "mae": float(np.abs(error).mean()) if len(error) else 0.0,
        "pearson": _pearson(labels, predictions) if len(labels) > 1 else 0.0,
        "spearman": _pearson(_ranks(labels), _ranks(predictions)) if len(labels) > 1 else 0.0,
    }


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', ''); a tag without a prefix counts as inside ('I', tag), as conlleval."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep and prefix in ("B", "I", "E", "S"):
        return prefix, kind
    return "I", tag


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, start, end) chunks of one sequence of IOB/IOB2/IOBES tags, by conlleval's rules."""
    spans, start, kind = set(), None, ""
    previous_prefix = "O"
    for position, tag in enumerate([*tags, "O"]):
        prefix, tag_kind = _split_tag(tag)
        chunk_ends = start is not None and (
            prefix in ("B", "S", "O")
            or tag_kind != kind
            or previous_prefix in ("E", "S")
        )
        if chunk_ends:
            spans.add((kind, start, position - 1))
            start = None
        chunk_starts = prefix in ("B", "S") or (prefix in ("I", "E") and start is None)
        if chunk_starts:
            start, kind = position, tag_kind
        previous_prefix = prefix
    return spans


def token_metrics(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level (exact span and type) precision, recall and F1, micro-averaged, plus per-token
    accuracy, for sequences of tag names (one list per sentence, positions already aligned)."""
    found = correct = actual = tokens = right = 0
    for true_tags, predicted_tags in zip(labels, predictions):
        true_spans, predicted_spans = entity_spans(true_tags), entity_spans(predicted_tags)
        found += len(predicted_spans)
        actual += len(true_spans)
        correct += len(true_spans & predicted_spans)
        tokens += len(true_tags)
        right += sum(t == p for t, p in zip(true_tags, predicted_tags))
    precision, recall, f1 = _precision_recall_f1(correct, found, actual)
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "token_accuracy": right / tokens if tokens else 0.0,
    }


def default_metric(task: str) -> str:
    """The metric best-model selection uses when the recipe says ``auto``."""
    return {"single_label": "accuracy", "multi_label": "f1_micro", "regression": "mse", "token": "f1"}[task]


def save_confusion_matrix_png(matrix: np.ndarray, label_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted) as a PNG with counts in the
    cells, shaded by the share of each true class; no plotting library needed."""
    from PIL import Image, ImageDraw, ImageFont

    matrix = np.asarray(matrix)
    n = len(label_names)
    cell = 44 if n <= 12 else 30
    names = [str(name) if len(str(name)) <= 24 else str(name)[:23] + "…" for name in label_names]
    font = ImageFont.load_default()
    margin = 12 + 7 * max(len(name) for name in names)
    top = margin + (18 if title else 0)
    footer = "rows: true class, columns: predicted"
    width = max(margin + n * cell + 12, 7 * max(len(footer), len(title)) + 12)
    height = top + n * cell + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((6, 4), title, fill="black", font=font)
    row_totals = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, row_totals, out=np.zeros(matrix.shape, dtype=np.float64), where=row_totals > 0)
    for row in range(n):
        for column in range(n):
            x, y = margin + column * cell, top + row * cell
            shade = int(255 - 200 * share[row, column])
            fill = (shade, shade, 255) if row != column else (shade, 255, shade)
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=fill, outline=(200, 200, 200))
            text = str(int(matrix[row, column]))
            draw.text((x + 3, y + cell // 2 - 6), text, fill="black", font=font)
    for index, name in enumerate(names):
        draw.text((6, top + index * cell + cell // 2 - 6), name, fill="black", font=font)  # true class, left
        column_label = Image.new("RGB", (margin - 6, 14), "white")
        ImageDraw.Draw(column_label).text((0, 0), name, fill="black", font=font)
        image.paste(column_label.rotate(90, expand=True), (margin + index * cell + cell // 2 - 7, top - margin + 4))
    draw.text((6, height - 20), footer, fill=(90, 90, 90), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
