"""Predictions of a fine-tuned classifier over a file of texts, without writing code
(``scripts/predict.py``): batched, longest texts first (little padding), with a progress bar.

The model folder (or Hub repo) is any transformers sequence- or token-classification model with its
tokenizer, e.g. the output of `method: classifier`. What is written depends on the head
(``config.problem_type``):

- single-label: ``label`` (the class name) and ``score`` (its probability);
- multi-label: ``labels`` (the names above the threshold, joined by ``|``) and ``score_<name>`` per label;
- regression: ``prediction``;
- token classification: ``tags`` (one tag per word of a list-of-words column, or per whitespace word).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

READERS = {
    ".csv": lambda path: pd.read_csv(path, keep_default_na=False),  # an empty cell stays "", not NaN
    ".tsv": lambda path: pd.read_csv(path, sep="\t", keep_default_na=False),
    ".json": lambda path: pd.read_json(path),
    ".jsonl": lambda path: pd.read_json(path, lines=True),
    ".parquet": pd.read_parquet,
}
WRITERS = {
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".tsv": lambda frame, path: frame.to_csv(path, sep="\t", index=False),
    ".jsonl": lambda frame, path: frame.to_json(path, orient="records", lines=True, force_ascii=False),
    ".json": lambda frame, path: frame.to_json(path, orient="records", force_ascii=False),
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
}


def read_table(path: str | Path) -> pd.DataFrame:
    """A csv/tsv/json/jsonl/parquet file as a DataFrame; a ValueError names what is supported."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"cannot read {path}: unsupported file type; use one of {', '.join(READERS)}")
    if not path.is_file():
        raise ValueError(f"input file {path} does not exist")
    return reader(path)


def load_classifier(model: str, revision: str | None = None, device: str | None = None):
    """(model in eval mode on ``device``, tokenizer) of a saved classifier folder or Hub repo; the
    tokenizer is None for an image classifier (hfgen's ``ImageEncoderForImageClassification``)."""
    from transformers import (
        AutoConfig,
        AutoModelForImageClassification,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )

    from .pretrained import resolve_pretrained

    path = resolve_pretrained(model)
    config = AutoConfig.from_pretrained(path, revision=revision)
    architectures = config.architectures or []
    is_image = any(a.endswith("ForImageClassification") for a in architectures)
    is_token = any(a.endswith("ForTokenClassification") for a in architectures)
    auto_class = AutoModelForImageClassification if is_image else AutoModelForTokenClassification if is_token else AutoModelForSequenceClassification
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = auto_class.from_pretrained(path, revision=revision).to(device).eval()
    return loaded, None if is_image else AutoTokenizer.from_pretrained(path, revision=revision)


def classifier_task(model) -> str:
    """The task of a loaded classifier, as `method: classifier` names it: ``token``, ``regression``,
    ``multi_label`` or ``single_label`` (from its class and ``config.problem_type``)."""
    config = model.config
    if type(model).__name__.endswith("ForTokenClassification"):
        return "token"
    if config.problem_type == "regression" or config.num_labels == 1:
        return "regression"
    if config.problem_type == "multi_label_classification":
        return "multi_label"
    return "single_label"


