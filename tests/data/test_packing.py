"""Packing documents into full-length sequences, empty-text accounting, streaming with flat memory, masking."""

import itertools
import tracemalloc

import numpy as np
import pytest
import torch

from hfgen.config import TokenizerSection
from hfgen.data import build_dataset
from hfgen.data.collators import IGNORE_INDEX, mask_tokens
from hfgen.data.text import (
    PackedSequences,
    StreamedPackedSequences,
    TextStats,
    iter_documents,
    pack_sequences,
    packed_sequences,
)
from hfgen.train.methods.tokenizer import train_wordpiece_tokenizer
from tests.train.text_corpus import sentences, write_corpus


@pytest.fixture(scope="module")
def tokenizer():
    texts = [text for text, _ in sentences(300)]
    return train_wordpiece_tokenizer(texts, TokenizerSection(vocab_size=120, min_frequency=1))


def test_packed_sequences_are_full_with_cls_first_and_sep_between_documents():
    docs = [[5, 6, 7], [8], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], [20, 21]]  # one longer than a sequence
    stats = TextStats(documents=len(docs))
    blocks = np.concatenate(list(pack_sequences([docs[:2], docs[2:]], max_length=6, cls_token_id=1, sep_token_id=2, stats=stats)))

    assert blocks.shape[1] == 6 and (blocks[:, 0] == 1).all()
    stream = [t for d in docs for t in d + [2]]  # doc1 [SEP] doc2 [SEP] ...
    body = blocks[:, 1:].reshape(-1).tolist()
    assert body == stream[: len(body)]  # nothing lost, reordered or padded, long document split across sequences
    assert stats.tokens == 17 and stats.sequences == len(blocks) == 4
    assert stats.dropped_tail_tokens == len(stream) - len(body) == 1


def test_packing_real_text_has_no_padding_and_counts_empty_lines(tokenizer):
    texts = ["", "   "] + [text for text, _ in sentences(50)] + [None, ""]
    stats = TextStats()
    dataset = PackedSequences.from_texts(texts, tokenizer, max_length=16, stats=stats)

    assert stats.empty_skipped == 4 and stats.documents == 50 and stats.rows == 54
    sequences = dataset.sequences
    assert sequences.shape == (len(dataset), 16)
    assert not (sequences == tokenizer.pad_token_id).any()  # full blocks, no padding
    assert (sequences[:, 0] == tokenizer.cls_token_id).all()
    assert (sequences == tokenizer.sep_token_id).sum() >= 49  # a [SEP] after every document but the dropped tail
    assert stats.tokens + stats.documents == len(dataset) * 15 + stats.dropped_tail_tokens
    assert dataset[0]["input_ids"].dtype == torch.long


def test_paragraph_mode_joins_lines_and_blank_lines_separate_documents():
    rows = ["first line", "of one", "", "", "second", "", "third"]
    stats = TextStats()
    assert list(iter_documents(rows, "paragraph", stats)) == ["first line\nof one", "second", "third"]
    assert stats.documents == 3 and stats.empty_skipped == 1  # the second blank line ends no paragraph


def test_streamed_txt_file_packs_the_same_sequences_as_in_memory(tmp_path, tokenizer, hfgen_cache_tmp):
    write_corpus(tmp_path / "train.txt", 120)
    streamed = build_dataset(str(tmp_path / "train.txt"), streaming=True)["train"]
    stream = StreamedPackedSequences(streamed, "text", tokenizer, max_length=16, shuffle_buffer=None)
    in_memory = PackedSequences.from_texts(build_dataset(str(tmp_path / "train.txt"))["train"]["text"], tokenizer, 16)

    from_stream = torch.stack([item["input_ids"] for item in stream])
    assert torch.equal(from_stream, in_memory.sequences.long())
    assert stream.stats.empty_skipped == 120 // 7


@pytest.mark.parametrize("files", [1, 2])
def test_streamed_corpus_is_split_between_processes_each_document_read_once(tmp_path, tokenizer, hfgen_cache_tmp, files):
    """Under 2 processes each reads its own part (by file when the files divide evenly, else every other row): the two
    parts are disjoint and together are the whole corpus, also with the seeded shuffle buffer on."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = [f"document number {i} about the garden" for i in range(60)]
    for f in range(files):
        (folder / f"part{f}.txt").write_text("\n".join(lines[f::files]) + "\n")
    streamed = build_dataset(str(folder), streaming=True)["train"]
    parts = []
    for rank in (0, 1):
        stream = StreamedPackedSequences(streamed, "text", tokenizer, max_length=16, shuffle_buffer=8, rank=rank, world_size=2)
        parts.append(list(stream._texts()))
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == sorted(lines)


def test_streaming_memory_stays_flat_as_the_corpus_grows(tokenizer):
    """The pipeline holds one batch of documents and one partial sequence: peak memory for 10x more text is the same
    (the first tokenizer batch, ~1,000 documents, sets the plateau)."""
    def endless_documents():
        for i in itertools.count():
            yield f"the cat number {i % 97} eats the food and watches the garden ."

    def peak_bytes(num_sequences):
        tracemalloc.start()
        blocks = packed_sequences(endless_documents(), tokenizer, max_length=32)
        seen = 0
        for block in blocks:  # consumed and dropped, as a training loop does
            seen += len(block)
            if seen >= num_sequences:
                break
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak_bytes(2000), peak_bytes(20000)  # ~6,000 vs ~60,000 documents
    assert large < 1.5 * small, (small, large)


def test_masking_is_80_10_10_and_never_touches_special_tokens():
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, 1000, (64, 128), generator=generator)
    input_ids[:, 0], input_ids[:, 64] = 1, 2  # [CLS], [SEP]
    masked, labels = mask_tokens(input_ids, mask_token_id=3, vocab_size=1000, special_token_ids=[0, 1, 2, 3],
                                 mask_rate=0.3, generator=generator)
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, [0, 64]].any()
    assert abs(chosen.float().mean().item() - 0.3 * 126 / 128) < 0.01
    assert torch.equal(labels[chosen], input_ids[chosen])
    assert torch.equal(masked[~chosen], input_ids[~chosen])
    as_mask = (masked[chosen] == 3).float().mean().item()
    kept = (masked[chosen] == input_ids[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.02 and abs(kept - 0.1) < 0.02  # the rest (~10%) random tokens
