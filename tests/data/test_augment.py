"""SimCLR batch augmentations: shape and range kept, the two views differ, seeded, and each op does what it says."""

import pytest
import torch

from hfgen.config import ImageAugmentSection
from hfgen.data.augment import (
    brightness_contrast_jitter,
    gaussian_blur,
    gaussian_noise,
    random_grayscale,
    random_resized_crop,
    simclr_augment,
    simclr_views,
)


def batch(num_channels=1, size=28, count=6, seed=0):
    return torch.rand(count, num_channels, size, size, generator=torch.Generator().manual_seed(seed))


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("num_channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_views_keep_shape_range_and_differ(num_channels, size):
    images = batch(num_channels, size)
    options = ImageAugmentSection(noise_p=0.5)

    first, second = simclr_views(images, options, generator=seeded())

    for view in (first, second):
        assert view.shape == images.shape and view.dtype == images.dtype
        assert view.min() >= 0 and view.max() <= 1
        assert not torch.equal(view, images)
    per_image_difference = (first - second).flatten(1).abs().mean(1)
    assert (per_image_difference > 1e-3).all()  # every pair is two different views


def test_views_are_reproducible_from_a_seed_and_leave_the_global_rng_alone():
    images = batch()
    state = torch.get_rng_state()
    a = simclr_views(images, generator=seeded(3))
    b = simclr_views(images, generator=seeded(3))
    c = simclr_views(images, generator=seeded(4))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_full_crop_with_square_ratio_is_the_identity():
    images = batch()
    out = random_resized_crop(images, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=seeded())
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_small_crop_zooms_in():
    ramp = torch.linspace(0, 1, 28).expand(2, 1, 28, 28)  # left-to-right gradient
    out = random_resized_crop(ramp, scale=(0.05, 0.05), ratio=(1.0, 1.0), generator=seeded())
    spread = out.amax((1, 2, 3)) - out.amin((1, 2, 3))
    assert (spread < 0.3).all()  # a ~6-pixel-wide crop spans ~0.22 of the gradient, stretched over 28 pixels


def test_jitter_changes_brightness_and_contrast_within_range_and_p_zero_is_identity():
    images = batch()
    assert torch.equal(brightness_contrast_jitter(images, p=0.0, generator=seeded()), images)
    out = brightness_contrast_jitter(images, brightness=0.5, contrast=0.0, p=1.0, generator=seeded())
    ratio = out.mean((1, 2, 3)) / images.mean((1, 2, 3))
    assert ((ratio > 0.45) & (ratio < 1.55)).all() and not torch.allclose(ratio, torch.ones(6))
    assert out.min() >= 0 and out.max() <= 1


def test_grayscale_drops_colour_only_for_rgb():
    rgb = batch(3)
    out = random_grayscale(rgb, p=1.0, generator=seeded())
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    grey = batch(1)
    assert torch.equal(random_grayscale(grey, p=1.0, generator=seeded()), grey)


def test_blur_smooths_and_keeps_the_mean():
    images = batch(count=4)
    out = gaussian_blur(images, sigma=(1.5, 1.5), p=1.0, generator=seeded())
    assert (out.flatten(1).std(1) < images.flatten(1).std(1)).all()
    torch.testing.assert_close(out.mean((1, 2, 3)), images.mean((1, 2, 3)), atol=0.02, rtol=0)
    assert torch.equal(gaussian_blur(images, p=0.0, generator=seeded()), images)


def test_blur_of_a_constant_image_is_constant():
    images = torch.full((2, 3, 28, 28), 0.3)
    torch.testing.assert_close(gaussian_blur(images, p=1.0, generator=seeded()), images)


def test_noise_is_added_and_clamped():
    images = batch()
    out = gaussian_noise(images, std=0.1, p=1.0, generator=seeded())
    assert out.min() >= 0 and out.max() <= 1
    assert 0.05 < (out - images).std() < 0.12
    assert torch.equal(gaussian_noise(images, p=0.0, generator=seeded()), images)


def test_augment_follows_the_options():
    images = batch()
    off = ImageAugmentSection(crop_scale=[1.0, 1.0], crop_ratio=[1.0, 1.0], flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, noise_p=0.0)
    torch.testing.assert_close(simclr_augment(images, off, generator=seeded()), images, atol=1e-5, rtol=0)
