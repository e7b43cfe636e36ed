"""The `gan` and `vae` benchmarks' peer contenders, as their fresh processes run them (called in-process here, on tiny
Fashion-MNIST files): each trains, saves the model it trained where the parent scores it, and reports its figures.
(hfgen's own side is `hfgen.train.run`, whose output folder is tested with the training methods; it is not run here
because it changes this process's allocator settings for good.)"""

import json

import pytest
import torch


def _run_peer(module, tmp_path, **sizes) -> dict:
    settings = {**module.settings_for(quick=True, threads=1), "precision": "no", **sizes}  # the precision run_contenders gives it
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    module._contender_main("peer", str(tmp_path / "settings.json"), str(tmp_path / "peer.json"))
    result = json.loads((tmp_path / "peer.json").read_text())
    assert result["images_per_s"] > 0 and result["process_cpu_s"] > 0 and result["peak_memory"]["peak_rss_mb"] > 0
    return settings


def _changed(trained: torch.nn.Module, initial: torch.nn.Module) -> bool:
    initial_state = initial.state_dict()
    return any(not torch.equal(value, initial_state[name]) for name, value in trained.state_dict().items() if value.is_floating_point())


def test_gan_peer_saves_the_dcgan_it_trained(tiny_fashion_mnist_dir, tmp_path):
    from hfgen.benchmarks import gan
    from hfgen.models import DCGANConfig, DCGANModel

    settings = _run_peer(gan, tmp_path, steps=2, batch_size=4)
    saved = DCGANModel.from_pretrained(tmp_path / "peer")
    torch.manual_seed(settings["seed"])  # as `train_peer` builds it: the untrained model
    initial = DCGANModel(DCGANConfig(**{k: v for k, v in settings["model"].items() if k != "type"}))
    assert _changed(saved.generator, initial.generator)
    assert saved.generate(2, seed=0).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("precision", ["no", "bf16"])  # bf16: pythae's BaseTrainer under CPU autocast (its own amp is CUDA-only)
def test_vae_peer_saves_the_weights_pythae_trained_as_an_hfgen_vae(tiny_fashion_mnist_dir, tmp_path, monkeypatch, precision):
    pytest.importorskip("pythae")
    from hfgen.benchmarks import vae
    from hfgen.models import VAEModel

    built, build = [], vae._pythae_model

    def keep_built(config):
        built.append(build(config))
        return built[-1]

    monkeypatch.setattr(vae, "_pythae_model", keep_built)
    settings = _run_peer(vae, tmp_path, batch_size=4, train_images=None, precision=precision)
    saved = VAEModel.from_pretrained(tmp_path / "peer")
    (trained,) = built  # the pythae model, after its BaseTrainer trained it in place
    for ours, theirs in ((saved.encoder, trained.encoder.net), (saved.decoder, trained.decoder.net)):
        theirs_state = theirs.state_dict()
        assert all(torch.equal(value, theirs_state[name]) for name, value in ours.state_dict().items())
    test_pixels = vae.load_pixels(settings["dataset"], "test")  # the 8 tiny test images, uint8
    assert len(test_pixels) == 8 and vae.test_elbo(saved, test_pixels) < 0
