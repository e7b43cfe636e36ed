"""Text for classifiers: dropping empty texts, tokenising once, length-grouped batches, dynamic padding.

The pipeline of `method: classifier` on text:

    rows -> drop_empty_texts -> encode_labels (hfgen.data.labels) -> tokenize_for_classification
         -> TokenizedTexts -> DataLoader(BatchSampler(LengthGroupedSampler)) -> PaddingCollator

Tokenisation runs once per split with ``datasets.map(batched=True)`` (the Rust tokenizer on 1,000
texts per call), kept in memory; batches are padded only to their own longest example, and
length grouping puts examples of similar length together so there is little padding left.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .errors import DatasetError
from .labels import column_values

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of sub-word positions that are not scored (torch's cross_entropy default)
TOKENIZE_BATCH = 1000  # texts per call of the batched (Rust) tokenizer


def drop_empty_texts(
    split: datasets.Dataset, columns: Sequence[str], *, split_name: str, ref: str, drop: bool = True
) -> tuple[datasets.Dataset, int]:
    """Remove rows where any of ``columns`` is null, blank, or an empty list of words.

    Returns the kept rows and how many were dropped (logged). With ``drop=False`` such rows stop
    the run instead, naming the split, the column and the first row numbers.
    """
    bad: set[int] = set()
    for column in columns:
        for row, value in enumerate(column_values(split, column)):
            if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
                bad.add(row)
    if not bad:
        return split, 0
    if not drop:
        raise DatasetError(
            f"split {split_name!r} of {ref} has {len(bad)} row(s) with an empty or null text in {list(columns)} "
            f"(rows {sorted(bad)[:10]}); remove them or set classifier.drop_empty_texts: true."
        )
    logger.warning("Dropped %d row(s) of split %r with an empty or null text in %s.", len(bad), split_name, list(columns))
    return split.select([i for i in range(len(split)) if i not in bad]), len(bad)


def token_lengths(split: datasets.Dataset, tokenizer, *, text_column: str, text_pair_column: str | None = None,
                  task: str = "single_label", batch_size: int = 1000) -> list[int]:
    """Tokens per example (special tokens included, nothing cut), for `choose_max_length`."""
    lengths: list[int] = []
    for start in range(0, len(split), batch_size):
        batch = split[start : start + batch_size]
        pairs = batch[text_pair_column] if text_pair_column else None
        encoded = tokenizer(batch[text_column], pairs, truncation=False, is_split_into_words=task == "token",
                            return_attention_mask=False, return_token_type_ids=False, verbose=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return lengths


def choose_max_length(lengths: Sequence[int], quantile: float, cap: int) -> tuple[int, float]:
    """The smallest length that covers `quantile` of `lengths`, at most `cap`, rounded up to a multiple of 8 (kernel
    friendly) within the cap; and the share of examples that length still cuts."""
    import math

    if not lengths:
        return min(cap, 128), 0.0
    ordered = sorted(lengths)
    covering = ordered[min(len(ordered) - 1, max(0, math.ceil(quantile * len(ordered)) - 1))]
    length = min(cap, max(8, -(-covering // 8) * 8))
    cut = sum(1 for n in ordered if n > length) / len(ordered)
    return length, cut


def tokenize_for_classification(
    split: datasets.Dataset,
    tokenizer,
    *,
    text_column: str,
    text_pair_column: str | None = None,
    max_length: int = 128,
    task: str = "single_label",
    label_all_tokens: bool = False,
    label_names: Sequence[str] | None = None,
) -> tuple[datasets.Dataset, int]:
    """Tokenise a split once into columns ``input_ids`` (+ ``token_type_ids`` for pairs), ``labels``
    and ``length``, in memory, truncating to ``max_length``.

    For ``task="token"`` the text column holds words (a list of strings per example) and ``labels``
    one tag id per word; the result has one label per sub-word: the word's tag on its first
    sub-word and `IGNORE_INDEX` on the rest (or the tag on every sub-word with
    ``label_all_tokens``, B- tags becoming I- after the first).

    Returns the tokenised split and the number of examples that reached ``max_length`` (cut, or
    exactly that long).
    """
    is_token_task = task == "token"
    if is_token_task and not getattr(tokenizer, "is_fast", False):
        raise DatasetError("classifier.task token needs a fast (Rust) tokenizer to map sub-words back to words.")
    b_to_i = _b_to_i_ids(label_names) if (is_token_task and label_all_tokens) else {}

    def tokenize(batch: dict) -> dict:
        pairs = batch[text_pair_column] if text_pair_column else None
        encoded = tokenizer(
            batch[text_column],
            pairs,
            truncation=True,
            max_length=max_length,
            is_split_into_words=is_token_task,
            return_attention_mask=False,
            return_token_type_ids=text_pair_column is not None,
        )
        out = {"input_ids": encoded["input_ids"], "length": [len(ids) for ids in encoded["input_ids"]]}
        if text_pair_column is not None:
            out["token_type_ids"] = encoded["token_type_ids"]
        if is_token_task:
            out["labels"] = [
                _align_word_labels(encoded.word_ids(i), word_labels, label_all_tokens, b_to_i)
                for i, word_labels in enumerate(batch["labels"])
            ]
        return out

    tokenized = split.map(
        tokenize,
        batched=True,
        batch_size=TOKENIZE_BATCH,
        keep_in_memory=True,
        remove_columns=[c for c in split.column_names if c != "labels" or is_token_task],
        desc="tokenizing",
    )
    at_cap = int(np.sum(np.asarray(column_values(tokenized, "length")) >= max_length))
    return tokenized, at_cap


def _b_to_i_ids(label_names: Sequence[str] | None) -> dict[int, int]:
    """id of B-X -> id of I-X, for the tags that have both."""
    index = {name: i for i, name in enumerate(label_names or [])}
    return {i: index[f"I-{name[2:]}"] for name, i in index.items() if name.startswith("B-") and f"I-{name[2:]}" in index}


def _align_word_labels(word_ids: list[int | None], word_labels: list[int], label_all_tokens: bool, b_to_i: dict) -> list[int]:
    labels, previous = [], None
    for word in word_ids:
        if word is None:  # [CLS], [SEP]
            labels.append(IGNORE_INDEX)
        elif word != previous:
            labels.append(word_labels[word])
        else:
            labels.append(b_to_i.get(word_labels[word], word_labels[word]) if label_all_tokens else IGNORE_INDEX)
        previous = word
    return labels


class TokenizedTexts(torch.utils.data.Dataset):
    """Tokenised examples held as Python lists (indexing an Arrow table per example is slower than the model)."""

    def __init__(self, tokenized: datasets.Dataset):
        rows = tokenized[:]
        self.input_ids: list[list[int]] = rows["input_ids"]
        self.token_type_ids: list[list[int]] | None = rows.get("token_type_ids")
        self.labels: list = rows["labels"]
        self.lengths = np.asarray(rows["length"], dtype=np.int64)
        self.teacher_logits: np.ndarray | None = None  # (examples, outputs) float32 when distilling (hfgen.train.methods.distillation)

    @classmethod
    def concatenate(cls, parts: list[TokenizedTexts]) -> TokenizedTexts:
        """The examples of `parts`, in order, as one set (each part with or without teacher outputs, all alike)."""
        joined = cls.__new__(cls)
        joined.input_ids = [ids for part in parts for ids in part.input_ids]
        types = [part.token_type_ids for part in parts]
        joined.token_type_ids = None if any(t is None for t in types) else [row for t in types for row in t]
        joined.labels = [label for part in parts for label in part.labels]
        joined.lengths = np.concatenate([part.lengths for part in parts])
        logits = [part.teacher_logits for part in parts]
        joined.teacher_logits = None if any(t is None for t in logits) else np.concatenate(logits)
        return joined

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> dict:
        row = {"input_ids": self.input_ids[index], "labels": self.labels[index]}
        if self.token_type_ids is not None:
            row["token_type_ids"] = self.token_type_ids[index]
        if self.teacher_logits is not None:
            row["teacher_logits"] = self.teacher_logits[index]
        return row


class PaddingCollator:
    """Pads a list of tokenised examples to the longest one (or to ``pad_to``) and builds the
    attention mask: ``input_ids``/``attention_mask`` (+ ``token_type_ids``) (batch, length) int64,
    ``labels`` int64 (batch,) / float32 (batch,) or (batch, labels) / int64 (batch, length) for tokens, and the
    rows' ``teacher_logits`` (batch, outputs) when they carry them."""

    def __init__(self, pad_token_id: int, task: str, pad_to: int | None = None):
        self.pad_token_id, self.task, self.pad_to = pad_token_id, task, pad_to

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        length = self.pad_to or max(len(row["input_ids"]) for row in rows)
        input_ids = np.full((len(rows), length), self.pad_token_id, dtype=np.int64)  # (batch, length)
        attention_mask = np.zeros((len(rows), length), dtype=np.int64)
        with_types = "token_type_ids" in rows[0]
        token_type_ids = np.zeros((len(rows), length), dtype=np.int64) if with_types else None
        token_labels = np.full((len(rows), length), IGNORE_INDEX, dtype=np.int64) if self.task == "token" else None
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = row["input_ids"]
            attention_mask[i, :n] = 1
            if with_types:
                token_type_ids[i, :n] = row["token_type_ids"]
            if token_labels is not None:
                token_labels[i, :n] = row["labels"]
        batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}
        if with_types:
            batch["token_type_ids"] = torch.from_numpy(token_type_ids)
        if token_labels is not None:
            batch["labels"] = torch.from_numpy(token_labels)
        elif self.task == "single_label":
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.int64)
        else:  # regression (batch,), multi_label (batch, labels)
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.float32)
        if "teacher_logits" in rows[0]:  # distillation: (batch, outputs) float32
            batch["teacher_logits"] = torch.from_numpy(np.stack([row["teacher_logits"] for row in rows]))
        return batch


