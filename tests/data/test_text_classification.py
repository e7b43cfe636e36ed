"""Text-classifier data: length-grouped batches (deterministic per (seed, epoch), little padding),
dynamic padding, sub-word label alignment, label encoding and the stratified validation split."""

import datasets
import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler

from hfgen.data import DatasetError
from hfgen.data.labels import balanced_class_weights, encode_labels, split_off_validation
from hfgen.data.text_classification import (
    IGNORE_INDEX,
    LengthGroupedSampler,
    PaddingCollator,
    TokenizedTexts,
    drop_empty_texts,
    tokenize_for_classification,
)


def _batches(sampler, batch_size, drop_last=True):
    return list(BatchSampler(sampler, batch_size, drop_last=drop_last))


def test_length_grouped_order_is_a_pure_function_of_seed_and_epoch():
    lengths = np.random.default_rng(0).integers(3, 100, 1000)
    a, b = LengthGroupedSampler(lengths, 16, seed=3), LengthGroupedSampler(lengths, 16, seed=3)
    b.set_epoch(1), b.set_epoch(0)  # whatever happened before, epoch 0 is epoch 0
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    assert sorted(a) == list(range(1000))  # every example exactly once


def test_length_grouped_batches_pad_far_less_than_random_ones():
    lengths = np.random.default_rng(0).integers(3, 100, 1000)

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    grouped = _batches(LengthGroupedSampler(lengths, 16, seed=0), 16)
    shuffled = _batches(torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist(), 16)
    assert padding(grouped) < 0.1 * padding(shuffled)
    first_lengths = [int(lengths[b].max()) for b in grouped[:10]]
    assert first_lengths != sorted(first_lengths, reverse=True)  # batch order is shuffled, not longest first


def test_partial_batch_stays_last_so_batches_are_cut_where_grouped():
    lengths = np.arange(50)
    batches = _batches(LengthGroupedSampler(lengths, 8, seed=0, group_batches=2), 8, drop_last=False)
    assert [len(b) for b in batches] == [8] * 6 + [2]
    for batch in batches[:-1]:  # each full batch is a run of one group sorted longest first
        assert list(lengths[batch]) == sorted(lengths[batch], reverse=True)


def test_collator_pads_to_the_longest_and_masks():
    collate = PaddingCollator(pad_token_id=0, task="single_label")
    batch = collate([{"input_ids": [2, 5, 3], "labels": 1}, {"input_ids": [2, 3], "labels": 0}])
    assert batch["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].dtype == torch.int64 and "token_type_ids" not in batch
    fixed = PaddingCollator(pad_token_id=0, task="token", pad_to=5)([{"input_ids": [2, 3], "labels": [-100, -100]}])
    assert fixed["input_ids"].shape == (1, 5) and fixed["labels"].tolist() == [[-100] * 5]


@pytest.fixture(scope="module")
def tokenizer():
    from tests.train.classifier_fixtures import tiny_tokenizer

    return tiny_tokenizer()


def test_token_labels_go_to_the_first_sub_word(tokenizer):
    rows = datasets.Dataset.from_dict({"tokens": [["alice", "films", "rome"]], "labels": [[1, 0, 2]]})
    tokens, truncated = tokenize_for_classification(rows, tokenizer, text_column="tokens", task="token", max_length=16)
    # [CLS] alice film ##s rome [SEP]
    assert tokens[0]["labels"] == [IGNORE_INDEX, 1, 0, IGNORE_INDEX, 2, IGNORE_INDEX] and truncated == 0
    names = ["O", "B-PER", "I-PER"]
    every, _ = tokenize_for_classification(
        datasets.Dataset.from_dict({"tokens": [["films"]], "labels": [[1]]}), tokenizer,
        text_column="tokens", task="token", label_all_tokens=True, label_names=names,
    )  # fmt: skip
    assert every[0]["labels"] == [IGNORE_INDEX, 1, 2, IGNORE_INDEX]  # B-PER, then I-PER on ##s


def test_pairs_get_token_types_and_truncation_is_counted(tokenizer):
    rows = datasets.Dataset.from_dict({"a": ["good", "the the the the the the"], "b": ["bad", "a"], "labels": [0, 1]})
    tokens, at_cap = tokenize_for_classification(rows, tokenizer, text_column="a", text_pair_column="b", max_length=6)
    texts = TokenizedTexts(tokens)
    assert texts.token_type_ids[0] == [0, 0, 0, 1, 1] and at_cap == 1
    assert texts.lengths.tolist() == [5, 6] and texts.labels == [0, 1]


def test_drop_empty_texts_counts():
    rows = datasets.Dataset.from_dict({"text": ["a", None, "  ", "b"], "label": [0, 1, 0, 1]})
    kept, dropped = drop_empty_texts(rows, ["text"], split_name="train", ref="x")
    assert dropped == 2 and kept["text"][:] == ["a", "b"]


def test_encode_labels_names_and_unseen():
    splits = {
        "train": datasets.Dataset.from_dict({"label": ["pos", "neg", "pos", None]}),
        "test": datasets.Dataset.from_dict({"label": ["neg", "meh"]}),
    }
    with pytest.raises(DatasetError, match=r"never seen in training: \['meh'\]"):
        encode_labels(dict(splits), "label", "single_label", train_split="train")
    encoded, report = encode_labels(dict(splits), "label", "single_label", train_split="train", unseen="unknown")
    assert report.names == ["neg", "pos", "UNKNOWN"] and report.null_dropped == {"train": 1}
    assert encoded["train"]["labels"][:] == [1, 0, 1] and encoded["test"]["labels"][:] == [0, 2]


def test_encode_multi_label_and_int_labels():
    splits = {"train": datasets.Dataset.from_dict({"tags": [["b", "a"], ["c"], []]})}
    encoded, report = encode_labels(splits, "tags", "multi_label", train_split="train")
    assert report.names == ["a", "b", "c"] and encoded["train"]["labels"][:] == [[1, 1, 0], [0, 0, 1], [0, 0, 0]]
    ints, report = encode_labels({"train": datasets.Dataset.from_dict({"y": [10, 2, 2]})}, "y", "single_label", train_split="train")
    assert report.names == ["2", "10"] and ints["train"]["labels"][:] == [1, 0, 0]  # numeric order


def test_validation_split_is_stratified_and_seeded():
    rows = datasets.Dataset.from_dict({"labels": [0] * 80 + [1] * 20 + [2]})
    train, validation = split_off_validation(rows, 0.1, seed=0, stratify=True)
    assert sorted(validation["labels"][:]) == [0] * 8 + [1] * 2  # the single class-2 example stays in train
    assert len(train) == 91
    again = split_off_validation(rows, 0.1, seed=0, stratify=True)[1]
    assert again["labels"][:] == validation["labels"][:]


def test_balanced_class_weights():
    assert balanced_class_weights(np.array([30, 10, 0])).tolist() == pytest.approx([40 / 60, 40 / 20, 0.0])


def test_conll_files_load_as_token_and_tag_lists(tmp_path, hfgen_cache_tmp):
    from hfgen.data import build_dataset

    folder = tmp_path / "ner"
    folder.mkdir()
    (folder / "train.conll").write_text("-DOCSTART- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n")
    (folder / "dev.conll").write_text("Rome B-LOC\n")
    dataset = build_dataset(str(folder))
    assert set(dataset) == {"train", "validation"}
    assert dataset["train"]["tokens"][:] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert dataset["train"]["tags"][:] == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    (folder / "test.conll").write_text("Rome\n")
    with pytest.raises(DatasetError, match=r"test.conll:1: expected a token and its tag"):
        build_dataset(str(folder))
