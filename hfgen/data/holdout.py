"""Held-out splits carved from training when the user's data has no evaluation split: a seeded fraction
(`data.eval_holdout`), stratified by the label column when it holds class labels; what was done is returned so it
is logged and recorded in `eval_results.json`."""

from __future__ import annotations

import logging

import datasets

from .labels import split_off_validation

logger = logging.getLogger("hfgen")

HOLDOUT_KEY = "data.eval_holdout"


def hold_out_eval_split(
    dataset: datasets.DatasetDict, train_split: str, eval_split: str | None, fraction: float, seed: int,
    label_column: str | None = None, ref: str = "the dataset",
) -> tuple[datasets.DatasetDict, dict | None]:
    """`dataset` with an `eval_split` carved out of `train_split` when the data has none (else unchanged), and a
    description of the carve (None when nothing was carved). Streamed datasets are returned unchanged."""
    if eval_split is None or eval_split in dataset or train_split not in dataset or not isinstance(dataset, datasets.DatasetDict):
        return dataset, None
    train = dataset[train_split]
    feature = train.features.get(label_column) if label_column else None
    stratify = isinstance(feature, datasets.ClassLabel)
    kept, held = split_off_validation(train, fraction, seed, stratify, label_column=label_column or "labels",
                                      purpose=f"the {eval_split!r} split", key=HOLDOUT_KEY)
    carved = datasets.DatasetDict({**dataset, train_split: kept, eval_split: held})
    info = {"split": eval_split, "held_out_of": train_split, "fraction": fraction, "seed": seed,
            "examples": len(held), "train_examples_left": len(kept), "stratified_by": label_column if stratify else None}
    logger.info("No %r split in %s: holding out %d of %d %r examples as it (%s=%g, seed %d%s).", eval_split, ref, len(held),
                len(train), train_split, HOLDOUT_KEY, fraction, seed, f", stratified by {label_column!r}" if stratify else "")
    return carved, info


def hold_out_labelled_split(train: datasets.Dataset, fraction: float, seed: int, split_name: str, ref: str,
                            stratify: bool) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, held out) for a classifier whose data has no `split_name` (its test split): `fraction` of the
    label-encoded training rows (int ``labels``), seeded, stratified by class when `stratify`."""
    kept, held = split_off_validation(train, fraction, seed, stratify, purpose=f"the {split_name!r} split", key=HOLDOUT_KEY)
    logger.info("No %r split in %s: holding out %d of %d training examples as it (%s=%g, seed %d%s).", split_name, ref,
                len(held), len(train), HOLDOUT_KEY, fraction, seed, ", stratified by class" if stratify else "")
    return kept, held
