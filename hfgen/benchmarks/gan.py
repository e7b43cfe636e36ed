"""`gan` workload: hfgen's DCGAN training against the canonical PyTorch DCGAN loop.

The peer is the training loop of pytorch/examples `dcgan/main.py`: a map-style dataset that
decodes and transforms every image on access (PIL -> tensor -> normalise, as its torchvision
Compose does; written here with PIL and torch since hfgen never installs torchvision), BCE on
sigmoid outputs, and separate backward passes for the real and the fake batch. Both sides train
the same networks (hfgen's DCGANGenerator/DCGANDiscriminator, same init and seed) on the same
images for the same number of steps, batch size and precision, in the same process.
Throughput is images/s of the training loop; quality is KID and FID of 1,000 (quick: 250)
samples against the test split with the Inception extractor.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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


def run(quick: bool = False) -> dict:
    """Train both for the same budget and compare throughput and sample quality."""
    from hfgen.config import recipe_from_dict
    from hfgen.data import build_dataset
    from hfgen.metrics.features import InceptionFeatures, evaluate_generator
    from hfgen.train import run as train
    from transformers import AutoModel

    steps, batch_size, precision = (100, 64, "bf16") if quick else (1000, 128, "bf16")
    num_samples = 250 if quick else 1000
    model_config = {"type": "hfgen-dcgan", "image_size": 28, "num_channels": 1, "latent_dim": 100, "generator_width": 64, "discriminator_width": 64}
    with tempfile.TemporaryDirectory() as tmp:
        recipe = recipe_from_dict({
            "method": "gan",
            "model": model_config,
            "data": {"dataset": "fashion_mnist"},
            "gan": {"ema_decay": None},  # the peer has no EMA: compare the raw generators
            "train": {
                "output_dir": str(Path(tmp) / "hfgen"), "max_steps": steps, "batch_size": batch_size,
                "learning_rate": 2e-4, "adam_beta1": 0.5, "mixed_precision": precision, "seed": 0,
                "save_every": None, "sample_every": None, "log_every": max(1, steps // 4), "report_to": "none",
            },
        }, where="benchmark gan")
        started = time.perf_counter()
        out = train(recipe)
        hfgen_wall = time.perf_counter() - started
        import json

        hfgen_rate = json.loads((out / "eval_results.json").read_text())["train_images_per_s"]
        hfgen_model = AutoModel.from_pretrained(out)

    rows = build_dataset("fashion_mnist")["train"]
    from hfgen.models import DCGANConfig

    peer = train_peer(DCGANConfig(**{k: v for k, v in model_config.items() if k != "type"}), rows, "image", steps, batch_size, precision, seed=0)

    extractor = InceptionFeatures()
    quality = {}
    for name, model in (("hfgen", hfgen_model), ("peer", peer["model"])):
        metrics = evaluate_generator(model.eval(), extractor, "fashion_mnist", "test", num_samples=num_samples, num_real=num_samples)
        quality[name] = {"fid": metrics["fid"], "kid": metrics["kid"], "precision": metrics["precision"], "recall": metrics["recall"]}
    return {
        "workload": "gan",
        "settings": {"steps": steps, "batch_size": batch_size, "precision": precision, "model": model_config,
                     "quality": f"Inception FID/KID, {num_samples} samples vs {num_samples} fashion_mnist test images"},
        "hfgen": {"images_per_s": hfgen_rate, "wall_s": hfgen_wall, **quality["hfgen"]},
        "peer": {"name": "pytorch/examples dcgan/main.py loop", "images_per_s": peer["images_per_s"], "wall_s": peer["seconds"], **quality["peer"]},
        "ratio": hfgen_rate / peer["images_per_s"],
    }
