"""`method: classifier` on bad input: every problem stops the run before training with a message that
names the column, split and values, or is handled as the recipe asks (dropped and counted, mapped)."""

import json
import logging

import pytest
from transformers import AutoModelForSequenceClassification

from hfgen.config import load_recipe
from hfgen.data import DatasetError
from hfgen.train import run

from .classifier_fixtures import classifier_recipe, save_tiny_bert, task_data, tiny_bert  # noqa: F401 (fixtures)


def write_csv(folder, train_rows, test_rows, header="text,label"):
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train_rows), ("test", test_rows)):
        (folder / f"{split}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return folder


GOOD = ["a good film,pos", "a bad film,neg"] * 10


def test_missing_column_lists_the_columns_present(classifier_recipe):
    with pytest.raises(DatasetError, match=r"data.label_column='sentiment' not found in split 'train'.*columns present: \['text', 'label'\]"):
        run(load_recipe(classifier_recipe("single_label", "data.label_column=sentiment")))


def test_unseen_test_label_stops_the_run_naming_it(classifier_recipe, tmp_path):
    data = write_csv(tmp_path / "unseen", GOOD, ["a good film,pos", "so so,meh", "fine,meh"])
    with pytest.raises(DatasetError, match=r"split 'test'.*never seen in training: \['meh'\].*classifier.unseen_labels: unknown"):
        run(load_recipe(classifier_recipe("single_label", dataset=data)))


def test_unseen_test_label_maps_to_unknown_when_asked(classifier_recipe, tmp_path):
    data = write_csv(tmp_path / "unseen", GOOD, ["a good film,pos", "so so,meh", "fine,meh", "a bad film,neg"])
    out = run(load_recipe(classifier_recipe("single_label", "classifier.unseen_labels=unknown", "train.num_epochs=1", dataset=data)))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["label_names"] == ["neg", "pos", "UNKNOWN"]
    assert results["data"]["test"]["unseen_labels_mapped"] == 2
    assert results["eval_examples"] == 4
    assert AutoModelForSequenceClassification.from_pretrained(out).config.id2label[2] == "UNKNOWN"


def test_empty_and_null_texts_are_dropped_and_counted(classifier_recipe, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    rows = [{"text": t, "label": lab} for t, lab in [("a good film", "pos"), ("a bad film", "neg")] * 10]
    rows += [{"text": None, "label": "pos"}, {"text": "   ", "label": "neg"}, {"text": "", "label": "pos"}]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "test.jsonl").write_text(json.dumps({"text": None, "label": "neg"}) + "\n" + json.dumps({"text": "good", "label": "pos"}) + "\n")
    out = run(load_recipe(classifier_recipe("single_label", "train.num_epochs=1", dataset=folder)))
    counts = json.loads((out / "eval_results.json").read_text())["data"]
    assert counts["train"]["empty_texts_dropped"] == 3 and counts["test"]["empty_texts_dropped"] == 1
    assert counts["test"]["examples"] == 1
    with pytest.raises(DatasetError, match=r"3 row\(s\) with an empty or null text.*classifier.drop_empty_texts: true"):
        run(load_recipe(classifier_recipe("single_label", "classifier.drop_empty_texts=false", "train.overwrite=true", dataset=folder)))


def test_float_labels_for_classification_suggest_regression(classifier_recipe, task_data):
    with pytest.raises(DatasetError, match=r"data.label_column='score'.*holds floats.*classifier.task: regression"):
        run(load_recipe(classifier_recipe("regression", "classifier.task=single_label")))


def test_single_class_is_refused(classifier_recipe, tmp_path):
    data = write_csv(tmp_path / "one", ["a good film,pos"] * 10, ["a good film,pos"])
    with pytest.raises(DatasetError, match=r"single class \(\['pos'\]\).*at least two classes"):
        run(load_recipe(classifier_recipe("single_label", dataset=data)))


def test_text_labels_for_regression_are_refused(classifier_recipe):
    with pytest.raises(DatasetError, match=r"regression needs numbers"):
        run(load_recipe(classifier_recipe("single_label", "classifier.task=regression")))


def test_head_of_another_size_is_reinitialised_with_a_warning(classifier_recipe, tmp_path, caplog):
    base = save_tiny_bert(tmp_path / "three-way", head_labels=["neg", "neutral", "pos"])
    with caplog.at_level(logging.WARNING, logger="hfgen"):
        out = run(load_recipe(classifier_recipe("single_label", f"model.pretrained={base}", "train.num_epochs=1")))
    assert "has a head for 3 labels" in caplog.text and "re-initialising it for 2 labels" in caplog.text
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2 and model.classifier.weight.shape == (2, 32)
    assert model.config.id2label == {0: "neg", 1: "pos"}


def test_max_length_beyond_the_model_is_refused_before_training(classifier_recipe):
    from hfgen.config import RecipeError

    with pytest.raises(RecipeError, match="classifier.max_length 100 exceeds the model's max_position_embeddings 64"):
        run(load_recipe(classifier_recipe("single_label", "classifier.max_length=100")))
