"""`method: mlm` — BERT masked-language-model pretraining, made fast the way Cramming (Geiping & Goldstein
2022) and MosaicBERT (Portes et al. 2023) do it:

- documents packed into full-length sequences across document boundaries, [SEP] between documents: no
  padding, so no compute on pad tokens, and no attention mask to build or apply (`hfgen.data.text`);
- sparse prediction: the vocabulary projection (for a small BERT with a 30k vocabulary, ~4x the cost of
  the rest of the step on CPU) runs only on the masked positions (`masked_lm_loss`) — the same loss, and
  the same gradients, as the full head, since unmasked positions carry no loss;
- dynamic 80/10/10 masking at a configurable rate (0.15; MosaicBERT's 0.3), bf16 autocast, gradient
  accumulation, linear / cosine / one-cycle schedules.

The saved model is a plain `BertForMaskedLM` (`AutoModelForMaskedLM`, `pipeline("fill-mask")`) with its
tokenizer. The model is from scratch (`model.type: bert` + config fields) or continued from a checkpoint
(`model.pretrained`; a checkpoint without an MLM head, such as MiniLM, starts that head fresh).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ...config import Recipe, RecipeError
from ...data import build_dataset, require_columns, select_split
from ...data.columns import require_text_columns
from ...data.holdout import hold_out_eval_split
from ...data.collators import IGNORE_INDEX, mask_tokens
from ...data.errors import DatasetError
from ...data.text import PackedSequences, StreamedPackedSequences, TextStats
from ..batches import build_dataloader, require_max_steps_when_streaming
from ..engine import Final, Step, TrainingRun
from ..hardware import speed_choices
from ..models import build_model
from ..optim import backward_and_step, build_optimizer
from ..param_groups import parameter_groups
from ..sharding import TrainingObjective
from .tokenizer import check_vocabulary, corpus_texts, load_tokenizer, train_wordpiece_tokenizer

logger = logging.getLogger("hfgen")

EVAL_MASK_SEED = 1234  # evaluation masks are the same at every evaluation and in every run


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------


@dataclass
class MaskedLMOutput:
    loss: torch.Tensor  # mean cross-entropy over the masked tokens, float32
    correct: torch.Tensor  # masked tokens predicted right (argmax), int64
    count: torch.Tensor  # masked tokens, int64


def masked_lm_loss(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                   attention_mask: torch.Tensor | None = None, sparse: bool = True) -> MaskedLMOutput:
    """Masked-LM cross-entropy of a transformers `*ForMaskedLM` (BERT's `cls` or RoBERTa's `lm_head`).

    With `sparse=True` the encoder runs on every token but the prediction head (transform + vocabulary
    projection) only on the positions with a label: (masked, vocab) scores instead of (batch * length, vocab).
    The loss equals the full head's exactly (up to float rounding), since unlabelled positions carry no loss.

    Args:
        model: e.g. `BertForMaskedLM`.
        input_ids: (batch, length) masked inputs.
        labels: (batch, length) original ids at masked positions, -100 elsewhere.
        attention_mask: (batch, length), or None for packed sequences without padding.
        sparse: False runs the model's own full head (for comparison).
    """
    scores, targets, _ = masked_scores(model, input_ids, labels, attention_mask, sparse)
    scores = scores.float()  # fp32 softmax whatever the autocast dtype (and argmax: bf16's is slow on CPU)
    loss = F.cross_entropy(scores, targets)
    correct = (scores.detach().argmax(-1) == targets).sum()
    return MaskedLMOutput(loss=loss, correct=correct, count=targets.new_tensor(targets.numel()))


def masked_scores(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor,
                  attention_mask: torch.Tensor | None = None, sparse: bool = True):
    """(scores (masked, vocab), targets (masked,), predicted (batch, length) bool) for `masked_lm_loss`."""
    predicted = labels != IGNORE_INDEX  # (batch, length)
    targets = labels[predicted]  # (masked,)
    if sparse:
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (batch, length, hidden)
        scores = prediction_head(model)(hidden[predicted])  # (masked, vocab)
    else:
        scores = model(input_ids=input_ids, attention_mask=attention_mask).logits[predicted]  # (masked, vocab)
    return scores, targets, predicted


def prediction_head(model: nn.Module) -> nn.Module:
    """The MLM head of a transformers masked-LM model (hidden states -> vocabulary scores)."""
    for name in ("cls", "lm_head"):  # BERT-family, RoBERTa-family
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise RecipeError(
        f"mlm.sparse_prediction: cannot find the prediction head of {type(model).__name__} (expected .cls or .lm_head); "
        "set mlm.sparse_prediction=false"
    )


def set_attention(model: nn.Module, choice: str, device: torch.device) -> str:
    """Pick the attention kernel (the same math either way): `auto` takes `hfgen.train.hardware.speed_choices`'
    (eager on CPU, where torch's SDPA backward is the slower one for BERT-length sequences; SDPA elsewhere)."""
    kernel = speed_choices(device.type).attention if choice == "auto" else choice
    model.set_attn_implementation(kernel)
    return kernel


class MaskedLMObjective(TrainingObjective):
    """The model plus its loss, as one module, so the whole sparse computation runs inside DDP's or FSDP's forward
    (calling `model.bert` past the DDP wrapper would skip its gradient synchronisation; past FSDP's root, the
    embeddings and head would stay sharded). Evaluation calls it too (`scores_only=True`)."""

    def __init__(self, model: nn.Module, sparse: bool = True):
        super().__init__()
        self.model, self.sparse = model, sparse

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, scores_only: bool = False) -> tuple[torch.Tensor, ...]:
        """(loss, correct, count); with `scores_only`, `masked_scores`' (scores, targets, predicted)."""
        if scores_only:
            return masked_scores(self.model, input_ids, labels)
        out = masked_lm_loss(self.model, input_ids, labels, sparse=self.sparse)
        return out.loss, out.correct, out.count


