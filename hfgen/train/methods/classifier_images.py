"""The image side of `method: classifier` (hfgen.train.classifier): what differs from text when the recipe's model is
an hfgen image encoder. The loop, metrics, model selection, early stopping and outputs are the text classifier's own;
this module supplies the splits (uint8 images at the model's size, labels encoded by `hfgen.data.labels`), the
loaders (with optional crop/flip augmentation on the batch), the model (from scratch, or from an hfgen autoencoder /
SimCLR / classifier folder via `from_pretrained`, optionally with a frozen encoder) and the files saved beside it
(image processor, so `pipeline("image-classification", model=output_dir)` works).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets
import torch
from torch.utils.data import DataLoader

from ...config import ClassifierSection, Recipe, RecipeError
from ...data import (
    ImageDataset,
    build_dataset,
    drop_unreadable_images,
    random_horizontal_flip,
    require_columns,
    select_split,
)
from ...data.augment import random_resized_crop
from ...data.holdout import hold_out_labelled_split
from ...data.labels import encode_labels, split_off_validation
from ..batches import EpochSampler, sampled_loader
from ..image_splits import (
    built_by_hfgen,
    check_image_modes,
    image_processor_files,
    is_image_model,
)
from ..models import build_model, model_config

logger = logging.getLogger("hfgen")

__all__ = ["ImageClassifierSplits", "build_image_classifier", "build_image_loader", "image_classifier_files", "is_image_model", "load_image_classifier_splits"]


@dataclass
class ImageClassifierSplits:
    """The image splits of one classifier run (the counterpart of the text classifier's `TextSplits`)."""

    train: ImageDataset  # with classifier.synthetic: the real images, then the generated ones
    validation: ImageDataset | None
    test: ImageDataset | None
    label_names: list[str]
    counts: dict


def load_image_classifier_splits(recipe: Recipe) -> ImageClassifierSplits:
    """Train / validation / test images at the model's size, labels encoded as class ids. Unreadable files are
    dropped or fail per `data.on_bad_image` (counted), colour modes are checked against the model (see
    `hfgen.train.image_splits`), a validation split is carved out of training when the dataset has none."""
    options, data, train = recipe.classifier or ClassifierSection(), recipe.data, recipe.train
    config = model_config(recipe)
    image_size, num_channels = config.image_size, config.num_channels
    if options.task != "single_label":
        raise RecipeError(f"{recipe.source}: classifier.task: image classifiers support single_label, not {options.task!r}")
    if data.label_column is None:
        raise RecipeError(f"{recipe.source}: data.label_column: method classifier needs the column that holds the labels")
    dataset = build_dataset(data.dataset)
    roles = {"train": (data.train_split, "data.train_split")}
    if options.validation_split is not None and options.validation_split in dataset:
        roles["validation"] = (options.validation_split, "classifier.validation_split")
    if data.eval_split and data.eval_split in dataset:  # else a test split is held out of training, below
        roles["test"] = (data.eval_split, "data.eval_split")
    splits = datasets.DatasetDict({role: select_split(dataset, name, key, ref=data.dataset) for role, (name, key) in roles.items()})
    require_columns(splits, {"data.image_column": data.image_column, "data.label_column": data.label_column}, ref=data.dataset)
    skipped = 0
    if not built_by_hfgen(data.dataset):
        splits, skipped = drop_unreadable_images(splits, data.image_column, data.on_bad_image)
    check_image_modes(splits["train"], data.image_column, num_channels, data.convert_image_mode, recipe.source)
    counts = {role: {"split": name} for role, (name, _) in roles.items()}
    splits = dict(splits)
    for role in list(splits):
        limit = data.max_train_samples if role == "train" else data.max_eval_samples
        if limit is not None and limit < len(splits[role]):
            splits[role] = splits[role].shuffle(seed=train.seed).select(range(limit))
    splits, report = encode_labels(
        splits, data.label_column, "single_label", train_split="train", label_names=options.label_names,
        unseen=options.unseen_labels, unknown_label=options.unknown_label, ref=data.dataset,
    )  # fmt: skip
    if data.eval_split and "test" not in splits:
        splits["train"], splits["test"] = hold_out_labelled_split(splits["train"], data.eval_holdout, train.seed, data.eval_split, data.dataset, stratify=True)
        counts["test"] = {"split": f"{data.eval_holdout:.0%} of {data.train_split} held out as {data.eval_split!r} (seed {train.seed}, data.eval_holdout)"}
    if "validation" not in splits and options.validation_size > 0:
        splits["train"], splits["validation"] = split_off_validation(splits["train"], options.validation_size, seed=train.seed, stratify=True)
        counts["validation"] = {"split": f"{options.validation_size:.0%} of {data.train_split} (seed {train.seed})"}
        logger.info("No %r split: holding out %d training images for validation.", options.validation_split, len(splits["validation"]))
    images = {
        role: ImageDataset(rows, image_column=data.image_column, label_column="labels", image_size=image_size, num_channels=num_channels)
        for role, rows in splits.items()
    }
    for role, rows in images.items():
        counts[role]["examples"] = len(rows)
    if options.synthetic is not None:  # generated labelled images join the real training images (not validation or test)
        from ...data.synthetic import WithSynthetic, generate_labelled_images

        synthetic = options.synthetic
        try:
            generated = generate_labelled_images(synthetic.model, report.names, synthetic.images_per_class, image_size, num_channels,
                                                 seed=synthetic.seed, revision=synthetic.revision)
        except (OSError, ValueError) as error:
            raise RecipeError(f"{recipe.source}: classifier.synthetic.model: {error}") from None
        counts["train"].update({"real_examples": len(images["train"]), "synthetic_examples": len(generated),
                                "synthetic_model": synthetic.model, "synthetic_seed": synthetic.seed})
        images["train"] = WithSynthetic([images["train"], generated])
        counts["train"]["examples"] = len(images["train"])
    counts["unreadable_images_skipped"] = skipped
    return ImageClassifierSplits(images["train"], images.get("validation"), images.get("test"), report.names, counts)


class ImageBatches:
    """Collate `{"pixel_values": uint8, "labels"}` rows into float batches in [0, 1]; for training, optionally a random
    resized crop (area in `crop_scale`) and horizontal flips, drawn from the global RNG (checkpointed per process)."""

    def __init__(self, crop_scale: list[float] | None = None, flip: bool = False):
        self.crop_scale, self.flip = crop_scale, flip

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([row["pixel_values"] for row in rows]).float() / 255.0  # (batch, C, H, W)
        if self.crop_scale is not None:
            pixel_values = random_resized_crop(pixel_values, scale=tuple(self.crop_scale), ratio=(0.9, 1.1))
        if self.flip:
            pixel_values = random_horizontal_flip(pixel_values)
        return {"pixel_values": pixel_values, "labels": torch.stack([row["labels"] for row in rows])}


def build_image_loader(images: ImageDataset, batch_size: int, *, seed: int, train: bool, recipe: Recipe | None = None) -> DataLoader:
    """Training: an `EpochSampler` permutation per epoch, last partial batch dropped, augmentation per
    `classifier.image_crop_scale` / `data.random_flip`. Evaluation: every image once, in order, no augmentation
    (no recipe needed)."""
    sampler = EpochSampler(len(images), seed=seed, shuffle=train)
    collate, workers = ImageBatches(), 0
    if train:
        options = recipe.classifier or ClassifierSection()
        collate, workers = ImageBatches(options.image_crop_scale, recipe.data.random_flip), recipe.data.num_workers
    return sampled_loader(images, sampler, batch_size, drop_last=train, seed=seed, collate_fn=collate, num_workers=workers)


def build_image_classifier(recipe: Recipe, names: list[str]):
    """`ImageEncoderForImageClassification` for these class names: from scratch (`model.type`), or from an hfgen image
    folder (`model.pretrained`: an autoencoder's or SimCLR run's encoder, or a classifier whose head of another size is
    re-initialised). `classifier.freeze_encoder` trains the head only."""
    from transformers import AutoModelForImageClassification

    options = recipe.classifier or ClassifierSection()
    overrides = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        "problem_type": "single_label_classification",
    }
    load_kwargs = {"ignore_mismatched_sizes": True} if recipe.model.pretrained is not None else None
    model = build_model(recipe, AutoModelForImageClassification, load_kwargs=load_kwargs, **overrides)
    if options.freeze_encoder:
        model.freeze_encoder()
        logger.info("classifier.freeze_encoder: training the head only (%d parameters).", sum(p.numel() for p in model.parameters() if p.requires_grad))
    return model


def image_classifier_files(model) -> dict[str, str]:
    """Files saved beside a finished image classifier: the image processor (for `pipeline("image-classification")`
    and `AutoImageProcessor`), and Auto-class entries so it loads without hfgen (`trust_remote_code=True`)."""
    return image_processor_files(model.config)