class LengthGroupedSampler(Sampler[int]):
    """Shuffled indices in which every run of ``batch_size`` holds examples of similar length.

    Each epoch: a seeded permutation, cut into groups of ``group_batches`` batches; each group is
    sorted by length and cut into batches; the full batches are shuffled (the short last one
    stays last, so `BatchSampler` cuts exactly these batches). Epoch e's order is a pure function
    of (seed, e), independent of the global RNG, so a resumed run sees the same batches as an
    uninterrupted one (as `hfgen.train.batches.EpochSampler`).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group_batches: int = 50):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size, self.seed, self.group_batches, self.epoch = batch_size, seed, group_batches, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        group = self.batch_size * self.group_batches
        batches = []
        for start in range(0, len(order), group):
            members = order[start : start + group]
            # longest first within the group; stable, so equal lengths keep their random order
            members = members[np.argsort(-self.lengths[members], kind="stable")]
            batches.extend(members[i : i + self.batch_size] for i in range(0, len(members), self.batch_size))
        last = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        if last is not None:
            shuffled.append(last)
        return iter(np.concatenate(shuffled).tolist() if shuffled else [])


def build_text_loader(
    texts: TokenizedTexts,
    collator: PaddingCollator,
    batch_size: int,
    *,
    seed: int,
    train: bool,
    group_by_length: bool = True,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader over tokenised texts. Training: shuffled per epoch (length-grouped, or an
    `EpochSampler` permutation), last partial batch dropped. Evaluation: every example once,
    longest first, so padding is minimal (metrics do not depend on the order). Prepare it with
    the Accelerator; `iterate_batches` sets the epoch."""
    from ..train.batches import EpochSampler, sampled_loader

    if train:
        sampler = (
            LengthGroupedSampler(texts.lengths, batch_size, seed) if group_by_length else EpochSampler(len(texts), seed=seed)
        )
    else:
        sampler = np.argsort(-texts.lengths, kind="stable").tolist()
    return sampled_loader(texts, sampler, batch_size, drop_last=train, seed=seed, collate_fn=collator, num_workers=num_workers)