# --------------------------------------------------------------------------------------------
# Tokenizer and data
# --------------------------------------------------------------------------------------------


def resolve_tokenizer(recipe: Recipe, accelerator):
    """The run's tokenizer: `mlm.tokenizer`, else `model.pretrained`'s, else one trained on the training
    split (by the main process, saved in output_dir/tokenizer so a resumed run reuses the same vocabulary)."""
    options = recipe.mlm
    if options.tokenizer:
        return load_tokenizer(options.tokenizer, key=f"{recipe.source}: mlm.tokenizer")
    if recipe.model.pretrained:
        from ...pretrained import resolve_pretrained

        return load_tokenizer(resolve_pretrained(recipe.model.pretrained), recipe.model.revision,
                              key=f"{recipe.source}: model.pretrained (set mlm.tokenizer)")
    folder = Path(recipe.train.output_dir) / "tokenizer"
    if accelerator.is_main_process and not (folder / "tokenizer.json").is_file():
        stats = TextStats()
        limit = options.new_tokenizer.max_documents
        tokenizer = train_wordpiece_tokenizer(corpus_texts(recipe, stats, limit), options.new_tokenizer)
        tokenizer.save_pretrained(folder)
        logger.info("trained a %d-token WordPiece tokenizer on %d documents -> %s", len(tokenizer), stats.documents, folder)
    accelerator.wait_for_everyone()
    return load_tokenizer(str(folder), key="the trained tokenizer")


