"""Classification, multi-label, regression and entity metrics: hand-checked cases and, where
scikit-learn / scipy are installed, agreement with them on random data."""

import importlib.util

import numpy as np
import pytest

from hfgen.metrics.classification import (
    confusion_matrix,
    entity_spans,
    multi_label_metrics,
    regression_metrics,
    save_confusion_matrix_png,
    single_label_metrics,
    token_metrics,
)

HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAS_SCIPY = importlib.util.find_spec("scipy") is not None


def test_single_label_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    predictions = np.array([0, 1, 1, 1, 2, 0])
    metrics = single_label_metrics(labels, predictions, 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # precision 1/2, 2/3, 1; recall 1/2, 1, 1/2
    assert metrics["precision_macro"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert metrics["recall_macro"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert metrics["f1_micro"] == pytest.approx(4 / 6)
    assert confusion_matrix(labels, predictions, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


@pytest.mark.skipif(not HAS_SKLEARN, reason="scikit-learn not installed")
def test_single_and_multi_label_agree_with_sklearn():
    from sklearn import metrics as sk

    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 5, 200), rng.integers(0, 4, 200)  # class 4 never predicted
    ours = single_label_metrics(labels, predictions, 6)  # class 5 absent from both
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions))
    for average in ("macro", "micro"):
        p, r, f, _ = sk.precision_recall_fscore_support(labels, predictions, average=average, zero_division=0)
        assert (ours[f"precision_{average}"], ours[f"recall_{average}"], ours[f"f1_{average}"]) == pytest.approx((p, r, f))
    multi_labels, multi_predictions = rng.integers(0, 2, (50, 4)), rng.integers(0, 2, (50, 4))
    multi = multi_label_metrics(multi_labels, multi_predictions)
    assert multi["subset_accuracy"] == pytest.approx(sk.accuracy_score(multi_labels, multi_predictions))
    assert multi["f1_micro"] == pytest.approx(sk.f1_score(multi_labels, multi_predictions, average="micro"))
    assert multi["f1_macro"] == pytest.approx(sk.f1_score(multi_labels, multi_predictions, average="macro", zero_division=0))
    assert multi["hamming_loss"] == pytest.approx(sk.hamming_loss(multi_labels, multi_predictions))


def test_regression_by_hand_and_ties():
    metrics = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0]))
    assert metrics["mse"] == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert metrics["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert metrics["spearman"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [1, 2.5, 2.5, 4])[0, 1])
    assert regression_metrics(np.ones(3), np.arange(3.0))["pearson"] == 0.0  # constant labels: defined as 0


@pytest.mark.skipif(not HAS_SCIPY, reason="scipy not installed")
def test_correlations_agree_with_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    labels, predictions = rng.integers(0, 5, 100).astype(float), rng.normal(size=100)
    metrics = regression_metrics(labels, predictions)
    assert metrics["pearson"] == pytest.approx(stats.pearsonr(labels, predictions)[0])
    assert metrics["spearman"] == pytest.approx(stats.spearmanr(labels, predictions)[0])


def test_entity_spans_follow_conlleval():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert entity_spans(["I-PER", "I-PER", "B-PER"]) == {("PER", 0, 1), ("PER", 2, 2)}  # IOB1 start, B splits
    assert entity_spans(["B-PER", "I-LOC"]) == {("PER", 0, 0), ("LOC", 1, 1)}  # a type change ends the chunk
    assert entity_spans(["S-PER", "B-LOC", "E-LOC"]) == {("PER", 0, 0), ("LOC", 1, 2)}  # IOBES


def test_token_metrics_score_exact_entities():
    labels = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-PER"]]
    predictions = [["B-PER", "O", "O", "B-LOC"], ["O", "B-PER"]]  # the first PER is cut short: wrong
    metrics = token_metrics(labels, predictions)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["token_accuracy"] == pytest.approx(5 / 6)


def test_confusion_matrix_png(tmp_path):
    from PIL import Image

    path = save_confusion_matrix_png(np.array([[5, 1], [2, 7]]), ["rotten", "fresh"], tmp_path / "cm.png", title="test")
    image = Image.open(path)
    assert image.size[0] > 100 and image.size[1] > 100
