"""Sampling from trained image generators, as `scripts/generate.py` does."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def load_generator(model: str, revision: str | None = None, trust_remote_code: bool = False, device: str | None = None):
    """Load an hfgen generator (anything with `generate(num_images, seed=...)`): a diffusers pipeline folder or repo
    (`method: diffusion`, through `hfgen.diffusion.DiffusionGenerator`), else a transformers model through AutoModel."""
    import hfgen.models  # noqa: F401  (registers hfgen's model types)
    from transformers import AutoModel

    from .diffusion import DiffusionGenerator, is_pipeline

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if is_pipeline(model, revision):  # stock diffusers components only: no custom code runs
        return DiffusionGenerator.from_pretrained(model, revision=revision, device=device)
    loaded = AutoModel.from_pretrained(model, revision=revision, trust_remote_code=trust_remote_code, dtype=torch.float32)
    if not hasattr(loaded, "generate") or not callable(getattr(loaded, "generate")):
        raise ValueError(f"{model}: {type(loaded).__name__} is not an image generator (no generate method)")
    return loaded.to(device).eval()


def resolve_labels(config, labels: list[str] | None, num_images: int) -> torch.Tensor | None:
    """Class ids for a conditional model from ids or names (`config.id2label`), cycled to `num_images`."""
    num_classes = getattr(config, "num_classes", 0) or 0
    if labels is None:
        return None
    if not num_classes:
        raise ValueError("--labels given but the model is not class-conditional")
    names = {str(name).lower(): int(i) for i, name in (config.id2label or {}).items()}
    ids = []
    for label in labels:
        if label.isdigit() and int(label) < num_classes:
            ids.append(int(label))
        elif label.lower() in names:
            ids.append(names[label.lower()])
        else:
            raise ValueError(f"--labels: {label!r} is neither a class id below {num_classes} nor a class name {sorted(names)}")
    return torch.tensor(ids)[torch.arange(num_images) % len(ids)]


def generate_grid(model: str, num_images: int, out: str | os.PathLike, seed: int = 0, labels: list[str] | None = None,
                  nrow: int | None = None, revision: str | None = None, trust_remote_code: bool = False, device: str | None = None) -> Path:
    """Sample `num_images` from `model` with `seed` and write them as one PNG grid to `out`."""
    from .data import save_image_grid

    if num_images < 1:
        raise ValueError(f"--num-images must be at least 1, got {num_images}")
    generator = load_generator(model, revision, trust_remote_code, device)
    kwargs = {}
    label_ids = resolve_labels(generator.config, labels, num_images)
    if label_ids is not None:
        kwargs["labels"] = label_ids
    images = generator.generate(num_images, seed=seed, **kwargs)
    save_image_grid(images.float().cpu(), out, nrow=nrow)
    return Path(out)
