"""`method: classifier` — fine-tuning a pretrained text encoder (BERT family) with a task head.

Tasks (``classifier.task``): single-label classification (sentence pairs with
``data.text_pair_column``), multi-label classification (sigmoid, threshold), regression, and
token classification (one tag per word, e.g. NER). The heads are transformers' own
(`AutoModelForSequenceClassification`, `AutoModelForTokenClassification`); the class names go into
``config.id2label`` so ``pipeline("text-classification", model=output_dir)`` prints them.

The loop: texts tokenised once, batches of similar length padded only to their longest example,
bf16 autocast, gradient accumulation, warm-up + decay, optional layer-wise learning-rate decay
and class weights; the validation split is evaluated every epoch (and every ``train.eval_every``
steps), the best model by ``metric_for_best_model`` is kept in ``output_dir/best`` (with early
stopping after ``early_stopping_patience`` evaluations without improvement), and at the end that
model is scored on the test split (``data.eval_split``) and saved with its tokenizer, model card,
``eval_results.json`` and a confusion-matrix PNG.

Distillation (``classifier.teacher``, `hfgen.train.methods.distillation`): a fine-tuned teacher's outputs on the
training texts (and on a seeded transfer set of altered copies, ``classifier.distill_augment``) are computed once and
ride with the batches; the loss is `hfgen.losses.distillation.distillation_loss`. The student is any model this
method trains, e.g. ``model.type: hfgen-rnn-classifier`` (embeddings optionally from ``classifier.init_embeddings``)
or the teacher's first layers (``model.pretrained: <teacher>`` + ``model.num_hidden_layers``).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass

import datasets
import numpy as np
import torch

from ...config import ClassifierSection, Recipe, RecipeError
from ...data import build_dataset, require_columns, select_split
from ...data.columns import require_text_columns
from ...data.holdout import hold_out_labelled_split
from ...data.labels import balanced_class_weights, class_counts, encode_labels, split_off_validation
from ...data.text import rows_of_process
from ...data.text_classification import (
    IGNORE_INDEX,
    PaddingCollator,
    StreamedClassificationExamples,
    TokenizedTexts,
    choose_max_length,
    token_lengths,
    build_text_loader,
    drop_empty_texts,
    tokenize_for_classification,
    tokenize_labelled_rows,
)
from ...losses.classification import classification_loss
from ...losses.distillation import distillation_loss
from ...metrics.classification import (
    confusion_matrix,
    default_metric,
    multi_label_metrics,
    regression_metrics,
    save_confusion_matrix_png,
    single_label_metrics,
    token_metrics,
)
from ..batches import require_max_steps_when_streaming
from ..cls_only import enable_cls_only_last_layer
from ..engine import Final, Step, TrainingRun
from ..fast_dropout import set_training_attention
from ..hardware import speed_choices
from ..model_setup import apply_lora
from ..models import build_model, model_config
from ..optim import backward_and_step, build_optimizer
from ..param_groups import parameter_groups
from ..selection import BEST_DIR, ModelSelection, best_model_checkpoint_hooks, load_best_model, metric_greater_is_better, save_best_model
from .classifier_images import build_image_classifier, build_image_loader, image_classifier_files, is_image_model, load_image_classifier_splits
from .distillation import check_teacher_options, distillation_training_set

logger = logging.getLogger("hfgen")

PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
MAX_CONFUSION_CLASSES = 50  # beyond this a confusion-matrix picture is unreadable


@dataclass
class TextSplits:
    """The tokenised splits of one run and what was done to get them."""

    train: TokenizedTexts
    validation: TokenizedTexts | None
    test: TokenizedTexts | None
    label_names: list[str] | None  # by class id; None for regression
    counts: dict  # rows dropped / truncated / mapped per split, for the log and eval_results.json
    max_length: int | None = None  # tokens per example the splits were cut to (classifier.max_length, resolved)
    train_rows: object = None  # the training rows before tokenisation (a datasets.Dataset), for a teacher's own tokens


class Classifier:
    """`method: classifier` (text or hfgen image encoder) on the training engine."""

    name, unit = "classifier", "examples"

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self.options = recipe.classifier or ClassifierSection()
        self.evaluate_every_epoch = self.options.eval_every_epoch
        self.last_validated = -1

    @property
    def unshardable(self) -> str | None:
        """Why this classifier cannot run under FSDP2, or None: text classifiers can, image ones and LoRA cannot."""
        if is_image_model(self.recipe):
            from ..accelerator import UNSHARDED_IMAGE_METHOD

            return f"an image classifier is trained under DDP: {UNSHARDED_IMAGE_METHOD}"
        if self.options.lora is not None:
            return "classifier.lora trains a few adapter weights, which every device holds whole anyway; DDP is the engine for it"
        return None

    def build(self, run: TrainingRun) -> None:
        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        accelerator = run.accelerator
        self.images = images = is_image_model(recipe)  # an hfgen image encoder: splits, loaders, model from classifier_images
        check_teacher_options(recipe, images)
        if options.synthetic is not None and not images:
            raise RecipeError(f"{recipe.source}: classifier.synthetic adds generated images: it applies to image classifiers only")
        if options.lora is not None and images:  # before any data or weights are loaded
            raise RecipeError(f"{recipe.source}: classifier.lora applies to text encoders (transformers); image classifiers train whole "
                              "or with classifier.freeze_encoder")
        self.tokenizer = tokenizer = None if images else load_tokenizer(recipe)
        self.splits = splits = (load_image_classifier_splits(recipe) if images else
                                load_text_splits(recipe, tokenizer, rank=accelerator.process_index, world_size=accelerator.num_processes))
        names = self.names = splits.label_names
        self.streamed = isinstance(splits.train, StreamedClassificationExamples)
        model = build_image_classifier(recipe, names) if images else build_classifier_model(recipe, names, tokenizer)
        self.distillation = {}
        if options.teacher is not None:  # the teacher's outputs ride with the training set (and its transfer set)
            splits.train, self.distillation = distillation_training_set(
                accelerator, recipe, names, tokenizer, splits.train, splits.train_rows, splits.max_length,
                train.eval_batch_size or train.batch_size,
            )  # fmt: skip
        self.max_length = max_length = None if images else splits.max_length
        if max_length is not None and max_length > getattr(model.config, "max_position_embeddings", max_length):
            raise RecipeError(
                f"{recipe.source}: classifier.max_length {max_length} exceeds the model's "
                f"max_position_embeddings {model.config.max_position_embeddings}"
            )
        eval_batch_size = train.eval_batch_size or train.batch_size
        if images:
            loader = build_image_loader(splits.train, train.batch_size, seed=train.seed, train=True, recipe=recipe)
            self.validation_loader, self.test_loader = (
                None if rows is None else run.prepare_eval_loader(build_image_loader(rows, eval_batch_size, seed=train.seed, train=False))
                for rows in (splits.validation, splits.test)
            )
        else:
            set_training_attention(model, options.attn_implementation, options.fast_dropout, run.device.type)
            if options.cls_only_last_layer and options.task != "token":
                enable_cls_only_last_layer(model)
            pad_to = max_length if options.pad_to_max_length else None
            collator = PaddingCollator(tokenizer.pad_token_id, options.task, pad_to=pad_to)
            if self.streamed:  # this process's part of the stream, batched as it comes (no length grouping)
                loader = torch.utils.data.DataLoader(splits.train, batch_size=train.batch_size, drop_last=True, collate_fn=collator,
                                                     num_workers=data.num_workers)
            else:
                loader = build_text_loader(
                    splits.train, collator, train.batch_size, seed=train.seed, train=True,
                    group_by_length=options.group_by_length, num_workers=data.num_workers,
                )  # fmt: skip
            self.validation_loader, self.test_loader = (
                None if rows is None else run.prepare_eval_loader(build_text_loader(rows, collator, eval_batch_size, seed=train.seed, train=False))
                for rows in (splits.validation, splits.test)
            )
        if options.lora is not None:
            model = apply_lora(model, options.lora, options.task, recipe.source, base_model=recipe.model.pretrained)
        self.weights = class_weights(options, splits.train, names, source=recipe.source)
        optimizer = build_optimizer(
            parameter_groups(model, train.learning_rate, train.weight_decay, options.layer_lr_decay), train,
            fused=speed_choices(run.device.type).fused_adamw,
        )  # fmt: skip
        _, (self.model,), (self.optimizer,) = run.prepare(loader, [model], [optimizer], loader_is_per_process=self.streamed)
        if self.weights is not None:
            self.weights = self.weights.to(run.device)

        metric = default_metric(options.task) if options.metric_for_best_model == "auto" else options.metric_for_best_model
        self.metric = metric = metric.removeprefix("eval_").removeprefix("validation_")
        greater = options.greater_is_better if options.greater_is_better is not None else metric_greater_is_better(metric)
        self.selection = ModelSelection(metric, greater, options.early_stopping_patience, options.early_stopping_threshold)
        self.stateful = {"model_selection": self.selection}
        run.checkpoint_hooks.append(best_model_checkpoint_hooks(accelerator, run.output_dir))

    def step(self, batch) -> Step:
        labels, teacher = batch.pop("labels"), batch.pop("teacher_logits", None)
        logits = self.model(**batch).logits
        options = self.options
        if teacher is None:
            loss = classification_loss(logits, labels, options.task, self.weights)
        else:
            loss = distillation_loss(logits, teacher, labels, options.task, options.distill_temperature, options.distill_alpha,
                                     options.distill_loss, self.weights)
        backward_and_step(self.run.accelerator, loss, self.model, self.optimizer, self.run.train.max_grad_norm)
        return Step(losses={"loss": loss}, count=labels.shape[0])

    @property
    def should_stop(self) -> bool:
        return self.selection.should_stop

    def evaluate(self) -> dict:
        """Evaluate on validation, keep the model when it is the best so far (and stop early after `patience`)."""
        if self.validation_loader is None:
            return {}
        run, selection, metric = self.run, self.selection, self.metric
        metrics = evaluate(run.accelerator, self.model, self.validation_loader, self.options, self.names, self.weights)
        improved = selection.update(metrics, run.state.step)
        if improved:
            save_best_model(run.accelerator, self.model, run.output_dir)
        self.last_validated = run.state.step
        logger.info(
            "step %d validation %s = %.4f%s", run.state.step, metric, metrics[metric],
            " (best so far)" if improved else f" (best {selection.best_value:.4f} at step {selection.best_step})",
        )  # fmt: skip
        if selection.should_stop:
            logger.info(
                "early stopping at step %d: %d evaluations without improvement (best %s %.4f at step %d)",
                run.state.step, selection.evaluations_without_improvement, metric, selection.best_value, selection.best_step,
            )  # fmt: skip
        return {f"validation_{k}": v for k, v in metrics.items()}

    def before_final_checkpoint(self) -> None:
        run, selection = self.run, self.selection
        if self.validation_loader is not None and self.last_validated != run.state.step and not selection.should_stop and run.state.step > 0:
            run.accelerator.log(self.evaluate(), step=run.state.step)  # the final weights compete too

    def finish(self, results: dict) -> Final:
        run, options, selection, metric = self.run, self.options, self.selection, self.metric
        accelerator, out, names = run.accelerator, run.output_dir, self.names
        if self.validation_loader is not None and load_best_model(accelerator, self.model, out):
            logger.info("final model: the best on validation (%s %.4f at step %d)", metric, selection.best_value, selection.best_step)
        batches_per_epoch = run.batches_per_epoch or 0
        if self.streamed:  # what the processes read of the stream, summed; an epoch is one pass over a process's part
            read = run.text_counts(self.splits.train.counts)
            self.splits.counts["train"].update(read)
            train_examples, epochs = read["examples"], None
        else:
            train_examples = len(self.splits.train)
            epochs = run.state.step / max(1, -(-batches_per_epoch // run.train.gradient_accumulation_steps))
        results.update({"train_examples": train_examples, "epochs": epochs, "early_stopped": selection.should_stop})
        if self.validation_loader is not None:
            results.update({"metric_for_best_model": metric, "best_step": selection.best_step, f"best_validation_{metric}": selection.best_value})
        test_outputs = None
        if self.test_loader is not None:
            started_eval = time.perf_counter()
            test_metrics, test_outputs = evaluate(accelerator, self.model, self.test_loader, options, names, self.weights, return_outputs=True)
            results.update({f"eval_{k}": v for k, v in test_metrics.items()})
            results["predict_seconds"] = time.perf_counter() - started_eval
            results["predict_examples_per_s"] = test_metrics["examples"] / results["predict_seconds"]
            logger.info("test (%s): %s", self.recipe.data.eval_split, {k: round(v, 4) for k, v in test_metrics.items() if isinstance(v, float)})
        if accelerator.is_main_process and test_outputs is not None and options.confusion_matrix and names and len(names) <= MAX_CONFUSION_CLASSES:
            matrix = outputs_confusion_matrix(options.task, test_outputs, len(names))
            if matrix is not None:
                save_confusion_matrix_png(matrix, names, out / "confusion_matrix.png", title=f"{self.recipe.data.dataset} / {self.recipe.data.eval_split}")
                results["confusion_matrix"] = matrix.tolist()
        results.update({"label_names": names, "data": self.splits.counts, **self.distillation})
        if self.max_length is not None:
            results["max_length"] = self.max_length
        pipeline_tag = "image-classification" if self.images else "token-classification" if options.task == "token" else "text-classification"
        files = image_classifier_files(accelerator.unwrap_model(self.model)) if self.images else {}
        return Final(model=self.model, files=files, tokenizer=self.tokenizer,
                     card_family="image_classifier" if self.images else "classifier", pipeline_tag=pipeline_tag)

    def after_final_save(self) -> None:
        if self.run.is_main_process:  # the final model is the best one; checkpoints keep their own links to it
            shutil.rmtree(self.run.output_dir / BEST_DIR, ignore_errors=True)


def load_tokenizer(recipe: Recipe):
    """The tokenizer `classifier.tokenizer` names, else `model.pretrained`'s (aliases resolved)."""
    from transformers import AutoTokenizer

    from ...pretrained import resolve_pretrained

    options = recipe.classifier or ClassifierSection()
    ref = options.tokenizer or recipe.model.pretrained
    if ref is None:
        raise RecipeError(f"{recipe.source}: classifier.tokenizer: a model built from model.type needs a tokenizer folder or Hub id")
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(ref), revision=recipe.model.revision if ref == recipe.model.pretrained else None)
    if tokenizer.pad_token_id is None:
        raise RecipeError(f"{recipe.source}: the tokenizer of {ref!r} has no padding token; set one or use another tokenizer")
    return tokenizer


