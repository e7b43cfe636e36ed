"""Text for language-model pretraining: documents from rows, tokenised and packed into full-length sequences.

One pipeline of generators serves both in-memory and streamed datasets, so memory stays flat however large
the corpus is (only one batch of documents and one partial sequence are held at a time):

    rows of text -> iter_documents -> tokenize_documents -> pack_sequences -> (n, max_length) token blocks

Packing (as in RoBERTa's FULL-SENTENCES, Cramming and MosaicBERT): every sequence is `[CLS]` followed by
the token stream of consecutive documents, each ended by `[SEP]`; documents longer than a sequence
continue in the next one. No sequence carries padding, so no compute is spent on pad tokens, and the
attention mask is all ones (and can be left out).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import DatasetError

logger = logging.getLogger(__name__)

TOKENIZE_BATCH = 1000  # documents per call of the (Rust, batched) tokenizer


@dataclass
class TextStats:
    """Counts kept while documents flow through the pipeline (logged and written to eval_results.json)."""

    rows: int = 0  # rows read
    documents: int = 0  # non-empty documents kept
    empty_skipped: int = 0  # empty or whitespace-only rows/documents dropped
    tokens: int = 0  # tokens of the kept documents (without special tokens)
    sequences: int = 0  # packed sequences produced
    dropped_tail_tokens: int = 0  # tokens of the last, partial sequence (not trained on)
    truncated: int = 0  # texts cut to the maximum length (unpacked batches: contrastive training)

    def as_dict(self, prefix: str = "") -> dict:
        return {prefix + k: v for k, v in asdict(self).items()}


def iter_documents(texts: Iterable[str | None], mode: str = "line", stats: TextStats | None = None) -> Iterator[str]:
    """Non-empty documents from rows of text.

    Args:
        texts: rows, e.g. a dataset's text column or the lines of a .txt file (None counts as empty).
        mode: "line": every row is a document; "paragraph": consecutive non-empty rows form one document
            and empty rows separate documents (a .txt file of paragraphs, read line by line).
        stats: counts rows, kept documents and skipped empty ones.
    """
    stats = stats if stats is not None else TextStats()
    if mode not in ("line", "paragraph"):
        raise ValueError(f"documents mode must be 'line' or 'paragraph', got {mode!r}")
    paragraph: list[str] = []
    for text in texts:
        stats.rows += 1
        text = (text or "").strip()
        if mode == "line":
            if text:
                stats.documents += 1
                yield text
            else:
                stats.empty_skipped += 1
        elif text:
            paragraph.append(text)
        elif paragraph:
            stats.documents += 1
            yield "\n".join(paragraph)
            paragraph = []
        else:
            stats.empty_skipped += 1  # a blank line that ends no paragraph
    if paragraph:
        stats.documents += 1
        yield "\n".join(paragraph)


def tokenize_documents(documents: Iterable[str], tokenizer, batch_size: int = TOKENIZE_BATCH) -> Iterator[list[list[int]]]:
    """Batches of token ids (no special tokens, no truncation: packing splits long documents)."""
    batch: list[str] = []
    for document in documents:
        batch.append(document)
        if len(batch) == batch_size:
            yield _token_ids(tokenizer, batch)
            batch = []
    if batch:
        yield _token_ids(tokenizer, batch)


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(
        texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False, verbose=False
    )["input_ids"]


def pack_sequences(
    token_batches: Iterable[list[list[int]]],
    max_length: int,
    cls_token_id: int,
    sep_token_id: int,
    stats: TextStats | None = None,
) -> Iterator[np.ndarray]:
    """Pack documents into sequences of exactly `max_length` tokens: `[CLS]` + the next `max_length - 1`
    tokens of the stream `doc1 [SEP] doc2 [SEP] ...`. Yields int32 arrays of shape (n, max_length), one per
    input batch that completes at least one sequence; the final partial sequence is dropped (counted)."""
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 ([CLS] and one token), got {max_length}")
    stats = stats if stats is not None else TextStats()
    body = max_length - 1  # stream tokens per sequence, after [CLS]
    carry = np.zeros(0, dtype=np.int32)  # stream tokens not yet in a sequence (< body of them)
    for batch in token_batches:
        pieces = [carry]
        for ids in batch:
            if not ids:
                stats.empty_skipped += 1  # text that tokenises to nothing (e.g. only control characters)
                stats.documents -= 1
                continue
            stats.tokens += len(ids)
            pieces.append(np.asarray(ids, dtype=np.int32))
            pieces.append(np.asarray([sep_token_id], dtype=np.int32))
        stream = np.concatenate(pieces)
        full = len(stream) // body
        carry = stream[full * body :].copy()
        if full:
            sequences = np.empty((full, max_length), dtype=np.int32)  # (sequences, max_length)
            sequences[:, 0] = cls_token_id
            sequences[:, 1:] = stream[: full * body].reshape(full, body)
            stats.sequences += full
            yield sequences
    stats.dropped_tail_tokens += len(carry)


def packed_sequences(
    texts: Iterable[str | None],
    tokenizer,
    max_length: int,
    mode: str = "line",
    stats: TextStats | None = None,
) -> Iterator[np.ndarray]:
    """The whole pipeline: rows of text -> packed (n, max_length) int32 blocks, lazily."""
    stats = stats if stats is not None else TextStats()
    cls_id, sep_id = special_token_ids(tokenizer)
    documents = iter_documents(texts, mode, stats)
    return pack_sequences(tokenize_documents(documents, tokenizer), max_length, cls_id, sep_id, stats)


def special_token_ids(tokenizer) -> tuple[int, int]:
    """The tokenizer's [CLS] and [SEP] ids (falling back to BOS/EOS), or a `DatasetError` saying what is missing."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls_id is None or sep_id is None:
        raise DatasetError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no [CLS]/[SEP] (or BOS/EOS) token to pack "
            "documents with; use a BERT-style tokenizer"
        )
    return cls_id, sep_id


