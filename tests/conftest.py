import gzip

import numpy as np
import pytest
from PIL import Image

# --- data fixtures (hfgen.data) ----------------------------------------------------------------


@pytest.fixture
def hfgen_cache_tmp(tmp_path, monkeypatch):
    """Point hfgen's cache (HFGEN_CACHE) at a fresh temporary folder; returns it."""
    cache = tmp_path / "hfgen-cache"
    monkeypatch.setenv("HFGEN_CACHE", str(cache))
    return cache


def _write_idx_gz(path, array):
    """Write ``array`` (uint8) as a gzipped IDX file, the format of the (Fashion-)MNIST downloads."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()))


@pytest.fixture
def tiny_fashion_mnist_dir(tmp_path, monkeypatch, hfgen_cache_tmp):
    """20 random 28x28 images (12 train, 8 test) as Fashion-MNIST IDX files, with HFGEN_FASHION_MNIST_DIR
    pointing at them; returns (folder, {"train": (images, labels), "test": (images, labels)})."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for split, prefix, count in (("train", "train", 12), ("test", "t10k", 8)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)  # (N, height, width)
        labels = np.arange(count, dtype=np.uint8) % 10
        _write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
        arrays[split] = (images, labels)
    monkeypatch.setenv("HFGEN_FASHION_MNIST_DIR", str(folder))
    return folder, arrays


@pytest.fixture
def tiny_image_folder(tmp_path, hfgen_cache_tmp):
    """An imagefolder-layout tree: train/{cat,dog}/ with 3 PNGs each and test/{cat,dog}/ with 1 each (8x8 RGB)."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("test", 1)):
        for label in ("cat", "dog"):
            (root / split / label).mkdir(parents=True)
            for index in range(per_class):
                pixels = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / label / f"{index}.png")
    return root


# --- process-wide state -----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Training sets torch's thread count for the process (hfgen.train.accelerator); put it back so
    a test's numerics never depend on which tests ran before it."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _reset_accelerate_state():
    """Accelerate keeps one process-wide state, fixed by the first Accelerator (precision included); a test whose
    run stopped with an error leaves it behind. Reset it so each test's run starts as a fresh process would."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