def load_text_splits(recipe: Recipe, tokenizer, rank: int = 0, world_size: int = 1) -> TextSplits:
    """Load the dataset, check columns, drop empty texts, slice, encode labels, carve a validation
    split when there is none, and tokenise every split (in memory; with `data.streaming` the training split is
    read as training goes, process `rank` of `world_size` its own part: `load_streamed_text_splits`)."""
    options, data, train = recipe.classifier or ClassifierSection(), recipe.data, recipe.train
    if data.label_column is None:
        raise RecipeError(f"{recipe.source}: data.label_column: method classifier needs the column that holds the labels")
    if data.streaming:
        return load_streamed_text_splits(recipe, tokenizer, rank, world_size)
    dataset = build_dataset(data.dataset, encoding=data.encoding)
    text_columns = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    roles = {"train": (data.train_split, "data.train_split")}
    has_validation = options.validation_split is not None and options.validation_split in dataset
    if has_validation:
        roles["validation"] = (options.validation_split, "classifier.validation_split")
    if data.eval_split and data.eval_split in dataset:  # else a test split is held out of training, below
        roles["test"] = (data.eval_split, "data.eval_split")
    splits, counts = {}, {}
    for role, (split_name, key) in roles.items():
        rows = select_split(dataset, split_name, key, ref=data.dataset)
        columns = {"data.text_column": data.text_column, "data.text_pair_column": data.text_pair_column, "data.label_column": data.label_column}
        require_columns(rows, columns, ref=f"{data.dataset} (split {split_name!r})")
        require_text_columns(rows, {"data.text_column": data.text_column, "data.text_pair_column": data.text_pair_column},
                             ref=data.dataset, word_lists=options.task == "token")
        rows, dropped = drop_empty_texts(rows, text_columns, split_name=split_name, ref=data.dataset, drop=options.drop_empty_texts)
        limit = data.max_train_samples if role == "train" else data.max_eval_samples
        if limit is not None and limit < len(rows):
            rows = rows.shuffle(seed=train.seed).select(range(limit))
        splits[role] = rows
        counts[role] = {"split": split_name, "empty_texts_dropped": dropped}
    splits, report = encode_labels(
        splits, data.label_column, options.task, train_split="train", label_names=options.label_names,
        unseen=options.unseen_labels, unknown_label=options.unknown_label, ref=data.dataset,
    )  # fmt: skip
    for role, dropped in report.null_dropped.items():
        counts[role]["null_labels_dropped"] = dropped
    for role, mapped in report.unseen_mapped.items():
        counts[role]["unseen_labels_mapped"] = mapped
    if data.eval_split and "test" not in splits:
        splits["train"], splits["test"] = hold_out_labelled_split(splits["train"], data.eval_holdout, train.seed, data.eval_split, data.dataset, stratify=options.task == "single_label")
        counts["test"] = {"split": f"{data.eval_holdout:.0%} of {data.train_split} held out as {data.eval_split!r} (seed {train.seed}, data.eval_holdout)"}
    if "validation" not in splits and options.validation_size > 0:
        splits["train"], splits["validation"] = split_off_validation(
            splits["train"], options.validation_size, seed=train.seed, stratify=options.task == "single_label"
        )
        counts["validation"] = {"split": f"{options.validation_size:.0%} of {data.train_split} (seed {train.seed})"}
        logger.info("No %r split: holding out %d training examples for validation.", options.validation_split, len(splits["validation"]))
    max_length = resolve_max_length(recipe, tokenizer, splits["train"], counts)
    tokenized = {}
    for role, rows in splits.items():
        tokens, at_cap = tokenize_for_classification(
            rows, tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column,
            max_length=max_length, task=options.task, label_names=report.names,
            label_all_tokens=options.label_all_tokens and role == "train",  # scores always count each word once
        )  # fmt: skip
        tokenized[role] = TokenizedTexts(tokens)
        counts[role].update({"examples": len(rows), "reached_max_length": at_cap})
        if at_cap:
            logger.info("%s: %d of %d examples reached classifier.max_length=%d tokens (cut).", role, at_cap, len(rows), max_length)
        if role == "train" and options.max_length != "auto" and rows and at_cap / len(rows) > 0.05:
            logger.warning("%d of %d training texts (%.0f%%) reach classifier.max_length=%d and are cut; "
                           "classifier.max_length: auto picks a length that covers %.0f%% of them (classifier.max_length_quantile)",
                           at_cap, len(rows), 100 * at_cap / len(rows), max_length, 100 * options.max_length_quantile)
    return TextSplits(tokenized["train"], tokenized.get("validation"), tokenized.get("test"), report.names, counts, max_length,
                      train_rows=splits["train"])


