"""`method: classifier` end to end on a tiny BERT: every task trains (loss falls), metrics are written,
the folder reloads through the Auto classes and `pipeline`, resume is exact, early stopping works."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, pipeline

from hfgen.config import load_recipe
from hfgen.testing import free_port
from hfgen.train import run

from .classifier_fixtures import TASK_COLUMNS, classifier_recipe, task_data, tiny_bert  # noqa: F401 (fixtures)
from .helpers import assert_same_weights, launch_processes, read_metrics

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_METRICS = {
    "single_label": {"eval_accuracy", "eval_f1_macro", "eval_f1_micro", "eval_precision_macro", "eval_recall_macro"},
    "pair": {"eval_accuracy", "eval_f1_macro"},
    "multi_label": {"eval_f1_micro", "eval_f1_macro", "eval_subset_accuracy"},
    "regression": {"eval_mse", "eval_pearson", "eval_spearman"},
    "token": {"eval_f1", "eval_precision", "eval_recall", "eval_token_accuracy"},
}


@pytest.mark.parametrize("task", list(TASK_COLUMNS))
def test_task_trains_scores_and_reloads(classifier_recipe, task):
    out = run(load_recipe(classifier_recipe(task)))
    losses = [m["loss"] for m in read_metrics(out) if "loss" in m and "lr" in m]
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses  # learning, not just running
    results = json.loads((out / "eval_results.json").read_text())
    assert EXPECTED_METRICS[task] <= set(results)
    assert results["eval_examples"] == 24  # the whole test split, each example once
    assert all(math.isfinite(results[k]) for k in EXPECTED_METRICS[task])
    assert results["best_step"] is not None and not (out / "best").exists()  # the final model is the best one
    card = (out / "README.md").read_text()
    assert "pipeline_tag: " + ("token-classification" if task == "token" else "text-classification") in card
    assert next(iter(EXPECTED_METRICS[task])) in card

    if task == "token":
        model = AutoModelForTokenClassification.from_pretrained(out)
        assert set(model.config.id2label.values()) == {"B-LOC", "B-PER", "O"}
        tagged = pipeline("token-classification", model=str(out))("alice met bob in paris")
        assert {t["entity"] for t in tagged} <= {"B-LOC", "B-PER", "O"}
        return
    model = AutoModelForSequenceClassification.from_pretrained(out)
    classify = pipeline("text-classification", model=str(out), top_k=None)
    if task == "regression":
        assert model.config.num_labels == 1 and model.config.problem_type == "regression"
        return
    scores = classify("the film was great fun")[0] if task != "pair" else classify({"text": "a good film", "text_pair": "a great film"})
    names = {s["label"] for s in scores}
    expected = {"single_label": {"neg", "pos"}, "pair": {"agrees", "objects"}, "multi_label": {"action", "comedy", "drama"}}[task]
    assert names == expected  # label names, not LABEL_0
    if task == "single_label":
        assert (out / "confusion_matrix.png").is_file()
        assert results["eval_accuracy"] >= 0.9
        assert model.config.label2id == {"neg": 0, "pos": 1}


def test_int_and_classlabel_labels_round_trip(classifier_recipe, tmp_path):
    import datasets

    names = ["rotten", "fresh"]
    rows = {"text": ["a good film", "a bad film"] * 12, "label": [1, 0] * 12}
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    folder = tmp_path / "classlabel"
    datasets.DatasetDict({s: datasets.Dataset.from_dict(rows, features=features) for s in ("train", "test")}).save_to_disk(str(folder))
    out = run(load_recipe(classifier_recipe("single_label", "train.num_epochs=1", dataset=folder)))
    config = AutoModelForSequenceClassification.from_pretrained(out).config
    assert config.id2label == {0: "rotten", 1: "fresh"} and config.label2id == {"rotten": 0, "fresh": 1}


def test_best_model_is_kept_and_early_stopping_ends_the_run(classifier_recipe, monkeypatch):
    import hfgen.train.methods.classifier as classifier

    scores = iter([0.5, 0.9, 0.8, 0.7, 0.6, 0.95])  # best at the 2nd evaluation; patience 2 stops at the 4th
    real_evaluate = classifier.evaluate

    def scripted(*args, **kwargs):
        metrics = real_evaluate(*args, **kwargs)
        if kwargs.get("return_outputs"):
            return metrics
        return {**metrics, "accuracy": next(scores)}

    monkeypatch.setattr(classifier, "evaluate", scripted)
    recipe = load_recipe(classifier_recipe("single_label", "train.eval_every=3", "classifier.eval_every_epoch=false",
                                           "classifier.early_stopping_patience=2"))
    out = run(recipe)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["early_stopped"] is True
    assert results["best_step"] == 6 and results["best_validation_accuracy"] == 0.9
    assert results["steps"] == 12  # 4 evaluations of 3 steps, not the full 10 epochs
    from hfgen.train.checkpoint import list_checkpoints

    assert_same_weights(out, list_checkpoints(out)[-1] / "best")  # the saved model is the best one (step 6)


def test_resume_continues_exactly(classifier_recipe, tmp_path):
    common = ["train.save_every=4", "train.max_steps=12", "classifier.eval_every_epoch=false", "train.eval_every=4"]
    reference = run(load_recipe(classifier_recipe("single_label", *common, f"train.output_dir={tmp_path / 'ref'}", name="ref.yaml")))
    first = load_recipe(classifier_recipe("single_label", *common[:1], "train.max_steps=5", *common[2:], name="first.yaml"))
    run(first)  # stops at step 5: checkpoints 4 and 5
    from hfgen.train.checkpoint import list_checkpoints

    checkpoint = [p for p in list_checkpoints(first.train.output_dir) if p.name.endswith("00000004")][0]
    resumed = run(load_recipe(classifier_recipe("single_label", *common, f"train.output_dir={tmp_path / 'resumed'}",
                                                f"train.resume={checkpoint}", name="resumed.yaml")))
    assert_same_weights(resumed, reference)
    ref_results = json.loads((reference / "eval_results.json").read_text())
    res_results = json.loads((resumed / "eval_results.json").read_text())
    assert res_results["best_step"] == ref_results["best_step"]
    assert res_results["eval_accuracy"] == ref_results["eval_accuracy"]


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one process-wide state: a bf16 run after fp32 ones needs it reset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_gradient_accumulation_layer_decay_and_class_weights_run(classifier_recipe, fresh_accelerate_state):
    out = run(load_recipe(classifier_recipe(
        "single_label", "train.gradient_accumulation_steps=2", "classifier.layer_lr_decay=0.8",
        "classifier.class_weights=balanced", "train.mixed_precision=bf16", "classifier.pad_to_max_length=true",
    )))  # fmt: skip
    results = json.loads((out / "eval_results.json").read_text())
    assert results["steps"] == 10 * math.ceil((86 // 8) / 2)  # 86 training rows: 10 full batches an epoch, 2 per step
    assert results["eval_accuracy"] > 0.5


def test_two_process_evaluation_counts_every_example_once(classifier_recipe, tmp_path):
    """23 test examples, eval batch 4 on 2 processes (rounds of 8: the last round is padded with
    duplicates): gather_for_metrics must drop them, so counts and accuracy match one process."""
    from .classifier_fixtures import write_task_data

    data = write_task_data(tmp_path / "odd", "single_label", train=40, test=23)
    results = {}
    for processes in (1, 2):
        recipe = classifier_recipe("single_label", "train.max_steps=1", "train.learning_rate=1e-12", "train.warmup_steps=0", "classifier.validation_size=0", "train.eval_batch_size=4",
                                   f"train.output_dir={tmp_path / f'p{processes}'}", name=f"p{processes}.yaml", dataset=data)
        if processes == 1:
            run(load_recipe(recipe))
        else:
            env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1"}
            env.pop("WORLD_SIZE", None)
            launch = ["--multi_gpu", "--num_processes", "2", "--main_process_port", str(free_port())]
            done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *launch, str(ROOT / "scripts" / "finetune.py"),
                                   "--recipe", str(recipe)], env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-4000:]
        results[processes] = json.loads((tmp_path / f"p{processes}" / "eval_results.json").read_text())
    assert results[1]["eval_examples"] == results[2]["eval_examples"] == 23
    assert sum(map(sum, results[2]["confusion_matrix"])) == 23
    assert results[2]["confusion_matrix"] == results[1]["confusion_matrix"]
    assert results[2]["eval_loss"] == pytest.approx(results[1]["eval_loss"], rel=1e-5)


def test_predict_script_writes_label_names(classifier_recipe, tmp_path):
    out = run(load_recipe(classifier_recipe("single_label")))
    source = tmp_path / "texts.csv"
    source.write_text("id,review\n1,a great fun film\n2,a dull boring plot\n3,\n")
    target = tmp_path / "predictions.csv"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(out), "--input", str(source),
                           "--text-column", "review", "--out", str(target), "--batch-size", "2"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = target.read_text().splitlines()
    assert lines[0] == "id,review,label,score" and len(lines) == 4
    assert lines[1].split(",")[2] == "pos" and lines[2].split(",")[2] == "neg"
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), "--model", str(out), "--input", str(source),
                          "--text-column", "text", "--out", str(target)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert bad.returncode == 2 and "columns present: ['id', 'review']" in bad.stderr


def test_token_classification_from_conll_files(classifier_recipe, task_data, tmp_path):
    rows = [json.loads(line) for line in (task_data["token"] / "train.jsonl").read_text().splitlines()]
    folder = tmp_path / "conll"
    folder.mkdir()
    for split, part in (("train", rows[:80]), ("test", rows[80:])):
        sentences = ["\n".join(f"{word} {tag}" for word, tag in zip(row["tokens"], row["tags"])) for row in part]
        (folder / f"{split}.conll").write_text("-DOCSTART- O\n\n" + "\n\n".join(sentences) + "\n")
    out = run(load_recipe(classifier_recipe("token", dataset=folder)))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_examples"] == len(rows) - 80 and results["eval_f1"] > 0.9


def test_streamed_training_split_trains_and_refuses_what_needs_it_whole(classifier_recipe, tmp_path):
    """data.streaming: the training csv is read as training goes (chunks tokenised as they come), pass after pass; the
    test split is read once; the model learns. What needs the whole training split up front is refused by its key."""
    from hfgen.config import RecipeError

    streamed = ["data.streaming=true", "classifier.label_names=[neg, pos]", "classifier.validation_size=0", "train.max_steps=40",
                "train.learning_rate=1e-2"]
    out = run(load_recipe(classifier_recipe("single_label", *streamed, f"train.output_dir={tmp_path / 'streamed'}", name="s.yaml")))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["steps"] == 40 and results["eval_examples"] == 24 and results["eval_accuracy"] > 0.8
    assert results["data"]["train"]["streamed"] and results["train_examples"] >= 40 * 8  # 96 rows a pass: several passes
    assert results["label_names"] == ["neg", "pos"]
    assert AutoModelForSequenceClassification.from_pretrained(out).config.id2label == {0: "neg", 1: "pos"}
    for overrides, key in (([], "classifier.label_names"), (["classifier.label_names=[neg, pos]"], "classifier.validation_size"),
                           (["classifier.label_names=[neg, pos]", "classifier.validation_size=0", "classifier.max_length=auto"], "classifier.max_length"),
                           (["classifier.label_names=[neg, pos]", "classifier.validation_size=0", "data.eval_split=validation"], "data.eval_split")):
        with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
            run(load_recipe(classifier_recipe("single_label", "data.streaming=true", "train.max_steps=8", *overrides, name="refused.yaml")))


def test_two_processes_stream_each_their_own_half_of_the_training_split(classifier_recipe, tmp_path):
    recipe = classifier_recipe("single_label", "data.streaming=true", "classifier.label_names=[neg, pos]", "classifier.validation_size=0",
                               "train.max_steps=18", "train.batch_size=4", "train.save_every=6", "train.num_processes=2", name="two.yaml")
    done = launch_processes("finetune.py", recipe)
    assert done.returncode == 0, done.stderr[-4000:]
    out = tmp_path / "out"
    state = json.loads((out / "checkpoints" / "checkpoint-00000018" / "train_state.json").read_text())
    # each process reads every other row of the 96 (48): 12 batches of 4 an epoch, so step 18 is batch 6 of the second
    # epoch (reading the whole file it would be batch 18 of the first)
    assert (state["epoch"], state["batches_in_epoch"]) == (1, 6)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["data"]["train"]["examples"] >= 96 + 2 * 6 * 4 and results["eval_examples"] == 24
