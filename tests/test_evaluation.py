"""`scripts/evaluate.py` on classifier folders: the metrics equal those of an independent per-example
inference (and the trainer's own test scores), labels map through the model's label2id, a missing
column or an unknown label is named; generator folders still go to FID/KID."""

import csv
import json

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, BertConfig

from hfgen.cli import evaluate_main
from hfgen.config import load_recipe
from hfgen.metrics.classification import multi_label_metrics, regression_metrics, single_label_metrics, token_metrics
from hfgen.train import run

from .train.classifier_fixtures import GENRES, TINY_BERT, classifier_recipe, task_data, tiny_bert, tiny_tokenizer  # noqa: F401 (fixtures)
from .train.conftest import tiny_images  # noqa: F401 (fixture)

# task -> (class names in an order that is not sorted, so ids come from label2id, not from the data; columns of evaluate.py)
TASKS = {
    "single_label": (["pos", "neg"], ["--label-column", "label"]),
    "pair": (["objects", "agrees"], ["--label-column", "label", "--text-pair-column", "text_pair"]),
    "multi_label": (["drama", *[g for g in GENRES if g != "drama"]], ["--label-column", "labels"]),
    "regression": (None, ["--label-column", "score"]),
    "token": (["O", "B-PER", "B-LOC"], ["--label-column", "tags", "--text-column", "tokens"]),
}


def save_text_classifier(path, task):
    """A tiny BERT with a randomly initialised head for ``task`` (and its tokenizer) saved in ``path``."""
    from transformers import BertForSequenceClassification, BertForTokenClassification

    names, _ = TASKS[task]
    config = BertConfig(**TINY_BERT)
    if names is None:
        config.num_labels, config.problem_type = 1, "regression"
    else:
        config.num_labels = len(names)
        config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
        config.problem_type = "multi_label_classification" if task == "multi_label" else None
    torch.manual_seed(0)
    model = (BertForTokenClassification if task == "token" else BertForSequenceClassification)(config)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def read_rows(folder):
    if (folder / "test.csv").exists():
        with open(folder / "test.csv") as f:
            return [{k: float(v) if k == "score" else v for k, v in row.items()} for row in csv.DictReader(f)]
    return [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]