def tokenize_batch(tokenizer, texts: list[str], max_length: int, stats: TextStats | None = None) -> dict:
    """Tokenise texts (with special tokens) into a padded batch of tensors, each text truncated to `max_length`
    tokens (counted in `stats.truncated`): `input_ids`, `attention_mask` (and `token_type_ids` where the
    tokenizer makes them), each (len(texts), longest)."""
    encoded = tokenizer(texts, verbose=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    too_long = sum(length > max_length for length in lengths)
    if too_long:
        if stats is not None:
            stats.truncated += too_long
        encoded = tokenizer(texts, truncation=True, max_length=max_length, verbose=False)
    return tokenizer.pad(encoded, return_tensors="pt")


class PackedSequences(torch.utils.data.Dataset):
    """In-memory packed sequences (int32), each item `{"input_ids": (max_length,) int64}`."""

    def __init__(self, sequences: np.ndarray | torch.Tensor):
        self.sequences = torch.as_tensor(sequences, dtype=torch.int32)  # (n, max_length)

    @classmethod
    def from_texts(cls, texts: Iterable[str | None], tokenizer, max_length: int, mode: str = "line",
                   stats: TextStats | None = None, limit: int | None = None) -> "PackedSequences":
        """Pack all of `texts` (at most `limit` sequences)."""
        blocks, count = [], 0
        for block in packed_sequences(texts, tokenizer, max_length, mode, stats):
            blocks.append(block)
            count += len(block)
            if limit is not None and count >= limit:
                break
        if not blocks:
            return cls(np.zeros((0, max_length), dtype=np.int32))
        sequences = np.concatenate(blocks)
        return cls(sequences[:limit] if limit is not None else sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.sequences[index].long()}


def rows_of_process(rows, rank: int = 0, world_size: int = 1):
    """This process's part of a streamed `datasets.IterableDataset` (`split_dataset_by_node`: whole files or shards
    when their number divides by `world_size`, else every world_size-th row); all of it for one process."""
    if world_size <= 1:
        return rows
    from datasets.distributed import split_dataset_by_node

    return split_dataset_by_node(rows, rank=rank, world_size=world_size)


def epoch_rows(rows, seed: int, shuffle_buffer: int | None, epoch: int) -> Iterator[dict]:
    """The rows of one epoch of a stream, through a buffer shuffled by (seed, epoch) when `shuffle_buffer`; with
    DataLoader workers, each worker gets every num_workers-th row (not all of them)."""
    if shuffle_buffer:
        rows = rows.shuffle(seed=seed, buffer_size=shuffle_buffer)
        rows.set_epoch(epoch)
    worker = torch.utils.data.get_worker_info()
    for index, row in enumerate(rows):
        if worker is None or index % worker.num_workers == worker.id:
            yield row


class StreamedPackedSequences(torch.utils.data.IterableDataset):
    """Packed sequences from a streamed `datasets.IterableDataset`, tokenised on the fly: memory stays flat
    as the corpus grows. Rows are shuffled through a seeded buffer that is reshuffled every epoch
    (`set_epoch`), and the stream repeats, epoch after epoch, until the training loop stops.

    Under several processes each reads its own part of the corpus (`rank` of `world_size`, by
    `datasets.distributed.split_dataset_by_node`: whole files or shards when they divide evenly, else every
    world_size-th row), so reading and tokenising are spread over the processes instead of done by one."""

    def __init__(self, rows, text_column: str, tokenizer, max_length: int, mode: str = "line", seed: int = 0,
                 shuffle_buffer: int | None = 10_000, stats: TextStats | None = None, rank: int = 0, world_size: int = 1):
        self.rows, self.text_column, self.tokenizer = rows_of_process(rows, rank, world_size), text_column, tokenizer
        self.max_length, self.mode, self.seed, self.shuffle_buffer = max_length, mode, seed, shuffle_buffer
        self.stats = stats if stats is not None else TextStats()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _texts(self) -> Iterator[str | None]:
        for row in epoch_rows(self.rows, self.seed, self.shuffle_buffer, self.epoch):
            yield row[self.text_column]

    def __iter__(self):
        produced = False
        for block in packed_sequences(self._texts(), self.tokenizer, self.max_length, self.mode, self.stats):
            produced = True
            for sequence in torch.from_numpy(block):
                yield {"input_ids": sequence.long()}
        if not produced:
            raise DatasetError(
                f"the streamed split holds fewer than {self.max_length} tokens: not one packed sequence; "
                "lower mlm.max_length or add text"
            )
