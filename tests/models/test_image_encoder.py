"""The image encoder family: shapes, heads and their losses, the autoencoder's options, weights moving from the
autoencoder / SimCLR model to the classifier by `from_pretrained`, the image processor and the pipeline."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForMaskedImageModeling,
    pipeline,
)

from hfgen.data import pil_to_tensor
from hfgen.models import (
    ImageAutoencoderModel,
    ImageEncoderConfig,
    ImageEncoderForContrastiveLearning,
    ImageEncoderForImageClassification,
    ImageEncoderImageProcessor,
    ImageEncoderModel,
)
from hfgen.models.image_encoder.modeling_image_encoder import sparsity_kl

TINY = {"hidden_sizes": [4, 8], "depths": [1, 1]}


def tiny(cls, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(ImageEncoderConfig(**{**TINY, **overrides}))


def images(batch_size=3, num_channels=1, image_size=28, seed=0):
    return torch.rand(batch_size, num_channels, image_size, image_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("image_size", "num_channels", "overrides", "map_size"),
    [
        (28, 1, {}, 14),
        (28, 1, {"stem_stride": 2}, 7),
        (32, 3, {"hidden_sizes": [4, 4, 8], "depths": [1, 2, 1]}, 8),
        (64, 3, {"stem_stride": 2}, 16),
        (28, 1, {"hidden_sizes": [4, 4, 4, 8], "depths": [1, 1, 1, 1]}, 4),  # 28 -> 14 -> 7 -> 4: decoder crops 32 -> 28
    ],
)
def test_shapes_for_sizes_channels_and_depths(image_size, num_channels, overrides, map_size):
    config_kwargs = {"image_size": image_size, "num_channels": num_channels, **overrides}
    pixel_values = images(2, num_channels, image_size)

    encoded = tiny(ImageEncoderModel, **config_kwargs)(pixel_values, output_hidden_states=True)
    width = encoded.pooler_output.shape[1]
    assert encoded.last_hidden_state.shape == (2, width, map_size, map_size)
    assert encoded.pooler_output.shape == (2, (overrides.get("hidden_sizes") or TINY["hidden_sizes"])[-1])
    assert len(encoded.hidden_states) == 1 + len(overrides.get("hidden_sizes") or TINY["hidden_sizes"])
    assert tiny(ImageEncoderModel, **config_kwargs).config.feature_map_size == map_size

    reconstructed = tiny(ImageAutoencoderModel, **config_kwargs)(pixel_values)
    assert reconstructed.reconstructions.shape == pixel_values.shape
    assert 0 <= reconstructed.reconstructions.min() and reconstructed.reconstructions.max() <= 1

    projected = tiny(ImageEncoderForContrastiveLearning, projection_dim=5, **config_kwargs)(pixel_values)
    assert projected.embeddings.shape == (2, 5)


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_classifier_computes_cross_entropy_with_labels(head):
    model = tiny(ImageEncoderForImageClassification, num_labels=4, classifier_head=head, classifier_hidden_size=6)
    labels = torch.tensor([0, 3, 1])

    output = model(images(), labels=labels)

    assert output.logits.shape == (3, 4)
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.logits, labels))
    assert model(images()).loss is None
    assert type(output).__name__ == "ImageClassifierOutput"
    assert isinstance(model.classifier, torch.nn.Linear if head == "linear" else torch.nn.Sequential)


def test_classifier_loss_is_float32_under_bf16_autocast():
    model = tiny(ImageEncoderForImageClassification, num_labels=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(images(), labels=torch.tensor([0, 1, 2]))
    assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)


def test_autoencoder_loss_is_reconstruction_plus_weighted_sparsity():
    model = tiny(ImageAutoencoderModel, sparsity_weight=0.5, sparsity_target=0.1)
    pixel_values = images()

    output = model(pixel_values)

    logits = torch.logit(output.reconstructions.double().clamp(1e-12, 1 - 1e-12))
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, pixel_values.double())
    torch.testing.assert_close(output.reconstruction_loss.double(), bce, rtol=1e-4, atol=1e-5)
    rho_hat = output.code.mean(0)
    reference = (0.1 * torch.log(0.1 / rho_hat) + 0.9 * torch.log(0.9 / (1 - rho_hat))).sum()
    torch.testing.assert_close(output.sparsity_loss, reference)
    torch.testing.assert_close(output.loss, output.reconstruction_loss + 0.5 * output.sparsity_loss)


def test_sparsity_kl_is_zero_at_the_target():
    assert sparsity_kl(torch.full((4, 6), 0.05), 0.05).abs() < 1e-6
    assert sparsity_kl(torch.full((4, 6), 0.5), 0.05) > 1


def test_mse_loss_option():
    model = tiny(ImageAutoencoderModel, reconstruction_loss="mse")
    pixel_values = images()
    output = model(pixel_values)
    torch.testing.assert_close(output.reconstruction_loss, ((output.reconstructions - pixel_values) ** 2).mean())


@pytest.mark.parametrize("denoising", ["gaussian", "mask"])
def test_denoising_corrupts_the_input_only_while_training(denoising):
    model = tiny(ImageAutoencoderModel, denoising=denoising, mask_ratio=0.5, noise_std=0.3)
    pixel_values = images(8)

    corrupted = model.corrupt(pixel_values, torch.Generator().manual_seed(0))

    assert corrupted.shape == pixel_values.shape and 0 <= corrupted.min() and corrupted.max() <= 1
    assert not torch.equal(corrupted, pixel_values)
    if denoising == "mask":
        zeroed = (corrupted == 0).float().mean().item()
        assert 0.3 < zeroed < 0.7  # about half the 4x4 patches
    model.eval()
    clean = model(pixel_values).reconstruction_loss
    assert torch.equal(clean, model(pixel_values, corrupt=False).reconstruction_loss)
    noisy = model(pixel_values, corrupt=True, generator=torch.Generator().manual_seed(0)).reconstruction_loss
    assert not torch.equal(clean, noisy)
    torch.testing.assert_close(model.reconstruct(pixel_values), model(pixel_values, corrupt=False).reconstructions)


def test_autoencoder_training_lowers_the_loss():
    model = tiny(ImageAutoencoderModel)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    pixel_values = images(16)
    losses = []
    for _ in range(15):
        loss = model(pixel_values).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def _encoder_state(model):
    return {k: v for k, v in model.state_dict().items()}


@pytest.mark.parametrize("source_class", [ImageAutoencoderModel, ImageEncoderForContrastiveLearning])
def test_pretrained_encoder_weights_load_into_the_classifier(tmp_path, source_class):
    source = tiny(source_class, seed=1, sparsity_weight=0.1)
    with torch.no_grad():  # non-default BatchNorm statistics must travel too
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    source.save_pretrained(tmp_path)

    classifier = AutoModelForImageClassification.from_pretrained(tmp_path, num_labels=7)

    assert type(classifier) is ImageEncoderForImageClassification and classifier.config.num_labels == 7
    expected = source.image_encoder.state_dict()
    loaded = classifier.image_encoder.state_dict()
    assert expected.keys() == loaded.keys()
    for name, tensor in expected.items():
        assert torch.equal(tensor, loaded[name]), name
    assert classifier.classifier.weight.abs().sum() > 0  # the new head is initialized, not zeros
    assert type(AutoModel.from_pretrained(tmp_path)) is ImageEncoderModel


def test_autoencoder_round_trips_through_its_auto_class(tmp_path):
    model = tiny(ImageAutoencoderModel, denoising="mask", image_size=32, num_channels=3)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedImageModeling.from_pretrained(tmp_path)
    assert type(loaded) is ImageAutoencoderModel and loaded.config.denoising == "mask"
    pixel_values = images(2, 3, 32)
    torch.testing.assert_close(loaded.reconstruct(pixel_values), model.reconstruct(pixel_values))


def test_wrong_channels_and_range_are_refused_with_the_fix():
    model = tiny(ImageEncoderModel)
    with pytest.raises(ValueError, match=r"num_channels=1"):
        model(images(num_channels=3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model(images() * 255)
    with pytest.raises(ValueError, match="28x28"):
        tiny(ImageAutoencoderModel)(images(image_size=32))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_size": 4}, "image_size"),
        ({"num_channels": 2}, "num_channels"),
        ({"hidden_sizes": []}, "hidden_sizes"),
        ({"hidden_sizes": [4, 8], "depths": [1]}, "depths"),
        ({"stem_stride": 3}, "stem_stride"),
        ({"classifier_head": "deep"}, "classifier_head"),
        ({"reconstruction_loss": "l1"}, "reconstruction_loss"),
        ({"sparsity_target": 1.0}, "sparsity_target"),
        ({"denoising": "blur"}, "denoising"),
        ({"mask_ratio": 1.0}, "mask_ratio"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        ImageEncoderConfig(**overrides)


def test_convs_use_he_init_and_batchnorm_starts_at_identity():
    model = tiny(ImageEncoderModel, hidden_sizes=[32, 32])
    block = model.stages[0][0]
    assert torch.equal(block.norm2.weight, torch.ones_like(block.norm2.weight)) and not block.norm2.bias.any()
    fan_out = 32 * 3 * 3
    assert block.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.15)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
@pytest.mark.parametrize("num_channels", [1, 3])
def test_image_processor_matches_the_training_conversion(mode, num_channels):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(40, 30, 3), dtype=np.uint8)).convert(mode)
    processor = ImageEncoderImageProcessor(image_size=28, num_channels=num_channels)

    pixel_values = processor(image, return_tensors="pt")["pixel_values"]

    expected = pil_to_tensor(image, num_channels, 28).float()[None] / 255
    assert pixel_values.shape == (1, num_channels, 28, 28)
    torch.testing.assert_close(pixel_values, expected)


def test_image_classification_pipeline_without_torchvision(tmp_path):
    model = tiny(ImageEncoderForImageClassification, num_labels=3, id2label={0: "shirt", 1: "bag", 2: "shoe"})
    model.save_pretrained(tmp_path)
    ImageEncoderImageProcessor(image_size=28, num_channels=1).save_pretrained(tmp_path)
    assert type(AutoImageProcessor.from_pretrained(tmp_path)) is ImageEncoderImageProcessor
    classify = pipeline("image-classification", model=str(tmp_path))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, size=(50, 50, 3), dtype=np.uint8))

    predictions = classify([image, image.convert("L")], top_k=3)

    assert [len(p) for p in predictions] == [3, 3]
    assert {p["label"] for p in predictions[0]} == {"shirt", "bag", "shoe"}
    assert sum(p["score"] for p in predictions[0]) == pytest.approx(1.0, abs=1e-5)
