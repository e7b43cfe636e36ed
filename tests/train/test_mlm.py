"""`method: mlm`: sparse prediction equals the full head, the loss falls, the saved model is a stock
BertForMaskedLM that `pipeline("fill-mask")` uses, exact resume, streaming, and the vocabulary check."""

import json

import pytest
import torch
import yaml
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM, pipeline

from hfgen.config import RecipeError, apply_override, load_recipe
from hfgen.data.collators import mask_tokens
from hfgen.train import run
from hfgen.train.methods.mlm import masked_lm_loss
from tests.train.helpers import assert_same_weights, kill_after_checkpoint, read_metrics, restore_checkpointing
from tests.train.text_corpus import write_corpus

TINY_BERT = {"type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
             "intermediate_size": 64, "max_position_embeddings": 64}


@pytest.fixture
def mlm_recipe(tmp_path, hfgen_cache_tmp):
    """Write a tiny MLM recipe over a .txt corpus folder (train.txt + test.txt); returns a loader of it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_corpus(corpus / "train.txt", 600)
    write_corpus(corpus / "test.txt", 60, seed=1)

    def make(*overrides):
        raw = {
            "method": "mlm",
            "model": dict(TINY_BERT),
            "data": {"dataset": str(corpus), "eval_split": "test"},
            "mlm": {"max_length": 32, "new_tokenizer": {"vocab_size": 120, "min_frequency": 1}},
            "train": {"output_dir": str(tmp_path / "out"), "max_steps": 40, "batch_size": 8, "learning_rate": 3.0e-3,
                      "log_every": 5, "save_every": 20, "cpu_threads": 1, "mixed_precision": "no", "report_to": "jsonl"},
        }
        for override in overrides:
            apply_override(raw, override)
        path = tmp_path / "mlm.yaml"
        path.write_text(yaml.safe_dump(raw))
        return load_recipe(path)

    return make


def test_sparse_prediction_gives_the_full_head_loss_and_gradients():
    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    input_ids = torch.randint(5, 99, (4, 24))
    masked, labels = mask_tokens(input_ids, mask_token_id=4, vocab_size=99, special_token_ids=[0, 1, 2, 3, 4],
                                 mask_rate=0.3, generator=torch.Generator().manual_seed(0))

    losses, grads = {}, {}
    for sparse in (True, False):
        model.zero_grad()
        out = masked_lm_loss(model, masked, labels, sparse=sparse)
        out.loss.backward()
        losses[sparse] = out.loss.detach()
        grads[sparse] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    reference = model(input_ids=masked, labels=labels).loss  # transformers' own full-head loss

    torch.testing.assert_close(losses[True], reference.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)
    assert grads[True].keys() == grads[False].keys()
    for name in grads[True]:
        torch.testing.assert_close(grads[True][name], grads[False][name], rtol=1e-4, atol=1e-6, msg=name)


def test_mlm_loss_falls_and_the_saved_model_fills_masks(mlm_recipe):
    out = run(mlm_recipe())

    logged = [row["loss"] for row in read_metrics(out) if "loss" in row]
    assert logged[-1] < logged[0] - 0.3, logged
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_loss"] < results["initial_eval_loss"] - 0.3
    assert results["eval_perplexity"] < results["initial_eval_perplexity"]
    assert results["train_empty_skipped"] == 600 // 7 and results["train_documents"] == 600

    model = AutoModelForMaskedLM.from_pretrained(out)
    assert type(model) is BertForMaskedLM
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert len(tokenizer) == model.config.vocab_size
    predictions = pipeline("fill-mask", model=str(out))("the cat [MASK] the food .")
    assert len(predictions) == 5 and all("sequence" in p for p in predictions)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: fill-mask" in card and "eval_perplexity" in card


def test_killed_run_resumes_exactly(mlm_recipe, tmp_path, monkeypatch):
    # one tokenizer for both runs: WordPiece training breaks frequency ties in hash-map order
    first = run(mlm_recipe("train.max_steps=1", f"train.output_dir={tmp_path / 'tok'}"))
    shared = [f"mlm.tokenizer={first}", "train.max_steps=6", "train.save_every=3", "train.lr_scheduler=linear"]
    straight = run(mlm_recipe(*shared, f"train.output_dir={tmp_path / 'a'}"))
    recipe = mlm_recipe(*shared, f"train.output_dir={tmp_path / 'b'}")
    kill_after_checkpoint(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        run(recipe)
    restore_checkpointing(monkeypatch)
    resumed = run(recipe)  # resume: auto, from step 3 (masks, data order and schedule continue exactly)
    assert_same_weights(straight, resumed)


def test_streamed_corpus_trains_with_max_steps(mlm_recipe):
    out = run(mlm_recipe("data.streaming=true", "train.max_steps=5", "train.save_every=null"))
    assert json.loads((out / "eval_results.json").read_text())["steps"] == 5
    with pytest.raises(RecipeError, match="set train.max_steps"):
        run(mlm_recipe("data.streaming=true", "train.max_steps=null", "train.overwrite=true"))


def test_continuing_an_encoder_without_mlm_head_starts_the_head_fresh(mlm_recipe, tmp_path):
    """As with MiniLM: a BertModel checkpoint (no MLM head) plus its tokenizer; the encoder weights are kept."""
    from transformers import BertModel

    tokenizer_run = run(mlm_recipe("train.max_steps=1", f"train.output_dir={tmp_path / 'tok'}"))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_run)
    encoder_dir = tmp_path / "encoder"
    torch.manual_seed(0)
    fields = {k: v for k, v in TINY_BERT.items() if k != "type"}
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), **fields))
    encoder.save_pretrained(encoder_dir)
    tokenizer.save_pretrained(encoder_dir)

    out = run(mlm_recipe(f"model={{pretrained: '{encoder_dir}'}}", "train.max_steps=2", "train.learning_rate=1e-12", f"train.output_dir={tmp_path / 'continued'}"))
    continued = AutoModelForMaskedLM.from_pretrained(out)
    torch.testing.assert_close(continued.bert.encoder.layer[0].output.dense.weight, encoder.encoder.layer[0].output.dense.weight)
    assert "cls.predictions.transform.dense.weight" in dict(continued.named_parameters())


def test_tokenizer_that_does_not_match_the_embeddings_fails_with_both_sizes(mlm_recipe):
    with pytest.raises(RecipeError, match=r"tokenizer has 1\d\d tokens but the model's embedding table has 500 rows"):
        run(mlm_recipe("model.vocab_size=500"))


def test_two_process_run_streams_trains_its_own_tokenizer_and_evaluates_every_sequence_once(mlm_recipe, tmp_path):
    """DDP over gloo: rank 0 trains the tokenizer, each process streams its own part of the corpus; the held-out
    figures count each packed eval sequence once (gather_for_metrics drops the padding duplicates)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    recipe = mlm_recipe("data.streaming=true", "train.max_steps=4", "train.save_every=2", "train.batch_size=4", "train.num_processes=2")
    env = {**os.environ, "PYTHONPATH": str(root), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                             "--main_process_port", "29541", str(root / "scripts" / "pretrain.py"), "--recipe", str(recipe.source)],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    out = Path(recipe.train.output_dir)
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_scored_sequences"] == results["eval_sequences"] > 0
    assert results["steps"] == 4
    assert type(AutoModelForMaskedLM.from_pretrained(out)) is BertForMaskedLM


def test_a_single_text_file_pretrains_with_a_carved_held_out_split(mlm_recipe, tmp_path):
    """The README's example: MLM on one .txt file, which has no 'test' split: 10% of it is held out (seeded)."""
    corpus = tmp_path / "my_corpus.txt"
    write_corpus(corpus, 400)
    out = run(mlm_recipe(f"data.dataset={corpus}", "train.max_steps=4", "train.save_every=null"))
    results = json.loads((out / "eval_results.json").read_text())
    holdout = results["eval_holdout"]
    assert holdout["split"] == "test" and holdout["held_out_of"] == "train" and holdout["fraction"] == 0.1
    rows = holdout["examples"] + holdout["train_examples_left"]
    assert abs(holdout["examples"] - 0.1 * rows) <= 1 and results["eval_loss"] > 0
