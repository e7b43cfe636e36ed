"""Classification, regression and entity metrics, for any modality, computed by scikit-learn, SciPy and seqeval.

Every function takes the predictions and labels of a whole split (already gathered from every
process with `gather_for_metrics`, so each example counts once) and returns a flat dict of
floats whose keys are the metric names recipes use (``metric_for_best_model: f1_macro``).

- class ids and multi-hot rows: ``sklearn.metrics`` (``zero_division=0``: a class with no
  predicted or no true examples contributes 0 to a macro average);
- regression: ``sklearn.metrics`` errors, ``scipy.stats`` correlations (SciPy comes with scikit-learn);
- entities: seqeval's default mode, which reproduces CoNLL's ``conlleval`` chunking (IOB1, IOB2
  and IOBES tags alike). Not ``mode="strict", scheme=IOB2``: strict mode drops chunks that open
  with ``I-`` or change type mid-chunk (``["B-PER", "I-LOC"]``), which conlleval counts.

Hand-written here, because neither library has it: the key names and the flat dict, the scores of
an empty split (0, where the libraries refuse empty input), reading unprefixed tags as conlleval
``-r`` does, checks that name misaligned or out-of-range input, and the confusion-matrix drawing.
The libraries are imported inside the functions: ``sklearn.metrics`` takes 1-2 s to import (paid
at the first evaluation), and `import hfgen` does not need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER = frozenset({"loss", "mse", "rmse", "mae", "hamming_loss"})

SINGLE_LABEL_KEYS = ("accuracy", "precision_macro", "recall_macro", "f1_macro", "precision_micro", "recall_micro", "f1_micro")
MULTI_LABEL_KEYS = ("subset_accuracy", *SINGLE_LABEL_KEYS[1:], "hamming_loss")
REGRESSION_KEYS = ("mse", "rmse", "mae", "pearson", "spearman")
TOKEN_KEYS = ("precision", "recall", "f1", "token_accuracy")


def _check_class_ids(ids: np.ndarray, num_labels: int, name: str) -> None:
    # scikit-learn's confusion_matrix silently drops ids outside `labels`; an id out of range is a caller's bug
    outside = ids[(ids < 0) | (ids >= num_labels)]
    if outside.size:
        raise ValueError(f"{name} holds class id {int(outside[0])}, outside 0..{num_labels - 1} (num_labels={num_labels}); "
                         "drop ignored positions (label -100) before scoring")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """(num_labels, num_labels) counts: row = true class, column = predicted class."""
    from sklearn import metrics

    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    _check_class_ids(labels, num_labels, "labels")
    _check_class_ids(predictions, num_labels, "predictions")
    if labels.size == 0:
        return np.zeros((num_labels, num_labels), dtype=np.int64)
    with warnings.catch_warnings():
        # scikit-learn warns about every 1x1 matrix, even when `labels` (all one of them) is given
        warnings.filterwarnings("ignore", "A single label was found", UserWarning)
        return metrics.confusion_matrix(labels, predictions, labels=np.arange(num_labels))


def _averaged_scores(y_true: np.ndarray, y_pred: np.ndarray, **options) -> dict[str, float]:
    """precision/recall/f1 _macro and _micro from scikit-learn, with 0 for an undefined ratio."""
    from sklearn import metrics

    scores = {}
    for average in ("macro", "micro"):
        precision, recall, f1, _ = metrics.precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0, **options)
        scores |= {f"precision_{average}": float(precision), f"recall_{average}": float(recall), f"f1_{average}": float(f1)}
    return scores


def single_label_metrics(labels: np.ndarray, predictions: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy and macro/micro precision, recall and F1 of class ids (one label per example).

    Macro averages run over the classes that occur in ``labels`` or ``predictions`` (scikit-learn's
    ``labels=None``), so a class absent from a small split does not drag the average down.
    """
    from sklearn import metrics

    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    _check_class_ids(labels, num_labels, "labels")
    _check_class_ids(predictions, num_labels, "predictions")
    if labels.size == 0:
        return dict.fromkeys(SINGLE_LABEL_KEYS, 0.0)
    return {"accuracy": float(metrics.accuracy_score(labels, predictions)), **_averaged_scores(labels, predictions)}


