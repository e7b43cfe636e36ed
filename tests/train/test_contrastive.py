"""`method: contrastive`: SimCSE and supervised pairs train (loss falls), retrieval is measured before and after,
the saved encoder loads through AutoModel and sentence-transformers, bad pairs files fail with the columns present,
and 2 processes train exactly like 1 process with the concatenated batch."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModel

from hfgen.config import RecipeError, TokenizerSection, apply_override, load_recipe
from hfgen.data import DatasetError
from hfgen.models import SentenceEncoderModel
from hfgen.train import run
from hfgen.train.methods.tokenizer import train_wordpiece_tokenizer
from tests.train.helpers import assert_same_weights, kill_after_checkpoint, read_metrics, restore_checkpointing
from tests.train.text_corpus import TOPICS, sentences

ROOT = Path(__file__).resolve().parents[2]
TINY_BERT = {"type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """sentences.txt, pairs.csv (anchor, positive, negative: same topic / other topic), labelled.csv and a tokenizer."""
    folder = tmp_path_factory.mktemp("contrastive-data")
    rows = sentences(240)
    (folder / "sentences.txt").write_text("\n".join(text for text, _ in rows) + "\n\n")
    by_topic = {t: [text for text, topic in rows if topic == t] for t in range(len(TOPICS))}
    with open(folder / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["anchor", "positive", "negative"])
        for i, (text, topic) in enumerate(rows):
            writer.writerow([text, by_topic[topic][(i * 7 + 1) % len(by_topic[topic])], by_topic[(topic + 1) % 3][i % 80]])
    with open(folder / "labelled.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for text, topic in sentences(90, seed=5):
            writer.writerow([text, topic])
    tokenizer = train_wordpiece_tokenizer([text for text, _ in rows], TokenizerSection(vocab_size=120, min_frequency=1, model_max_length=64))
    tokenizer.save_pretrained(folder / "tokenizer")
    return folder


@pytest.fixture
def contrastive_recipe(tmp_path, text_files, hfgen_cache_tmp):
    def make(*overrides, name="contrastive.yaml"):
        raw = {
            "method": "contrastive",
            "model": dict(TINY_BERT),
            "data": {"dataset": str(text_files / "sentences.txt"), "eval_split": None},
            "contrastive": {"tokenizer": str(text_files / "tokenizer"), "max_length": 16, "retrieval_dataset": str(text_files / "labelled.csv"),
                            "retrieval_split": "train", "retrieval_k": [1, 5]},
            "train": {"output_dir": str(tmp_path / "out"), "max_steps": 30, "batch_size": 16, "learning_rate": 1.0e-3,
                      "log_every": 5, "save_every": None, "cpu_threads": 1, "mixed_precision": "no", "report_to": "jsonl"},
        }
        for override in overrides:
            apply_override(raw, override)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(raw))
        return path

    return make


def test_simcse_loss_falls_and_the_encoder_reloads_through_automodel_and_sentence_transformers(contrastive_recipe):
    out = run(load_recipe(contrastive_recipe("contrastive.mlp_head=true")))

    losses = [row["loss"] for row in read_metrics(out) if "loss" in row]
    assert losses[-1] < losses[0] - 0.2, losses
    results = json.loads((out / "eval_results.json").read_text())
    assert {"initial_retrieval_recall@1", "retrieval_recall@1", "retrieval_recall@5", "retrieval_precision@10"} <= set(results)
    assert results["train_empty_skipped"] == 1 and results["train_documents"] == 240

    assert type(AutoModel.from_pretrained(out)).__name__ == "BertModel"  # the stock encoder: no custom code in the folder
    model = SentenceEncoderModel.from_pretrained(out)
    assert all(k.startswith("encoder.") for k in model.state_dict())  # no training head
    embeddings = model.encode(["the cat eats the food .", "a rocket orbits the moon"])
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(2))
    sentence_transformers = pytest.importorskip("sentence_transformers")
    st_embeddings = sentence_transformers.SentenceTransformer(str(out), device="cpu").encode(
        ["the cat eats the food .", "a rocket orbits the moon"], convert_to_tensor=True)
    torch.testing.assert_close(st_embeddings.cpu(), embeddings, rtol=1e-4, atol=1e-5)
    assert "pipeline_tag: sentence-similarity" in (out / "README.md").read_text()


def test_length_sorted_forwards_give_the_embeddings_of_one_padded_forward(text_files):
    """CPU training encodes a batch in length-sorted slices, each trimmed to its longest text: same rows, same order."""
    from transformers import AutoTokenizer

    from hfgen.data.text import tokenize_batch
    from hfgen.models import SentenceEncoderConfig
    from hfgen.train.methods.contrastive import ContrastiveObjective

    torch.manual_seed(0)
    fields = {k: v for k, v in TINY_BERT.items() if k != "type"}
    model = SentenceEncoderModel(SentenceEncoderConfig(encoder={"model_type": "bert", "vocab_size": 120, **fields})).eval()
    words = [text for text, _ in sentences(70, seed=3)]
    texts = [" ".join(words[i : i + 1 + i % 5]) for i in range(70)]  # 1 to 5 sentences: widths differ
    batch = tokenize_batch(AutoTokenizer.from_pretrained(text_files / "tokenizer"), texts, 64)
    assert batch["attention_mask"].sum(dim=1).unique().numel() > 10
    one = ContrastiveObjective(model)(groups=2, **batch)
    sliced = ContrastiveObjective(model, texts_per_forward=16)(groups=2, **batch)  # 4 forwards of 17-18 texts
    for whole, parts in zip(one, sliced):
        torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-5)


def test_continuing_from_a_saved_sentence_encoder_trains_with_dropout(contrastive_recipe, tmp_path, monkeypatch):
    """from_pretrained returns eval mode; SimCSE's only augmentation is dropout, so training must switch it back on."""
    from hfgen.models import SentenceEncoderConfig
    from hfgen.train.methods import contrastive

    fields = {k: v for k, v in TINY_BERT.items() if k != "type"}
    SentenceEncoderModel(SentenceEncoderConfig(encoder={"model_type": "bert", "vocab_size": 120, **fields})).save_pretrained(tmp_path / "saved")
    modes = []
    forward = contrastive.ContrastiveObjective.forward

    def recording_forward(self, *args, **kwargs):
        modes.append(all(module.training for module in self.modules()))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(contrastive.ContrastiveObjective, "forward", recording_forward)
    run(load_recipe(contrastive_recipe("model.type=null", f"model.pretrained={tmp_path / 'saved'}", "contrastive.retrieval_dataset=null",
                                       "train.max_steps=2")))
    assert modes == [True, True]


