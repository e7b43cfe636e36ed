import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hfgen.data import (
    DatasetError,
    ImageDataset,
    denormalize_from_symmetric,
    make_image_grid,
    normalize_to_symmetric,
    pil_to_tensor,
    random_horizontal_flip,
    save_image_grid,
    to_float,
)


def _image_dataset(sizes, mode="RGB"):
    """A datasets.Dataset of random images of the given (width, height) sizes, labelled 0, 1, 2, ..."""
    rng = np.random.default_rng(0)
    images = []
    for width, height in sizes:
        shape = (height, width, 3) if mode == "RGB" else (height, width)
        images.append(Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    return datasets.Dataset.from_dict({"image": images, "label": list(range(len(images)))}, features=features)


def test_rgba_to_grey_composites_transparency_on_white():
    pixels = np.zeros((4, 4, 4), dtype=np.uint8)  # (H, W, RGBA): black...
    pixels[:, :2, 3] = 255  # ...opaque on the left, fully transparent on the right
    tensor = pil_to_tensor(Image.fromarray(pixels, mode="RGBA"), num_channels=1)
    assert tensor.shape == (1, 4, 4) and tensor.dtype == torch.uint8
    assert (tensor[0, :, :2] == 0).all() and (tensor[0, :, 2:] == 255).all()


def test_grey_to_rgb_repeats_the_channel():
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4)
    tensor = pil_to_tensor(Image.fromarray(grey, mode="L"), num_channels=3)
    assert tensor.shape == (3, 4, 4)
    for channel in tensor:
        assert torch.equal(channel, torch.from_numpy(grey))


def test_sixteen_bit_images_are_scaled_not_clipped():
    deep = Image.fromarray(np.array([[0, 257 * 100], [65535, 65535]], dtype=np.uint16))
    assert deep.mode.startswith("I;16")
    assert pil_to_tensor(deep, num_channels=1)[0].tolist() == [[0, 100], [255, 255]]


def test_non_square_is_centre_cropped_then_resized():
    wide = np.zeros((10, 30), dtype=np.uint8)  # (H, W)
    wide[:, 10:20] = 200  # the centre square is all 200
    cropped = pil_to_tensor(Image.fromarray(wide, mode="L"), num_channels=1)
    assert cropped.shape == (1, 10, 10) and (cropped == 200).all()
    resized = pil_to_tensor(Image.fromarray(wide, mode="L"), num_channels=3, image_size=16)
    assert resized.shape == (3, 16, 16)
    palette = Image.fromarray(wide, mode="L").convert("P")
    assert pil_to_tensor(palette, num_channels=3, image_size=5).shape == (3, 5, 5)


def test_unsupported_channel_count_is_refused():
    with pytest.raises(ValueError, match="num_channels must be 1"):
        pil_to_tensor(Image.new("RGB", (2, 2)), num_channels=4)


def test_in_memory_and_lazy_give_identical_items():
    # a shuffled subset, read through an indices mapping, like a training run's max_train_samples
    dataset = _image_dataset([(8, 8), (12, 12), (20, 16), (8, 8)]).shuffle(seed=0).select([3, 1, 2])
    labels = dataset["label"][:]
    eager = ImageDataset(dataset, "image", "label", image_size=10, num_channels=1, in_memory=True)
    lazy = ImageDataset(dataset, "image", "label", image_size=10, num_channels=1, in_memory=False)
    assert eager.pixels is not None and eager.pixels.shape == (3, 1, 10, 10) and lazy.pixels is None
    assert len(eager) == len(lazy) == 3
    for index in range(3):
        assert torch.equal(eager[index]["pixel_values"], lazy[index]["pixel_values"])
        assert eager[index]["labels"].dtype == torch.int64 and eager[index]["labels"].item() == labels[index]
        expected = pil_to_tensor(dataset[index]["image"], num_channels=1, image_size=10)
        assert torch.equal(eager[index]["pixel_values"], expected)
    assert ImageDataset(dataset, image_size=10, num_channels=1).pixels is not None  # small: decoded up front
    assert set(ImageDataset(dataset, image_size=4)[0]) == {"pixel_values"}


def test_in_memory_without_image_size_needs_one_size():
    mixed = _image_dataset([(8, 8), (6, 6)], mode="L")
    with pytest.raises(DatasetError, match="set data.image_size"):
        ImageDataset(mixed, num_channels=1, in_memory=True)


def test_text_labels_are_refused_with_a_fix():
    dataset = _image_dataset([(4, 4)]).add_column("name", ["cat"])
    with pytest.raises(DatasetError, match="class_encode_column"):
        ImageDataset(dataset, label_column="name", image_size=4)
    with pytest.raises(DatasetError, match="data.label_column='kind' not found"):
        ImageDataset(dataset, label_column="kind", image_size=4)


def test_float_ranges_round_trip():
    pixels = torch.tensor([0, 51, 255], dtype=torch.uint8)
    unit = to_float(pixels)
    assert torch.allclose(unit, torch.tensor([0.0, 0.2, 1.0]))
    assert torch.allclose(normalize_to_symmetric(unit), torch.tensor([-1.0, -0.6, 1.0]))
    assert torch.allclose(denormalize_from_symmetric(normalize_to_symmetric(unit)), unit)


def test_seeded_flip_is_deterministic_and_flips_exactly_the_chosen_images():
    images = torch.rand(16, 3, 4, 5)
    flipped = random_horizontal_flip(images, p=0.5, generator=torch.Generator().manual_seed(7))
    again = random_horizontal_flip(images, p=0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(flipped, again)
    chosen = torch.rand(16, generator=torch.Generator().manual_seed(7)) < 0.5
    assert 0 < chosen.sum() < 16
    assert torch.equal(flipped[chosen], images[chosen].flip(-1))
    assert torch.equal(flipped[~chosen], images[~chosen])
    assert torch.equal(random_horizontal_flip(images, p=0.0), images)
    assert torch.equal(random_horizontal_flip(images, p=1.0), images.flip(-1))


def test_grid_tiles_images_with_padding():
    images = torch.zeros(5, 1, 8, 8)
    images[4] = 1.0  # last image white: row 1, column 1 of a 3-wide grid
    grid = make_image_grid(images, nrow=3)
    assert grid.mode == "L" and grid.size == (3 * 10 + 2, 2 * 10 + 2)  # (width, height) with padding 2
    pixels = np.asarray(grid)
    assert (pixels[12:20, 12:20] == 255).all() and pixels.sum() == 255 * 64
    assert make_image_grid(torch.rand(4, 3, 6, 6)).mode == "RGB"


def test_save_image_grid_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "samples" / "step_10.png"
    save_image_grid(torch.rand(4, 3, 6, 6), path)
    with Image.open(path) as written:
        assert written.size == (2 * 8 + 2, 2 * 8 + 2)
    assert not path.with_name("step_10.png.tmp").exists()
    before = path.read_bytes()

    def crash_mid_write(self, fp, *args, **kwargs):
        with open(fp, "wb") as file:
            file.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        save_image_grid(torch.rand(4, 3, 6, 6), path)
    assert path.read_bytes() == before  # the old grid survives a crashed write
