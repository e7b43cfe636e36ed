"""The sentence encoder: pooling, Auto-class round trip, `encode`, and loading by sentence-transformers."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, BertConfig, BertForMaskedLM

from hfgen.config import TokenizerSection
from hfgen.models import SentenceEncoderConfig, SentenceEncoderModel
from hfgen.train.methods.tokenizer import train_wordpiece_tokenizer
from tests.train.text_corpus import sentences

TEXTS = ["the cat eats the food .", "a rocket orbits the moon", "the chef bakes the bread ."]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece_tokenizer([t for t, _ in sentences(200)], TokenizerSection(vocab_size=90, min_frequency=1, model_max_length=64))


def tiny_bert_config(tokenizer, **overrides):
    return BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=64, **overrides)


def tiny_model(tokenizer, pooling="mean", seed=0):
    torch.manual_seed(seed)
    model = SentenceEncoderModel(SentenceEncoderConfig(encoder=tiny_bert_config(tokenizer), pooling=pooling, max_length=32))
    model.set_tokenizer(tokenizer)
    return model.eval()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_padding_does_not_change_an_embedding_and_embeddings_are_unit_vectors(tokenizer, pooling):
    model = tiny_model(tokenizer, pooling)
    alone = tokenizer(TEXTS[:1], return_tensors="pt")
    padded = tokenizer(TEXTS[:1] + ["a much longer text about the rocket that orbits the moon and a star"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out_alone, out_padded = model(**alone), model(**padded)
    assert out_padded.last_hidden_state.shape[:2] == padded["input_ids"].shape
    assert out_padded.embeddings.shape == (2, 32)
    torch.testing.assert_close(out_padded.embeddings[0], out_alone.embeddings[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out_padded.embeddings.norm(dim=-1), torch.ones(2))
    if pooling == "mean":
        mask = alone["attention_mask"][0].bool()
        torch.testing.assert_close(out_alone.pooled_embeddings[0], out_alone.last_hidden_state[0][mask].mean(0))


def test_save_reload_through_automodel_and_encode(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    reloaded = AutoModel.from_pretrained(tmp_path)
    assert type(reloaded) is SentenceEncoderModel and reloaded.config.pooling == "mean"
    embeddings = reloaded.encode(TEXTS, batch_size=2)  # tokenizer loaded from the folder
    assert embeddings.shape == (3, 32)
    torch.testing.assert_close(embeddings, model.encode(TEXTS), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    assert reloaded.encode(TEXTS[0]).shape == (32,)
    assert json.loads((tmp_path / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True


def test_from_encoder_takes_the_encoder_of_an_mlm_checkpoint(tokenizer, tmp_path):
    torch.manual_seed(0)
    mlm = BertForMaskedLM(tiny_bert_config(tokenizer)).eval()
    mlm.save_pretrained(tmp_path)
    model = SentenceEncoderModel.from_encoder(str(tmp_path), pooling="cls")
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = mlm.bert(**inputs).last_hidden_state[:, 0]
        torch.testing.assert_close(model.eval()(**inputs).pooled_embeddings, expected)


def test_sentence_transformers_loads_the_folder_and_gives_the_same_embeddings(tokenizer, tmp_path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    st_model = sentence_transformers.SentenceTransformer(str(tmp_path), device="cpu")
    st_embeddings = st_model.encode(TEXTS, convert_to_tensor=True)
    torch.testing.assert_close(st_embeddings.cpu(), model.encode(TEXTS), rtol=1e-4, atol=1e-5)
    assert st_model.max_seq_length == 32


REMOTE_CODE_SCRIPT = """
import sys, torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
torch.save({"module": type(model).__module__, "embeddings": model.encode(["the cat eats the food ."])}, sys.argv[2])
"""


@pytest.mark.slow  # a fresh interpreter importing torch + transformers
def test_saved_folder_loads_with_trust_remote_code_without_hfgen(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(SentenceEncoderConfig, "_auto_class", None)
    monkeypatch.setattr(SentenceEncoderModel, "_auto_class", None)
    SentenceEncoderConfig.register_for_auto_class()
    SentenceEncoderModel.register_for_auto_class("AutoModel")
    model = tiny_model(tokenizer)
    model_dir, result_file = tmp_path / "model", tmp_path / "result.pt"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    assert {"configuration_sentence_encoder.py", "modeling_sentence_encoder.py"} <= {p.name for p in model_dir.iterdir()}

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    process = subprocess.run([sys.executable, "-c", REMOTE_CODE_SCRIPT, str(model_dir), str(result_file)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    result = torch.load(result_file)
    assert result["module"].startswith("transformers_modules.")
    torch.testing.assert_close(result["embeddings"], model.encode(["the cat eats the food ."]))