def multi_label_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Metrics of multi-hot (examples, labels) 0/1 arrays: subset accuracy (every label right),
    micro/macro precision, recall and F1 over labels (macro: every label column, present or not),
    and the Hamming loss."""
    from sklearn import metrics

    labels, predictions = np.asarray(labels).astype(bool), np.asarray(predictions).astype(bool)
    if len(labels) == 0:
        return dict.fromkeys(MULTI_LABEL_KEYS, 0.0)
    options = {}
    if labels.shape[1] == 1:
        # scikit-learn reads one column as a binary target and would average over classes 0 and 1; score label 1 only
        labels, predictions, options = labels[:, 0], predictions[:, 0], {"labels": [True]}
    return {
        "subset_accuracy": float(metrics.accuracy_score(labels, predictions)),
        **_averaged_scores(labels, predictions, **options),
        "hamming_loss": float(metrics.hamming_loss(labels, predictions)),
    }


def regression_metrics(labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE, Pearson and Spearman correlation of real-valued predictions (0 for a constant series)."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    predictions = np.asarray(predictions, dtype=np.float64).reshape(-1)
    if len(labels) == 0:
        return dict.fromkeys(REGRESSION_KEYS, 0.0)
    from scipy import stats
    from sklearn import metrics

    # a correlation with a constant series is undefined (SciPy: nan and a warning); hfgen reports 0
    correlated = len(labels) > 1 and np.ptp(labels) > 0 and np.ptp(predictions) > 0
    return {
        "mse": float(metrics.mean_squared_error(labels, predictions)),
        "rmse": float(metrics.root_mean_squared_error(labels, predictions)),
        "mae": float(metrics.mean_absolute_error(labels, predictions)),
        "pearson": float(stats.pearsonr(labels, predictions).statistic) if correlated else 0.0,
        "spearman": float(stats.spearmanr(labels, predictions).statistic) if correlated else 0.0,
    }


def _prefixed_tags(tags: Sequence[str]) -> list[str]:
    """Tags with a B-/I-/E-/S- prefix for seqeval: a tag without one (IO-scheme data: ``PER``,
    ``person-actor``) is inside a chunk of that type, as conlleval ``-r`` reads it. seqeval would
    split ``PER`` into prefix ``P`` of type ``ER`` (and warn for every token)."""
    return [tag if tag == "O" or tag[:2] in ("B-", "I-", "E-", "S-") else f"I-{tag}" for tag in tags]


def entity_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, start, end) chunks of one sequence of IOB/IOB2/IOBES tags, by conlleval's rules
    (seqeval's default mode). A prefixed tag with no type (``B-``) gets seqeval's type ``_``."""
    from seqeval.metrics.sequence_labeling import get_entities

    return set(get_entities(_prefixed_tags(tags)))


def token_metrics(labels: Sequence[Sequence[str]], predictions: Sequence[Sequence[str]]) -> dict[str, float]:
    """Entity-level (exact span and type) precision, recall and F1, micro-averaged, plus per-token
    accuracy, for sequences of tag names (one list per sentence, positions already aligned)."""
    # sequence_labeling holds seqeval's default (conlleval) mode; seqeval.metrics.v1 is the strict one
    from seqeval.metrics import sequence_labeling as seqeval

    if len(labels) != len(predictions):
        raise ValueError(f"token_metrics got {len(labels)} label sequences but {len(predictions)} prediction sequences")
    for index, (true_tags, predicted_tags) in enumerate(zip(labels, predictions)):
        if len(true_tags) != len(predicted_tags):
            raise ValueError(f"token_metrics: sentence {index} has {len(true_tags)} tags but {len(predicted_tags)} predicted tags; "
                             "align the predictions to the labelled words first")
    if len(labels) == 0:  # seqeval refuses an empty list of sentences
        return dict.fromkeys(TOKEN_KEYS, 0.0)
    true_tags, predicted_tags = [_prefixed_tags(tags) for tags in labels], [_prefixed_tags(tags) for tags in predictions]
    precision, recall, f1, _ = seqeval.precision_recall_fscore_support(true_tags, predicted_tags, average="micro", zero_division=0)
    tokens = sum(map(len, true_tags))
    # accuracy on the tags as given: "PER" and "I-PER" are the same chunk but different tags
    accuracy = seqeval.accuracy_score([list(tags) for tags in labels], [list(tags) for tags in predictions]) if tokens else 0.0
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "token_accuracy": float(accuracy),
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