def load_streamed_text_splits(recipe: Recipe, tokenizer, rank: int = 0, world_size: int = 1) -> TextSplits:
    """`data.streaming: true`: the training split is read as training goes, each process its own part, tokenised a
    chunk at a time (`StreamedClassificationExamples`), so memory stays flat however large it is; the validation
    and test splits, which every evaluation reads whole anyway, are read from the stream once into memory. What
    would need the whole training split up front is refused by its key."""
    options, data, train, source = recipe.classifier or ClassifierSection(), recipe.data, recipe.train, recipe.source
    why = "a streamed training split is read as training goes, never whole"

    def refuse(key: str, fix: str):
        return RecipeError(f"{source}: {key}: {why}; {fix} (or set data.streaming: false)")

    if options.max_length == "auto":
        raise refuse("classifier.max_length", "auto measures every training text first: give a number of tokens")
    if options.class_weights == "balanced":
        raise refuse("classifier.class_weights", "balanced counts every training label first: give the weights as a list")
    if options.teacher is not None:
        raise refuse("classifier.teacher", "distillation computes the teacher's outputs over the whole training set first")
    require_max_steps_when_streaming(recipe)
    dataset = build_dataset(data.dataset, streaming=True, encoding=data.encoding)
    columns = {"data.text_column": data.text_column, "data.text_pair_column": data.text_pair_column, "data.label_column": data.label_column}
    texts = {"data.text_column": data.text_column, "data.text_pair_column": data.text_pair_column}
    train_rows = select_split(dataset, data.train_split, "data.train_split", ref=data.dataset)
    require_columns(train_rows, columns, ref=f"{data.dataset} (split {data.train_split!r})")
    require_text_columns(train_rows, texts, ref=data.dataset, word_lists=options.task == "token")
    names = streamed_label_names(recipe, train_rows)
    has_validation = options.validation_split is not None and options.validation_split in dataset
    if not has_validation and options.validation_size > 0:
        raise refuse("classifier.validation_size", f"no split {options.validation_split!r} to select the model on and none can be "
                     f"carved out of the stream: name a split of {list(dataset)} in classifier.validation_split, or set "
                     "classifier.validation_size: 0")
    if data.eval_split and data.eval_split not in dataset:
        raise refuse("data.eval_split", f"{data.eval_split!r} is not a split of {data.dataset} ({list(dataset)}) and no test split can "
                     "be held out of a stream: name one of them, or set data.eval_split: null")
    counts: dict = {"train": {"split": data.train_split, "streamed": True}}
    tokenized: dict = {}
    for role, split_name, key in (("validation", options.validation_split if has_validation else None, "classifier.validation_split"),
                                  ("test", data.eval_split, "data.eval_split")):
        if split_name is None:
            continue
        stream = select_split(dataset, split_name, key, ref=data.dataset)
        if data.max_eval_samples is not None:
            stream = stream.take(data.max_eval_samples)
        rows = datasets.Dataset.from_list(list(stream))  # an evaluation split, read once
        require_columns(rows, columns, ref=f"{data.dataset} (split {split_name!r})")
        tokenized[role], read = tokenize_labelled_rows(
            rows, tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column, label_column=data.label_column,
            task=options.task, label_names=names, max_length=options.max_length, split_name=split_name, ref=data.dataset,
            drop_empty=options.drop_empty_texts,
        )  # fmt: skip
        counts[role] = {"split": split_name, **read}
    if data.max_train_samples is not None:
        train_rows = train_rows.take(data.max_train_samples)
    streamed = StreamedClassificationExamples(
        rows_of_process(train_rows, rank, world_size), tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column,
        label_column=data.label_column, task=options.task, label_names=names, max_length=options.max_length, seed=train.seed,
        split_name=data.train_split, ref=data.dataset, drop_empty_texts=options.drop_empty_texts, label_all_tokens=options.label_all_tokens,
    )  # fmt: skip
    return TextSplits(streamed, tokenized.get("validation"), tokenized.get("test"), names, counts, options.max_length)