@torch.no_grad()
def independent_metrics(folder, task, rows):
    """The task's metrics from one unpadded forward pass per example (no hfgen data code)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = (AutoModelForTokenClassification if task == "token" else AutoModelForSequenceClassification).from_pretrained(folder).eval()
    label2id, names = model.config.label2id, model.config.id2label
    predictions, labels, losses = [], [], []
    for row in rows:
        if task == "token":
            encoded = tokenizer(row["tokens"], is_split_into_words=True, return_tensors="pt")
            ids = model(**encoded).logits[0].argmax(-1).tolist()
            word_ids = encoded.word_ids(0)
            first = [i for i, w in enumerate(word_ids) if w is not None and (i == 0 or word_ids[i - 1] != w)]
            predictions.append([names[ids[i]] for i in first])
            labels.append(row["tags"])
            continue
        encoded = tokenizer(row["text"], row.get("text_pair"), return_tensors="pt")
        logits = model(**encoded).logits[0]
        if task in ("single_label", "pair"):
            label = label2id[row["label"]]
            predictions.append(int(logits.argmax()))
            losses.append(float(F.cross_entropy(logits[None], torch.tensor([label]))))
            labels.append(label)
        elif task == "multi_label":
            predictions.append((torch.sigmoid(logits) > 0.5).int().tolist())
            labels.append([int(n in row["labels"]) for n in label2id])
        else:
            predictions.append(float(logits[0]))
            labels.append(row["score"])
    if task == "token":
        return token_metrics(labels, predictions)
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if task == "multi_label":
        return multi_label_metrics(labels, predictions)
    if task == "regression":
        return {**regression_metrics(labels, predictions), "loss": float(np.mean((predictions - labels) ** 2))}
    return {**single_label_metrics(labels, predictions, len(names)), "loss": float(np.mean(losses))}


@pytest.mark.parametrize("task", list(TASKS))
def test_classifier_metrics_equal_an_independent_inference(task, task_data, tmp_path, capsys):
    folder = save_text_classifier(tmp_path / "model", task)
    data = task_data[task]
    out = tmp_path / "results.json"
    evaluate_main(["--model", str(folder), "--dataset", str(data), "--split", "test", "--batch-size", "5", "--out", str(out), *TASKS[task][1]])

    printed, saved = json.loads(capsys.readouterr().out), json.loads(out.read_text())
    assert printed == saved
    rows = read_rows(data)
    assert saved["model"] == str(folder) and saved["dataset"] == str(data) and saved["split"] == "test"
    assert saved["examples"] == len(rows) == 24
    assert saved["task"] == ("single_label" if task == "pair" else task)
    expected = independent_metrics(folder, task, rows)
    assert set(expected) <= set(saved["metrics"])
    for name, value in expected.items():
        assert saved["metrics"][name] == pytest.approx(value, rel=1e-3, abs=1e-5), name  # padded batches: float noise


def test_equals_the_trainers_own_test_scores(classifier_recipe, tmp_path, capsys):
    out = run(load_recipe(classifier_recipe("single_label", "train.num_epochs=2")))
    trained = json.loads((out / "eval_results.json").read_text())
    data = load_recipe(classifier_recipe("single_label")).data.dataset
    evaluate_main(["--model", str(out), "--dataset", data])
    results = json.loads(capsys.readouterr().out)
    assert results["examples"] == trained["eval_examples"] == 24
    # the run scores with its training kernels (eager attention, [CLS]-only last layer), the script with the loaded
    # model's defaults (sdpa): the same math, rounded differently in the last digits of fp32
    for name, value in results["metrics"].items():
        assert value == pytest.approx(trained[f"eval_{name}"], abs=1e-4), name
    assert results["confusion_matrix"] == trained["confusion_matrix"]


def test_classlabel_ids_and_int_names_map_through_label2id(tmp_path, capsys):
    folder = save_text_classifier(tmp_path / "model", "single_label")  # label2id {"pos": 0, "neg": 1}
    texts = ["a good film", "a bad film", "great fun", "dull plot"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": texts, "label": [1, 0, 1, 0]}, features=features)}).save_to_disk(str(tmp_path / "cl"))
    evaluate_main(["--model", str(folder), "--dataset", str(tmp_path / "cl")])
    by_classlabel = json.loads(capsys.readouterr().out)
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "test.csv").write_text("text,label\n" + "".join(f"{t},{n}\n" for t, n in zip(texts, ["pos", "neg"] * 2)))
    evaluate_main(["--model", str(folder), "--dataset", str(tmp_path / "names")])
    by_name = json.loads(capsys.readouterr().out)
    assert by_classlabel["metrics"] == by_name["metrics"] and by_name["examples"] == 4


def _exit_message(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_missing_column_and_unknown_label_are_named(tmp_path, capsys):
    folder = save_text_classifier(tmp_path / "model", "single_label")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "test.csv").write_text("review,label\na good film,pos\na dull film,meh\n")
    message = _exit_message(capsys, ["--model", str(folder), "--dataset", str(tmp_path / "data"), "--text-column", "text"])
    assert "--text-column='text' not found in split 'test'" in message and "columns present: ['review', 'label']" in message
    message = _exit_message(capsys, ["--model", str(folder), "--dataset", str(tmp_path / "data"), "--text-column", "review"])
    assert "labels the model does not know: ['meh']" in message and "['pos', 'neg']" in message
    message = _exit_message(capsys, ["--model", str(folder), "--dataset", str(tmp_path / "data"), "--split", "validation"])
    assert "no such split" in message and "['test']" in message


@torch.no_grad()
def test_image_classifier_accuracy_equals_an_independent_inference(tiny_images, tmp_path, capsys):
    from hfgen.models import ImageEncoderConfig, ImageEncoderForImageClassification

    names = ["br", "bl", "tr", "tl"]  # not the dataset's ClassLabel order
    torch.manual_seed(0)
    config = ImageEncoderConfig(hidden_sizes=[4, 8], depths=[1, 1], image_size=28, num_channels=1, num_labels=4,
                                id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    model = ImageEncoderForImageClassification(config).eval()
    model.save_pretrained(tmp_path / "model")
    evaluate_main(["--model", str(tmp_path / "model"), "--dataset", str(tiny_images), "--batch-size", "5"])
    results = json.loads(capsys.readouterr().out)

    test = datasets.load_from_disk(str(tiny_images))["test"]
    pixels = torch.stack([torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None] for image in test["image"]])  # (N, 1, 28, 28)
    predicted = model(pixel_values=pixels).logits.argmax(-1).numpy()
    labels = np.asarray([names.index(test.features["label"].int2str(i)) for i in test["label"]])
    assert results["task"] == "single_label" and results["examples"] == 16
    assert results["metrics"]["accuracy"] == pytest.approx(float((predicted == labels).mean()))


def test_generator_folders_go_to_the_generator_metrics(tmp_path, monkeypatch, capsys):
    import hfgen.evaluation
    from hfgen.evaluation import model_kind
    from hfgen.models import DCGANConfig, DCGANModel

    DCGANModel(DCGANConfig(latent_dim=8, generator_width=4, discriminator_width=4)).save_pretrained(tmp_path / "gan")
    save_text_classifier(tmp_path / "classifier", "single_label")
    assert model_kind(str(tmp_path / "gan")) == "generator" and model_kind(str(tmp_path / "classifier")) == "classifier"
    calls = []
    monkeypatch.setattr(hfgen.evaluation, "evaluate_generator_model", lambda model, dataset, **kw: calls.append((model, dataset, kw)) or {"fid": 1.0})
    evaluate_main(["--model", str(tmp_path / "gan"), "--dataset", "fashion_mnist", "--num-samples", "10"])
    assert calls and calls[0][:2] == (str(tmp_path / "gan"), "fashion_mnist") and calls[0][2]["num_samples"] == 10
    assert json.loads(capsys.readouterr().out) == {"fid": 1.0}
