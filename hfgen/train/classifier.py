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
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ClassifierSection, Recipe, RecipeError
from ..data import build_dataset, require_columns, select_split
from ..data.labels import balanced_class_weights, class_counts, encode_labels, split_off_validation
from ..data.text_classification import (
    IGNORE_INDEX,
    PaddingCollator,
    TokenizedTexts,
    build_text_loader,
    drop_empty_texts,
    tokenize_for_classification,
)
from ..hub import render_model_card
from ..losses.classification import classification_loss
from ..metrics.classification import (
    confusion_matrix,
    default_metric,
    multi_label_metrics,
    regression_metrics,
    save_confusion_matrix_png,
    single_label_metrics,
    token_metrics,
)
from .accelerator import build_accelerator, seed_everything
from .checkpoint import TrainState, load_checkpoint, prepare_output_dir, save_checkpoint, save_final_model, write_json_atomic
from .cls_only import enable_cls_only_last_layer
from .fast_dropout import set_training_attention
from .classifier_images import build_image_classifier, build_image_loader, image_classifier_files, is_image_model, load_image_classifier_splits
from .models import build_model
from .optim import backward_and_step, build_optimizer, build_scheduler
from .param_groups import parameter_groups
from .selection import BEST_DIR, ModelSelection, keep_best_in_checkpoints, load_best_model, metric_greater_is_better, save_best_model
from .tracking import check_finite, iterate_batches, progress_bar, start_tracking, total_training_steps, trackers_for

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