def streamed_label_names(recipe: Recipe, rows) -> list[str] | None:
    """The classes of a streamed run, which cannot be read off a training split it never holds whole:
    `classifier.label_names`, else the names of a ClassLabel label column; None for regression."""
    options, data = recipe.classifier or ClassifierSection(), recipe.data
    if options.task == "regression":
        return None
    if options.label_names:
        return list(options.label_names)
    feature = (getattr(rows, "features", None) or {}).get(data.label_column)
    inner = getattr(feature, "feature", feature)  # a list of ClassLabel (multi_label, token)
    if isinstance(inner, datasets.ClassLabel):
        return list(inner.names)
    raise RecipeError(f"{recipe.source}: classifier.label_names: a streamed training split is never read whole, so its classes "
                      f"cannot be discovered from data.label_column {data.label_column!r}: list them (their order is the class ids)")


def resolve_max_length(recipe: Recipe, tokenizer, train_rows, counts: dict) -> int:
    """`classifier.max_length`, or for `auto` the smallest length covering `max_length_quantile` of the tokenised
    training texts, capped at the model's position limit (and 512); the choice goes into `counts`."""
    options, data = recipe.classifier or ClassifierSection(), recipe.data
    if options.max_length != "auto":
        return options.max_length
    from ...predict import default_max_length

    cap = default_max_length(tokenizer, model_config(recipe))
    lengths = token_lengths(train_rows, tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column, task=options.task)
    length, cut = choose_max_length(lengths, options.max_length_quantile, cap)
    logger.info("classifier.max_length auto: %d tokens covers %.1f%% of the %d training texts (quantile %g, model limit %d); "
                "%.1f%% are cut.", length, 100 * (1 - cut), len(lengths), options.max_length_quantile, cap, 100 * cut)
    counts["max_length"] = {"chosen": length, "quantile": options.max_length_quantile, "limit": cap, "train_share_cut": cut}
    return length


