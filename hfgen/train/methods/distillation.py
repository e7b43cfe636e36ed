"""Distillation, part of `method: classifier` (not a loop of its own): the teacher (`classifier.teacher`), a
fine-tuned sequence classifier, frozen, whose outputs on the training texts are computed once at the start of a run
and then travel with the batches (`teacher_logits`) into `hfgen.losses.distillation`.

Once per run rather than per step: the teacher is frozen and the training texts are not augmented, so its outputs do
not change between epochs; one forward pass over the training split (shared between processes) replaces one per
step. A resumed run computes them again (one inference pass; nothing pickled or cached beside the checkpoints).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ...config import ClassifierSection, Recipe, RecipeError
from ...data.text_classification import PaddingCollator, TokenizedTexts, tokenize_for_classification

logger = logging.getLogger("hfgen")

_GENERIC_LABEL = "LABEL_{}"


def check_teacher_options(recipe: Recipe, images: bool) -> None:
    """What a distillation recipe must not combine, before any data or model work."""
    options = recipe.classifier or ClassifierSection()
    if options.teacher is None:
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
    try:
        config = AutoConfig.from_pretrained(resolve_pretrained(ref))
    except (OSError, ValueError) as error:
        raise RecipeError(f"{where}: not a model folder or Hub id ({error})") from None
    if not any(name.endswith("ForSequenceClassification") for name in config.architectures or []):
        raise RecipeError(f"{where}: a teacher must be a fine-tuned sequence classifier; its architectures are {config.architectures}")
    order = teacher_label_order(config, names, options.task, where)
    teacher = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained(ref), dtype="float32")
    teacher.eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(ref))
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


@torch.no_grad()
def teacher_logits(accelerator, recipe: Recipe, names, tokenizer, train: TokenizedTexts, train_rows, max_length: int,
                   batch_size: int) -> tuple[np.ndarray, dict]:
    """(examples, outputs) float32 teacher logits for the training split in the student's class order, computed
    once, the rows shared between the processes (each runs its share, then all are gathered); and a summary for the
    log and eval_results.json."""
    options, data = recipe.classifier or ClassifierSection(), recipe.data
    started = time.perf_counter()
    teacher, teacher_tokenizer, order = load_teacher(recipe, names)
    if same_vocabulary(tokenizer, teacher_tokenizer):
        inputs = train
    else:  # the teacher reads its own tokens of the same texts
        tokens, _ = tokenize_for_classification(
            train_rows, teacher_tokenizer, text_column=data.text_column, text_pair_column=data.text_pair_column,
            max_length=min(max_length, getattr(teacher.config, "max_position_embeddings", max_length)), task=options.task,
            label_names=names,
        )  # fmt: skip
        inputs = TokenizedTexts(tokens)
    teacher.to(accelerator.device)
    collator = PaddingCollator(teacher_tokenizer.pad_token_id, options.task)
    by_length = np.argsort(inputs.lengths, kind="stable")
    mine = by_length[accelerator.process_index :: accelerator.num_processes]  # similar lengths per batch, less padding
    rows, outputs = [], []
    for start in range(0, len(mine), batch_size):
        chunk = mine[start : start + batch_size]
        batch = collator([inputs[int(i)] for i in chunk])
        batch.pop("labels")
        with accelerator.autocast():
            logits = teacher(**{k: v.to(accelerator.device) for k, v in batch.items()}).logits
        outputs.append(logits.float()[:, order])
        rows.append(torch.as_tensor(chunk, dtype=torch.long))
    width = len(order)
    mine_logits = torch.cat(outputs) if outputs else torch.zeros(0, width)
    mine_rows = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
    if accelerator.num_processes > 1:  # shares differ by at most one row: pad to one size, gather, drop the padding
        size = -(-len(inputs) // accelerator.num_processes)
        pad = size - len(mine_rows)
        mine_logits = torch.cat([mine_logits.to(accelerator.device), torch.zeros(pad, width, device=accelerator.device)])
        mine_rows = torch.cat([mine_rows.to(accelerator.device), torch.full((pad,), -1, dtype=torch.long, device=accelerator.device)])
        all_logits, all_rows = accelerator.gather(mine_logits).cpu(), accelerator.gather(mine_rows).cpu()
        keep = all_rows >= 0
        mine_logits, mine_rows = all_logits[keep], all_rows[keep]
    result = np.zeros((len(inputs), width), dtype=np.float32)
    result[mine_rows.cpu().numpy()] = mine_logits.cpu().numpy()
    seconds = time.perf_counter() - started
    summary = {"teacher": shareable_reference(options.teacher), "distill_alpha": options.distill_alpha, "distill_temperature": options.distill_temperature,
               "distill_loss": options.distill_loss, "teacher_seconds": round(seconds, 2)}
    if options.task == "single_label":
        summary["teacher_train_accuracy"] = float((result.argmax(-1) == np.asarray(train.labels)).mean())
    logger.info("teacher %s: outputs for %d training texts in %.1f s%s", options.teacher, len(inputs), seconds,
                f" (its training accuracy {summary['teacher_train_accuracy']:.4f})" if "teacher_train_accuracy" in summary else "")
    del teacher
    return result, summary
