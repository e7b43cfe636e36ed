"""Batch-level image transforms on (B, C, H, W) tensors, torch only, seeded by an optional `torch.Generator`."""

from __future__ import annotations

import torch


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images in [0, 255] -> floats in [0, 1]."""
    return images.to(dtype) / 255.0


def normalize_to_symmetric(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range tanh generators and diffusion models work in."""
    return images * 2.0 - 1.0


def denormalize_from_symmetric(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, e.g. before `make_image_grid`."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def random_horizontal_flip(
    images: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image of a (B, C, H, W) batch left-right with probability ``p``, independently.

    The choice draws ``torch.rand(B, generator=generator)`` on the generator's device, so a seeded
    generator picks the same images on any device.
    """
    device = generator.device if generator is not None else images.device
    flip = torch.rand(images.shape[0], generator=generator, device=device).to(images.device) < p  # (B,)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)
