"""Sample grids: a batch of image tensors tiled into one PIL image, saved atomically as PNG."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from PIL import Image


def make_image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> Image.Image:
    """Tile (N, C, H, W) images with values in [0, 1] into one PIL image ("L" for C=1, "RGB" for C=3).

    Args:
        images: the batch; values outside [0, 1] are clamped.
        nrow: images per row; default ceil(sqrt(N)), a near-square grid.
        padding: black pixels between and around images.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"make_image_grid expects (N, C, H, W) with C in (1, 3), got shape {tuple(images.shape)}.")
    count, channels, height, width = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(count)))
    ncol = max(1, math.ceil(count / nrow))
    grid = torch.zeros(
        (channels, ncol * (height + padding) + padding, nrow * (width + padding) + padding), dtype=torch.uint8
    )  # (C, grid_height, grid_width)
    pixels = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    for index in range(count):
        top = padding + (index // nrow) * (height + padding)
        left = padding + (index % nrow) * (width + padding)
        grid[:, top : top + height, left : left + width] = pixels[index]
    if channels == 1:
        return Image.fromarray(grid[0].numpy(), mode="L")
    return Image.fromarray(grid.permute(1, 2, 0).numpy(), mode="RGB")  # (C, H, W) -> (H, W, C)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    """Write `make_image_grid(images, nrow)` to ``path`` as PNG, atomically (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    make_image_grid(images, nrow).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