class StreamedClassificationExamples(torch.utils.data.IterableDataset):
    """Tokenised classification examples of a streamed training split (`data.streaming: true`), made as training
    goes, so memory stays flat however large the split. Rows come through the seeded buffer reshuffled every
    epoch (`hfgen.data.text.epoch_rows`, `set_epoch`), `chunk_size` at a time, and each chunk goes through the
    same steps as an in-memory split: empty texts dropped (or refused), labels encoded against the run's class
    names (`encode_labels_for_model`: a label outside them stops the run naming it), `tokenize_for_classification`.
    `rows` is this process's part of the stream (`hfgen.data.text.rows_of_process`). `counts` keeps what was read."""

    def __init__(self, rows, tokenizer, *, text_column: str, text_pair_column: str | None, label_column: str, task: str,
                 label_names: list[str] | None, max_length: int, seed: int, split_name: str, ref: str,
                 drop_empty_texts: bool = True, label_all_tokens: bool = False, chunk_size: int = TOKENIZE_BATCH,
                 shuffle_buffer: int | None = 10_000):
        self.rows, self.tokenizer = rows, tokenizer
        self.columns = {"text": text_column, "pair": text_pair_column, "label": label_column}
        self.task, self.label_names, self.max_length = task, label_names, max_length
        self.seed, self.split_name, self.ref, self.drop = seed, split_name, ref, drop_empty_texts
        self.label_all_tokens, self.chunk_size, self.shuffle_buffer, self.epoch = label_all_tokens, chunk_size, shuffle_buffer, 0
        self.counts = {"rows": 0, "examples": 0, "empty_texts_dropped": 0, "null_labels_dropped": 0, "reached_max_length": 0}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        from .text import epoch_rows

        chunk: list[dict] = []
        for row in epoch_rows(self.rows, self.seed, self.shuffle_buffer, self.epoch):
            chunk.append(row)
            if len(chunk) == self.chunk_size:
                yield from self._examples(chunk)
                chunk = []
        if chunk:
            yield from self._examples(chunk)

    def _examples(self, chunk: list[dict]):
        with _quiet(logger, logging.getLogger("hfgen.data.labels")):  # a count per chunk, not a warning per chunk
            texts = self._tokenized(chunk)
        for index in range(len(texts)):
            yield texts[index]

    def _tokenized(self, chunk: list[dict]) -> TokenizedTexts:
        text, pair, label = self.columns["text"], self.columns["pair"], self.columns["label"]
        features = getattr(self.rows, "features", None)
        kept = [c for c in (text, pair, label) if c]
        rows = datasets.Dataset.from_list([{c: row[c] for c in kept} for row in chunk],
                                          features=datasets.Features({c: features[c] for c in kept}) if features else None)
        self.counts["rows"] += len(rows)
        texts, counts = tokenize_labelled_rows(
            rows, self.tokenizer, text_column=text, text_pair_column=pair, label_column=label, task=self.task,
            label_names=self.label_names, max_length=self.max_length, split_name=self.split_name, ref=self.ref,
            drop_empty=self.drop, label_all_tokens=self.label_all_tokens,
        )  # fmt: skip
        for key, value in counts.items():
            self.counts[key] += value
        return texts


