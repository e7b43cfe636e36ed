"""Distillation, part of `method: classifier` (not a loop of its own): the teacher (`classifier.teacher`), a
fine-tuned sequence classifier, frozen, whose outputs on the training texts are computed once at the start of a run
and then travel with the batches (`teacher_logits`) into `hfgen.losses.distillation`.

Once per run rather than per step: the teacher is frozen and the texts do not change between epochs (the transfer
set of `classifier.distill_augment` is drawn once, seeded), so one forward pass over them (shared between
processes) replaces one per step. A resumed run computes them again (one inference pass; nothing pickled or cached beside the checkpoints).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ...config import ClassifierSection, Recipe, RecipeError
from ...data.text_classification import PaddingCollator, TokenizedTexts, tokenize_for_classification
from ...predict import token_limit

logger = logging.getLogger("hfgen")

_GENERIC_LABEL = "LABEL_{}"


def check_teacher_options(recipe: Recipe, images: bool) -> None:
    """What a distillation recipe must not combine, before any data or model work."""
    options = recipe.classifier or ClassifierSection()
    if options.teacher is None:
        if options.distill_augment:
            raise RecipeError(f"{recipe.source}: classifier.distill_augment={options.distill_augment}: the altered copies are labelled by "
                              "a teacher; set classifier.teacher, or distill_augment: 0")
        return
    if images:
        raise RecipeError(f"{recipe.source}: classifier.teacher: distillation is for text classifiers; this run trains an image model")
    if options.task == "token":
        raise RecipeError(f"{recipe.source}: classifier.teacher: distillation supports the tasks single_label, multi_label and "
                          "regression, not token")


def load_teacher(recipe: Recipe, names: list[str] | None):
    """The teacher model (eval mode, float32, frozen), its tokenizer, and the column order that puts its outputs in
    the student's class order. Refuses a teacher whose classes are not the run's."""
    import hfgen.models  # noqa: F401  (an hfgen teacher, e.g. an RNN classifier, loads too)
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from ...pretrained import resolve_pretrained

    options = recipe.classifier or ClassifierSection()
    ref = options.teacher
    where = f"{recipe.source}: classifier.teacher={ref!r}"
    folder = resolve_pretrained(ref)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise RecipeError(f"{where}: not a model folder or Hub id ({error})") from None
    if not any(name.endswith("ForSequenceClassification") for name in config.architectures or []):
        raise RecipeError(f"{where}: a teacher must be a fine-tuned sequence classifier; its architectures are {config.architectures}")
    order = teacher_label_order(config, names, options.task, where)
    teacher = AutoModelForSequenceClassification.from_pretrained(folder, dtype="float32")
    teacher.eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return teacher, tokenizer, order


def teacher_label_order(config, names: list[str] | None, task: str, where: str) -> list[int]:
    """Teacher output column for each of the student's classes (by name). A teacher with transformers' generic
    names (LABEL_0, ...) is taken in its own order when the counts agree."""
    if task == "regression":
        if config.num_labels != 1:
            raise RecipeError(f"{where}: a regression student needs a teacher with one output; it has {config.num_labels}")
        return [0]
    teacher_names = [config.id2label[i] for i in range(config.num_labels)]
    if teacher_names == [_GENERIC_LABEL.format(i) for i in range(len(teacher_names))] and len(teacher_names) == len(names):
        logger.info("teacher classes have no names (LABEL_0..): taken in the order of the student's %s", names)
        return list(range(len(names)))
    missing = [name for name in names if name not in teacher_names]
    if missing or len(teacher_names) != len(names):
        raise RecipeError(f"{where}: the teacher's classes {teacher_names} are not the run's classes {names}"
                          + (f" (missing: {missing})" if missing else ""))
    return [teacher_names.index(name) for name in names]


def shareable_reference(ref: str) -> str:
    """`ref` as results may record it: an alias, Hub id or relative folder as written; an absolute path only by its
    folder name (a machine's paths stay on the machine)."""
    from pathlib import Path

    return Path(ref).name if Path(ref).is_absolute() else ref


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers map every token to the same id (then the student's token ids feed the teacher)."""
    return type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab() and a.pad_token_id == b.pad_token_id


def distillation_training_set(accelerator, recipe: Recipe, names, tokenizer, train: TokenizedTexts, train_rows, max_length: int,
                              batch_size: int) -> tuple[TokenizedTexts, dict]:
    """The training set with the teacher's outputs (`teacher_logits`), followed by `classifier.distill_augment` altered
    copies of each text that the teacher labels (`augment_rows`); and a summary for the log and eval_results.json."""
    options, data = recipe.classifier or ClassifierSection(), recipe.data
    started = time.perf_counter()
    teacher, teacher_tokenizer, order = load_teacher(recipe, names)
    teacher.to(accelerator.device)
    limit = token_limit(teacher_tokenizer, teacher.config) or max_length
    # the student's own tokens feed the teacher only when they are the teacher's and within its position limit
    shared = same_vocabulary(tokenizer, teacher_tokenizer) and max_length <= limit
    teacher_length = min(max_length, limit)
    train.teacher_logits = teacher_logits(accelerator, teacher, teacher_tokenizer, order, recipe, train, train_rows, teacher_length, batch_size, shared)
    summary = {"teacher": shareable_reference(options.teacher), "distill_alpha": options.distill_alpha, "distill_temperature": options.distill_temperature,
               "distill_loss": options.distill_loss}
    if options.task == "single_label":
        summary["teacher_train_accuracy"] = float((train.teacher_logits.argmax(-1) == np.asarray(train.labels)).mean())
    logger.info("teacher %s: outputs for %d training texts in %.1f s%s", options.teacher, len(train), time.perf_counter() - started,
                f" (its training accuracy {summary['teacher_train_accuracy']:.4f})" if "teacher_train_accuracy" in summary else "")
    if options.distill_augment:
        mask = tokenizer.mask_token or tokenizer.unk_token
        if mask is None:
            raise RecipeError(f"{recipe.source}: classifier.distill_augment masks words, but the tokenizer has neither a mask nor an unknown token")
        rows = augment_rows(train_rows, data.text_column, data.text_pair_column, options.distill_augment, recipe.train.seed, mask,
                            options.distill_mask_prob, options.distill_ngram_prob)
        tokens, _ = tokenize_for_classification(rows, tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column,
                                                max_length=max_length, task=options.task, label_names=names)
        extra = TokenizedTexts(tokens)
        extra.teacher_logits = teacher_logits(accelerator, teacher, teacher_tokenizer, order, recipe, extra, rows, teacher_length, batch_size, shared)
        extra.labels = teacher_labels(extra.teacher_logits, options.task, options.threshold)
        train = TokenizedTexts.concatenate([train, extra])
        summary["distill_augmented_examples"] = len(extra)
        logger.info("transfer set: %d altered copies of the training texts (classifier.distill_augment=%d), labelled by the teacher",
                    len(extra), options.distill_augment)
    summary["teacher_seconds"] = round(time.perf_counter() - started, 2)
    del teacher
    return train, summary


def augment_rows(rows, text_column: str, text_pair_column: str | None, copies: int, seed: int, mask_token: str,
                 mask_prob: float, ngram_prob: float):
    """`copies` altered copies of every row (Tang et al. 2019, section 3.2, without POS-guided replacement): each
    whitespace word is replaced by `mask_token` with `mask_prob`; then, with `ngram_prob`, the copy keeps only a
    random n-gram (n from 1 to 5 words) of it (single texts only: a pair keeps both whole). Other columns are
    copied. The same `seed` gives the same copies on every process."""
    import random

    import datasets

    rng = random.Random(seed)
    table = rows[:]
    out = {column: [] for column in rows.column_names}
    for _ in range(copies):
        for i in range(len(rows)):
            for column in rows.column_names:
                out[column].append(table[column][i])
            for column in (text_column, text_pair_column):
                if column is None:
                    continue
                words = [mask_token if rng.random() < mask_prob else word for word in str(table[column][i]).split()]
                if text_pair_column is None and len(words) > 1 and rng.random() < ngram_prob:
                    n = rng.randint(1, min(5, len(words)))
                    first = rng.randint(0, len(words) - n)
                    words = words[first : first + n]
                out[column][-1] = " ".join(words)
    return datasets.Dataset.from_dict(out, features=rows.features)


def teacher_labels(logits: np.ndarray, task: str, threshold: float) -> list:
    """The teacher's prediction as a label: the class id, the multi-hot vector above `threshold`, or the value."""
    if task == "single_label":
        return logits.argmax(-1).tolist()
    if task == "multi_label":
        return (1.0 / (1.0 + np.exp(-logits)) > threshold).astype(np.float32).tolist()
    return logits[:, 0].tolist()


@torch.no_grad()
def teacher_logits(accelerator, teacher, teacher_tokenizer, order: list[int], recipe: Recipe, texts: TokenizedTexts, rows,
                   max_length: int, batch_size: int, shared_vocabulary: bool) -> np.ndarray:
    """(examples, outputs) float32 teacher logits for `texts` in the student's class order. The rows are shared
    between the processes (each runs its share, then all are gathered back in row order). With a vocabulary of its
    own (or texts longer than its limit, `max_length`) the teacher reads its own tokens of the same `rows`. A transfer
    set's mask token is the student tokenizer's: a teacher with another vocabulary reads it as plain text."""
    options, data = recipe.classifier or ClassifierSection(), recipe.data
    inputs = texts
    if not shared_vocabulary:
        tokens, _ = tokenize_for_classification(
            rows, teacher_tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column,
            max_length=max_length, task=options.task,
        )  # fmt: skip
        inputs = TokenizedTexts(tokens)
    collator = PaddingCollator(teacher_tokenizer.pad_token_id, options.task)
    by_length = np.argsort(inputs.lengths, kind="stable")
    mine = by_length[accelerator.process_index :: accelerator.num_processes]  # similar lengths per batch, less padding
    found, outputs = [], []
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        batch = collator([{k: v for k, v in inputs[int(i)].items() if k != "teacher_logits"} for i in chunk])
        batch.pop("labels")
        batch = {k: v for k, v in batch.items() if k in teacher_tokenizer.model_input_names}  # e.g. DistilBERT: no token_type_ids
        with accelerator.autocast():
            logits = teacher(**{k: v.to(accelerator.device) for k, v in batch.items()}).logits
        outputs.append(logits.float()[:, order])
        found.append(torch.as_tensor(chunk, dtype=torch.long))
    width = len(order)
    mine_logits = torch.cat(outputs) if outputs else torch.zeros(0, width, device=accelerator.device)
    mine_rows = torch.cat(found).to(accelerator.device) if found else torch.zeros(0, dtype=torch.long, device=accelerator.device)
    # shares differ by at most one row: padded to one size (row -1), gathered, the padding dropped
    all_logits = accelerator.gather(accelerator.pad_across_processes(mine_logits, dim=0)).cpu()
    all_rows = accelerator.gather(accelerator.pad_across_processes(mine_rows, dim=0, pad_index=-1)).cpu()
    keep = all_rows >= 0
    result = np.zeros((len(inputs), width), dtype=np.float32)
    result[all_rows[keep].numpy()] = all_logits[keep].numpy()
    return result
