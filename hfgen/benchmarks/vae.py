"""`vae` workload: hfgen's VAE training against pythae's `VAE` + `BaseTrainer` (PyPI `pythae`).

Both train the same encoder and decoder (hfgen's VAEEncoder/VAEDecoder modules, wrapped in
pythae's BaseEncoder/BaseDecoder interfaces), the same Bernoulli likelihood (pythae's `bce`
reconstruction loss sums over pixels like hfgen's), on the same Fashion-MNIST training images,
for the same epochs, batch size, learning rate and torch threads, each at its best precision on the
machine at hand (`hfgen.benchmarks.precision`): hfgen at `train.mixed_precision: auto` (and, as
``hfgen_other_precision``, at the fixed precision `auto` did not pick), the peer at the faster of fp32
and bf16 in a trial of one epoch of `TRIAL_IMAGES` images. pythae's own mixed precision (``amp``) is
CUDA-only, so on CPU the peer's bf16 is its BaseTrainer with ``amp_context`` set to CPU bf16 autocast.

Each contender (``hfgen``, ``hfgen_other_precision``, ``peer``) runs in its own fresh Python process, one after the
other: hfgen's training sets process-wide state that a contender trained after it in the same process
would inherit (glibc's allocator settings from `train.reuse_cpu_memory`, Accelerate's state and precision,
torch's thread count, warm caches), so the ratio would depend on the order. Reported per contender: seconds
per epoch and images/s of the training loop, the wall time of its process (``wall_s``: imports, data,
training, save), its CPU seconds (``process_cpu_s``: a wall time far above them means it waited for a core on
a shared machine) and its peak memory (``peak_memory``: `hfgen.benchmarks.memory.peak_memory_mb` at the end
of that process, which trains only that contender; it includes the Python/torch baseline, the same for all).
Each process saves its encoder and decoder as an hfgen VAEModel; the test-split ELBO per image is then
computed here by the same estimator for all (hfgen's `evaluate_elbo`: one posterior sample per image).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

MODEL = {"type": "hfgen-vae", "image_size": 28, "num_channels": 1, "latent_dim": 16, "hidden_widths": [32, 64]}
DATASET = "fashion_mnist"
CONTENDERS = ("hfgen", "hfgen_other_precision", "peer")
TRIAL_IMAGES = 5_000  # the peer's precision trial: one epoch of these, at each precision


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


def train_peer(config, train_pixels: torch.Tensor, epochs: int, batch_size: int, learning_rate: float, seed: int, output_dir: str,
               mixed_precision: str = "no"):
    """pythae's BaseTrainer on the same images (``mixed_precision`` "bf16": under CPU bf16 autocast); returns
    (hfgen VAEModel holding its weights, seconds)."""
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
    if mixed_precision == "bf16":  # where pythae's `amp` would put torch.autocast("cuda") (it turns `amp` off without CUDA)
        trainer.amp_context = torch.autocast("cpu", dtype=torch.bfloat16)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    result = VAEModel(config)
    result.encoder.load_state_dict(model.encoder.net.state_dict())
    result.decoder.load_state_dict(model.decoder.net.state_dict())
    return result, seconds


def test_elbo(model, test_pixels: torch.Tensor) -> float:
    """Mean per-image ELBO (nats) on the test images (uint8, (N, 1, H, W)), hfgen's estimator, fixed seed."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from hfgen.train.methods.vae import evaluate_elbo

    # Accelerate keeps one state per process, and `benchmark.py all` may have trained another workload in this one
    AcceleratorState._reset_state(reset_partial_state=True)
    loader = torch.utils.data.DataLoader([{"pixel_values": p} for p in test_pixels], batch_size=500)
    return evaluate_elbo(Accelerator(cpu=True), model, loader)["eval_elbo"]


def settings_for(quick: bool, threads: int | None = None) -> dict:
    """What every contender shares."""
    from hfgen.train.accelerator import cpu_threads_per_process

    return {
        "model": MODEL,
        "dataset": DATASET,
        "epochs": 1 if quick else 5,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "train_images": 20_000 if quick else None,  # None: the whole train split
        "seed": 0,
        "cpu_threads": threads or cpu_threads_per_process(),  # torch threads of every contender
    }


def load_pixels(dataset: str, split: str, limit: int | None = None, seed: int = 0) -> torch.Tensor:
    """uint8 (N, 1, 28, 28) images of ``dataset[split]``; with ``limit``, the first ``limit`` after a ``seed``ed
    shuffle: the images hfgen's `data.max_train_samples` selects, so the peer trains on the same ones."""
    from hfgen.data import ImageDataset, build_dataset

    rows = build_dataset(dataset)[split]
    if limit is not None:
        rows = rows.shuffle(seed=seed).select(range(min(limit, len(rows))))
    return ImageDataset(rows, image_column="image", image_size=28, num_channels=1).pixels


def trial_settings(settings: dict) -> dict:
    """The settings of the peer's precision trial: the full run's, for one epoch of `TRIAL_IMAGES` images."""
    return {**settings, "epochs": 1, "train_images": TRIAL_IMAGES}