def tokenize_labelled_rows(rows: datasets.Dataset, tokenizer, *, text_column: str, text_pair_column: str | None, label_column: str,
                           task: str, label_names: list[str] | None, max_length: int, split_name: str, ref: str,
                           drop_empty: bool = True, label_all_tokens: bool = False) -> tuple[TokenizedTexts, dict[str, int]]:
    """Rows whose classes are known beforehand (a stream's chunk or evaluation split) -> tokenised examples: empty texts
    dropped (or refused), labels encoded against `label_names` (`encode_labels_for_model`), tokenised; with the counts."""
    from .labels import encode_labels_for_model

    texts = [c for c in (text_column, text_pair_column) if c]
    rows, dropped = drop_empty_texts(rows, texts, split_name=split_name, ref=ref, drop=drop_empty)
    rows, nulls = encode_labels_for_model(rows, label_column, task, label_names, split_name=split_name, ref=ref, key="data.label_column")
    tokens, at_cap = tokenize_for_classification(
        rows, tokenizer, text_column=text_column, text_pair_column=text_pair_column, max_length=max_length, task=task,
        label_all_tokens=label_all_tokens, label_names=label_names,
    )  # fmt: skip
    counts = {"empty_texts_dropped": dropped, "null_labels_dropped": nulls, "examples": len(tokens), "reached_max_length": at_cap}
    return TokenizedTexts(tokens), counts


@contextmanager
def _quiet(*loggers: logging.Logger):
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)