def build_classifier_model(recipe: Recipe, names: list[str] | None, tokenizer=None):
    """transformers' sequence- or token-classification model for these labels; a pretrained head of
    another size is re-initialised (with a warning), as ``ignore_mismatched_sizes`` does. An hfgen RNN classifier
    built from scratch takes its vocabulary size and padding id from `tokenizer`, and its embeddings from
    `classifier.init_embeddings` when set."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from ...pretrained import resolve_pretrained

    options = recipe.classifier or ClassifierSection()
    num_labels = 1 if options.task == "regression" else len(names)
    overrides = {"num_labels": num_labels}
    if names is not None:
        overrides.update(id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)})
    if options.task in PROBLEM_TYPES:
        overrides["problem_type"] = PROBLEM_TYPES[options.task]
    auto_class = AutoModelForTokenClassification if options.task == "token" else AutoModelForSequenceClassification
    recurrent = recipe.model.type == RNN_CLASSIFIER
    if options.init_embeddings is not None and not recurrent:
        raise RecipeError(f"{recipe.source}: classifier.init_embeddings applies to model.type {RNN_CLASSIFIER} built from scratch; "
                          f"this run's model is {recipe.model.type or recipe.model.pretrained!r}")
    if recurrent:
        if options.task == "token":
            raise RecipeError(f"{recipe.source}: model.type {RNN_CLASSIFIER} classifies whole texts; classifier.task token is not supported")
        overrides.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        embeddings = pretrained_word_embeddings(recipe, tokenizer) if options.init_embeddings is not None else None
        if embeddings is not None:
            overrides["embedding_dim"] = embeddings.shape[1]
        model = build_model(recipe, auto_class, **overrides)
        if model.config.vocab_size < len(tokenizer):
            raise RecipeError(f"{recipe.source}: model.vocab_size {model.config.vocab_size} is smaller than the tokenizer's "
                              f"{len(tokenizer)} tokens; leave it unset (it follows the tokenizer)")
        if embeddings is not None:
            if model.config.embedding_dim != embeddings.shape[1]:
                raise RecipeError(f"{recipe.source}: model.embedding_dim {model.config.embedding_dim} differs from the "
                                  f"{embeddings.shape[1]} of classifier.init_embeddings={options.init_embeddings!r}; leave it unset")
            with torch.no_grad():
                model.get_input_embeddings().weight.copy_(embeddings)
        return model
    load_kwargs = None
    if recipe.model.pretrained is not None:
        base = AutoConfig.from_pretrained(resolve_pretrained(recipe.model.pretrained), revision=recipe.model.revision)
        has_head = any(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in base.architectures or [])
        if has_head and (base.num_labels != num_labels or base.id2label != overrides.get("id2label", base.id2label)):
            logger.warning(
                "%s has a head for %d labels (%s); re-initialising it for %d labels (%s).",
                recipe.model.pretrained, base.num_labels, list(base.id2label.values())[:10], num_labels, (names or [])[:10],
            )  # fmt: skip
        load_kwargs = {"ignore_mismatched_sizes": True}
    return build_model(recipe, auto_class, load_kwargs=load_kwargs, **overrides)


RNN_CLASSIFIER = "hfgen-rnn-classifier"


def pretrained_word_embeddings(recipe: Recipe, tokenizer) -> torch.Tensor:
    """The (vocabulary, dim) input embeddings of `classifier.init_embeddings`, checked against the tokenizer."""
    from transformers import AutoModel

    from ...pretrained import resolve_pretrained

    ref = (recipe.classifier or ClassifierSection()).init_embeddings
    try:
        weights = AutoModel.from_pretrained(resolve_pretrained(ref), dtype="float32").get_input_embeddings().weight.detach()
    except (OSError, ValueError) as error:
        raise RecipeError(f"{recipe.source}: classifier.init_embeddings={ref!r}: cannot load its embeddings ({error})") from None
    if weights.shape[0] < len(tokenizer):
        raise RecipeError(f"{recipe.source}: classifier.init_embeddings={ref!r} has {weights.shape[0]} token embeddings but the "
                          f"tokenizer has {len(tokenizer)} tokens; use that model's own tokenizer (classifier.tokenizer)")
    logger.info("embeddings: %d x %d copied from %s", len(tokenizer), weights.shape[1], ref)
    return weights[: len(tokenizer)].clone()


def class_weights(options: ClassifierSection, train: TokenizedTexts, names: list[str] | None, source: str | None) -> torch.Tensor | None:
    """The loss weights `classifier.class_weights` asks for: None, 'balanced' (from the training
    labels; for multi_label, pos_weight = negatives / positives per label), or an explicit list."""
    if options.class_weights is None:
        return None
    if options.task == "regression":
        raise RecipeError(f"{source}: classifier.class_weights does not apply to classifier.task regression")
    num_labels = len(names)
    if isinstance(options.class_weights, list):
        if len(options.class_weights) != num_labels:
            raise RecipeError(
                f"{source}: classifier.class_weights has {len(options.class_weights)} values but there are {num_labels} classes {names}"
            )
        return torch.tensor(options.class_weights, dtype=torch.float32)
    if options.task == "token":
        flat = np.asarray([label for row in train.labels for label in row if label != IGNORE_INDEX])
        counts = class_counts(flat, num_labels)
    else:
        counts = class_counts(train.labels, num_labels)
    if options.task == "multi_label":
        positives = counts.astype(np.float64)
        negatives = len(train) - positives
        weights = np.divide(negatives, positives, out=np.ones_like(positives), where=positives > 0)
    else:
        weights = balanced_class_weights(counts)
    logger.info("class weights: %s", dict(zip(names, np.round(weights, 3).tolist())))
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def evaluate(accelerator, model, loader, options: ClassifierSection, names, weights=None, return_outputs: bool = False):
    """Loss and task metrics over a whole split, exact under several processes: predictions,
    labels and per-example losses pass through `gather_for_metrics`, which drops the duplicates
    that pad the last round of batches, so every example counts once.

    Returns the metrics (with ``examples``), and with ``return_outputs`` also the gathered
    (predictions, labels) numpy arrays.
    """
    was_training = model.training
    model.eval()
    task = options.task
    predictions, labels_seen, loss_sums, loss_counts = [], [], [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).logits
        per_example = classification_loss(logits, labels, task, weights, reduction="none")  # (batch,)
        if task == "token":
            scored = (labels != IGNORE_INDEX).sum(-1)
            if weights is not None:  # weighted CE averages over the weights of the scored tokens
                scored = (weights[labels.clamp(min=0)] * (labels != IGNORE_INDEX)).sum(-1)
            output = logits.argmax(-1).masked_fill(labels == IGNORE_INDEX, IGNORE_INDEX)  # (batch, length)
            output = accelerator.pad_across_processes(output, dim=1, pad_index=IGNORE_INDEX)
            labels = accelerator.pad_across_processes(labels, dim=1, pad_index=IGNORE_INDEX)
        else:
            # weighted cross-entropy is already weight[label] * nll per example; its mean divides by the weights' sum
            scored = weights[labels] if weights is not None and task == "single_label" else torch.ones_like(per_example)
            output = logits.argmax(-1) if task == "single_label" else logits.float()
        gathered = accelerator.gather_for_metrics((output, labels, per_example.float(), scored.float()))
        for store, value in zip((predictions, labels_seen, loss_sums, loss_counts), gathered):
            store.append(value.cpu())
    model.train(was_training)
    if task == "token":  # pad every batch to one length before stacking
        width = max(p.shape[1] for p in predictions)
        predictions = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=IGNORE_INDEX) for p in predictions]
        labels_seen = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=IGNORE_INDEX) for p in labels_seen]
    predicted, labels_np = torch.cat(predictions).numpy(), torch.cat(labels_seen).numpy()
    loss = float(torch.cat(loss_sums).sum() / torch.cat(loss_counts).sum().clamp(min=1e-12))
    if task == "single_label":
        metrics = single_label_metrics(labels_np, predicted, len(names))
    elif task == "multi_label":
        predicted = (1.0 / (1.0 + np.exp(-predicted)) > options.threshold).astype(np.int64)
        metrics = multi_label_metrics(labels_np, predicted)
    elif task == "regression":
        predicted = predicted.reshape(-1)
        metrics = regression_metrics(labels_np, predicted)
    else:
        scored = labels_np != IGNORE_INDEX
        true_tags = [[names[t] for t in row[mask]] for row, mask in zip(labels_np, scored)]
        predicted_tags = [[names[t] for t in row[mask]] for row, mask in zip(predicted, scored)]
        metrics = token_metrics(true_tags, predicted_tags)
    metrics = {"loss": loss, **metrics, "examples": int(len(labels_np))}
    return (metrics, (predicted, labels_np)) if return_outputs else metrics


def outputs_confusion_matrix(task: str, outputs, num_labels: int) -> np.ndarray | None:
    """Confusion matrix of the test predictions: per example (single_label) or per scored word (token)."""
    predicted, labels = outputs
    if task == "single_label":
        return confusion_matrix(labels, predicted, num_labels)
    if task == "token":
        scored = labels != IGNORE_INDEX
        return confusion_matrix(labels[scored], predicted[scored], num_labels)
    return None
