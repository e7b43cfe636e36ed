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


def _counted_scores(pairs):
    """precision/recall/F1 per class from (true, predicted) membership pairs, counted one by one, 0 where undefined."""
    tp = sum(t and p for t, p in pairs)
    fp = sum(p and not t for t, p in pairs)
    fn = sum(t and not p for t, p in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (tp, fp, fn), (precision, recall, f1)


def _counted_averages(per_class):
    """macro = mean of per-class scores; micro = scores of the pooled counts."""
    macro = [sum(scores[i] for _, scores in per_class) / len(per_class) for i in range(3)]
    tp, fp, fn = (sum(counts[i] for counts, _ in per_class) for i in range(3))
    _, micro = _counted_scores([(1, 1)] * tp + [(0, 1)] * fp + [(1, 0)] * fn)
    return macro, micro


@pytest.mark.parametrize("seed", range(5))
def test_single_and_multi_label_equal_counting_by_hand_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(5, 80)), int(rng.integers(2, 7))
    labels, predictions = rng.integers(0, k, n), rng.integers(0, k - 1, n)  # class k-1 never predicted
    present = sorted(set(labels) | set(predictions))  # class k (of num_labels=k+1) never occurs
    macro, micro = _counted_averages([_counted_scores([(t == c, p == c) for t, p in zip(labels, predictions)]) for c in present])
    ours = single_label_metrics(labels, predictions, k + 1)
    assert ours["accuracy"] == pytest.approx(sum(labels == predictions) / n)
    assert [ours[f"{m}_macro"] for m in ("precision", "recall", "f1")] == pytest.approx(macro)
    assert [ours[f"{m}_micro"] for m in ("precision", "recall", "f1")] == pytest.approx(micro)
    matrix = confusion_matrix(labels, predictions, k + 1)
    assert all(matrix[t, p] == sum((labels == t) & (predictions == p)) for t in range(k + 1) for p in range(k + 1))

    multi_labels, multi_predictions = rng.random((n, k)) < 0.3, rng.random((n, k)) < 0.3
    multi_labels[0] = False  # a row with no labels
    macro, micro = _counted_averages([_counted_scores(list(zip(multi_labels[:, c], multi_predictions[:, c]))) for c in range(k)])
    multi = multi_label_metrics(multi_labels.astype(int), multi_predictions.astype(int))
    assert multi["subset_accuracy"] == pytest.approx(np.mean([list(a) == list(b) for a, b in zip(multi_labels, multi_predictions)]))
    assert [multi[f"{m}_macro"] for m in ("precision", "recall", "f1")] == pytest.approx(macro)
    assert [multi[f"{m}_micro"] for m in ("precision", "recall", "f1")] == pytest.approx(micro)
    assert multi["hamming_loss"] == pytest.approx(np.mean(multi_labels != multi_predictions))


def test_single_label_edges():
    # class 2 is never predicted (precision 0 by zero_division), class 3 never occurs (left out of the macro average)
    metrics = single_label_metrics([0, 1, 2], [0, 1, 1], 4)
    assert (metrics["precision_macro"], metrics["recall_macro"], metrics["f1_macro"]) == pytest.approx((1 / 2, 2 / 3, 5 / 9))
    assert single_label_metrics([0, 0, 0], [0, 0, 0], 1) == dict.fromkeys(metrics, 1.0)  # a single class
    assert confusion_matrix([0, 0, 0], [0, 0, 0], 1).tolist() == [[3]]
    empty = np.array([], dtype=np.int64)
    assert single_label_metrics(empty, empty, 3) == dict.fromkeys(metrics, 0.0)
    assert confusion_matrix(empty, empty, 2).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="predictions holds class id 3, outside 0..2"):
        confusion_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="labels holds class id -100"):
        single_label_metrics([0, -100], [0, 1], 3)


def test_multi_label_edges():
    # row 0 has no labels; label 1 is predicted once and never true
    metrics = multi_label_metrics(np.array([[0, 0], [1, 0]]), np.array([[0, 0], [1, 1]]))
    assert metrics["subset_accuracy"] == pytest.approx(1 / 2) and metrics["hamming_loss"] == pytest.approx(1 / 4)
    assert (metrics["precision_macro"], metrics["recall_macro"], metrics["f1_macro"]) == pytest.approx((1 / 2, 1 / 2, 1 / 2))
    assert (metrics["precision_micro"], metrics["recall_micro"], metrics["f1_micro"]) == pytest.approx((1 / 2, 1, 2 / 3))
    nothing = multi_label_metrics(np.zeros((3, 2)), np.zeros((3, 2)))  # no label anywhere: every ratio undefined, so 0
    assert nothing["subset_accuracy"] == 1.0 and nothing["hamming_loss"] == 0.0 and nothing["f1_macro"] == nothing["f1_micro"] == 0.0
    # one label column is that label's scores, not an average over "label" and "no label"
    single = multi_label_metrics(np.array([[1], [0], [0]]), np.array([[1], [1], [0]]))
    assert (single["precision_macro"], single["recall_macro"], single["f1_macro"]) == pytest.approx((1 / 2, 1, 2 / 3))
    assert single["f1_micro"] == pytest.approx(2 / 3) and single["subset_accuracy"] == pytest.approx(2 / 3)
    assert multi_label_metrics(np.zeros((0, 3)), np.zeros((0, 3))) == dict.fromkeys(metrics, 0.0)


def test_regression_edges():
    assert regression_metrics([1.0], [3.0]) == {"mse": 4.0, "rmse": 2.0, "mae": 2.0, "pearson": 0.0, "spearman": 0.0}
    assert regression_metrics([], []) == dict.fromkeys(["mse", "rmse", "mae", "pearson", "spearman"], 0.0)
    assert regression_metrics(np.arange(4.0), np.full(4, 2.0))["spearman"] == 0.0  # constant predictions


def test_token_metrics_edges():
    keys = ["precision", "recall", "f1", "token_accuracy"]
    no_entities = token_metrics([["O", "O"], []], [["O", "O"], []])
    assert no_entities == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "token_accuracy": 1.0}
    spurious = token_metrics([["O", "O"]], [["B-PER", "O"]])
    assert (spurious["precision"], spurious["recall"], spurious["f1"]) == (0.0, 0.0, 0.0)
    assert token_metrics([], []) == dict.fromkeys(keys, 0.0)
    # IO-scheme tags (no prefix) are inside-chunk tags, as conlleval -r reads them; accuracy compares the tags as given
    assert entity_spans(["PER", "PER", "O", "LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    mixed = token_metrics([["PER", "PER", "O"]], [["B-PER", "I-PER", "O"]])
    assert mixed["f1"] == 1.0 and mixed["token_accuracy"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="sentence 1 has 2 tags but 1 predicted"):
        token_metrics([["O"], ["O", "B-PER"]], [["O"], ["O"]])


def test_undefined_ratios_score_zero_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single_label_metrics([0, 1, 2], [0, 1, 1], 4)
        multi_label_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
        regression_metrics(np.ones(3), np.arange(3.0))
        token_metrics([["O", "O"]], [["B-PER", "PER"]])
        confusion_matrix([0, 0], [0, 0], 1)
