"""The image side shared by every image method (gan, vae, autoencoder, contrastive on images, classifier on images):
loading the recipe's image splits as uint8 tensors at the model's size (one loader, one policy for unreadable files),
the input checks and conversion rules, the probe subsets, and the image-processor files saved with a finished model.

Input rules (stated once, here and in docs/images.md):

- **Sizes**: every image is centre-cropped to a square on its shorter side and resized (PIL bicubic) to
  `model.image_size`; smaller images are upsampled, so SimCLR's crops always have `image_size` pixels to draw from.
- **Modes**: images are converted to "L" (model.num_channels 1) or "RGB" (3) by `hfgen.data.pil_to_tensor`
  (transparency on white, 16-bit grey scaled). If the data's images are colour and the model grey, or grey and the
  model colour, the run stops unless `data.convert_image_mode: true`.
- **Unreadable files**: decoded once before training; `data.on_bad_image: fail` stops naming them, `skip` drops
  them; the count goes into eval_results.json (`unreadable_images_skipped`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from dataclasses import dataclass

import datasets
import torch

from ..config import ProbeSection, Recipe
from ..data import (
    DatasetError,
    ImageDataset,
    build_dataset,
    drop_unreadable_images,
    require_columns,
    select_split,
)
from ..data.catalog import CATALOG
from ..data.holdout import hold_out_eval_split
from ..data.images import open_image
from .batches import build_dataloader

logger = logging.getLogger("hfgen")

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
MODE_SAMPLE = 512  # images whose mode and size are read (headers only) before training
IMAGE_MODEL_TYPES = ("hfgen-image-encoder",)  # model types the image side of contrastive / classifier handles


def is_image_model(recipe: Recipe) -> bool:
    """Whether the recipe's model is an hfgen image encoder (by `model.type`, or by the config of `model.pretrained`)."""
    if recipe.model.type is not None:
        return recipe.model.type in IMAGE_MODEL_TYPES
    from transformers import AutoConfig

    from ..pretrained import resolve_pretrained

    config = AutoConfig.from_pretrained(resolve_pretrained(recipe.model.pretrained), revision=recipe.model.revision)
    return config.model_type in IMAGE_MODEL_TYPES


@dataclass
class ImageSplits:
    """The training images (with labels when `data.label_column` is set), the eval images, and how many
    unreadable files were skipped."""

    train: ImageDataset
    eval: ImageDataset | None
    unreadable_skipped: int
    label_names: list[str] | None = None  # class names of data.label_column (a ClassLabel column), else None
    holdout: dict | None = None  # how the eval split was carved out of training (hfgen.data.holdout), if it was


def load_image_splits(recipe: Recipe, image_size: int, num_channels: int, eval_split: bool = True) -> ImageSplits:
    """The recipe's train (and eval) split as in-memory uint8 `ImageDataset`s at `image_size` x `image_size` with
    `num_channels` channels, after the checks in this module's docstring. `max_train_samples`/`max_eval_samples`
    take the first N after a seeded shuffle."""
    data, source = recipe.data, recipe.source
    label_column = data.label_column
    dataset = build_dataset(data.dataset)
    require_columns(dataset, {"data.image_column": data.image_column, "data.label_column": label_column}, ref=data.dataset)
    holdout = None
    if eval_split:
        dataset, holdout = hold_out_eval_split(dataset, data.train_split, data.eval_split, data.eval_holdout,
                                               recipe.train.seed, label_column, ref=data.dataset)
    splits = {name for name in (data.train_split, data.eval_split if eval_split else None) if name}
    dataset = datasets.DatasetDict({name: select_split(dataset, name, _split_key(recipe, name), ref=data.dataset) for name in splits})
    skipped = 0
    if not built_by_hfgen(data.dataset):
        dataset, skipped = drop_unreadable_images(dataset, data.image_column, data.on_bad_image)
    check_image_modes(dataset[data.train_split], data.image_column, num_channels, data.convert_image_mode, source)

    def images_of(split: str, limit: int | None) -> ImageDataset:
        rows = dataset[split]
        if limit is not None:
            rows = rows.shuffle(seed=recipe.train.seed).select(range(min(limit, len(rows))))
        return ImageDataset(rows, image_column=data.image_column, label_column=label_column, image_size=image_size, num_channels=num_channels)

    train = images_of(data.train_split, data.max_train_samples)
    eval_images = images_of(data.eval_split, data.max_eval_samples) if data.eval_split and eval_split else None
    names = getattr(dataset[data.train_split].features[label_column], "names", None) if label_column else None
    return ImageSplits(train=train, eval=eval_images, unreadable_skipped=skipped, label_names=names, holdout=holdout)


