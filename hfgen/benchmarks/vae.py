"""`vae` workload: hfgen's VAE training against pythae's `VAE` + `BaseTrainer` (PyPI `pythae`).

Both train the same encoder and decoder (hfgen's VAEEncoder/VAEDecoder modules, wrapped in
pythae's BaseEncoder/BaseDecoder interfaces), the same Bernoulli likelihood (pythae's `bce`
reconstruction loss sums over pixels like hfgen's), on the same Fashion-MNIST training images,
for the same epochs, batch size and learning rate, in float32 (pythae's mixed precision is
CUDA-only). Reported: seconds per epoch, images/s, and the test-split ELBO per image computed by
the same estimator for both (hfgen's `evaluate_elbo`: one posterior sample per image). hfgen's
default bf16 is measured too, as `hfgen_bf16`.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch


def _pythae_model(config):
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    from hfgen.models.vae.modeling_vae import VAEDecoder, VAEEncoder

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = VAEEncoder(config)

        def forward(self, x):
            mean, logvar = self.net(x)
            return ModelOutput(embedding=mean, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = VAEDecoder(config)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))  # pythae's bce expects probabilities

    pythae_config = VAEConfig(input_dim=(config.num_channels, config.image_size, config.image_size), latent_dim=config.latent_dim, reconstruction_loss="bce")
    return VAE(pythae_config, encoder=Encoder(), decoder=Decoder())


def train_peer(config, train_pixels: torch.Tensor, epochs: int, batch_size: int, learning_rate: float, seed: int, output_dir: str):
    """pythae's BaseTrainer on the same images; returns (hfgen VAEModel holding its weights, seconds)."""
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from hfgen.models import VAEModel

    torch.manual_seed(seed)
    model = _pythae_model(config)
    trainer = BaseTrainer(
        model=model,
        train_dataset=train_pixels,
        training_config=BaseTrainerConfig(
            output_dir=output_dir, num_epochs=epochs, learning_rate=learning_rate,
            per_device_train_batch_size=batch_size, steps_saving=None, no_cuda=True, seed=seed,
        ),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    result = VAEModel(config)
    result.encoder.load_state_dict(model.encoder.net.state_dict())
    result.decoder.load_state_dict(model.decoder.net.state_dict())
    return result, seconds


def test_elbo(model, test_pixels: torch.Tensor) -> float:
    """Mean per-image ELBO (nats) on the test images, hfgen's estimator, fixed seed."""
    from accelerate import Accelerator

    from hfgen.train.vae import evaluate_elbo

    _fresh_accelerator_state()
    loader = torch.utils.data.DataLoader([{"pixel_values": p} for p in test_pixels], batch_size=500)
    return evaluate_elbo(Accelerator(cpu=True), model, loader)["eval_elbo"]


def _fresh_accelerator_state() -> None:
    """Accelerate keeps one process-wide state; each contender here needs its own precision."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def run(quick: bool = False) -> dict:
    from hfgen.config import recipe_from_dict
    from hfgen.data import ImageDataset, build_dataset
    from hfgen.train import run as train
    from transformers import AutoModel

    epochs, batch_size, learning_rate = (1, 128, 1e-3) if quick else (5, 128, 1e-3)
    model_config = {"type": "hfgen-vae", "image_size": 28, "num_channels": 1, "latent_dim": 16, "hidden_widths": [32, 64]}
    dataset = build_dataset("fashion_mnist")
    train_rows, test_rows = dataset["train"], dataset["test"]
    if quick:
        train_rows = train_rows.select(range(20_000))
    pixels = {name: ImageDataset(rows, image_column="image", image_size=28, num_channels=1).pixels for name, rows in (("train", train_rows), ("test", test_rows))}
    test_pixels = pixels["test"].float() / 255  # (N, 1, 28, 28) in [0, 1]

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("no", "bf16"):
            recipe = recipe_from_dict({
                "method": "vae",
                "model": model_config,
                "data": {"dataset": "fashion_mnist", "max_train_samples": len(train_rows), "eval_split": None},
                "train": {
                    "output_dir": str(Path(tmp) / f"hfgen-{precision}"), "num_epochs": epochs, "batch_size": batch_size,
                    "learning_rate": learning_rate, "mixed_precision": precision, "seed": 0, "save_every": None,
                    "sample_every": None, "log_every": 100, "report_to": "none",
                },
            }, where="benchmark vae")
            _fresh_accelerator_state()
            out = train(recipe)
            stats = json.loads((out / "eval_results.json").read_text())
            model = AutoModel.from_pretrained(out)
            results[precision] = {
                "images_per_s": stats["train_images_per_s"],
                "seconds_per_epoch": stats["train_seconds"] / epochs,
                "test_elbo": test_elbo(model, test_pixels),
            }
        from hfgen.models import VAEConfig

        config = VAEConfig(**{k: v for k, v in model_config.items() if k != "type"})
        peer_model, seconds = train_peer(config, pixels["train"].float() / 255, epochs, batch_size, learning_rate, 0, str(Path(tmp) / "pythae"))
    peer = {
        "name": "pythae 0.1.2 VAE + BaseTrainer",
        "images_per_s": len(train_rows) * epochs / seconds,
        "seconds_per_epoch": seconds / epochs,
        "test_elbo": test_elbo(peer_model, test_pixels),
    }
    return {
        "workload": "vae",
        "settings": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "precision": "fp32 (both)",
                     "train_images": len(train_rows), "model": model_config, "quality": "test ELBO per image (nats), 10,000 fashion_mnist test images"},
        "hfgen": results["no"],
        "hfgen_bf16": results["bf16"],
        "peer": peer,
        "ratio": results["no"]["images_per_s"] / peer["images_per_s"],
    }
