"""`method: tokenizer` and the WordPiece training behind it: train, save, reload with AutoTokenizer."""

import json

import pytest
import yaml
from transformers import AutoTokenizer

from hfgen.config import RecipeError, TokenizerSection, load_recipe
from hfgen.train import run
from hfgen.train.methods.tokenizer import train_wordpiece_tokenizer
from tests.train.text_corpus import sentences, write_corpus


def test_trained_tokenizer_saves_and_reloads_with_autotokenizer_and_pairs_get_token_type_ids(tmp_path):
    texts = [text for text, _ in sentences(200)]
    tokenizer = train_wordpiece_tokenizer(iter(texts), TokenizerSection(vocab_size=100, min_frequency=1, model_max_length=64))
    tokenizer.save_pretrained(tmp_path)

    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(reloaded) == len(tokenizer) <= 100
    assert reloaded.model_max_length == 64
    assert [reloaded.pad_token_id, reloaded.unk_token_id, reloaded.cls_token_id, reloaded.sep_token_id, reloaded.mask_token_id] == [0, 1, 2, 3, 4]
    pair = reloaded("The cat eats the food.", "a rocket orbits the moon")
    assert pair["input_ids"][0] == reloaded.cls_token_id and pair["input_ids"][-1] == reloaded.sep_token_id
    first_sep = pair["input_ids"].index(reloaded.sep_token_id)
    assert pair["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(pair["input_ids"]) - first_sep - 1)
    assert reloaded.decode(reloaded("The cat eats the food.", add_special_tokens=False)["input_ids"]) == "the cat eats the food."


def _tokenizer_recipe(tmp_path, *overrides):
    write_corpus(tmp_path / "corpus.txt", 150)
    raw = {
        "method": "tokenizer",
        "model": {"type": "bert"},
        "data": {"dataset": str(tmp_path / "corpus.txt"), "eval_split": None},
        "tokenizer": {"vocab_size": 90, "min_frequency": 1},
        "train": {"output_dir": str(tmp_path / "tok")},
    }
    path = tmp_path / "tokenizer.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path, list(overrides))


def test_tokenizer_method_writes_a_tokenizer_folder_and_counts_empty_lines(tmp_path, hfgen_cache_tmp):
    out = run(_tokenizer_recipe(tmp_path))
    stats = json.loads((out / "tokenizer_stats.json").read_text())
    assert stats["documents"] == 150 and stats["empty_skipped"] == 150 // 7
    assert len(AutoTokenizer.from_pretrained(out)) == stats["vocab_size"] <= 90

    with pytest.raises(RecipeError, match="already holds a tokenizer"):
        run(_tokenizer_recipe(tmp_path))
    # retraining an existing tokenizer's pipeline (model.pretrained)
    retrained = run(_tokenizer_recipe(tmp_path, f"model.pretrained={out}", "model.type=null", f"train.output_dir={tmp_path / 'tok2'}",
                                      "tokenizer.vocab_size=70"))
    assert len(AutoTokenizer.from_pretrained(retrained)) <= 70
