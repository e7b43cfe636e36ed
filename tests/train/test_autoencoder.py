"""`method: autoencoder` end to end: the loss falls, the probe is reported, the encoder moves into a classifier,
resume is exact, and bad image input (modes, sizes, unreadable files) is handled as the recipe says."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, pipeline

from hfgen.config import load_recipe
from hfgen.data import DatasetError
from hfgen.models import ImageEncoderForImageClassification
from hfgen.train import run

from .helpers import assert_same_weights, kill_after_checkpoint, read_metrics, restore_checkpointing

PROBED = ("data.label_column=label", "autoencoder.probe.train_samples=32", "autoencoder.probe.knn_k=5")


def test_autoencoder_trains_probes_and_hands_its_encoder_to_a_classifier(write_recipe):
    out = run(load_recipe(write_recipe(
        "autoencoder", *PROBED, "train.max_steps=30", "train.eval_every=15", "train.sample_every=15",
        "train.save_every=15", "train.learning_rate=3e-3", "model.sparsity_weight=0.01",
    )))

    metrics = read_metrics(out)
    losses = [m["reconstruction_loss"] for m in metrics if "reconstruction_loss" in m]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert any("eval_linear_probe_accuracy" in m for m in metrics if m["step"] == 15)  # the periodic probe
    results = json.loads((out / "eval_results.json").read_text())
    assert results["probe_train_images"] == 48 and results["probe_eval_images"] == 16  # final probe: whole split
    # (the fixture's classes differ only in where a square sits, which globally pooled features barely keep; the
    # probe's own accuracy is checked in tests/metrics/test_probe.py)
    assert 0 <= results["eval_linear_probe_accuracy"] <= 1 and 0 <= results["eval_knn_accuracy"] <= 1
    assert results["unreadable_images_skipped"] == 0
    assert (out / "sample_grid.png").is_file() and (out / "samples" / "step-00000015.png").is_file()
    assert "eval_linear_probe_accuracy" in (out / "README.md").read_text()

    classifier = AutoModelForImageClassification.from_pretrained(out, num_labels=4)
    assert type(classifier) is ImageEncoderForImageClassification
    saved = load_file(out / "model.safetensors")
    for name, tensor in classifier.image_encoder.state_dict().items():
        assert torch.equal(tensor, saved[f"image_encoder.{name}"]), name
    classify = pipeline("image-classification", model=classifier, image_processor=str(out))
    assert len(classify(Image.new("RGB", (40, 40)), top_k=2)) == 2


def test_killed_run_resumes_exactly_with_denoising_noise(write_recipe, tmp_path, monkeypatch):
    common = ("model.denoising=gaussian", "model.sparsity_weight=0.05", "train.max_steps=6", "train.save_every=2")
    reference = run(load_recipe(write_recipe("autoencoder", *common, f"train.output_dir={tmp_path / 'reference'}", name="ref.yaml")))


    recipe = write_recipe("autoencoder", *common)
    kill_after_checkpoint(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        run(load_recipe(recipe))
    restore_checkpointing(monkeypatch)
    out = run(load_recipe(recipe))  # resume: auto, from step 4
    assert_same_weights(out, reference)


def test_grey_data_with_an_rgb_model_is_refused_unless_converted(write_recipe):
    recipe = write_recipe("autoencoder", "model.num_channels=3", "train.max_steps=2")
    with pytest.raises(DatasetError, match=r"grayscale.*model.num_channels: 1.*data.convert_image_mode: true"):
        run(load_recipe(recipe))
    out = run(load_recipe(recipe, ["data.convert_image_mode=true"]))
    assert json.loads((out / "config.json").read_text())["num_channels"] == 3


@pytest.fixture
def messy_folder(tmp_path):
    """train/{a,b} and test/{a,b}: grey, RGB, RGBA and palette images of several sizes, some smaller than the
    model's 28 pixels, and one file that is not an image at all."""
    rng = np.random.default_rng(0)
    shapes = [((12, 12), "L"), ((40, 30), "RGB"), ((28, 28), "RGBA"), ((64, 48), "P"), ((20, 33), "L")]
    for split, copies in (("train", 4), ("test", 1)):
        for label in ("a", "b"):
            folder = tmp_path / "messy" / split / label
            folder.mkdir(parents=True)
            for copy in range(copies):
                for index, (size, mode) in enumerate(shapes):
                    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                    Image.fromarray(pixels).convert(mode).save(folder / f"{copy}-{index}.png")
    (tmp_path / "messy" / "train" / "a" / "broken.png").write_bytes(b"not a png")
    return tmp_path / "messy"


def test_messy_image_folder_is_converted_resized_and_the_broken_file_counted(write_recipe, messy_folder):
    recipe = write_recipe("autoencoder", f"data.dataset={messy_folder}", "train.max_steps=2", "train.batch_size=8")
    with pytest.raises(DatasetError, match="broken.png"):  # on_bad_image: fail (the default)
        run(load_recipe(recipe))
    with pytest.raises(DatasetError, match="colour.*data.convert_image_mode"):  # RGB files, grey model
        run(load_recipe(recipe, ["data.on_bad_image=skip"]))
    out = run(load_recipe(recipe, ["data.on_bad_image=skip", "data.convert_image_mode=true", "data.label_column=label",
                                   "autoencoder.probe.knn_k=3"]))
    results = json.loads((out / "eval_results.json").read_text())
    assert results["unreadable_images_skipped"] == 1
    assert results["probe_train_images"] == 40 and results["eval_images"] == 10
