import gzip
import json

import datasets
import pandas as pd
import pytest

from hfgen.data import DatasetError, build_dataset, drop_unreadable_images, require_columns

ROWS = [{"text": "a good film", "label": 1}, {"text": "a dull film", "label": 0}, {"text": "fine", "label": 1}]


def _write(path, rows=ROWS):
    """Write rows in the format the file name asks for."""
    frame = pd.DataFrame(rows)
    if path.name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif path.name.endswith(".csv.gz"):
        path.write_bytes(gzip.compress(frame.to_csv(index=False).encode()))
    elif path.suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    elif path.suffix == ".txt":
        path.write_text("".join(row["text"] + "\n" for row in rows))
    return path


@pytest.mark.parametrize("name", ["reviews.csv", "reviews.tsv", "reviews.jsonl", "reviews.parquet", "reviews.csv.gz"])
def test_single_table_file_becomes_the_train_split(tmp_path, hfgen_cache_tmp, name):
    dataset = build_dataset(str(_write(tmp_path / name)))
    assert list(dataset) == ["train"]
    assert dataset["train"].column_names == ["text", "label"]
    assert dataset["train"]["text"][:] == [row["text"] for row in ROWS]


def test_text_file_gives_one_row_per_line(tmp_path, hfgen_cache_tmp):
    dataset = build_dataset(str(_write(tmp_path / "corpus.txt")))
    assert dataset["train"].column_names == ["text"] and dataset["train"].num_rows == 3


def test_folder_splits_come_from_file_names(tmp_path, hfgen_cache_tmp):
    _write(tmp_path / "train.jsonl")
    _write(tmp_path / "test.jsonl", ROWS[:1])
    _write(tmp_path / "validation.jsonl", ROWS[:2])
    dataset = build_dataset(str(tmp_path))
    assert {split: part.num_rows for split, part in dataset.items()} == {"train": 3, "test": 1, "validation": 2}


def test_folder_without_split_names_is_all_train(tmp_path, hfgen_cache_tmp):
    _write(tmp_path / "part_a.csv")
    _write(tmp_path / "part_b.csv", ROWS[:1])
    dataset = build_dataset(str(tmp_path))
    assert list(dataset) == ["train"] and dataset["train"].num_rows == 4


def test_folder_mixing_formats_is_refused(tmp_path, hfgen_cache_tmp):
    _write(tmp_path / "train.csv")
    _write(tmp_path / "test.jsonl")
    with pytest.raises(DatasetError, match="mixes file formats"):
        build_dataset(str(tmp_path))


def test_save_to_disk_dataset_becomes_train_and_dict_keeps_its_splits(tmp_path, hfgen_cache_tmp):
    single = datasets.Dataset.from_list(ROWS)
    single.save_to_disk(str(tmp_path / "single"))
    assert build_dataset(str(tmp_path / "single"))["train"]["text"][:] == single["text"][:]
    datasets.DatasetDict({"train": single, "test": single.select([0])}).save_to_disk(str(tmp_path / "dict"))
    loaded = build_dataset(str(tmp_path / "dict"))
    assert {split: part.num_rows for split, part in loaded.items()} == {"train": 3, "test": 1}


def test_streaming_local_file_gives_iterable_splits(tmp_path, hfgen_cache_tmp):
    streamed = build_dataset(str(_write(tmp_path / "train.csv")), streaming=True)
    assert isinstance(streamed, datasets.IterableDatasetDict)
    assert [row["label"] for row in streamed["train"]] == [1, 0, 1]


def test_image_folder_gets_class_labels_and_splits(tiny_image_folder):
    dataset = build_dataset(str(tiny_image_folder), image_column="image")
    assert {split: part.num_rows for split, part in dataset.items()} == {"train": 6, "test": 2}
    assert dataset["train"].features["label"].names == ["cat", "dog"]
    assert dataset["train"][0]["image"].size == (8, 8)


def _corrupt(folder):
    bad = folder / "train" / "cat" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    good = (folder / "train" / "dog" / "0.png").read_bytes()
    (folder / "train" / "dog" / "cut.png").write_bytes(good[: len(good) // 2])  # valid header, truncated pixels
    return bad


def test_unreadable_images_are_skipped_and_counted(tiny_image_folder):
    _corrupt(tiny_image_folder)
    loaded = build_dataset(str(tiny_image_folder))  # no image_column: no check
    assert loaded["train"].num_rows == 8
    cleaned, skipped = drop_unreadable_images(loaded, "image", "skip")
    assert skipped == 2 and cleaned["train"].num_rows == 6 and cleaned["test"].num_rows == 2
    assert all(row["image"].size == (8, 8) for row in cleaned["train"])
    assert build_dataset(str(tiny_image_folder), image_column="image", on_bad_image="skip")["train"].num_rows == 6


def test_unreadable_images_fail_naming_files_and_the_recipe_switch(tiny_image_folder):
    bad = _corrupt(tiny_image_folder)
    with pytest.raises(DatasetError) as caught:
        build_dataset(str(tiny_image_folder), image_column="image")
    message = str(caught.value)
    assert message.startswith("2 image(s)") and str(bad) in message and "cut.png" in message
    assert "data.on_bad_image: skip" in message


def test_streaming_image_folder_is_checked_before_streaming(tiny_image_folder):
    _corrupt(tiny_image_folder)
    streamed = build_dataset(str(tiny_image_folder), streaming=True, image_column="image", on_bad_image="skip")
    assert isinstance(streamed, datasets.IterableDatasetDict)
    assert sum(1 for _ in streamed["train"]) == 6


@pytest.mark.parametrize("ref", ["./no/such/folder", "/no/such/file.csv", "~/no-such-dir-hfgen", "reviews.jsonl"])
def test_missing_path_names_the_path(ref, hfgen_cache_tmp):
    with pytest.raises(DatasetError, match="does not exist") as caught:
        build_dataset(ref)
    assert ref.lstrip("./~") in str(caught.value)


def test_unknown_name_offline_suggests_the_closest_catalog_name(monkeypatch, hfgen_cache_tmp):
    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub\n(offline mode)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)
    with pytest.raises(DatasetError) as caught:
        build_dataset("fashion_mnst")
    message = str(caught.value)
    assert "not an existing path" in message and "mnist_5k" in message
    assert "Did you mean 'fashion_mnist'?" in message
    assert "Couldn't reach the Hub (offline mode)" in message and "\n" not in message


def test_require_columns_names_the_recipe_key_and_lists_columns():
    dataset = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"image": [1], "label": [0]})})
    require_columns(dataset, {"data.image_column": "image", "data.text_column": None})
    with pytest.raises(DatasetError) as caught:
        require_columns(dataset, {"data.image_column": "img"}, "fashion_mnist")
    assert str(caught.value) == (
        "data.image_column='img' not found in split 'train' of fashion_mnist; columns present: ['image', 'label']"
    )


def test_build_dataset_checks_the_image_column_exists(tiny_image_folder):
    with pytest.raises(DatasetError, match="data.image_column='img' not found in split 'train'"):
        build_dataset(str(tiny_image_folder), image_column="img")
