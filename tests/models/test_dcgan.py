import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

from hfgen.models import MODEL_CONFIGS, DCGANConfig, DCGANModel


def tiny_config(**overrides):
    sizes = dict(latent_dim=8, generator_width=4, discriminator_width=4, label_embedding_dim=4)
    return DCGANConfig(**{**sizes, **overrides})


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return DCGANModel(tiny_config(**overrides))


def run_training_batches(model, num_batches=3):
    """Forward passes in train mode, so BatchNorm running statistics move away from their initial values."""
    model.train()
    config = model.config
    labels = torch.arange(4) % config.num_classes if config.num_classes else None
    with torch.no_grad():
        for _ in range(num_batches):
            real = torch.rand(4, config.num_channels, config.image_size, config.image_size) * 2 - 1
            model(latents=torch.randn(4, config.latent_dim), labels=labels, pixel_values=real)


@pytest.mark.parametrize("num_channels", [1, 3])
@pytest.mark.parametrize("image_size", [28, 32, 64])
def test_forward_shapes_for_every_image_size(image_size, num_channels):
    model = tiny_model(image_size=image_size, num_channels=num_channels)
    real = torch.rand(2, num_channels, image_size, image_size) * 2 - 1

    output = model(latents=torch.randn(2, 8), pixel_values=real)

    assert output.images.shape == (2, num_channels, image_size, image_size)
    assert output.images.abs().max() <= 1
    assert output.logits.shape == (2,)
    assert torch.isfinite(output.logits).all()
    # Each network also works on its own (the training loop prepares them separately).
    assert model.discriminator(model.generator(torch.randn(3, 8))).shape == (3,)


def test_forward_returns_only_what_was_asked_for():
    model = tiny_model()
    assert model(latents=torch.randn(2, 8)).logits is None
    assert model(pixel_values=torch.zeros(2, 1, 28, 28)).images is None
    with pytest.raises(ValueError, match="latents.*pixel_values"):
        model()


def test_one_optimizer_step_per_network_changes_both():
    model = tiny_model(num_classes=3)
    generator_optimizer = torch.optim.Adam(model.generator.parameters(), lr=1e-2)
    discriminator_optimizer = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    labels = torch.tensor([0, 1, 2, 0])

    fake = model.generator(torch.randn(4, 8), labels)
    real_logits = model.discriminator(torch.rand(4, 1, 28, 28) * 2 - 1, labels)
    fake_logits = model.discriminator(fake.detach(), labels)
    discriminator_loss = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    discriminator_loss.backward()
    discriminator_optimizer.step()
    generator_loss = F.softplus(-model.discriminator(fake, labels)).mean()
    generator_optimizer.zero_grad()
    generator_loss.backward()
    generator_optimizer.step()

    assert torch.isfinite(discriminator_loss) and torch.isfinite(generator_loss)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert any(name.startswith("generator.") for name in changed)
    assert any(name.startswith("discriminator.") for name in changed)
    assert "discriminator.class_projection.weight" in changed


def test_save_and_auto_load_round_trip(tmp_path):
    model = tiny_model(num_classes=2, id2label={0: "cat", 1: "dog"})
    run_training_batches(model)
    model.eval()
    model.save_pretrained(tmp_path)

    loaded = AutoModel.from_pretrained(tmp_path)

    assert type(loaded) is DCGANModel
    assert loaded.config.id2label == {0: "cat", 1: "dog"}
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for name, tensor in original_state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    assert original_state["generator.layers.1.running_mean"].abs().sum() > 0  # buffers were really exercised
    assert original_state["generator.layers.1.num_batches_tracked"] == 3
    assert torch.equal(loaded.generate(4, seed=0), model.generate(4, seed=0))


def test_generate_is_seeded_and_in_unit_range():
    model = tiny_model()

    images = model.generate(5, seed=0)

    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images, model.generate(5, seed=0))
    torch.testing.assert_close(images, model.generate(5, seed=0, batch_size=2))  # same latents
    assert not torch.allclose(images, model.generate(5, seed=1))
    assert not torch.allclose(model.generate(5), model.generate(5))  # no seed: fresh samples each call


def test_generate_leaves_global_rng_and_train_modes_alone():
    model = tiny_model()
    model.generator.train()
    model.discriminator.eval()
    rng_state = torch.get_rng_state()

    model.generate(3, seed=0)
    model.generate(3)

    assert torch.equal(torch.get_rng_state(), rng_state)
    assert model.generator.training and all(m.training for m in model.generator.modules())
    assert not model.discriminator.training
    assert model.generator.layers[1].num_batches_tracked == 0  # eval mode: running statistics untouched


