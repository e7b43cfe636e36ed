"""Fixtures for the classifier tests (imported by them; not a pytest module): a tiny pretrained BERT
(vocab 99, hidden 32, 2 layers) with a WordPiece tokenizer, and tiny learnable datasets for every
task, written once per session as csv/jsonl files."""

import csv
import json
import random

import pytest

POSITIVE = ["good", "great", "fun", "superb", "lovely"]
NEGATIVE = ["bad", "awful", "dull", "boring", "poor"]
FILLER = ["film", "movie", "plot", "actor", "scene", "story", "the", "a", "was", "is", "and", "very", "quite"]
PEOPLE = ["alice", "bob", "carol"]
PLACES = ["paris", "rome", "oslo"]
GENRES = {"action": ["chase", "fight"], "comedy": ["joke", "laugh"], "drama": ["tears", "loss"]}
WORDS = POSITIVE + NEGATIVE + FILLER + PEOPLE + PLACES + [w for ws in GENRES.values() for w in ws] + ["in", "met", "went", "to"]
TINY_BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, max_position_embeddings=64)


def tiny_tokenizer():
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s"]
    return BertTokenizer(vocab={token: i for i, token in enumerate(vocab)})


def save_tiny_bert(path, head_labels: list[str] | None = None):
    """A tiny pretrained BERT folder (encoder only, as MiniLM; or with a sequence-classification head
    for ``head_labels``) with its tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    torch.manual_seed(0)
    config = BertConfig(**TINY_BERT)
    if head_labels:
        config.num_labels = len(head_labels)
        config.id2label = dict(enumerate(head_labels))
        config.label2id = {n: i for i, n in enumerate(head_labels)}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def _sentence(rng, sentiment=None, extra=()):
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 10))]
    if sentiment is not None:
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if sentiment == "pos" else NEGATIVE))
    for word in extra:
        words.insert(rng.randrange(len(words) + 1), word)
    return words


def _rows(task, count, rng):
    rows = []
    for i in range(count):
        sentiment = "pos" if i % 2 else "neg"
        if task == "single_label":
            rows.append({"text": " ".join(_sentence(rng, sentiment)), "label": sentiment})
        elif task == "pair":  # the label is the sentiment of the second text (a tiny BERT cannot learn more in a few steps)
            rows.append({"text": " ".join(_sentence(rng)), "text_pair": " ".join(_sentence(rng, sentiment)),
                         "label": "agrees" if sentiment == "pos" else "objects"})
        elif task == "multi_label":
            genres = [g for j, g in enumerate(GENRES) if (i >> j) & 1] or ["drama"]
            words = [rng.choice(GENRES[g]) for g in genres]
            rows.append({"text": " ".join(_sentence(rng, None, words)), "labels": genres})
        elif task == "regression":
            good, bad = rng.randint(0, 2), rng.randint(0, 2)
            words = _sentence(rng, None, [rng.choice(POSITIVE) for _ in range(good)] + [rng.choice(NEGATIVE) for _ in range(bad)])
            rows.append({"text": " ".join(words), "score": float(good - bad)})
        elif task == "token":
            words, tags = [], []
            for _ in range(rng.randint(3, 8)):
                kind = rng.random()
                if kind < 0.25:
                    words.append(rng.choice(PEOPLE)), tags.append("B-PER")
                elif kind < 0.45:
                    words.append(rng.choice(PLACES)), tags.append("B-LOC")
                else:
                    words.append(rng.choice(FILLER + ["met", "went", "to", "in"])), tags.append("O")
            rows.append({"tokens": words, "tags": tags})
    return rows


def write_task_data(folder, task, train=96, test=24, seed=0):
    """train/test files of ``task`` in ``folder`` (csv for single_label/regression, jsonl otherwise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, count in (("train", train), ("test", test)):
        rows = _rows(task, count, rng)
        if task in ("single_label", "regression"):
            with open(folder / f"{split}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


TASK_COLUMNS = {  # task -> (classifier.task, recipe data overrides)
    "single_label": ("single_label", {"label_column": "label"}),
    "pair": ("single_label", {"label_column": "label", "text_pair_column": "text_pair"}),
    "multi_label": ("multi_label", {"label_column": "labels"}),
    "regression": ("regression", {"label_column": "score"}),
    "token": ("token", {"label_column": "tags", "text_column": "tokens"}),
}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """Folder of a tiny pretrained BERT encoder + tokenizer."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def task_data(tmp_path_factory):
    """task name -> folder holding its train/test files (written once per session)."""
    root = tmp_path_factory.mktemp("classifier-data")
    return {task: write_task_data(root / task, task) for task in TASK_COLUMNS}


@pytest.fixture
def classifier_recipe(tmp_path, tiny_bert, task_data, hfgen_cache_tmp):
    """Write a tiny classifier recipe for one of TASK_COLUMNS (overrides as `section.key=value`); returns its path."""
    import yaml

    from hfgen.config import apply_override

    def write(task="single_label", *overrides, name=None, dataset=None):
        kind, columns = TASK_COLUMNS[task]
        raw = {
            "method": "classifier",
            "model": {"pretrained": str(tiny_bert)},
            "data": {"dataset": str(dataset or task_data[task]), **columns},
            "train": {
                "output_dir": str(tmp_path / "out"), "num_epochs": 10, "batch_size": 8, "learning_rate": 3.0e-3,
                "lr_scheduler": "linear", "warmup_steps": 5, "save_every": None, "log_every": 5, "cpu_threads": 1, "mixed_precision": "no",
                "report_to": "jsonl",
            },
            "classifier": {"task": kind, "max_length": 32},
        }
        for override in overrides:
            apply_override(raw, override)
        path = tmp_path / (name or f"{task}.yaml")
        path.write_text(yaml.safe_dump(raw))
        return path

    return write