def run(recipe: Recipe) -> Path:
    """Fine-tune the recipe's encoder; returns the output folder holding the best model."""
    options: ClassifierSection = recipe.classifier or ClassifierSection()
    train, data = recipe.train, recipe.data
    accelerator = build_accelerator(recipe, log_with=trackers_for(recipe))
    resume_from = prepare_output_dir(recipe, accelerator)
    seed_everything(train.seed, accelerator, per_process=False)
    out = Path(train.output_dir)

    images = is_image_model(recipe)  # an hfgen image encoder: splits, loaders, model from hfgen.train.classifier_images
    tokenizer = None if images else load_tokenizer(recipe)
    splits = load_image_classifier_splits(recipe) if images else load_text_splits(recipe, tokenizer)
    names = splits.label_names
    model = build_image_classifier(recipe, names) if images else build_classifier_model(recipe, names)
    if options.max_length > getattr(model.config, "max_position_embeddings", options.max_length):
        raise RecipeError(
            f"{recipe.source}: classifier.max_length {options.max_length} exceeds the model's "
            f"max_position_embeddings {model.config.max_position_embeddings}"
        )

    eval_batch_size = train.eval_batch_size or train.batch_size
    if images:
        loader = build_image_loader(splits.train, train.batch_size, seed=train.seed, train=True, recipe=recipe)
        validation_loader, test_loader = (
            None if rows is None else accelerator.prepare(build_image_loader(rows, eval_batch_size, seed=train.seed, train=False, recipe=recipe))
            for rows in (splits.validation, splits.test)
        )
    else:
        set_training_attention(model, options.attn_implementation, options.fast_dropout, accelerator.device.type)
        if options.cls_only_last_layer and options.task != "token":
            enable_cls_only_last_layer(model)
        pad_to = options.max_length if options.pad_to_max_length else None
        collator = PaddingCollator(tokenizer.pad_token_id, options.task, pad_to=pad_to)
        loader = build_text_loader(
            splits.train, collator, train.batch_size, seed=train.seed, train=True,
            group_by_length=options.group_by_length, num_workers=data.num_workers,
        )  # fmt: skip
        validation_loader = test_loader = None
        if splits.validation is not None:
            validation_loader = accelerator.prepare(build_text_loader(splits.validation, collator, eval_batch_size, seed=train.seed, train=False))
        if splits.test is not None:
            test_loader = accelerator.prepare(build_text_loader(splits.test, collator, eval_batch_size, seed=train.seed, train=False))

    weights = class_weights(options, splits.train, names, source=recipe.source)
    optimizer = build_optimizer(
        parameter_groups(model, train.learning_rate, train.weight_decay, options.layer_lr_decay), train,
        fused=True,  # ~4x faster optimizer step than the for-loop, on CPU as on GPU
    )  # fmt: skip
    loader = accelerator.prepare(loader)  # first, so len(loader) is the per-process batch count
    batches_per_epoch = len(loader)
    total_steps = total_training_steps(recipe, batches_per_epoch)
    scheduler = build_scheduler(optimizer, train, total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if weights is not None:
        weights = weights.to(accelerator.device)

    metric = default_metric(options.task) if options.metric_for_best_model == "auto" else options.metric_for_best_model
    metric = metric.removeprefix("eval_").removeprefix("validation_")
    greater = options.greater_is_better if options.greater_is_better is not None else metric_greater_is_better(metric)
    selection = ModelSelection(metric, greater, options.early_stopping_patience, options.early_stopping_threshold)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    accelerator.register_for_checkpointing(selection)
    keep_best_in_checkpoints(accelerator, out)
    if resume_from is not None:
        load_checkpoint(accelerator, resume_from, state)
    else:
        seed_everything(train.seed, accelerator, per_process=True)
    start_tracking(accelerator, recipe)

    def validate() -> dict:
        """Evaluate on validation, log it, keep the model when it is the best so far."""
        metrics = evaluate(accelerator, model, validation_loader, options, names, weights)
        improved = selection.update(metrics, state.step)
        if improved:
            save_best_model(accelerator, model, out)
        accelerator.log({f"validation_{k}": v for k, v in metrics.items()}, step=state.step)
        logger.info(
            "step %d validation %s = %.4f%s", state.step, metric, metrics[metric],
            " (best so far)" if improved else f" (best {selection.best_value:.4f} at step {selection.best_step})",
        )  # fmt: skip
        return metrics

    model.train()  # from_pretrained hands models back in eval mode (no dropout, frozen BatchNorm statistics)
    bar = progress_bar(accelerator, total_steps, state.step, desc="classifier")
    examples_seen, overhead_seconds, last_validated = 0, 0.0, -1
    running_loss, running_batches = torch.zeros((), device=accelerator.device), 0
    started = time.perf_counter()
    for batch in iterate_batches(accelerator, loader, state, total_steps):
        labels = batch.pop("labels")
        with accelerator.accumulate(model):
            logits = model(**batch).logits
            loss = classification_loss(logits, labels, options.task, weights)
            backward_and_step(accelerator, loss, model, optimizer, train.max_grad_norm)
        running_loss += loss.detach()  # stays on the device: no host sync per step
        running_batches += 1
        examples_seen += labels.shape[0] * accelerator.num_processes
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state.step += 1
        bar.update(1)

        if state.step % train.log_every == 0 or state.step == total_steps:
            mean_loss = running_loss / running_batches
            check_finite(accelerator, {"loss": mean_loss}, state.step - 1, train.output_dir)
            rate = examples_seen / max(1e-9, time.perf_counter() - started - overhead_seconds)
            logs = {"loss": mean_loss.item(), "lr": scheduler.get_last_lr()[-1], "examples_per_s": rate, "epoch": state.epoch}
            bar.set_postfix(loss=f"{logs['loss']:.4f}", ex_s=f"{rate:.0f}")
            accelerator.log(logs, step=state.step)
            running_loss, running_batches = torch.zeros((), device=accelerator.device), 0
        epoch_done = state.batches_in_epoch >= batches_per_epoch
        due = (options.eval_every_epoch and epoch_done) or (train.eval_every and state.step % train.eval_every == 0)
        paused = time.perf_counter()
        if validation_loader is not None and due:
            validate()
            last_validated = state.step
        if train.save_every and state.step % train.save_every == 0 and state.step < total_steps:
            save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
        overhead_seconds += time.perf_counter() - paused
        if selection.should_stop:
            logger.info(
                "early stopping at step %d: %d evaluations without improvement (best %s %.4f at step %d)",
                state.step, selection.evaluations_without_improvement, metric, selection.best_value, selection.best_step,
            )  # fmt: skip
            break
    train_seconds = time.perf_counter() - started - overhead_seconds
    bar.close()

    if validation_loader is not None and last_validated != state.step and not selection.should_stop and state.step > 0:
        validate()  # the final weights compete too
    save_checkpoint(accelerator, train.output_dir, state, train.keep_last)
    if validation_loader is not None and load_best_model(accelerator, model, out):
        logger.info("final model: the best on validation (%s %.4f at step %d)", metric, selection.best_value, selection.best_step)

    results: dict = {
        "train_examples_per_s": examples_seen / train_seconds if train_seconds > 0 and examples_seen else None,
        "train_seconds": train_seconds,
        "train_examples": len(splits.train),
        "steps": state.step,
        "epochs": state.step / max(1, -(-batches_per_epoch // train.gradient_accumulation_steps)),
        "early_stopped": selection.should_stop,
    }
    if validation_loader is not None:
        results.update({"metric_for_best_model": metric, "best_step": selection.best_step, f"best_validation_{metric}": selection.best_value})
    test_outputs = None
    if test_loader is not None:
        started_eval = time.perf_counter()
        test_metrics, test_outputs = evaluate(accelerator, model, test_loader, options, names, weights, return_outputs=True)
        results.update({f"eval_{k}": v for k, v in test_metrics.items()})
        results["predict_seconds"] = time.perf_counter() - started_eval
        results["predict_examples_per_s"] = test_metrics["examples"] / results["predict_seconds"]
        accelerator.log({f"eval_{k}": v for k, v in test_metrics.items()}, step=state.step)
        logger.info("test (%s): %s", data.eval_split, {k: round(v, 4) for k, v in test_metrics.items() if isinstance(v, float)})

    card = ""
    if accelerator.is_main_process:
        if test_outputs is not None and options.confusion_matrix and names and len(names) <= MAX_CONFUSION_CLASSES:
            matrix = outputs_confusion_matrix(options.task, test_outputs, len(names))
            if matrix is not None:
                save_confusion_matrix_png(matrix, names, out / "confusion_matrix.png", title=f"{data.dataset} / {data.eval_split}")
                results["confusion_matrix"] = matrix.tolist()
        write_json_atomic(out / "eval_results.json", {**results, "label_names": names, "data": splits.counts})
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        card = render_model_card(
            "image_classifier" if images else "classifier", recipe=recipe, model=accelerator.unwrap_model(model), results=_card_results(results),
            pipeline_tag="image-classification" if images else "token-classification" if options.task == "token" else "text-classification",
        )  # fmt: skip
    extra = {"README.md": card, **(image_classifier_files(accelerator.unwrap_model(model)) if images else {})}
    save_final_model(accelerator, model, out, extra if accelerator.is_main_process else None)
    if accelerator.is_main_process:  # the final model is the best one; checkpoints keep their own links to it
        shutil.rmtree(out / BEST_DIR, ignore_errors=True)
    # Drop the DDP-wrapped model while the process group is alive: torn down after end_training() destroys
    # the group (when this frame returns), its gloo reducer could block forever at exit.
    del model, optimizer, scheduler
    accelerator.free_memory()
    accelerator.end_training()
    return out


def load_tokenizer(recipe: Recipe):
    """The tokenizer `classifier.tokenizer` names, else `model.pretrained`'s (aliases resolved)."""
    from transformers import AutoTokenizer

    from ..pretrained import resolve_pretrained

    options = recipe.classifier or ClassifierSection()
    ref = options.tokenizer or recipe.model.pretrained
    if ref is None:
        raise RecipeError(f"{recipe.source}: classifier.tokenizer: a model built from model.type needs a tokenizer folder or Hub id")
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(ref), revision=recipe.model.revision if ref == recipe.model.pretrained else None)
    if tokenizer.pad_token_id is None:
        raise RecipeError(f"{recipe.source}: the tokenizer of {ref!r} has no padding token; set one or use another tokenizer")
    return tokenizer


def load_text_splits(recipe: Recipe, tokenizer) -> TextSplits:
    """Load the dataset, check columns, drop empty texts, slice, encode labels, carve a validation
    split when there is none, and tokenise every split (in memory)."""
    options, data, train = recipe.classifier or ClassifierSection(), recipe.data, recipe.train
    if data.label_column is None:
        raise RecipeError(f"{recipe.source}: data.label_column: method classifier needs the column that holds the labels")
    if data.streaming:
        raise RecipeError(f"{recipe.source}: data.streaming: method classifier tokenises its splits once, in memory; set it to false")
    dataset = build_dataset(data.dataset)
    text_columns = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    roles = {"train": (data.train_split, "data.train_split")}
    has_validation = options.validation_split is not None and options.validation_split in dataset
    if has_validation:
        roles["validation"] = (options.validation_split, "classifier.validation_split")
    if data.eval_split:
        roles["test"] = (data.eval_split, "data.eval_split")
    splits, counts = {}, {}
    for role, (split_name, key) in roles.items():
        rows = select_split(dataset, split_name, key, ref=data.dataset)
        columns = {"data.text_column": data.text_column, "data.text_pair_column": data.text_pair_column, "data.label_column": data.label_column}
        require_columns(rows, columns, ref=f"{data.dataset} (split {split_name!r})")
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
    if "validation" not in splits and options.validation_size > 0:
        splits["train"], splits["validation"] = split_off_validation(
            splits["train"], options.validation_size, seed=train.seed, stratify=options.task == "single_label"
        )
        counts["validation"] = {"split": f"{options.validation_size:.0%} of {data.train_split} (seed {train.seed})"}
        logger.info("No %r split: holding out %d training examples for validation.", options.validation_split, len(splits["validation"]))
    tokenized = {}
    for role, rows in splits.items():
        tokens, at_cap = tokenize_for_classification(
            rows, tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column,
            max_length=options.max_length, task=options.task, label_names=report.names,
            label_all_tokens=options.label_all_tokens and role == "train",  # scores always count each word once
        )  # fmt: skip
        tokenized[role] = TokenizedTexts(tokens)
        counts[role].update({"examples": len(rows), "reached_max_length": at_cap})
        if at_cap:
            logger.info("%s: %d of %d examples reached classifier.max_length=%d tokens (cut).", role, at_cap, len(rows), options.max_length)
    return TextSplits(tokenized["train"], tokenized.get("validation"), tokenized.get("test"), report.names, counts)


def build_classifier_model(recipe: Recipe, names: list[str] | None):
    """transformers' sequence- or token-classification model for these labels; a pretrained head of
    another size is re-initialised (with a warning), as ``ignore_mismatched_sizes`` does."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    from ..pretrained import resolve_pretrained

    options = recipe.classifier or ClassifierSection()
    num_labels = 1 if options.task == "regression" else len(names)
    overrides = {"num_labels": num_labels}
    if names is not None:
        overrides.update(id2label=dict(enumerate(names)), label2id={name: i for i, name in enumerate(names)})
    if options.task in PROBLEM_TYPES:
        overrides["problem_type"] = PROBLEM_TYPES[options.task]
    auto_class = AutoModelForTokenClassification if options.task == "token" else AutoModelForSequenceClassification
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


def _card_results(results: dict) -> dict:
    """The figures worth a row in the model card table (no matrices, no bookkeeping)."""
    numbers = {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**numbers, **({"metric_for_best_model": results["metric_for_best_model"]} if "metric_for_best_model" in results else {})}