def built_by_hfgen(ref: str) -> bool:
    """A catalog set (not a local path): hfgen decoded every image when it built it, so no need to check again."""
    return ref in CATALOG and not os.path.exists(ref)


def _split_key(recipe: Recipe, split: str) -> str:
    return "data.train_split" if split == recipe.data.train_split else "data.eval_split"


def check_image_modes(split: datasets.Dataset, image_column: str, num_channels: int, convert: bool, source: str | None) -> None:
    """Read the headers of up to `MODE_SAMPLE` images and stop when their colour mode does not match `num_channels`
    (unless `convert`), naming both fixes. Logs how many sampled images will be resized, and how."""
    raw = split.select(range(min(MODE_SAMPLE, len(split)))).select_columns([image_column])
    raw = raw.cast_column(image_column, datasets.Image(decode=False))
    modes: dict[str, int] = {}
    sizes: dict[tuple[int, int], int] = {}
    for value in raw[image_column]:
        with open_image(value) as image:
            modes[image.mode] = modes.get(image.mode, 0) + 1
            sizes[image.size] = sizes.get(image.size, 0) + 1
    grey = sum(count for mode, count in modes.items() if mode in GREY_MODES)
    colour = sum(modes.values()) - grey
    found = ", ".join(f"{mode}: {count}" for mode, count in sorted(modes.items()))
    mismatch = (num_channels == 1 and colour) or (num_channels == 3 and grey)
    if mismatch and not convert:
        have, want = ("colour", "grayscale (1 channel)") if num_channels == 1 else ("grayscale", "RGB (3 channels)")
        raise DatasetError(
            f"{source}: {colour if num_channels == 1 else grey} of the first {sum(modes.values())} images in column "
            f"{image_column!r} are {have} (modes {found}) but the model takes {want}. Set model.num_channels: "
            f"{3 if num_channels == 1 else 1} to match the data, or data.convert_image_mode: true to convert "
            "(grey -> RGB copies the channel; RGB -> grey is ITU-R 601 luma; transparency goes on white)."
        )
    if mismatch:
        logger.info("Converting images to %d channel(s) (data.convert_image_mode): sampled modes %s", num_channels, found)
    if len(sizes) > 1 or (len(sizes) == 1 and next(iter(sizes))[0] != next(iter(sizes))[1]):
        logger.info(
            "Images come in %d sizes (e.g. %s); each is centre-cropped to a square and resized (bicubic) to the model's image_size.",
            len(sizes), ", ".join(f"{w}x{h}" for w, h in list(sizes)[:5]),
        )


def probe_subset(images: ImageDataset, count: int | None, seed: int) -> torch.utils.data.Dataset:
    """A seeded subset of `count` labelled images (all when None or larger than the set)."""
    if count is None or count >= len(images):
        return images
    indices = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count].tolist()
    return torch.utils.data.Subset(images, indices)


def probe_loaders(accelerator, splits: ImageSplits, options: ProbeSection, batch_size: int, seed: int, final: bool = False):
    """Prepared (train, eval) loaders for `hfgen.metrics.probe.evaluate_probe`, or None when the data has no labels
    or no eval split. `final` uses `options.final_train_samples` instead of `options.train_samples`."""
    if splits.eval is None or splits.train.labels is None:
        return None
    count = options.final_train_samples if final else options.train_samples
    train = probe_subset(splits.train, count, seed)
    evaluation = probe_subset(splits.eval, options.eval_samples, seed)
    loaders = [build_dataloader(part, batch_size, seed=seed, shuffle=False, drop_last=False) for part in (train, evaluation)]
    return tuple(accelerator.prepare(loader) for loader in loaders)


def image_processor_files(config) -> dict[str, str]:
    """Text files that make a saved image-encoder folder work with `AutoImageProcessor` and
    `pipeline("image-classification")`, with or without hfgen installed: preprocessor_config.json (with the
    `auto_map` for trust_remote_code) and the processor's self-contained source."""
    from ..models.image_encoder import image_processing_image_encoder as module

    processor = module.ImageEncoderImageProcessor(image_size=config.image_size, num_channels=config.num_channels)
    settings = processor.to_dict()
    settings["auto_map"] = {"AutoImageProcessor": "image_processing_image_encoder.ImageEncoderImageProcessor"}
    return {
        "preprocessor_config.json": json.dumps(settings, indent=2, sort_keys=True) + "\n",
        "image_processing_image_encoder.py": inspect.getsource(module),
    }


__all__ = ["ImageSplits", "built_by_hfgen", "check_image_modes", "image_processor_files", "is_image_model", "load_image_splits", "probe_loaders", "probe_subset"]
