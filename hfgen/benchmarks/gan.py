"""`gan` workload: hfgen's DCGAN training against the canonical PyTorch DCGAN loop.

The peer is the training loop of pytorch/examples `dcgan/main.py`: a map-style dataset that
decodes and transforms every image on access (PIL -> tensor -> normalise, as its torchvision
Compose does; written here with PIL and torch since hfgen never installs torchvision), BCE on
sigmoid outputs, and separate backward passes for the real and the fake batch. Both sides train
the same networks (hfgen's DCGANGenerator/DCGANDiscriminator, same init and seed) on the same
images for the same number of steps, batch size and precision, in the same process.
Throughput is images/s of the training loop; quality is KID and FID of 1,000 (quick: 250)
samples against the test split with the Inception extractor. Peak memory (``peak_memory`` of each) is
the peak RSS of a fresh process that trains only that contender, built the same way, for `PROBE_STEPS`
steps (`memory_probe`); it includes the Python/torch baseline, the same for both.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

MODEL = {"type": "hfgen-dcgan", "image_size": 28, "num_channels": 1, "latent_dim": 100, "generator_width": 64, "discriminator_width": 64}
PROBE_STEPS = 5  # training steps of the memory probe: every buffer and optimizer state exists after the first


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
    """The pytorch/examples DCGAN loop (with autocast added so both sides use the same precision)."""
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
    return {"model": model, "images_per_s": steps * batch_size / elapsed, "seconds": elapsed}


def settings_for(quick: bool) -> tuple[int, int, str]:
    """(steps, batch_size, precision) of both contenders."""
    return (100, 64, "bf16") if quick else (1000, 128, "bf16")


def hfgen_recipe(steps: int, batch_size: int, precision: str, output_dir: str, threads: int | None):
    """hfgen's side: `method: gan` on fashion_mnist with the peer's optimizer settings and no EMA."""
    from hfgen.config import recipe_from_dict

    return recipe_from_dict({
        "method": "gan",
        "model": MODEL,
        "data": {"dataset": "fashion_mnist"},
        "gan": {"ema_decay": None},  # the peer has no EMA: compare the raw generators
        "train": {
            "output_dir": output_dir, "max_steps": steps, "batch_size": batch_size,
            "learning_rate": 2e-4, "adam_beta1": 0.5, "mixed_precision": precision, "seed": 0,
            "save_every": None, "sample_every": None, "log_every": max(1, steps // 4), "report_to": "none",
            "cpu_threads": threads,
        },
    }, where="benchmark gan")


def run_peer(steps: int, batch_size: int, precision: str, threads: int | None) -> dict:
    """The peer on the fashion_mnist training images (see `train_peer`)."""
    from hfgen.data import build_dataset
    from hfgen.models import DCGANConfig
    from hfgen.train.accelerator import cpu_threads_per_process

    torch.set_num_threads(cpu_threads_per_process(threads))  # as hfgen's accelerator sets it
    rows = build_dataset("fashion_mnist")["train"]
    config = DCGANConfig(**{k: v for k, v in MODEL.items() if k != "type"})
    return train_peer(config, rows, "image", steps, batch_size, precision, seed=0)


def memory_probe(contender: str, quick: bool = False, threads: int | None = None) -> dict:
    """Peak memory of this process after training only ``contender`` (hfgen or peer) for `PROBE_STEPS` steps
    (run it in a fresh process: `hfgen.benchmarks.memory.measure_peak_memory`)."""
    from hfgen.benchmarks.memory import peak_memory_mb
    from hfgen.train import run as train

    _, batch_size, precision = settings_for(quick)
    if contender == "hfgen":
        with tempfile.TemporaryDirectory() as tmp:
            train(hfgen_recipe(PROBE_STEPS, batch_size, precision, str(Path(tmp) / "hfgen"), threads))
    else:
        run_peer(PROBE_STEPS, batch_size, precision, threads)
    return peak_memory_mb()


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Train both for the same budget and compare throughput and sample quality (``threads``: torch threads
    of both; default every core this process may use)."""
    import json

    from transformers import AutoModel

    from hfgen.benchmarks.memory import measure_peak_memory
    from hfgen.metrics.features import InceptionFeatures, evaluate_generator
    from hfgen.train import run as train

    steps, batch_size, precision = settings_for(quick)
    num_samples = 250 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        out = train(hfgen_recipe(steps, batch_size, precision, str(Path(tmp) / "hfgen"), threads))
        hfgen_wall = time.perf_counter() - started
        hfgen_rate = json.loads((out / "eval_results.json").read_text())["train_images_per_s"]
        hfgen_model = AutoModel.from_pretrained(out)

    peer = run_peer(steps, batch_size, precision, threads)

    extractor = InceptionFeatures()
    quality = {}
    for name, model in (("hfgen", hfgen_model), ("peer", peer["model"])):
        metrics = evaluate_generator(model.eval(), extractor, "fashion_mnist", "test", num_samples=num_samples, num_real=num_samples)
        quality[name] = {"fid": metrics["fid"], "kid": metrics["kid"], "precision": metrics["precision"], "recall": metrics["recall"]}
    return {
        "workload": "gan",
        "settings": {"steps": steps, "batch_size": batch_size, "precision": precision, "model": MODEL, "threads": torch.get_num_threads(),
                     "quality": f"Inception FID/KID, {num_samples} samples vs {num_samples} fashion_mnist test images",
                     "peak_memory": f"peak of a fresh process training one contender {PROBE_STEPS} steps"},
        "hfgen": {"images_per_s": hfgen_rate, "wall_s": hfgen_wall, **quality["hfgen"],
                  "peak_memory": measure_peak_memory(__name__, "hfgen", quick, threads)},
        "peer": {"name": "pytorch/examples dcgan/main.py loop", "images_per_s": peer["images_per_s"], "wall_s": peer["seconds"], **quality["peer"],
                 "peak_memory": measure_peak_memory(__name__, "peer", quick, threads)},
        "ratio": hfgen_rate / peer["images_per_s"],
        "throughput_key": "images_per_s",
        "quality_key": "fid",
        "quality_higher_is_better": False,
    }
