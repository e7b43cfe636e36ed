"""hfgen-rnn-classifier: the recurrent text classifier family. Padding never reaches the state, every pooling reads
only valid tokens, the losses follow `problem_type`, and a saved folder loads through the Auto classes, `pipeline`,
and `trust_remote_code` in a process without hfgen."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, pipeline

from hfgen.hub import prepare_for_hub
from hfgen.models import MODEL_CONFIGS, RNNClassifierConfig, RNNClassifierForSequenceClassification, RNNClassifierModel

from ..train.classifier_fixtures import tiny_tokenizer


def tiny_config(**overrides):
    fields = dict(vocab_size=40, embedding_dim=8, hidden_size=6, num_labels=3, dropout=0.0)
    return RNNClassifierConfig(**{**fields, **overrides})


def batch_with_padding(seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 40, (4, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("pooling", ["max", "mean", "last"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padding_on_either_side_gives_the_logits_of_the_unpadded_text(cell, pooling, bidirectional):
    torch.manual_seed(0)
    model = RNNClassifierForSequenceClassification(tiny_config(cell=cell, pooling=pooling, bidirectional=bidirectional, num_layers=2)).eval()
    ids, mask = batch_with_padding()
    right = model(ids, attention_mask=mask).logits
    left_ids, left_mask = ids.clone(), mask.clone()
    for row in (1, 3):  # move the padding to the front
        n = int(mask[row].sum())
        left_ids[row] = torch.cat([ids[row, n:], ids[row, :n]])
        left_mask[row] = torch.cat([mask[row, n:], mask[row, :n]])
    torch.testing.assert_close(model(left_ids, attention_mask=left_mask).logits, right)
    for row in range(4):
        alone = model(ids[row : row + 1, : int(mask[row].sum())]).logits[0]
        torch.testing.assert_close(right[row], alone, rtol=1e-5, atol=1e-6)
    assert right.shape == (4, 3)


def test_an_empty_text_gets_finite_logits():
    model = RNNClassifierForSequenceClassification(tiny_config(pooling="max")).eval()
    ids, mask = batch_with_padding()
    mask[2] = 0
    assert torch.isfinite(model(ids, attention_mask=mask).logits).all()


def test_losses_follow_problem_type():
    torch.manual_seed(0)
    ids, mask = batch_with_padding()
    model = RNNClassifierForSequenceClassification(tiny_config())
    out = model(ids, attention_mask=mask, labels=torch.tensor([0, 2, 1, 0]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2, 1, 0])))
    assert model.config.problem_type == "single_label_classification"
    multi = RNNClassifierForSequenceClassification(tiny_config(problem_type="multi_label_classification"))
    targets = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = multi(ids, attention_mask=mask, labels=targets)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets))
    regression = RNNClassifierForSequenceClassification(tiny_config(num_labels=1))
    out = regression(ids, attention_mask=mask, labels=torch.tensor([0.5, -1.0, 2.0, 0.0]))
    torch.testing.assert_close(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(-1), torch.tensor([0.5, -1.0, 2.0, 0.0])))
    assert regression.config.problem_type == "regression"
    out.loss.backward()  # gradients reach the embeddings
    assert regression.rnn.embeddings.weight.grad.abs().sum() > 0


def test_initialisation_forget_bias_padding_row_and_frozen_embeddings():
    model = RNNClassifierForSequenceClassification(tiny_config(pad_token_id=0, freeze_embeddings=True, num_layers=2))
    lstm, hidden = model.rnn.encoder, 6
    for name, parameter in lstm.named_parameters():
        if name.startswith("bias_ih"):
            assert torch.equal(parameter[hidden : 2 * hidden], torch.ones(hidden)), name
        if name.startswith("bias_hh"):
            assert torch.equal(parameter[hidden : 2 * hidden], torch.zeros(hidden)), name
    assert torch.equal(model.rnn.embeddings.weight[0], torch.zeros(8))
    assert not model.rnn.embeddings.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if "embeddings" not in n)


def test_frozen_embeddings_stay_frozen_after_loading_and_any_attention_setting_is_accepted(tmp_path):
    model = RNNClassifierForSequenceClassification(tiny_config(freeze_embeddings=True))
    model.set_attn_implementation("sdpa")  # what a trainer asks of every text model on a GPU: nothing to change here
    model.save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert not loaded.rnn.embeddings.weight.requires_grad and loaded.rnn.encoder.weight_hh_l0.requires_grad


@pytest.mark.parametrize(("overrides", "message"), [
    ({"cell": "transformer"}, "cell='transformer' is not supported"),
    ({"pooling": "cls"}, "pooling='cls' is not supported"),
    ({"hidden_size": 0}, "hidden_size=0 must be an integer >= 1"),
    ({"dropout": 1.0}, "dropout=1.0 must be a number in"),
    ({"pad_token_id": 40}, "pad_token_id=40 is outside the vocabulary"),
])
def test_config_refuses_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)


def test_save_load_auto_classes_and_pipeline(tmp_path):
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = tiny_config(vocab_size=len(tokenizer), num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    model = RNNClassifierForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert MODEL_CONFIGS["hfgen-rnn-classifier"] is RNNClassifierConfig
    assert type(AutoConfig.from_pretrained(tmp_path)) is RNNClassifierConfig
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert type(loaded) is RNNClassifierForSequenceClassification
    encoded = tokenizer(["the film was good", "a dull plot"], padding=True, return_tensors="pt")  # with token_type_ids
    torch.testing.assert_close(loaded(**encoded).logits, model(**encoded).logits)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is RNNClassifierModel
    torch.testing.assert_close(base(**encoded).pooler_output, model.rnn(**encoded).pooler_output)
    scores = pipeline("text-classification", model=str(tmp_path), top_k=None)("the film was good")[0]
    assert {s["label"] for s in scores} == {"neg", "pos"}


REMOTE_CODE_SCRIPT = """
import json, sys
sys.modules["hfgen"] = None  # the saved folder must load without hfgen: block it even where it is installed
from safetensors.torch import save_file
from transformers import AutoTokenizer, pipeline
classify = pipeline("text-classification", model=sys.argv[1], trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
logits = classify.model(**tokenizer(["the film was good"], return_tensors="pt")).logits
save_file({"logits": logits.detach().contiguous()}, sys.argv[2] + ".safetensors")
with open(sys.argv[2] + ".json", "w") as f:
    json.dump({"module": type(classify.model).__module__, "label": classify("the film was good")[0]["label"]}, f)
"""


@pytest.mark.slow  # a fresh interpreter importing torch + transformers
def test_saved_folder_loads_with_trust_remote_code_without_hfgen(tmp_path, monkeypatch):
    monkeypatch.setattr(RNNClassifierConfig, "_auto_class", None)  # register_for_auto_class sets class attributes
    monkeypatch.setattr(RNNClassifierForSequenceClassification, "_auto_class", None)
    tokenizer = tiny_tokenizer()
    model = RNNClassifierForSequenceClassification(tiny_config(vocab_size=len(tokenizer), num_labels=2, id2label={0: "neg", 1: "pos"},
                                                               label2id={"neg": 0, "pos": 1})).eval()
    prepare_for_hub(model)
    model_dir, result = tmp_path / "model", tmp_path / "result"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSequenceClassification"] == "modeling_rnn_classifier.RNNClassifierForSequenceClassification"
    assert config["auto_map"]["AutoModel"] == "modeling_rnn_classifier.RNNClassifierModel"

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    process = subprocess.run([sys.executable, "-c", REMOTE_CODE_SCRIPT, str(model_dir), str(result)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    report = json.loads((tmp_path / "result.json").read_text())
    assert report["module"].startswith("transformers_modules.") and report["label"] in {"neg", "pos"}
    expected = model(**tokenizer(["the film was good"], return_tensors="pt")).logits
    torch.testing.assert_close(load_file(tmp_path / "result.safetensors")["logits"], expected)
