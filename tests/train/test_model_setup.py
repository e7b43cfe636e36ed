"""LoRA through peft (classifier and sentence encoder), gradient checkpointing and torch.compile: each a recipe key,
applied once by the engine or the text methods."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from hfgen.config import RecipeError, load_recipe
from hfgen.train import run

from .classifier_fixtures import TASK_COLUMNS, classifier_recipe, task_data, tiny_bert  # noqa: F401 (fixtures)
from .helpers import read_metrics

peft = pytest.importorskip("peft")

LORA = ["classifier.lora.r=8", "classifier.lora.alpha=16", "classifier.lora.dropout=0.0",
        "classifier.lora.target_modules=[query,key,value,dense]"]  # the tiny BERT is random: q/v alone learn too slowly


def test_lora_classifier_trains_adapters_only_and_saves_adapter_and_merged_model(classifier_recipe, tiny_bert):
    out = run(load_recipe(classifier_recipe("single_label", *LORA, "train.num_epochs=10")))

    results = json.loads((out / "eval_results.json").read_text())
    assert 0 < results["trainable_parameters"] < results["parameters"] / 3  # adapters + head (a large share of so tiny a model)
    # the tiny BERT is random, not pretrained: frozen, with rank-8 updates, it learns slowly (full fine-tuning: 1.0)
    assert results["eval_accuracy"] > 0.6, results["eval_accuracy"]
    losses = [row["loss"] for row in read_metrics(out) if "loss" in row]
    assert sum(losses[-3:]) < sum(losses[:3]) - 0.1, losses

    # the root: a stock classifier with the updates merged, as pipeline() loads it
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert not any("lora" in k for k in merged.state_dict())
    assert pipeline("text-classification", model=str(out), device="cpu")("a great superb film")[0]["label"] in ("pos", "neg")

    # adapter/: the adapter alone; base + adapter gives the merged model's logits
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert sorted(config["target_modules"]) == ["dense", "key", "query", "value"]
    assert config["r"] == 8 and config["peft_type"] == "LORA" and config["base_model_name_or_path"] == "model"  # no machine path
    base = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    adapted = peft.PeftModel.from_pretrained(base, out / "adapter").eval()
    batch = {"input_ids": torch.tensor([[2, 5, 30, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    with torch.no_grad():
        torch.testing.assert_close(adapted(**batch).logits, merged(**batch).logits, rtol=1e-4, atol=1e-5)
    assert "LoRA" in (out / "README.md").read_text()
    for path in [out / "adapter" / "README.md", out / "adapter" / "adapter_config.json", out / "README.md", out / "config.json"]:
        assert str(tiny_bert) not in path.read_text() and "site-packages" not in path.read_text(), path


def test_lora_best_model_selection_keeps_the_best_adapter(classifier_recipe):
    """The best model of a LoRA run is its adapter and head: the final folder holds the best validation weights."""
    out = run(load_recipe(classifier_recipe("single_label", *LORA, "train.num_epochs=3", "classifier.validation_size=0.25")))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["best_step"] > 0 and not (out / "best").exists()


def test_lora_sentence_encoder_merges_into_a_stock_sentence_transformers_folder(tmp_path, hfgen_cache_tmp):
    import yaml
    from transformers import BertConfig, BertModel

    from hfgen.models import SentenceEncoderModel
    from tests.train.classifier_fixtures import TINY_BERT, tiny_tokenizer
    from tests.train.text_corpus import write_corpus

    tokenizer = tiny_tokenizer()
    BertModel(BertConfig(**{**TINY_BERT, "vocab_size": len(tokenizer)})).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    write_corpus(tmp_path / "train.txt", 80)
    raw = {"method": "contrastive", "model": {"pretrained": str(tmp_path / "bert")}, "data": {"dataset": str(tmp_path / "train.txt")},
           "contrastive": {"max_length": 16, "retrieval_dataset": None, "lora": {"r": 4, "target_modules": ["query", "key", "value"]}},
           "train": {"output_dir": str(tmp_path / "out"), "max_steps": 4, "batch_size": 8, "learning_rate": 1e-3, "save_every": None,
                     "log_every": 1, "cpu_threads": 1, "mixed_precision": "no", "report_to": "jsonl"}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    out = run(load_recipe(tmp_path / "r.yaml"))

    assert json.loads((out / "config.json").read_text())["model_type"] == "bert"
    assert sorted(json.loads((out / "adapter" / "adapter_config.json").read_text())["target_modules"]) == ["key", "query", "value"]
    model = SentenceEncoderModel.from_pretrained(out)
    assert not any("lora" in k for k in model.state_dict())
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(out), device="cpu")
    torch.testing.assert_close(st.encode(["the cat eats"], convert_to_tensor=True)[0], model.encode("the cat eats"), rtol=1e-4, atol=1e-5)


def test_lora_is_refused_for_image_classifiers_and_needs_known_targets(classifier_recipe, write_recipe):
    with pytest.raises(RecipeError, match="classifier.lora applies to text encoders"):
        run(load_recipe(write_recipe("classifier", "classifier.lora.r=4", "data.label_column=label",
                                     model={"type": "hfgen-image-encoder", "hidden_sizes": [8, 16], "depths": [1, 1]})))
    with pytest.raises(RecipeError, match="lora"):
        run(load_recipe(classifier_recipe("single_label", "classifier.lora.target_modules=[no_such_layer]")))
    with pytest.raises(RecipeError, match="lora.r"):
        load_recipe(classifier_recipe("single_label", "classifier.lora.r=0"))


def test_gradient_checkpointing_gives_the_same_training(classifier_recipe, tmp_path):
    common = ["train.max_steps=6", "train.num_epochs=1", "classifier.fast_dropout=false", "classifier.validation_size=0"]
    plain = run(load_recipe(classifier_recipe("single_label", *common, f"train.output_dir={tmp_path / 'plain'}", name="a.yaml")))
    checkpointed = run(load_recipe(classifier_recipe("single_label", *common, "train.gradient_checkpointing=true",
                                                     f"train.output_dir={tmp_path / 'ckpt'}", name="b.yaml")))
    losses = [[row["loss"] for row in read_metrics(out) if "loss" in row] for out in (plain, checkpointed)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)  # recomputed activations, the same dropout masks
    assert json.loads((checkpointed / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


def test_gradient_checkpointing_is_refused_for_models_without_it(write_recipe):
    with pytest.raises(RecipeError, match="train.gradient_checkpointing"):
        run(load_recipe(write_recipe("gan", "train.gradient_checkpointing=true")))


def test_compile_compiles_every_model_in_place_and_saves_an_ordinary_folder(classifier_recipe, monkeypatch):
    """The wiring, with dynamo's eager backend (graph capture without inductor's minutes of code generation; the
    inductor figures are benchmark.py's)."""
    compiled, compile = [], torch.nn.Module.compile

    def eager_compile(self, *args, **kwargs):
        compiled.append(type(self).__name__)
        return compile(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", eager_compile)
    out = run(load_recipe(classifier_recipe("single_label", "train.compile=true", "train.max_steps=6")))
    assert compiled == ["BertForSequenceClassification"]
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert not any(k.startswith("_orig_mod") for k in model.state_dict())
    assert json.loads((out / "eval_results.json").read_text())["eval_accuracy"] >= 0
