"""Distillation on the classifier method (`classifier.teacher`): an RNN student trained from scratch, a smaller BERT
cut from the teacher, soft targets that carry what noisy labels do not, the teacher's outputs shared correctly
between two processes, and recipes that cannot work refused up front."""

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, pipeline

from hfgen.cli import evaluate_main
from hfgen.config import RecipeError, load_recipe
from hfgen.models import RNNClassifierForSequenceClassification
from hfgen.train import run

from .helpers import launch_processes
from .classifier_fixtures import classifier_recipe, save_tiny_bert, task_data, tiny_bert, write_task_data  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Clean single-label data, the same texts with 40% of the training labels flipped (test labels clean), and a
    tiny BERT teacher fine-tuned on the clean labels."""
    root = tmp_path_factory.mktemp("distill")
    bert = save_tiny_bert(root / "bert")
    clean = write_task_data(root / "clean", "single_label", train=160, test=48)
    noisy = root / "noisy"
    noisy.mkdir()
    shutil.copy(clean / "test.csv", noisy / "test.csv")
    rows = list(csv.DictReader(open(clean / "train.csv")))
    for i in random.Random(1).sample(range(len(rows)), int(0.4 * len(rows))):
        rows[i]["label"] = "pos" if rows[i]["label"] == "neg" else "neg"
    with open(noisy / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return {"bert": bert, "clean": clean, "noisy": noisy}


@pytest.fixture(scope="module")
def teacher(toy, tmp_path_factory):
    import yaml

    folder = tmp_path_factory.mktemp("teacher")
    recipe = folder / "teacher.yaml"
    recipe.write_text(yaml.safe_dump(_raw(toy["clean"], toy["bert"], folder / "out")))
    return run(load_recipe(recipe))


def _raw(data, bert, out, *overrides):
    from hfgen.config import apply_override

    raw = {
        "method": "classifier", "model": {"pretrained": str(bert)}, "data": {"dataset": str(data), "label_column": "label"},
        "train": {"output_dir": str(out), "num_epochs": 10, "batch_size": 8, "learning_rate": 3.0e-3, "lr_scheduler": "linear",
                  "warmup_steps": 5, "save_every": None, "log_every": 5, "cpu_threads": 1, "mixed_precision": "no", "report_to": "jsonl"},
        "classifier": {"task": "single_label", "max_length": 32, "validation_size": 0},
    }  # fmt: skip
    for override in overrides:
        apply_override(raw, override)
    return raw


def _recipe(tmp_path, toy, name, *overrides, data="noisy"):
    import yaml

    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(_raw(toy[data], toy["bert"], tmp_path / name, *overrides)))
    return path


def _rnn(toy):
    return ["model.pretrained=null", "model.type=hfgen-rnn-classifier", "model.hidden_size=16", f"classifier.tokenizer={toy['bert']}",
            f"classifier.init_embeddings={toy['bert']}", "train.learning_rate=1.0e-2"]


def _results(out):
    return json.loads((Path(out) / "eval_results.json").read_text())


def test_soft_targets_carry_what_noisy_labels_do_not(toy, teacher, tmp_path):
    """40% of the training labels are flipped: a BiLSTM trained on them alone stays near chance on the clean test
    split; the same student distilled from a teacher that learnt the clean labels (alpha 0.7) recovers them."""
    assert _results(teacher)["eval_accuracy"] >= 0.95
    alone = _results(run(load_recipe(_recipe(tmp_path, toy, "alone", *_rnn(toy)))))
    distilled_out = run(load_recipe(_recipe(tmp_path, toy, "distilled", *_rnn(toy), f"classifier.teacher={teacher}",
                                            "classifier.distill_alpha=0.7")))
    distilled = _results(distilled_out)
    assert distilled["eval_accuracy"] >= alone["eval_accuracy"] + 0.25, (alone["eval_accuracy"], distilled["eval_accuracy"])
    assert distilled["eval_accuracy"] >= 0.9
    assert distilled["distill_alpha"] == 0.7 and distilled["teacher_train_accuracy"] == pytest.approx(0.6, abs=0.05)  # vs the noisy labels
    assert distilled["teacher"] == teacher.name  # an absolute path is recorded by its folder name only
    model = AutoModelForSequenceClassification.from_pretrained(distilled_out)
    assert type(model) is RNNClassifierForSequenceClassification and model.config.embedding_dim == 32  # the tiny BERT's width
    assert pipeline("text-classification", model=str(distilled_out))("a great fun film")[0]["label"] == "pos"
    card = (distilled_out / "README.md").read_text()
    assert "Distilled from the teacher" in card and "bidirectional LSTM" in card and "trust_remote_code=True" in card


def test_a_smaller_bert_cut_from_the_teacher_keeps_its_first_layers(toy, teacher, tmp_path):
    out = run(load_recipe(_recipe(tmp_path, toy, "small", f"model.pretrained={teacher}", "model.num_hidden_layers=1",
                                  f"classifier.teacher={teacher}", "classifier.distill_alpha=0.9", "classifier.distill_loss=mse")))
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_hidden_layers == 1
    assert _results(out)["eval_accuracy"] >= 0.9


def test_predict_and_evaluate_scripts_run_an_rnn_classifier(toy, tmp_path):
    out = run(load_recipe(_recipe(tmp_path, toy, "rnn", *_rnn(toy), "train.num_epochs=2", data="clean")))
    scores = tmp_path / "scores.json"
    evaluate_main(["--model", str(out), "--dataset", str(toy["clean"]), "--split", "test", "--out", str(scores)])
    evaluated = json.loads(scores.read_text())
    assert evaluated["examples"] == 48
    assert evaluated["metrics"]["accuracy"] == pytest.approx(_results(out)["eval_accuracy"])  # the run's own test score
    source, target = tmp_path / "texts.csv", tmp_path / "predictions.csv"
    source.write_text("review\na great fun film\na dull boring plot\n")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(out), "--input", str(source),
                           "--text-column", "review", "--out", str(target)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = target.read_text().splitlines()
    assert lines[0] == "review,label,score" and len(lines) == 3 and {line.split(",")[1] for line in lines[1:]} <= {"neg", "pos"}


def test_two_processes_share_the_teacher_outputs_row_for_row(toy, teacher, tmp_path):
    """Each process computes the teacher's outputs for its share of the rows; gathered back in row order they must
    be the one-process outputs (a misaligned row would train on another text's soft target)."""
    overrides = [*_rnn(toy), f"classifier.teacher={teacher}", "classifier.distill_alpha=1.0", "train.num_epochs=4", "train.batch_size=4"]
    one = _results(run(load_recipe(_recipe(tmp_path, toy, "one", *overrides))))
    recipe = _recipe(tmp_path, toy, "two", *overrides, "train.num_processes=2")
    done = launch_processes("finetune.py", recipe)
    assert done.returncode == 0, done.stderr[-4000:]
    two = _results(tmp_path / "two")
    assert two["teacher_train_accuracy"] == one["teacher_train_accuracy"]  # the same outputs against the same labels
    assert two["eval_accuracy"] >= 0.9  # trained on the teacher alone (alpha 1): misaligned targets would be noise


@pytest.mark.parametrize(("overrides", "message"), [
    (["classifier.task=token", "data.label_column=tags", "data.text_column=tokens"], "not token"),
    (["classifier.init_embeddings=minilm"], "applies to model.type hfgen-rnn-classifier"),
])
def test_recipes_that_cannot_distil_are_refused(classifier_recipe, teacher, overrides, message):
    task = "token" if "classifier.task=token" in overrides else "single_label"
    extra = [o for o in overrides if not o.startswith(("classifier.task", "data."))]
    with pytest.raises(RecipeError, match=message):
        run(load_recipe(classifier_recipe(task, f"classifier.teacher={teacher}", *extra)))


def test_a_bad_rnn_config_value_is_a_recipe_error(toy, tmp_path):
    with pytest.raises(RecipeError, match=r"rnn.yaml: model: RNNClassifierConfig: cell='transformer' is not supported"):
        run(load_recipe(_recipe(tmp_path, toy, "rnn", *_rnn(toy), "model.cell=transformer")))


def test_a_teacher_with_other_classes_is_refused_by_name(classifier_recipe, tmp_path):
    other = save_tiny_bert(tmp_path / "other", head_labels=["sports", "politics"])
    with pytest.raises(RecipeError, match=r"the teacher's classes \['sports', 'politics'\] are not the run's classes \['neg', 'pos'\]"):
        run(load_recipe(classifier_recipe("single_label", f"classifier.teacher={other}")))


def test_transfer_set_copies_are_seeded_masked_and_cut_to_ngrams():
    import datasets

    from hfgen.train.methods.distillation import augment_rows

    words = [f"w{i}" for i in range(12)]
    rows = datasets.Dataset.from_dict({"text": [" ".join(words)] * 200, "labels": list(range(200))})
    copies = augment_rows(rows, "text", None, 3, seed=7, mask_token="[MASK]", mask_prob=0.1, ngram_prob=0.25)
    assert len(copies) == 600 and copies["labels"][:] == list(range(200)) * 3  # other columns copied, row order kept
    assert copies[:] == augment_rows(rows, "text", None, 3, seed=7, mask_token="[MASK]", mask_prob=0.1, ngram_prob=0.25)[:]
    texts = [text.split() for text in copies["text"]]
    whole = [t for t in texts if len(t) == 12]
    cut = [t for t in texts if len(t) < 12]
    assert 0.2 < len(cut) / len(texts) < 0.3  # ngram_prob
    assert all(1 <= len(t) <= 5 for t in cut)
    masked = sum(word == "[MASK]" for t in whole for word in t) / (12 * len(whole))
    assert 0.07 < masked < 0.13  # mask_prob
    for t in cut:  # a contiguous run of the (masked) words
        first = next(int(w[1:]) for w in t if w != "[MASK]") if any(w != "[MASK]" for w in t) else None
        if first is not None:
            offset = t.index(f"w{first}")
            assert all(w in ("[MASK]", f"w{first - offset + j}") for j, w in enumerate(t))
    pairs = datasets.Dataset.from_dict({"a": ["x y z"] * 50, "b": ["p q r s"] * 50})
    paired = augment_rows(pairs, "a", "b", 1, seed=0, mask_token="[MASK]", mask_prob=0.5, ngram_prob=1.0)
    assert all(len(a.split()) == 3 and len(b.split()) == 4 for a, b in zip(paired["a"], paired["b"]))  # pairs are never cut


def test_teacher_labels_and_concatenated_training_sets():
    import numpy as np

    from hfgen.data.text_classification import TokenizedTexts
    from hfgen.train.methods.distillation import teacher_labels

    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]], dtype=np.float32)
    assert teacher_labels(logits, "single_label", 0.5) == [0, 2]
    assert teacher_labels(logits, "multi_label", 0.5) == [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    assert teacher_labels(logits[:, :1], "regression", 0.5) == [2.0, -3.0]

    def part(ids, labels, with_logits):
        texts = TokenizedTexts.__new__(TokenizedTexts)
        texts.input_ids, texts.token_type_ids, texts.labels = ids, None, labels
        texts.lengths = np.array([len(i) for i in ids])
        texts.teacher_logits = np.ones((len(ids), 2), dtype=np.float32) * with_logits
        return texts

    joined = TokenizedTexts.concatenate([part([[1, 2], [3]], [0, 1], 1.0), part([[4, 5, 6]], [1], 2.0)])
    assert len(joined) == 3 and joined.labels == [0, 1, 1] and joined.lengths.tolist() == [2, 1, 3]
    row = joined[2]
    assert row["input_ids"] == [4, 5, 6] and row["labels"] == 1 and row["teacher_logits"].tolist() == [2.0, 2.0]
    assert joined.teacher_logits[:, 0].tolist() == [1.0, 1.0, 2.0]


def test_a_transfer_set_adds_the_stated_number_of_teacher_labelled_copies(toy, teacher, tmp_path):
    out = run(load_recipe(_recipe(tmp_path, toy, "augmented", *_rnn(toy), f"classifier.teacher={teacher}", "classifier.distill_augment=2",
                                  "train.num_epochs=1")))
    results = _results(out)
    assert results["distill_augmented_examples"] == 2 * 160 and results["train_examples"] == 3 * 160
    with pytest.raises(RecipeError, match="distill_augment=2: the altered copies are labelled by a teacher"):
        run(load_recipe(_recipe(tmp_path, toy, "no_teacher", *_rnn(toy), "classifier.distill_augment=2")))