def packed_split(recipe: Recipe, dataset, split: str, key: str, tokenizer, stats: TextStats, train: bool,
                 rank: int = 0, world_size: int = 1):
    """The packed sequences of one split: in memory (`PackedSequences`), or streamed for training when `data.streaming`
    (process `rank` of `world_size` then reads its own part of the stream)."""
    data, options = recipe.data, recipe.mlm
    rows = select_split(dataset, split, key, ref=data.dataset)
    require_text_columns(rows, {"data.text_column": data.text_column}, ref=data.dataset)
    if data.streaming and train:
        return StreamedPackedSequences(rows, data.text_column, tokenizer, options.max_length, options.documents,
                                       seed=recipe.train.seed, stats=stats, rank=rank, world_size=world_size)
    limit = data.max_train_samples if train else None
    if not data.streaming and train and limit is not None:
        rows = rows.shuffle(seed=recipe.train.seed).select(range(min(limit, len(rows))))
    texts = (row[data.text_column] for row in rows)
    if data.streaming and limit is not None:
        texts = (text for _, text in zip(range(limit), texts))
    packed = PackedSequences.from_texts(texts, tokenizer, options.max_length, options.documents, stats,
                                        limit=None if train else data.max_eval_samples)
    if len(packed) == 0:
        raise DatasetError(
            f"{key}={split!r} of {data.dataset} yields no packed sequence: {stats.tokens} tokens in {stats.documents} "
            f"documents ({stats.empty_skipped} empty skipped), fewer than mlm.max_length={options.max_length}"
        )
    return packed


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


