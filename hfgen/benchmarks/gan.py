"""`gan` workload: hfgen's DCGAN training against the canonical PyTorch DCGAN loop.

The peer is the training loop of pytorch/examples `dcgan/main.py`: a map-style dataset that
decodes and transforms every image on access (PIL -> tensor -> normalise, as its torchvision
Compose does; written here with PIL and torch since hfgen never installs torchvision), BCE on
sigmoid outputs, and separate backward passes for the real and the fake batch. Both sides train
the same networks (hfgen's DCGANGenerator/DCGANDiscriminator, same init and seed) on the same
images for the same number of steps, batch size and torch threads, each at its best precision on the
machine at hand (`hfgen.benchmarks.precision`): hfgen at `train.mixed_precision: auto` (and, as
``hfgen_other_precision``, at the fixed precision `auto` did not pick), the peer at the faster of fp32
and bf16 autocast in a trial of `TRIAL_STEPS` steps.

Each contender runs in its own fresh Python process, one after the other: hfgen's training sets
process-wide state that a peer trained after it in the same process would inherit (glibc's allocator
settings from `train.reuse_cpu_memory`, Accelerate's state, torch's thread count, warm caches), so the
ratio would depend on the order. Throughput is images/s of the training loop; the wall time of each
process (``wall_s``: imports, data, training, save), its CPU seconds (``process_cpu_s``: a wall time far
above them means it waited for a core on a shared machine) and its peak memory (``peak_memory``:
`hfgen.benchmarks.memory.peak_memory_mb` at the end of that process, which trains only that contender;
it includes the Python/torch baseline, the same for both) are reported too. Each process saves its
generator; quality is then computed here by the same code for hfgen and the peer: Inception FID, KID and
improved precision and recall (``sample_precision``, ``sample_recall``: ``precision`` is the number format)
of 1,000 (quick: 250) samples against as many test images, with one extractor.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODEL = {"type": "hfgen-dcgan", "image_size": 28, "num_channels": 1, "latent_dim": 100, "generator_width": 64, "discriminator_width": 64}
DATASET = "fashion_mnist"
CONTENDERS = ("hfgen", "hfgen_other_precision", "peer")
SCORED = ("hfgen", "peer")  # the contenders whose generators are scored (hfgen_other_precision is there for its speed)
TRIAL_STEPS = 40  # the peer's precision trial, at each precision
PEER_NAME = "pytorch/examples dcgan/main.py loop"


def _peer_dataset(rows, image_column: str):
    """Per-item decoding and transforms, as torchvision's ImageFolder/MNIST + Compose do."""

    class PeerDataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, index):
            image = rows[index][image_column].convert("L")  # PIL decode on every access
            pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]  # ToTensor: (1, H, W)
            return (pixels - 0.5) / 0.5, 0  # Normalize((0.5,), (0.5,))

    return PeerDataset()


