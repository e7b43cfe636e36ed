import json
import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel

from hfgen.models import MODEL_CONFIGS, VAEConfig, VAEModel


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return VAEModel(VAEConfig(**{"latent_dim": 4, "hidden_widths": [4, 8], **overrides}))


def images(batch_size=3, num_channels=1, image_size=28, seed=0):
    return torch.rand(batch_size, num_channels, image_size, image_size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("num_channels", [1, 3])
@pytest.mark.parametrize("image_size", [28, 32, 64])
def test_forward_shapes_for_every_image_size(image_size, num_channels):
    model = tiny_model(image_size=image_size, num_channels=num_channels)
    pixel_values = images(2, num_channels, image_size)

    output = model(pixel_values)

    assert output.reconstructions.shape == pixel_values.shape
    assert output.reconstructions.min() >= 0 and output.reconstructions.max() <= 1
    assert output.latent_mean.shape == output.latent_logvar.shape == (2, 4)
    assert output.loss.shape == output.reconstruction_loss.shape == output.kl.shape == ()
    assert torch.isfinite(output.loss)
    assert model.decode(torch.randn(5, 4)).shape == (5, num_channels, image_size, image_size)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_loss_is_reconstruction_plus_weighted_kl(likelihood):
    model = tiny_model(beta=2.0, likelihood=likelihood)
    output = model(images(), kl_weight=0.3)
    expected = output.reconstruction_loss + 2.0 * 0.3 * output.kl
    torch.testing.assert_close(output.loss, expected)


def test_kl_is_zero_for_a_standard_normal_posterior():
    model = tiny_model()
    with torch.no_grad():  # posterior mean = 0, logvar = 0 for every image
        model.encoder.latent_head.weight.zero_()
        model.encoder.latent_head.bias.zero_()
    assert model(images()).kl == 0


def test_kl_matches_torch_distributions():
    model = tiny_model()
    output = model(images(), sample=False)
    posterior = torch.distributions.Normal(output.latent_mean, torch.exp(0.5 * output.latent_logvar))
    prior = torch.distributions.Normal(0.0, 1.0)
    reference = torch.distributions.kl_divergence(posterior, prior).sum(dim=1).mean()
    torch.testing.assert_close(output.kl, reference)


def test_bernoulli_reconstruction_loss_matches_reference():
    model = tiny_model()
    pixel_values = images()

    output = model(pixel_values, sample=False)

    p = model.decode(output.latent_mean)
    log_likelihood = pixel_values * torch.log(p) + (1 - pixel_values) * torch.log(1 - p)
    torch.testing.assert_close(output.reconstruction_loss, -log_likelihood.sum(dim=(1, 2, 3)).mean())
    torch.testing.assert_close(output.reconstructions, p)


def test_gaussian_reconstruction_loss_is_the_full_negative_log_density():
    model = tiny_model(likelihood="gaussian", gaussian_std=0.2)
    pixel_values = images()

    output = model(pixel_values, sample=False)

    mean = model.decode(output.latent_mean)
    log_density = -0.5 * ((pixel_values - mean) / 0.2) ** 2 - math.log(0.2) - 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(output.reconstruction_loss, -log_density.sum(dim=(1, 2, 3)).mean())


def test_sampling_uses_the_given_generator():
    model = tiny_model()
    pixel_values = images()

    def loss(seed):
        return model(pixel_values, generator=torch.Generator().manual_seed(seed)).reconstruction_loss

    assert loss(0) == loss(0)
    assert loss(0) != loss(1)
    assert loss(0) != model(pixel_values, sample=False).reconstruction_loss


def test_loss_is_float32_under_bf16_autocast():
    model = tiny_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(images())
    assert output.loss.dtype == output.kl.dtype == output.reconstruction_loss.dtype == torch.float32
    assert torch.isfinite(output.loss)


def test_training_steps_change_weights_and_lower_the_loss():
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    pixel_values = images(8)
    losses = []
    for step in range(10):
        loss = model(pixel_values, generator=torch.Generator().manual_seed(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    assert all(not torch.equal(p, before[name]) for name, p in model.named_parameters())
    assert losses[-1] < losses[0]


def test_save_and_auto_load_round_trip(tmp_path):
    model = tiny_model(image_size=32, num_channels=3, likelihood="gaussian", hidden_widths=[4, 4, 8])
    model.save_pretrained(tmp_path)

    loaded = AutoModel.from_pretrained(tmp_path)

    assert type(loaded) is VAEModel
    assert loaded.config.hidden_widths == [4, 4, 8] and loaded.config.likelihood == "gaussian"
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for name, tensor in original_state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    assert torch.equal(loaded.generate(4, seed=0), model.generate(4, seed=0))


def test_generate_is_seeded_in_unit_range_and_leaves_global_rng_alone():
    model = tiny_model()
    model.train()
    rng_state = torch.get_rng_state()

    samples = model.generate(5, seed=0)

    assert samples.shape == (5, 1, 28, 28) and samples.dtype == torch.float32
    assert samples.min() >= 0 and samples.max() <= 1
    torch.testing.assert_close(samples, model.generate(5, seed=0, batch_size=2))  # same latents
    assert not torch.allclose(samples, model.generate(5, seed=1))
    assert not torch.allclose(model.generate(5), model.generate(5))
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert model.training


def test_reconstruct_decodes_the_posterior_mean():
    model = tiny_model()
    pixel_values = images()

    reconstructions = model.reconstruct(pixel_values)

    torch.testing.assert_close(reconstructions, model.decode(model.encode(pixel_values)[0]))
    assert torch.equal(reconstructions, model.reconstruct(pixel_values))
    assert not reconstructions.requires_grad


def test_init_is_pytorch_default_not_normal_002():
    model = tiny_model(hidden_widths=[32, 64])
    first_conv = model.encoder.layers[0]  # fan_in = 1 * 4 * 4: kaiming-uniform(a=sqrt(5)) std = 1 / sqrt(3 * 16)
    assert first_conv.weight.std().item() == pytest.approx(1 / math.sqrt(48), rel=0.15)
    assert first_conv.bias.abs().max() > 0


@pytest.mark.parametrize("bad_pixels", [images() * 2 - 1, images(image_size=32)])
def test_forward_rejects_wrong_images(bad_pixels):
    with pytest.raises(ValueError, match="pixel_values"):
        tiny_model()(bad_pixels)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"image_size": 48}, "image_size"),
        ({"num_channels": 4}, "num_channels"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"hidden_widths": []}, "hidden_widths"),
        ({"hidden_widths": [8, 16, 32]}, "hidden_widths"),  # 28 halves only twice
        ({"likelihood": "poisson"}, "likelihood"),
        ({"gaussian_std": 0.0}, "gaussian_std"),
        ({"beta": -1.0}, "beta"),
        ({"num_classes": -1}, "num_classes"),
        ({"label_embedding_dim": 0}, "label_embedding_dim"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        VAEConfig(**overrides)


def test_config_defaults_and_registration():
    config = VAEConfig()
    assert (config.image_size, config.num_channels, config.latent_dim) == (28, 1, 16)
    assert (config.hidden_widths, config.likelihood) == ([32, 64], "bernoulli")
    assert (config.gaussian_std, config.beta) == (0.1, 1.0)
    assert VAEConfig().hidden_widths is not config.hidden_widths  # no shared mutable default
    assert MODEL_CONFIGS["hfgen-vae"] is VAEConfig


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
    monkeypatch.setattr(VAEConfig, "_auto_class", None)
    monkeypatch.setattr(VAEModel, "_auto_class", None)
    VAEConfig.register_for_auto_class()
    VAEModel.register_for_auto_class("AutoModel")
    model = tiny_model()
    model_dir, result_file = tmp_path / "model", tmp_path / "result.pt"
    model.save_pretrained(model_dir)

    config = json.loads((model_dir / "config.json").read_text())
    assert config["auto_map"] == {"AutoConfig": "configuration_vae.VAEConfig", "AutoModel": "modeling_vae.VAEModel"}
    assert {"configuration_vae.py", "modeling_vae.py"} <= {path.name for path in model_dir.iterdir()}

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


def test_reduction_none_gives_per_image_terms_whose_mean_is_the_batch_loss():
    from hfgen.models import VAEConfig, VAEModel

    torch.manual_seed(0)
    model = VAEModel(VAEConfig(latent_dim=4, hidden_widths=[8, 16])).eval()
    pixels = torch.rand(5, 1, 28, 28)
    per_image = model(pixels, sample=False, reduction="none")
    batch = model(pixels, sample=False)
    assert per_image.loss.shape == per_image.kl.shape == per_image.reconstruction_loss.shape == (5,)
    torch.testing.assert_close(per_image.loss.mean(), batch.loss)
    torch.testing.assert_close(per_image.kl.mean(), batch.kl)
    with pytest.raises(ValueError, match="reduction"):
        model(pixels, reduction="sum")


def test_conditional_vae_takes_labels_in_encoder_and_decoder():
    model = tiny_model(num_classes=3, label_embedding_dim=5)
    x, labels = images(4), torch.tensor([0, 1, 2, 0])
    out = model(x, labels=labels, sample=False)
    assert out.loss.shape == () and out.reconstructions.shape == x.shape
    with pytest.raises(ValueError, match="class-conditional"):
        model(x)
    with pytest.raises(ValueError, match="unconditional"):
        tiny_model()(x, labels=labels)
    # the label changes both the posterior and the decoding
    mean_a, _ = model.encode(x, labels)
    mean_b, _ = model.encode(x, torch.tensor([1, 2, 0, 1]))
    assert not torch.allclose(mean_a, mean_b)
    a = model.generate(3, seed=0, labels=[0, 0, 0])
    b = model.generate(3, seed=0, labels=[2, 2, 2])
    assert not torch.allclose(a, b)  # same latents, other class
    assert torch.equal(model.generate(3, seed=0), model.generate(3, seed=0, labels=[0, 1, 2]))  # None: classes in turn
    with pytest.raises(ValueError, match="class ids"):
        model.generate(2, seed=0, labels=[0, 3])
    with pytest.raises(ValueError, match="unconditional"):
        tiny_model().generate(2, seed=0, labels=[0, 1])


def test_conditional_vae_round_trips(tmp_path):
    model = tiny_model(num_classes=3)
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.num_classes == 3
    assert torch.equal(model.generate(3, seed=1), loaded.generate(3, seed=1))