class MaskedLM:
    """`method: mlm` on the training engine."""

    name, unit = "mlm", "tokens"
    unshardable = None  # runs under FSDP2: evaluation goes through the prepared objective on every process

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.mlm

    def build(self, run: TrainingRun) -> None:
        from transformers import AutoModelForMaskedLM

        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        require_max_steps_when_streaming(recipe)
        dataset = build_dataset(data.dataset, streaming=data.streaming, encoding=data.encoding)
        require_columns(dataset, {"data.text_column": data.text_column}, ref=data.dataset)
        dataset, self.holdout = hold_out_eval_split(dataset, data.train_split, data.eval_split, data.eval_holdout, train.seed,
                                                    ref=data.dataset)
        self.tokenizer = tokenizer = resolve_tokenizer(recipe, run.accelerator)
        # a model from scratch takes its vocabulary size from the tokenizer; a checkpoint keeps its own (checked below)
        from_scratch = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id} if recipe.model.type else {}
        model = build_model(recipe, AutoModelForMaskedLM, **from_scratch)
        check_vocabulary(model, tokenizer, recipe.source)
        set_attention(model, options.attention, run.device)
        if options.max_length > model.config.max_position_embeddings:
            raise RecipeError(
                f"{recipe.source}: mlm.max_length={options.max_length} exceeds the model's max_position_embeddings="
                f"{model.config.max_position_embeddings}"
            )
        self.special_ids = sorted(set(tokenizer.all_special_ids))

        self.train_stats, self.eval_stats = TextStats(), TextStats()
        accelerator = run.accelerator
        train_sequences = packed_split(recipe, dataset, data.train_split, "data.train_split", tokenizer, self.train_stats, train=True,
                                       rank=accelerator.process_index, world_size=accelerator.num_processes)
        if isinstance(train_sequences, PackedSequences):
            loader = build_dataloader(train_sequences, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
            logger.info("packed %s", self.train_stats.as_dict())
        else:
            loader = torch.utils.data.DataLoader(train_sequences, batch_size=train.batch_size, num_workers=data.num_workers)
        self.eval_loader = None
        if data.eval_split:
            eval_sequences = packed_split(recipe, dataset, data.eval_split, "data.eval_split", tokenizer, self.eval_stats, train=False)
            self.eval_loader = run.prepare_eval_loader(build_dataloader(
                eval_sequences, train.eval_batch_size or train.batch_size, seed=train.seed, shuffle=False, drop_last=False
            ))
        objective = MaskedLMObjective(model, sparse=options.sparse_prediction)
        # no decay on biases and norms (BERT)
        optimizer = build_optimizer(parameter_groups(model, train.learning_rate, train.weight_decay), train,
                                    fused=speed_choices(run.device.type).fused_adamw)
        # a stream split by node is this process's already: placed on the device, not dispatched from rank 0
        _, (self.objective,), (self.optimizer,) = run.prepare(loader, [objective], [optimizer],
                                                              loader_is_per_process=not isinstance(train_sequences, PackedSequences))

    def before_training(self) -> dict:
        if self.eval_loader is None:  # the "before" figures
            return {}
        initial = {f"initial_{k}": v for k, v in self.evaluate().items()}
        logger.info("before training: %s", initial)
        return initial

    def step(self, batch) -> Step:
        input_ids, labels = mask_tokens(batch["input_ids"], mask_token_id=self.tokenizer.mask_token_id, vocab_size=len(self.tokenizer),
                                        special_token_ids=self.special_ids, mask_rate=self.options.mask_rate)  # (batch, max_length) each
        loss, correct, count = self.objective(input_ids, labels)
        backward_and_step(self.run.accelerator, loss, self.objective, self.optimizer, self.run.train.max_grad_norm)
        return Step(losses={"loss": loss}, count=input_ids.numel(), extras={"accuracy": correct.float() / count.clamp(min=1)})

    def log_values(self) -> dict:
        return {"tokens_seen": self.run.items_seen}

    def evaluate(self) -> dict:
        if self.eval_loader is None:
            return {}
        return evaluate_mlm(self.run.accelerator, self.objective, self.eval_loader, self.tokenizer, self.options.mask_rate)

    def finish(self, results: dict) -> Final:
        if self.holdout is not None:
            results["eval_holdout"] = self.holdout
        train_stats = self.run.text_counts(self.train_stats.as_dict("train_"))
        results.update({"train_tokens": self.run.items_seen, **train_stats, **self.eval_stats.as_dict("eval_")})
        final = self.evaluate()
        if final:
            results.update(final)
            logger.info("held-out MLM: loss %.4f, accuracy %.4f, perplexity %.2f", final["eval_loss"], final["eval_accuracy"], final["eval_perplexity"])
        return Final(model=self.run.accelerator.unwrap_model(self.objective).model, tokenizer=self.tokenizer, card_family="mlm")


@torch.no_grad()
def evaluate_mlm(accelerator, objective, loader, tokenizer, mask_rate: float) -> dict:
    """Masked-token loss, accuracy and perplexity (exp of the loss) over the whole held-out split, with
    masks drawn from a fixed seed (identical at every evaluation) and counted exactly over processes."""
    was_training = objective.training
    objective.eval()
    generator = torch.Generator(device=accelerator.device).manual_seed(EVAL_MASK_SEED)
    special_ids = sorted(set(tokenizer.all_special_ids))
    sums = torch.zeros(3, dtype=torch.float64)  # summed loss, correct, count
    scored = 0  # sequences, each counted once over all processes
    for batch in loader:
        input_ids, labels = mask_tokens(batch["input_ids"], mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                                        special_token_ids=special_ids, mask_rate=mask_rate, generator=generator)
        with accelerator.autocast():
            scores, targets, predicted = objective(input_ids, labels, scores_only=True)  # every process, the prepared module
        token_loss = F.cross_entropy(scores.float(), targets, reduction="none")  # (masked,)
        sequence = predicted.nonzero()[:, 0]  # which sequence each masked token belongs to
        per_sequence = torch.zeros(len(input_ids), 3, dtype=torch.float64, device=input_ids.device)  # (batch, 3)
        per_sequence[:, 0].index_add_(0, sequence, token_loss.double())
        per_sequence[:, 1].index_add_(0, sequence, (scores.argmax(-1) == targets).double())
        per_sequence[:, 2].index_add_(0, sequence, torch.ones_like(token_loss, dtype=torch.float64))
        # per sequence, so gather_for_metrics can drop the duplicates that pad the last batch across processes
        gathered = accelerator.gather_for_metrics(per_sequence).cpu()
        sums += gathered.sum(0)
        scored += len(gathered)
    objective.train(was_training)
    loss = (sums[0] / sums[2].clamp(min=1)).item()
    return {"eval_loss": loss, "eval_accuracy": (sums[1] / sums[2].clamp(min=1)).item(),
            "eval_perplexity": math.exp(min(loss, 50.0)), "eval_masked_tokens": int(sums[2].item()), "eval_scored_sequences": scored}