def test_init_follows_the_paper():
    torch.manual_seed(0)
    model = DCGANModel(DCGANConfig())  # full size: enough weights for stable statistics

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            assert module.weight.mean().abs() < 0.002, name
            assert module.weight.std().item() == pytest.approx(0.02, rel=0.1), name
            assert module.bias is None or not module.bias.any(), name
        elif isinstance(module, torch.nn.BatchNorm2d):
            assert module.weight.mean().item() == pytest.approx(1.0, abs=0.01), name
            assert module.weight.std().item() == pytest.approx(0.02, rel=0.5), name
            assert not module.bias.any(), name


def test_labels_condition_both_networks():
    model = tiny_model(num_classes=3)
    latents = torch.randn(2, 8).repeat(2, 1)
    images = torch.rand(2, 1, 28, 28).repeat(2, 1, 1, 1) * 2 - 1
    labels = torch.tensor([0, 0, 2, 2])

    output = model(latents=latents, labels=labels, pixel_values=images)

    assert not torch.allclose(output.images[:2], output.images[2:])
    assert not torch.allclose(output.logits[:2], output.logits[2:])
    assert not torch.allclose(model.generate(2, seed=0, labels=[1, 1]), model.generate(2, seed=0, labels=[2, 2]))


def test_conditional_generate_cycles_through_classes_by_default():
    model = tiny_model(num_classes=3)
    assert torch.equal(model.generate(5, seed=0), model.generate(5, seed=0, labels=torch.tensor([0, 1, 2, 0, 1])))


@pytest.mark.parametrize("part", ["generator", "discriminator"])
def test_conditional_model_requires_labels(part):
    model = tiny_model(num_classes=3)
    inputs = {"generator": {"latents": torch.randn(2, 8)}, "discriminator": {"pixel_values": torch.zeros(2, 1, 28, 28)}}
    with pytest.raises(ValueError, match="class-conditional.*pass labels"):
        model(**inputs[part])


def test_unconditional_model_rejects_labels():
    model = tiny_model()
    with pytest.raises(ValueError, match="unconditional"):
        model(latents=torch.randn(2, 8), labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="unconditional"):
        model.generate(2, labels=[0, 1])


@pytest.mark.parametrize("labels", [[0, 3], [0], [0.0, 1.0]])
def test_generate_rejects_bad_labels(labels):
    with pytest.raises(ValueError, match="labels"):
        tiny_model(num_classes=3).generate(2, seed=0, labels=labels)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_size": 30}, "image_size"),
        ({"image_size": 28.0}, "image_size"),
        ({"num_channels": 2}, "num_channels"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"generator_width": -1}, "generator_width"),
        ({"num_classes": -1}, "num_classes"),
        ({"num_classes": 3, "id2label": {0: "a", 1: "b"}}, "id2label"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        DCGANConfig(**overrides)


def test_config_defaults_and_registration():
    config = DCGANConfig()
    assert (config.image_size, config.num_channels, config.latent_dim, config.num_classes) == (28, 1, 100, 0)
    assert MODEL_CONFIGS["hfgen-dcgan"] is DCGANConfig
    assert DCGANConfig(num_classes=4).id2label == {i: f"LABEL_{i}" for i in range(4)}


REMOTE_CODE_SCRIPT = """
import sys
sys.modules["hfgen"] = None  # the saved folder must load without hfgen: block it even where it is installed
try:
    import hfgen
except ImportError:
    pass
else:
    raise SystemExit("hfgen is importable")
import torch
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True)
torch.save({"module": type(model).__module__, "images": model.generate(3, seed=0)}, sys.argv[2])
"""


@pytest.mark.slow  # a fresh interpreter importing torch + transformers: 4-7 s
def test_saved_folder_loads_with_trust_remote_code_without_hfgen(tmp_path, monkeypatch):
    # register_for_auto_class sets a class attribute; monkeypatch restores it so other tests save plain folders.
    monkeypatch.setattr(DCGANConfig, "_auto_class", None)
    monkeypatch.setattr(DCGANModel, "_auto_class", None)
    DCGANConfig.register_for_auto_class()
    DCGANModel.register_for_auto_class("AutoModel")
    model = tiny_model(num_classes=2)
    run_training_batches(model)
    model_dir, result_file = tmp_path / "model", tmp_path / "result.pt"
    model.save_pretrained(model_dir)

    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_dcgan.DCGANConfig",
        "AutoModel": "modeling_dcgan.DCGANModel",
    }
    assert {"configuration_dcgan.py", "modeling_dcgan.py"} <= {path.name for path in model_dir.iterdir()}

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    process = subprocess.run(
        [sys.executable, "-c", REMOTE_CODE_SCRIPT, str(model_dir), str(result_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    result = torch.load(result_file)
    assert result["module"].startswith("transformers_modules.")
    assert torch.equal(result["images"], model.generate(3, seed=0))
