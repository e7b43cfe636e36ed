"""The sentence encoder: pooling, Auto-class round trip, `encode`, and loading by sentence-transformers."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, BertConfig, BertForMaskedLM, BertModel

from hfgen.config import TokenizerSection
from hfgen.models import SentenceEncoderConfig, SentenceEncoderModel
from hfgen.models.sentence_encoder.modeling_sentence_encoder import write_sentence_transformers_files
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


def test_the_saved_folder_is_a_stock_encoder_that_reads_back_whole(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"] and "auto_map" not in config
    assert not list(tmp_path.glob("*.py")) and "_name_or_path" not in (tmp_path / "config.json").read_text()
    encoder = AutoModel.from_pretrained(tmp_path)  # the stock class, every weight (pooler included) from the folder
    assert type(encoder) is BertModel
    for name, tensor in model.encoder.state_dict().items():
        torch.testing.assert_close(encoder.state_dict()[name], tensor)

    reloaded = SentenceEncoderModel.from_pretrained(tmp_path)
    assert (reloaded.config.pooling, reloaded.config.normalize, reloaded.config.max_length) == ("mean", True, 32)
    embeddings = reloaded.encode(TEXTS, batch_size=2)  # tokenizer loaded from the folder
    assert embeddings.shape == (3, 32)
    torch.testing.assert_close(embeddings, model.encode(TEXTS), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    assert reloaded.encode(TEXTS[0]).shape == (32,)
    assert json.loads((tmp_path / "1_Pooling" / "config.json").read_text())["pooling_mode_mean_tokens"] is True


def test_the_pooler_stays_out_of_training(tokenizer):
    model = tiny_model(tokenizer).train()
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    model(**inputs).embeddings.sum().backward()
    assert all(not p.requires_grad for p in model.encoder.pooler.parameters())
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_a_folder_of_an_earlier_hfgen_still_loads(tokenizer, tmp_path):
    """hfgen < 0.2 saved `model_type: hfgen-sentence-encoder` (the wrapper's own config, no pooler weights)."""
    model = tiny_model(tokenizer)
    model.encoder.pooler = None
    super(SentenceEncoderModel, model).save_pretrained(tmp_path)  # PreTrainedModel.save_pretrained: the old layout
    write_sentence_transformers_files(tmp_path, model.config)
    tokenizer.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "hfgen-sentence-encoder"

    for loaded in (SentenceEncoderModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert type(loaded) is SentenceEncoderModel and loaded.config.pooling == "mean"
        torch.testing.assert_close(loaded.encode(TEXTS), model.encode(TEXTS), rtol=1e-5, atol=1e-6)
    resaved = tmp_path / "resaved"  # saving it again writes today's format
    SentenceEncoderModel.from_pretrained(tmp_path).save_pretrained(resaved)
    assert json.loads((resaved / "config.json").read_text())["model_type"] == "bert"


def test_folders_this_class_cannot_be_are_refused_with_what_to_do(tokenizer, tmp_path):
    model = tiny_model(tokenizer)
    model.encoder.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="no modules.json.*from_encoder"):
        SentenceEncoderModel.from_pretrained(tmp_path / "plain")

    model.save_pretrained(tmp_path / "max")
    pooling_file = tmp_path / "max" / "1_Pooling" / "config.json"
    pooling = json.loads(pooling_file.read_text())
    pooling_file.write_text(json.dumps({**pooling, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match="pooling 'max'.*SentenceTransformer"):
        SentenceEncoderModel.from_pretrained(tmp_path / "max")

    model.save_pretrained(tmp_path / "dense")
    modules = json.loads((tmp_path / "dense" / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (tmp_path / "dense" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="Dense"):
        SentenceEncoderModel.from_pretrained(tmp_path / "dense")


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


NO_HFGEN_SCRIPT = """
import sys, torch
sys.modules["hfgen"] = None  # as where hfgen is not installed
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")  # no trust_remote_code
torch.save({"module": type(model[0].auto_model).__module__, "embeddings": model.encode(["the cat eats the food ."], convert_to_tensor=True)}, sys.argv[2])
"""


@pytest.mark.slow  # a fresh interpreter importing torch + sentence-transformers
def test_sentence_transformers_loads_the_folder_without_hfgen_or_custom_code(tokenizer, tmp_path):
    pytest.importorskip("sentence_transformers")
    model = tiny_model(tokenizer)
    model_dir, result_file = tmp_path / "model", tmp_path / "result.pt"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    process = subprocess.run([sys.executable, "-c", NO_HFGEN_SCRIPT, str(model_dir), str(result_file)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    result = torch.load(result_file)
    assert result["module"].startswith("transformers.models.bert")
    torch.testing.assert_close(result["embeddings"], model.encode(["the cat eats the food ."]), rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "modules").exists()  # no remote code was fetched


def test_a_folder_sentence_transformers_saved_reads_back(tokenizer, tmp_path):
    """sentence-transformers >= 6 writes other module names and `pooling_mode`: hfgen reads those too."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    model = tiny_model(tokenizer, pooling="cls")
    model.save_pretrained(tmp_path / "hfgen")
    tokenizer.save_pretrained(tmp_path / "hfgen")
    sentence_transformers.SentenceTransformer(str(tmp_path / "hfgen"), device="cpu").save(str(tmp_path / "st"))

    reloaded = SentenceEncoderModel.from_pretrained(tmp_path / "st")
    assert (reloaded.config.pooling, reloaded.config.normalize) == ("cls", True)
    torch.testing.assert_close(reloaded.encode(TEXTS), model.encode(TEXTS), rtol=1e-5, atol=1e-6)
