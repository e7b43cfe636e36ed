"""`vae` workload: hfgen's VAE training against pythae's `VAE` + `BaseTrainer` (PyPI `pythae`).

Both train the same encoder and decoder (hfgen's VAEEncoder/VAEDecoder modules, wrapped in
pythae's BaseEncoder/BaseDecoder interfaces), the same Bernoulli likelihood (pythae's `bce`
reconstruction loss sums over pixels like hfgen's), on the same Fashion-MNIST training images,
for the same epochs, batch size and learning rate, in float32 (pythae's mixed precision is
CUDA-only). Reported: seconds per epoch, images/s, and the test-split ELBO per image computed by
the same estimator for both (hfgen's `evaluate_elbo`: one posterior sample per image). hfgen's
default bf16 is measured too, as `hfgen_bf16`. Peak memory (``peak_memory`` of each) is the peak RSS of a
fresh process that loads the data and trains only that contender (hfgen in float32), built the same way,
for about `PROBE_STEPS` steps (`memory_probe`); it includes the Python/torch baseline, the same for both.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

MODEL = {"type": "hfgen-vae", "image_size": 28, "num_channels": 1, "latent_dim": 16, "hidden_widths": [32, 64]}
PROBE_STEPS = 5  # training steps of the memory probe: every buffer and optimizer state exists after the first

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
    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    from hfgen.models import VAEModel

    torch.manual_seed(seed)
    model = _pythae_model(config)
    trainer = BaseTrainer(
        model=model,
        train_dataset=BaseDataset(train_pixels, torch.zeros(len(train_pixels))),  # as pythae's TrainingPipeline wraps a tensor
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


def settings_for(quick: bool) -> tuple[int, int, float]:
    """(epochs, batch_size, learning_rate) of both contenders."""
    return (1, 128, 1e-3) if quick else (5, 128, 1e-3)


def load_pixels(quick: bool) -> dict:
    """{"train", "test"}: uint8 (N, 1, 28, 28) fashion_mnist images (quick: the first 20,000 training images)."""
    from hfgen.data import ImageDataset, build_dataset

    dataset = build_dataset("fashion_mnist")
    rows = {"train": dataset["train"], "test": dataset["test"]}
    if quick:
        rows["train"] = rows["train"].select(range(20_000))
    return {name: ImageDataset(part, image_column="image", image_size=28, num_channels=1).pixels for name, part in rows.items()}


def hfgen_recipe(train_images: int, epochs: int, batch_size: int, learning_rate: float, precision: str, output_dir: str,
                 threads: int | None, max_steps: int | None = None):
    """hfgen's side: `method: vae` on the first ``train_images`` fashion_mnist training images."""
    from hfgen.config import recipe_from_dict

    return recipe_from_dict({
        "method": "vae",
        "model": MODEL,
        "data": {"dataset": "fashion_mnist", "max_train_samples": train_images, "eval_split": None},
        "train": {
            "output_dir": output_dir, "num_epochs": epochs, "max_steps": max_steps, "batch_size": batch_size,
            "learning_rate": learning_rate, "mixed_precision": precision, "seed": 0, "save_every": None,
            "sample_every": None, "log_every": 100, "report_to": "none", "cpu_threads": threads,
        },
    }, where="benchmark vae")


def memory_probe(contender: str, quick: bool = False, threads: int | None = None) -> dict:
    """Peak memory of this process after training only ``contender`` (hfgen in float32, or peer) for about
    `PROBE_STEPS` steps (run it in a fresh process: `hfgen.benchmarks.memory.measure_peak_memory`)."""
    from hfgen.benchmarks.memory import peak_memory_mb
    from hfgen.models import VAEConfig
    from hfgen.train import run as train
    from hfgen.train.accelerator import cpu_threads_per_process

    epochs, batch_size, learning_rate = settings_for(quick)
    train_images = 20_000 if quick else 60_000
    with tempfile.TemporaryDirectory() as tmp:
        if contender == "hfgen":
            _fresh_accelerator_state()
            train(hfgen_recipe(train_images, epochs, batch_size, learning_rate, "no", str(Path(tmp) / "hfgen"), threads, max_steps=PROBE_STEPS))
        else:  # the peer's whole training set is held as float, as in `run`; pythae trains whole epochs, so one over a slice
            torch.set_num_threads(cpu_threads_per_process(threads))
            train_pixels = load_pixels(quick)["train"].float() / 255
            config = VAEConfig(**{k: v for k, v in MODEL.items() if k != "type"})
            train_peer(config, train_pixels[: PROBE_STEPS * batch_size], 1, batch_size, learning_rate, 0, str(Path(tmp) / "pythae"))
    return peak_memory_mb()


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Train both for the same epochs; compare images/s and test ELBO (``threads``: torch threads of both;
    default every core this process may use)."""
    from transformers import AutoModel

    from hfgen.benchmarks.memory import measure_peak_memory
    from hfgen.models import VAEConfig
    from hfgen.train import run as train
    from hfgen.train.accelerator import cpu_threads_per_process

    epochs, batch_size, learning_rate = settings_for(quick)
    pixels = load_pixels(quick)
    train_images = len(pixels["train"])
    test_pixels = pixels["test"].float() / 255  # (N, 1, 28, 28) in [0, 1]

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("no", "bf16"):
            recipe = hfgen_recipe(train_images, epochs, batch_size, learning_rate, precision, str(Path(tmp) / f"hfgen-{precision}"), threads)
            _fresh_accelerator_state()
            out = train(recipe)
            stats = json.loads((out / "eval_results.json").read_text())
            model = AutoModel.from_pretrained(out)
            results[precision] = {
                "images_per_s": stats["train_images_per_s"],
                "seconds_per_epoch": stats["train_seconds"] / epochs,
                "test_elbo": test_elbo(model, test_pixels),
            }
        torch.set_num_threads(cpu_threads_per_process(threads))  # as hfgen's accelerator sets it
        config = VAEConfig(**{k: v for k, v in MODEL.items() if k != "type"})
        peer_model, seconds = train_peer(config, pixels["train"].float() / 255, epochs, batch_size, learning_rate, 0, str(Path(tmp) / "pythae"))
    peer = {
        "name": "pythae 0.1.2 VAE + BaseTrainer",
        "images_per_s": train_images * epochs / seconds,
        "seconds_per_epoch": seconds / epochs,
        "test_elbo": test_elbo(peer_model, test_pixels),
    }
    results["no"]["peak_memory"] = measure_peak_memory(__name__, "hfgen", quick, threads)
    peer["peak_memory"] = measure_peak_memory(__name__, "peer", quick, threads)
    return {
        "workload": "vae",
        "settings": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "precision": "fp32 (both)",
                     "train_images": train_images, "model": MODEL, "threads": torch.get_num_threads(),
                     "quality": "test ELBO per image (nats), 10,000 fashion_mnist test images",
                     "peak_memory": f"peak of a fresh process training one contender (hfgen fp32) about {PROBE_STEPS} steps"},
        "hfgen": results["no"],
        "hfgen_bf16": results["bf16"],
        "peer": peer,
        "ratio": results["no"]["images_per_s"] / peer["images_per_s"],
        "throughput_key": "images_per_s",
        "quality_key": "test_elbo",
        "quality_higher_is_better": True,
    }
