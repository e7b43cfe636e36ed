"""SimCLR augmentations (Chen et al. 2020, arXiv:2002.05709, appendix A) on whole batches of images, in torch only.

Every function takes a (B, C, H, W) float batch in [0, 1], draws its randomness per image from an optional
`torch.Generator` (on the generator's device, so a seeded generator gives the same views on any device), and returns
a batch of the same shape and range. `simclr_views` composes them into SimCLR's two independent views.

    >>> views_a, views_b = simclr_views(images, ImageAugmentSection(), generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import ImageAugmentSection
from .transforms import random_horizontal_flip


def _uniform(shape, low: float, high: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    draw_device = generator.device if generator is not None else device
    return (torch.rand(shape, generator=generator, device=draw_device) * (high - low) + low).to(device)


def _coin(count: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(count,) booleans, each True with probability p. Always draws, so later draws do not depend on p."""
    return _uniform((count,), 0.0, 1.0, generator, device) < p


def random_resized_crop(
    images: torch.Tensor,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Crop a random box from each image (area a fraction in `scale` of the image, aspect ratio w/h in `ratio`, log-
    uniform) and resize it back to the input size with bilinear sampling.

    Boxes that would not fit (large area with an extreme ratio) are shrunk to fit inside the image rather than
    re-drawn, so the batch needs one draw. Images are already at the model's size here, so a crop smaller than the
    output is upsampled; source images smaller than `image_size` were upsampled when the dataset was decoded.
    """
    batch, device = images.shape[0], images.device
    area = _uniform((batch,), scale[0], scale[1], generator, device)
    log_ratio = _uniform((batch,), math.log(ratio[0]), math.log(ratio[1]), generator, device)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # fractions of the image side
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = _uniform((batch,), -1.0, 1.0, generator, device) * (1.0 - width)  # normalized coords in [-1, 1]
    centre_y = _uniform((batch,), -1.0, 1.0, generator, device) * (1.0 - height)
    theta = torch.zeros(batch, 2, 3, device=device, dtype=images.dtype)  # output coords -> input coords
    theta[:, 0, 0], theta[:, 0, 2] = width, centre_x
    theta[:, 1, 1], theta[:, 1, 2] = height, centre_y
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def brightness_contrast_jitter(
    images: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """With probability `p` per image: multiply by a brightness factor in [1 - brightness, 1 + brightness], then scale
    the deviation from the image's mean grey level by a contrast factor in [1 - contrast, 1 + contrast]; clamp."""
    batch, device = images.shape[0], images.device
    apply = _coin(batch, p, generator, device)[:, None, None, None]
    bright = _uniform((batch, 1, 1, 1), 1 - brightness, 1 + brightness, generator, device).to(images.dtype)
    contr = _uniform((batch, 1, 1, 1), 1 - contrast, 1 + contrast, generator, device).to(images.dtype)
    jittered = (images * bright).clamp(0.0, 1.0)
    mean = _grey(jittered).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    jittered = ((jittered - mean) * contr + mean).clamp(0.0, 1.0)
    return torch.where(apply, jittered, images)


def random_grayscale(images: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """RGB images: with probability `p` per image, replace every channel by the luma (ITU-R 601). Grey images: unchanged
    (the draw is still made, so the random stream does not depend on the channel count)."""
    apply = _coin(images.shape[0], p, generator, images.device)[:, None, None, None]
    if images.shape[1] != 3:
        return images
    return torch.where(apply, _grey(images).expand_as(images), images)


def gaussian_blur(
    images: torch.Tensor,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
    kernel_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """With probability `p` per image, blur with a gaussian of sigma drawn from `sigma` (pixels). The kernel is ~10% of
    the image side (SimCLR), odd, at least 3; borders are reflected."""
    batch, channels, height, width = images.shape
    device = images.device
    apply = _coin(batch, p, generator, device)[:, None, None, None]
    sigmas = _uniform((batch,), sigma[0], sigma[1], generator, device)
    size = kernel_size or max(3, int(0.1 * min(height, width)) // 2 * 2 + 1)
    half = size // 2
    offsets = torch.arange(-half, half + 1, device=device, dtype=torch.float32)  # (size,)
    kernels = torch.exp(-(offsets[None, :] ** 2) / (2 * sigmas[:, None] ** 2))
    kernels = (kernels / kernels.sum(dim=1, keepdim=True)).to(images.dtype)  # (B, size)
    kernels = kernels.repeat_interleave(channels, dim=0)  # (B * C, size): one kernel per image and channel
    # every (image, channel) pair becomes its own group of a grouped separable convolution
    flat = images.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, kernels[:, None, None, :], groups=batch * channels)  # along width
    flat = F.conv2d(flat, kernels[:, None, :, None], groups=batch * channels)  # along height
    blurred = flat.reshape(batch, channels, height, width)
    return torch.where(apply, blurred, images)


def gaussian_noise(
    images: torch.Tensor, std: float = 0.05, p: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """With probability `p` per image, add N(0, std^2) noise per pixel; clamp to [0, 1]."""
    device = images.device
    apply = _coin(images.shape[0], p, generator, device)[:, None, None, None]
    draw_device = generator.device if generator is not None else device
    noise = torch.randn(images.shape, generator=generator, device=draw_device).to(device, images.dtype)
    return torch.where(apply, (images + std * noise).clamp(0.0, 1.0), images)


def simclr_augment(
    images: torch.Tensor, options: ImageAugmentSection | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One SimCLR view of every image: crop, flip, jitter, grayscale (RGB), blur, noise, in that order (SimCLR's)."""
    o = options or ImageAugmentSection()
    images = random_resized_crop(images, tuple(o.crop_scale), tuple(o.crop_ratio), generator=generator)
    images = random_horizontal_flip(images, p=o.flip_p, generator=generator)
    images = brightness_contrast_jitter(images, o.brightness, o.contrast, p=o.jitter_p, generator=generator)
    images = random_grayscale(images, p=o.grayscale_p, generator=generator)
    images = gaussian_blur(images, tuple(o.blur_sigma), p=o.blur_p, generator=generator)
    return gaussian_noise(images, o.noise_std, p=o.noise_p, generator=generator)


def simclr_views(
    images: torch.Tensor, options: ImageAugmentSection | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independently augmented views of a (B, C, H, W) batch in [0, 1]: the positive pairs of SimCLR."""
    return simclr_augment(images, options, generator), simclr_augment(images, options, generator)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 1, H, W) luma (ITU-R 601 weights for RGB; the image itself when grey)."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images * weights[None, :, None, None]).sum(dim=1, keepdim=True)


__all__ = [
    "brightness_contrast_jitter",
    "gaussian_blur",
    "gaussian_noise",
    "random_grayscale",
    "random_resized_crop",
    "simclr_augment",
    "simclr_views",
]