def test_supervised_pairs_with_hard_negatives_train(contrastive_recipe, text_files):
    out = run(load_recipe(contrastive_recipe(
        "contrastive.objective=pairs", f"data.dataset={text_files / 'pairs.csv'}", "data.text_column=anchor",
        "data.text_pair_column=positive", "contrastive.negative_column=negative", "contrastive.retrieval_dataset=null")))
    losses = [row["loss"] for row in read_metrics(out) if "loss" in row]
    assert losses[-1] < losses[0] - 0.3, losses


def test_streamed_simcse_trains_reading_the_file_as_it_goes(contrastive_recipe):
    """data.streaming: the texts are read through a shuffle buffer, epoch after epoch, instead of loaded first."""
    out = run(load_recipe(contrastive_recipe("data.streaming=true")))
    losses = [row["loss"] for row in read_metrics(out) if "loss" in row]
    assert losses[-1] < losses[0] - 0.2, losses
    results = json.loads((out / "eval_results.json").read_text())
    # 30 steps x 16 = two whole passes over the 240 lines (15 full batches each): the counts are of what was read
    assert results["train_documents"] == 480 and results["train_empty_skipped"] == 2 and results["steps"] == 30
    with pytest.raises(RecipeError, match="train.max_steps: a streamed dataset has no known length"):
        run(load_recipe(contrastive_recipe("data.streaming=true", "train.max_steps=null", "train.num_epochs=1", "train.overwrite=true", name="epochs.yaml")))


def test_pairs_file_missing_a_column_names_the_columns_present(contrastive_recipe, text_files):
    recipe = load_recipe(contrastive_recipe("contrastive.objective=pairs", f"data.dataset={text_files / 'pairs.csv'}",
                                            "data.text_column=anchor", "data.text_pair_column=positives"))
    with pytest.raises(DatasetError, match=r"data.text_pair_column='positives' not found.*columns present: \['anchor', 'positive', 'negative'\]"):
        run(recipe)


