"""Scoring a trained model on a dataset split, as `scripts/evaluate.py` does; what is scored depends on
the model (read from its config, no flag needed):

- **classifiers** (text sequence- and token-classification heads, such as `method: classifier` saves,
  and hfgen image classifiers): the classification metrics of `hfgen.metrics.classification` on the
  split, computed by the very code that scores the trainer's test split (tokenisation, batching,
  `hfgen.train.methods.classifier.evaluate`), so a folder's ``eval_results.json`` and this agree;
- **generators** (DCGAN, VAE, diffusion pipelines): FID, KID and precision/recall of generated images against the split.

Under ``accelerate launch`` a classifier's split is shared among the processes and every example
still counts once (``gather_for_metrics``).
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger("hfgen")

CLASSIFIER_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForImageClassification")


def model_kind(model: str, revision: str | None = None, trust_remote_code: bool = False) -> str:
    """``"classifier"`` when the saved model's architecture is a classification head, else ``"generator"``."""
    from transformers import AutoConfig

    from .diffusion import is_pipeline
    from .pretrained import resolve_pretrained  # (importing hfgen registered its model types with AutoConfig)

    if is_pipeline(model, revision):  # a diffusers pipeline (method: diffusion) generates
        return "generator"

    config = AutoConfig.from_pretrained(resolve_pretrained(model), revision=revision, trust_remote_code=trust_remote_code)
    return "classifier" if any(a.endswith(CLASSIFIER_HEADS) for a in config.architectures or []) else "generator"


def evaluate_classifier(
    model: str,
    dataset: str,
    *,
    split: str = "test",
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    image_column: str = "image",
    batch_size: int = 64,
    max_length: int | None = None,
    threshold: float = 0.5,
    revision: str | None = None,
    device: str | None = None,
) -> dict:
    """The metrics of classifier ``model`` on ``dataset[split]``; labels (names, ints, ClassLabel ids)
    are matched to the model's ``config.label2id``.

    Returns a JSON-ready dict: ``model``, ``dataset``, ``split``, ``task``, ``examples``, ``metrics``
    (``loss`` and the task's metrics, as the trainer's ``eval_*``), ``label_names``, rows ``dropped``
    (null labels, empty texts) and, for single-label and token models, the ``confusion_matrix``.

    Raises:
        DatasetError: a missing split or column (naming those present), or a label the model does not know.
    """
    from accelerate import Accelerator

    from .config import ClassifierSection
    from .data import build_dataset, require_columns, select_split
    from .data.labels import encode_labels_for_model
    from .predict import classifier_task, load_classifier
    from .train.methods.classifier import MAX_CONFUSION_CLASSES, evaluate, outputs_confusion_matrix

    accelerator = Accelerator(cpu=device is not None and device.startswith("cpu"))
    loaded, tokenizer = load_classifier(model, revision=revision, device=str(accelerator.device))
    task = classifier_task(loaded)
    names = None if task == "regression" else [loaded.config.id2label[i] for i in range(loaded.config.num_labels)]
    rows = select_split(build_dataset(dataset), split, "--split", ref=dataset)
    inputs = {"--image-column": image_column} if tokenizer is None else {"--text-column": text_column, "--text-pair-column": text_pair_column}
    require_columns(rows, {**inputs, "--label-column": label_column}, ref=dataset)
    rows, null_labels = encode_labels_for_model(rows, label_column, task, names, split_name=split, ref=dataset)
    dropped = {"null_labels": null_labels}
    if tokenizer is None:
        loader = _image_loader(rows, image_column, loaded.config, batch_size)
    else:
        loader, dropped["empty_texts"] = _text_loader(rows, tokenizer, loaded.config, task, names, text_column, text_pair_column, batch_size, max_length, split, dataset)
    options = ClassifierSection(task=task, threshold=threshold)
    metrics, outputs = evaluate(accelerator, loaded, accelerator.prepare(loader), options, names, return_outputs=True)
    examples = metrics.pop("examples")
    results = {"model": model, "dataset": dataset, "split": split, "task": task, "examples": examples, "metrics": metrics,
               "label_names": names, "dropped": dropped}
    if names is not None and len(names) <= MAX_CONFUSION_CLASSES:
        matrix = outputs_confusion_matrix(task, outputs, len(names))
        if matrix is not None:
            results["confusion_matrix"] = matrix.tolist()
    return results


def _text_loader(rows, tokenizer, config, task, names, text_column, text_pair_column, batch_size, max_length, split, dataset):
    """(the trainer's evaluation loader over the tokenised split, rows dropped for an empty text)."""
    from .data.text_classification import PaddingCollator, TokenizedTexts, build_text_loader, drop_empty_texts, tokenize_for_classification
    from .predict import default_max_length

    text_columns = [text_column] + ([text_pair_column] if text_pair_column else [])
    rows, empty = drop_empty_texts(rows, text_columns, split_name=split, ref=dataset)
    tokens, at_cap = tokenize_for_classification(
        rows, tokenizer, text_column=text_column, text_pair_column=text_pair_column,
        max_length=default_max_length(tokenizer, config, max_length), task=task, label_names=names,
    )  # fmt: skip
    if at_cap:
        logger.info("%d of %d examples reached the maximum length (cut).", at_cap, len(rows))
    collator = PaddingCollator(tokenizer.pad_token_id, task)
    return build_text_loader(TokenizedTexts(tokens), collator, batch_size, seed=0, train=False), empty


def _image_loader(rows, image_column, config, batch_size):
    """The trainer's evaluation loader over the split's images at the model's size and channels
    (converted as `hfgen.data.pil_to_tensor` does, as the model's image processor would)."""
    from .data import ImageDataset
    from .train.methods.classifier_images import build_image_loader

    images = ImageDataset(rows, image_column=image_column, label_column="labels", image_size=config.image_size, num_channels=config.num_channels)
    return build_image_loader(images, batch_size, seed=0, train=False)


def evaluate_generator_model(
    model: str,
    dataset: str,
    *,
    split: str = "test",
    num_samples: int | None = None,
    num_real: int | None = None,
    extractor: str = "inception",
    extractor_model: str | None = None,
    seed: int = 0,
    revision: str | None = None,
    trust_remote_code: bool = False,
    device: str | None = None,
) -> dict:
    """FID, KID and precision/recall of ``num_samples`` images of generator ``model`` (default: 10,000 on
    GPU, 2,000 on CPU) against ``num_real`` images of ``dataset[split]`` (default: as many)."""
    from .generation import load_generator
    from .metrics.features import build_extractor, evaluate_generator

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    num_samples = num_samples or (10_000 if device.startswith("cuda") else 2_000)
    generator = load_generator(model, revision, trust_remote_code, device)
    features = build_extractor(extractor, device, extractor_model)
    results = evaluate_generator(generator, features, dataset, split, num_samples=num_samples, num_real=num_real or num_samples, seed=seed)
    return {"model": model, **results}
