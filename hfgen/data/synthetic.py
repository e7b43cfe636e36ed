"""Generated labelled images for training a classifier (generative data augmentation, `classifier.synthetic`)."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

logger = logging.getLogger("hfgen")


class SyntheticImages(torch.utils.data.Dataset):
    """Images from a class-conditional generator as the rows an `ImageDataset` gives:
    ``{"pixel_values": uint8 (C, H, W), "labels": int64 scalar}``."""

    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor):
        self.pixel_values, self.labels = pixel_values, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}


class WithSynthetic(torch.utils.data.ConcatDataset):
    """Real training images followed by generated ones; `labels` covers both (for class weights)."""

    @property
    def labels(self) -> torch.Tensor:
        return torch.cat([torch.as_tensor(d.labels) for d in self.datasets])


def generator_class_ids(config, names: list[str], where: str) -> list[int]:
    """For each classifier class name, the generator's class id: by name (`config.id2label`), else by position when
    the generator's classes are unnamed and as many."""
    num_classes = getattr(config, "num_classes", 0) or 0
    if not num_classes:
        raise ValueError(f"{where}: the generator is unconditional; generated images need a class-conditional one "
                         "(train it with data.label_column set)")
    known = {str(name).lower(): int(i) for i, name in (getattr(config, "id2label", None) or {}).items()}
    if all(name.lower() in known for name in names):
        return [known[name.lower()] for name in names]
    unnamed = all(name == f"label_{i}" for name, i in known.items())  # transformers' placeholder names
    if unnamed and len(names) == num_classes:
        return list(range(num_classes))
    missing = [name for name in names if name.lower() not in known]
    raise ValueError(f"{where}: the generator has no class named {missing} (its classes: {sorted(known)})")


@torch.no_grad()
def generate_labelled_images(model: str, names: list[str], images_per_class: int, image_size: int, num_channels: int,
                             seed: int = 0, revision: str | None = None, batch_size: int = 256,
                             where: str = "classifier.synthetic") -> SyntheticImages:
    """`images_per_class` images of every class in `names` (classifier ids 0..n-1) from generator `model`, as uint8 at
    the classifier's size and channels."""
    from ..generation import load_generator

    generator = load_generator(model, revision=revision)
    ids = generator_class_ids(generator.config, names, f"{where}.model {model!r}")
    labels = torch.arange(len(names)).repeat_interleave(images_per_class)  # the classifier's ids
    generator_labels = torch.tensor(ids)[labels]
    chunks = []
    for start in range(0, len(labels), batch_size):
        images = generator.generate(min(batch_size, len(labels) - start), seed=seed + start,
                                    labels=generator_labels[start : start + batch_size]).float().cpu()
        if images.shape[-1] != image_size:
            images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        if images.shape[1] != num_channels:  # grey -> RGB by copying, RGB -> grey by averaging
            images = images.mean(1, keepdim=True).expand(-1, num_channels, -1, -1)
        chunks.append(images.clamp(0, 1).mul(255).round().to(torch.uint8))
    logger.info("classifier.synthetic: generated %d images (%d per class) with %s", len(labels), images_per_class, model)
    return SyntheticImages(torch.cat(chunks).contiguous(), labels)