def token_limit(tokenizer, config) -> int | None:
    """The most tokens a model reads: the least of its position embeddings and its tokenizer's ``model_max_length``
    (a tokenizer that sets none says ~1e30, which does not count); None when neither says."""
    limits = [getattr(config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(v) for v in limits if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 10**6]
    return min(limits) if limits else None


def default_max_length(tokenizer, config, max_length: int | None = None) -> int:
    """``max_length``, else the model's `token_limit`, at most 512."""
    if max_length:
        return max_length
    limit = token_limit(tokenizer, config)
    return 512 if limit is None else min(512, limit)


@torch.no_grad()
def predict_texts(
    model,
    tokenizer,
    texts: list,
    pairs: list | None = None,
    *,
    batch_size: int = 64,
    max_length: int | None = None,
    threshold: float = 0.5,
    progress: bool = True,
) -> pd.DataFrame:
    """Predictions for ``texts`` (and ``pairs``), in input order, as prediction columns (see the module docstring)."""
    config = model.config
    task = classifier_task(model)
    is_token = task == "token"
    max_length = default_max_length(tokenizer, config, max_length)
    if is_token:  # words: a list per row, or a string split on whitespace
        texts = [t if isinstance(t, list) else str(t).split() for t in texts]
        lengths = [len(t) for t in texts]
    else:
        texts = ["" if t is None else str(t) for t in texts]
        lengths = [len(t) + (len(str(p)) if pairs is not None else 0) for t, p in zip(texts, pairs or texts)]
    order = np.argsort(-np.asarray(lengths), kind="stable")  # longest first: batches of similar length
    outputs: dict[int, dict] = {}
    device = next(model.parameters()).device
    names = [config.id2label[i] for i in range(config.num_labels)]
    for start in tqdm(range(0, len(order), batch_size), desc="predicting", disable=not progress):
        rows = order[start : start + batch_size].tolist()
        batch_texts = [texts[i] for i in rows]
        batch_pairs = [str(pairs[i]) for i in rows] if pairs is not None else None
        encoded = tokenizer(
            batch_texts, batch_pairs, truncation=True, max_length=max_length, padding=True,
            is_split_into_words=is_token, return_tensors="pt",
        )  # fmt: skip
        logits = model(**{k: v.to(device) for k, v in encoded.items()}).logits.float().cpu()
        for j, row in enumerate(rows):
            if is_token:
                word_ids, previous, tags = encoded.word_ids(j), None, []
                predicted = logits[j].argmax(-1).tolist()
                for position, word in enumerate(word_ids):
                    if word is not None and word != previous:
                        tags.append(names[predicted[position]])
                    previous = word
                outputs[row] = {"tags": " ".join(tags)}
            elif task == "regression":
                outputs[row] = {"prediction": float(logits[j, 0])}
            elif task == "multi_label":
                probabilities = torch.sigmoid(logits[j]).tolist()
                outputs[row] = {
                    "labels": "|".join(n for n, p in zip(names, probabilities) if p > threshold),
                    **{f"score_{n}": p for n, p in zip(names, probabilities)},
                }
            else:
                probabilities = torch.softmax(logits[j], -1)
                best = int(probabilities.argmax())
                outputs[row] = {"label": names[best], "score": float(probabilities[best])}
    return pd.DataFrame([outputs[i] for i in range(len(texts))])


def predict_file(
    model: str,
    input_path: str | Path,
    out_path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
    threshold: float = 0.5,
    revision: str | None = None,
    device: str | None = None,
) -> Path:
    """Read ``input_path``, predict every row, write the input columns plus the predictions to
    ``out_path`` (csv/tsv/json/jsonl/parquet by suffix); returns ``out_path``.

    Raises:
        ValueError: unsupported file types, or a missing column (naming the columns present).
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() not in WRITERS:
        raise ValueError(f"cannot write {out_path}: use one of {', '.join(WRITERS)}")
    frame = read_table(input_path)
    for flag, column in (("--text-column", text_column), ("--text-pair-column", text_pair_column)):
        if column is not None and column not in frame.columns:
            raise ValueError(f"{flag} {column!r} not found in {input_path}; columns present: {list(frame.columns)}")
    loaded, tokenizer = load_classifier(model, revision=revision, device=device)
    texts = frame[text_column].tolist()
    pairs = frame[text_pair_column].tolist() if text_pair_column else None
    predictions = predict_texts(loaded, tokenizer, texts, pairs, batch_size=batch_size, max_length=max_length, threshold=threshold)
    result = pd.concat([frame.reset_index(drop=True), predictions], axis=1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[out_path.suffix.lower()](result, out_path)
    return out_path