def hfgen_recipe(settings: dict, output_dir: str):
    """hfgen's side: `method: vae` on the benchmark's training images, no evaluation (scored by `test_elbo`)."""
    from hfgen.config import recipe_from_dict

    return recipe_from_dict({
        "method": "vae",
        "model": settings["model"],
        "data": {"dataset": settings["dataset"], "max_train_samples": settings["train_images"], "eval_split": None},
        "train": {
            "output_dir": output_dir, "num_epochs": settings["epochs"], "batch_size": settings["batch_size"],
            "learning_rate": settings["learning_rate"], "mixed_precision": settings["precision"], "seed": settings["seed"],
            "save_every": None, "sample_every": None, "log_every": 100, "report_to": "none",
            "cpu_threads": settings["cpu_threads"],
        },
    }, where="benchmark vae")


def run_hfgen(settings: dict, output_dir: str) -> dict:
    """Train hfgen's side; its output folder holds the trained model."""
    from hfgen.benchmarks.precision import precision_used
    from hfgen.train import run as train

    out = train(hfgen_recipe(settings, output_dir))
    stats = json.loads((out / "eval_results.json").read_text())
    return {"images_per_s": stats["train_images_per_s"], "seconds_per_epoch": stats["train_seconds"] / settings["epochs"],
            **precision_used(stats)}


def run_peer(settings: dict, output_dir: str) -> dict:
    """Train the peer (see `train_peer`); save its weights to ``output_dir`` as an hfgen VAEModel."""
    from hfgen.models import VAEConfig

    torch.set_num_threads(settings["cpu_threads"])  # as hfgen's accelerator sets it
    pixels = load_pixels(settings["dataset"], "train", settings["train_images"], settings["seed"]).float() / 255  # (N, 1, 28, 28) in [0, 1]
    config = VAEConfig(**{k: v for k, v in settings["model"].items() if k != "type"})
    epochs, seed = settings["epochs"], settings["seed"]
    with tempfile.TemporaryDirectory() as tmp:  # pythae's own output folder (its final save is part of train())
        model, seconds = train_peer(config, pixels, epochs, settings["batch_size"], settings["learning_rate"], seed, tmp,
                                    settings["precision"])
    model.save_pretrained(output_dir)
    return {"images_per_s": len(pixels) * epochs / seconds, "seconds_per_epoch": seconds / epochs}


def _contender_main(name: str, settings_path: str, result_path: str) -> None:
    """Train contender ``name`` alone in this process; save its model to the folder ``name`` beside the settings."""
    from hfgen.benchmarks import write_contender_result

    settings = json.loads(Path(settings_path).read_text())
    output_dir = str(Path(settings_path).parent / name)
    contender = run_peer if name == "peer" else run_hfgen  # hfgen, hfgen_other_precision
    result = contender(settings, output_dir)
    write_contender_result(result, result_path)


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Measure the peer's precision trial, then train each contender in its own process, one after the other, for
    the same epochs (``threads`` torch threads each: default, every core); then score all alike by test ELBO and
    compare images/s."""
    from importlib.metadata import version

    from hfgen.benchmarks import comparison, peer_precision_in_processes, run_contenders
    from hfgen.benchmarks.precision import hfgen_arms
    from hfgen.data import build_dataset
    from hfgen.models import VAEModel

    settings = settings_for(quick, threads)
    with tempfile.TemporaryDirectory() as tmp:
        peer_precision = peer_precision_in_processes(__name__, "peer", trial_settings(settings), Path(tmp), "images_per_s",
                                                     trial=f"1 epoch of {TRIAL_IMAGES:,} images")
        results = run_contenders(__name__, CONTENDERS, settings, Path(tmp), {**hfgen_arms(), "peer": peer_precision})
        torch.set_num_threads(settings["cpu_threads"])
        test_pixels = load_pixels(settings["dataset"], "test")  # (N, 1, 28, 28) uint8: evaluate_elbo scales them, as in training
        for name, result in results.items():
            result["test_elbo"] = test_elbo(VAEModel.from_pretrained(Path(tmp) / name), test_pixels)
    available = len(build_dataset(settings["dataset"])["train"])
    train_images = min(settings["train_images"] or available, available)
    return comparison(
        "vae",
        {**settings, "train_images": train_images, "torch": torch.__version__,
         "throughput": "training images per second of the training loop",
         "quality": f"test ELBO per image (nats), {len(test_pixels):,} {settings['dataset']} test images",
         "peak_memory": "peak of the fresh process that trained only that contender"},
        hfgen=results["hfgen"],
        peer={"name": f"pythae {version('pythae')} VAE + BaseTrainer", **results["peer"]},
        hfgen_other_precision=results["hfgen_other_precision"],
        throughput_key="images_per_s",
        quality_key="test_elbo",
        threads=settings["cpu_threads"],
    )

if __name__ == "__main__":
    _contender_main(*sys.argv[1:4])