def _launch(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_two_processes_train_like_one_process_with_the_concatenated_batch(contrastive_recipe, text_files, tmp_path):
    """Pairs without dropout are deterministic: 2 ranks x 8 pairs, negatives gathered, must give the weights of
    1 process x 16 pairs (the same 16, in the same order: the sampler's permutation is split between the ranks)."""
    common = ["contrastive.objective=pairs", f"data.dataset={text_files / 'pairs.csv'}", "data.text_column=anchor",
              "data.text_pair_column=positive", "contrastive.negative_column=negative", "contrastive.retrieval_dataset=null",
              "model.hidden_dropout_prob=0.0", "model.attention_probs_dropout_prob=0.0", "train.max_steps=4",
              # at 1e-2 four Adam steps amplified the rounding difference of the two summation orders to 3x the
              # tolerance on some tokenizers (the fixture's WordPiece training is not deterministic); at 1e-3 the
              # gathered run stays within 0.1x of it while the run without the gather is 260x outside
              "train.learning_rate=1.0e-3",
              # Adam's epsilon above float-rounding noise: a weight whose gradient is only noise (~1e-9) then barely
              # moves, instead of taking a full lr-sized step whose sign depends on the summation order
              "train.adam_epsilon=1.0e-6"]
    one = run(load_recipe(contrastive_recipe(*common, "train.batch_size=16", f"train.output_dir={tmp_path / 'one'}", name="one.yaml")))
    two_recipe = contrastive_recipe(*common, "train.batch_size=8", "train.num_processes=2", f"train.output_dir={tmp_path / 'two'}", name="two.yaml")
    result = _launch(["--multi_gpu", "--num_processes", "2", "--main_process_port", "29531",
                      str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(two_recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]

    a, b = load_file(one / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    # Attention key biases have a zero gradient in exact arithmetic (softmax ignores a per-row constant): only
    # float-rounding noise, which differs between any two summation orders.
    compared = [key for key in a if not key.endswith("attention.self.key.bias")]
    for key in compared:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=2e-5, msg=key)
    # and with the gather switched off the two runs part ways (the test can fail)
    local = contrastive_recipe(*common, "train.batch_size=8", "train.num_processes=2", "contrastive.gather_across_processes=false",
                               f"train.output_dir={tmp_path / 'local'}", name="local.yaml")
    result = _launch(["--multi_gpu", "--num_processes", "2", "--main_process_port", "29532",
                      str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(local)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    c = load_file(tmp_path / "local" / "model.safetensors")
    assert any(not torch.allclose(c[key], a[key], rtol=1e-4, atol=2e-5) for key in compared)


def test_two_processes_stream_each_its_own_half_of_the_pairs(contrastive_recipe, text_files, tmp_path):
    """Streamed under 2 processes, each reads its own part of the 240-row file (every other row, 120): an epoch is 15
    batches of 8, so step 20 is the 5th batch of the second epoch (reading the whole file, it would be the first)."""
    recipe = contrastive_recipe("data.streaming=true", "contrastive.objective=pairs", f"data.dataset={text_files / 'pairs.csv'}",
                                "data.text_column=anchor", "data.text_pair_column=positive", "contrastive.retrieval_dataset=null",
                                "train.max_steps=20", "train.batch_size=8", "train.num_processes=2", name="streamed.yaml")
    result = _launch(["--multi_gpu", "--num_processes", "2", "--main_process_port", "29533",
                      str(ROOT / "scripts" / "pretrain.py"), "--recipe", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    state = json.loads((tmp_path / "out" / "checkpoints" / "checkpoint-00000020" / "train_state.json").read_text())
    assert (state["epoch"], state["batches_in_epoch"]) == (1, 5)
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["train_rows"] >= 2 * 20 * 8 and results["steps"] == 20  # the rows both processes read, summed
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_killed_run_resumes_exactly(contrastive_recipe, tmp_path, monkeypatch):
    """SimCSE's two dropout masks per text come from the global RNG, checkpointed per process."""
    common = ("train.max_steps=8", "train.save_every=3", "contrastive.retrieval_dataset=null")
    reference = run(load_recipe(contrastive_recipe(*common, f"train.output_dir={tmp_path / 'ref'}", name="ref.yaml")))
    recipe = contrastive_recipe(*common)
    kill_after_checkpoint(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    restore_checkpointing(monkeypatch)
    assert_same_weights(run(load_recipe(recipe)), reference)