def train_peer(config, rows, image_column: str, steps: int, batch_size: int, mixed_precision: str, seed: int) -> dict:
    """The pytorch/examples DCGAN loop (with bf16 autocast added, for ``mixed_precision`` "bf16")."""
    from hfgen.models import DCGANModel

    torch.manual_seed(seed)
    model = DCGANModel(config)
    net_g, net_d = model.generator.train(), model.discriminator.train()
    criterion = torch.nn.BCEWithLogitsLoss()  # the example's BCELoss on a Sigmoid output, fused for stability
    opt_d = torch.optim.Adam(net_d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    loader = torch.utils.data.DataLoader(_peer_dataset(rows, image_column), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=0)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16")
    done, started = 0, time.perf_counter()
    while done < steps:
        for real, _ in loader:
            if done == steps:
                break
            # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
            net_d.zero_grad()
            label = torch.full((real.shape[0],), 1.0)
            with autocast:
                err_real = criterion(net_d(real).float(), label)
            err_real.backward()
            noise = torch.randn(real.shape[0], config.latent_dim)
            with autocast:
                fake = net_g(noise)
                err_fake = criterion(net_d(fake.detach()).float(), label.fill_(0.0))
            err_fake.backward()
            opt_d.step()
            # (2) update G: maximize log(D(G(z)))
            net_g.zero_grad()
            with autocast:
                err_g = criterion(net_d(fake).float(), label.fill_(1.0))
            err_g.backward()
            opt_g.step()
            done += 1
    elapsed = time.perf_counter() - started
    return {"model": model, "images_per_s": steps * batch_size / elapsed, "train_seconds": elapsed}


def settings_for(quick: bool, threads: int | None = None) -> dict:
    """What both contenders share."""
    from hfgen.train.accelerator import cpu_threads_per_process

    steps, batch_size = (100, 64) if quick else (1000, 128)
    return {
        "model": MODEL,
        "dataset": DATASET,
        "steps": steps,
        "batch_size": batch_size,
        "seed": 0,
        "num_samples": 250 if quick else 1000,  # generated images per model, and test images they are scored against
        "cpu_threads": threads or cpu_threads_per_process(),  # torch threads of every contender
    }


def trial_settings(settings: dict) -> dict:
    """The settings of the peer's precision trial: the full run's, for `TRIAL_STEPS` steps."""
    return {**settings, "steps": TRIAL_STEPS}


def hfgen_recipe(settings: dict, output_dir: str):
    """hfgen's side: `method: gan` with the peer's optimizer settings and no EMA."""
    from hfgen.config import recipe_from_dict

    return recipe_from_dict({
        "method": "gan",
        "model": settings["model"],
        "data": {"dataset": settings["dataset"]},
        "gan": {"ema_decay": None},  # the peer has no EMA: compare the raw generators
        "train": {
            "output_dir": output_dir, "max_steps": settings["steps"], "batch_size": settings["batch_size"],
            "learning_rate": 2e-4, "adam_beta1": 0.5, "mixed_precision": settings["precision"], "seed": settings["seed"],
            "save_every": None, "sample_every": None, "log_every": max(1, settings["steps"] // 4), "report_to": "none",
            "cpu_threads": settings["cpu_threads"],
        },
    }, where="benchmark gan")


def run_hfgen(settings: dict, output_dir: str) -> dict:
    """Train hfgen's side; its output folder holds the trained model."""
    from hfgen.benchmarks.precision import precision_used
    from hfgen.train import run as train

    out = train(hfgen_recipe(settings, output_dir))
    stats = json.loads((out / "eval_results.json").read_text())
    if stats["steps"] != settings["steps"]:
        raise RuntimeError(f"hfgen trained {stats['steps']} steps, the benchmark asked for {settings['steps']}")
    return {"images_per_s": stats["train_images_per_s"], "train_seconds": stats["train_seconds"], **precision_used(stats)}


def run_peer(settings: dict, output_dir: str) -> dict:
    """Train the peer (see `train_peer`) on the same training images; save its DCGANModel to ``output_dir``."""
    from hfgen.data import build_dataset
    from hfgen.models import DCGANConfig

    torch.set_num_threads(settings["cpu_threads"])  # as hfgen's accelerator sets it
    rows = build_dataset(settings["dataset"])["train"]
    config = DCGANConfig(**{k: v for k, v in settings["model"].items() if k != "type"})
    peer = train_peer(config, rows, "image", settings["steps"], settings["batch_size"], settings["precision"], seed=settings["seed"])
    peer.pop("model").save_pretrained(output_dir)
    return peer


def _contender_main(name: str, settings_path: str, result_path: str) -> None:
    """Train contender ``name`` alone in this process; save its model to the folder ``name`` beside the settings."""
    from hfgen.benchmarks import write_contender_result

    settings = json.loads(Path(settings_path).read_text())
    contender = run_peer if name == "peer" else run_hfgen  # hfgen, hfgen_other_precision
    result = contender(settings, str(Path(settings_path).parent / name))
    write_contender_result(result, result_path)


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Measure the peer's precision trial, then train each contender in its own process, one after the other, for
    the same budget (``threads`` torch threads each: default, every core); then score hfgen's and the peer's
    generators alike and compare."""
    from hfgen.benchmarks import comparison, peer_precision_in_processes, run_contenders
    from hfgen.benchmarks.precision import hfgen_arms
    from hfgen.metrics.features import InceptionFeatures, evaluate_generator
    from hfgen.models import DCGANModel

    settings = settings_for(quick, threads)
    num_samples = settings["num_samples"]
    with tempfile.TemporaryDirectory() as tmp:
        peer_precision = peer_precision_in_processes(__name__, "peer", trial_settings(settings), Path(tmp), "images_per_s",
                                                     trial=f"{TRIAL_STEPS} steps")
        results = run_contenders(__name__, CONTENDERS, settings, Path(tmp), {**hfgen_arms(), "peer": peer_precision})
        torch.set_num_threads(settings["cpu_threads"])
        extractor = InceptionFeatures()
        for name in SCORED:
            generator = DCGANModel.from_pretrained(Path(tmp) / name).eval()
            metrics = evaluate_generator(generator, extractor, settings["dataset"], "test", num_samples=num_samples, num_real=num_samples)
            results[name].update(fid=metrics["fid"], kid=metrics["kid"],
                                 sample_precision=metrics["precision"], sample_recall=metrics["recall"])
    hfgen, peer = results["hfgen"], results["peer"]
    return comparison(
        "gan",
        {**settings, "torch": torch.__version__,
         "throughput": "training images per second of the training loop",
         "quality": f"Inception FID/KID, {num_samples} samples vs {num_samples} {settings['dataset']} test images",
         "peak_memory": "peak of the fresh process that trained only that contender"},
        hfgen=hfgen,
        peer={"name": PEER_NAME, **peer},
        hfgen_other_precision=results["hfgen_other_precision"],
        throughput_key="images_per_s",
        quality_key="fid",
        quality_higher_is_better=False,
        threads=settings["cpu_threads"],
    )


if __name__ == "__main__":
    _contender_main(*sys.argv[1:4])
