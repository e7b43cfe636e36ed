"""`method: contrastive` — sentence embeddings trained with InfoNCE over in-batch negatives.

- `objective: simcse` — unsupervised SimCSE (Gao et al. 2021): every text of the batch is encoded twice, the
  two dropout masks being the only augmentation; each text must pick its own second encoding among those of
  the whole global batch (temperature 0.05). Optional MLP over the pooled embedding, used in training only.
- `objective: pairs` — supervised pairs (Sentence-BERT's MultipleNegativesRankingLoss): `data.text_column`
  anchors, `data.text_pair_column` positives, optional `contrastive.negative_column` hard negatives.

On CPU the encoder runs transformers' eager attention with hfgen's cheaper dropout masks (`hfgen.train.fast_dropout`),
as `method: classifier` does: the same math, faster steps than sdpa with torch's dropout.

Under several processes the negatives come from every rank, with gradients flowing back to the rank that
produced them (`hfgen.losses.nt_xent`): 2 processes x N texts train exactly like 1 process x 2N.

The result is a standard sentence-transformers folder: the stock encoder (`AutoModel` gives e.g. a `BertModel`),
its tokenizer, modules.json with Pooling (and Normalize), so `SentenceTransformer(output_dir)` loads it without hfgen
or custom code, and `SentenceEncoderModel.from_pretrained(output_dir).encode(texts)` reads it back whole. A
retrieval check that needs no Hub data (same-topic recall@k of 20newsgroups test embeddings) runs before and
after training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import torch
from torch import nn

from ...config import Recipe, RecipeError, config_field_names
from ...data import build_dataset, require_columns, select_split
from ...data.columns import require_text_columns
from ...data.text import TextStats, epoch_rows, iter_documents, rows_of_process, tokenize_batch
from ...losses.nt_xent import info_nce_loss
from ...metrics.retrieval import same_label_recall_at_k
from ..batches import build_dataloader, require_max_steps_when_streaming
from ..engine import Final, Step, TrainingRun
from ..fast_dropout import set_training_attention
from ..hardware import speed_choices
from ..model_setup import apply_lora
from ..optim import backward_and_step, build_optimizer
from ..param_groups import parameter_groups
from ..sharding import TrainingObjective, is_sharded
from .tokenizer import check_vocabulary, load_tokenizer

logger = logging.getLogger("hfgen")

RETRIEVAL_SEED = 0  # the retrieval subset is the same in every run, so before/after figures compare


# --------------------------------------------------------------------------------------------
# Model, head and objective
# --------------------------------------------------------------------------------------------


def build_sentence_encoder(recipe: Recipe, vocab_size: int | None = None):
    """The recipe's `SentenceEncoderModel`: `model.pretrained` (an hfgen sentence encoder, or any encoder such as
    MiniLM or an MLM checkpoint, wrapped with `contrastive.pooling`; further `model.*` keys override its config),
    or from scratch (`model.type: hfgen-sentence-encoder` with an `encoder:` config, or an encoder type such as `bert`,
    whose `vocab_size` defaults to the tokenizer's, `vocab_size`)."""
    import hfgen.models  # noqa: F401
    from transformers import AutoConfig

    from ...models import SentenceEncoderConfig, SentenceEncoderModel
    from ...models.sentence_encoder.modeling_sentence_encoder import read_sentence_transformers_settings
    from ...pretrained import resolve_pretrained

    spec, pooling = recipe.model, recipe.contrastive.pooling
    if spec.type == SentenceEncoderConfig.model_type:
        return SentenceEncoderModel(SentenceEncoderConfig(**{"pooling": pooling, **spec.config}))
    if spec.type is not None:
        fields = {**({"vocab_size": vocab_size} if vocab_size else {}), **spec.config}
        return SentenceEncoderModel(SentenceEncoderConfig(encoder=AutoConfig.for_model(spec.type, **fields), pooling=pooling))
    path = resolve_pretrained(spec.pretrained)
    config = AutoConfig.from_pretrained(path, revision=spec.revision)
    legacy = isinstance(config, SentenceEncoderConfig)  # a folder of hfgen < 0.2
    for key in spec.config:
        allowed = config_field_names(type(config.encoder if legacy else config))
        if key not in allowed:
            raise RecipeError(f"{recipe.source}: unknown key 'model.{key}' for the config of {spec.pretrained!r} ({type(config).__name__})")
    if legacy:
        model = SentenceEncoderModel.from_pretrained(path, revision=spec.revision, dtype="float32")
        model.config.pooling = pooling
        for key, value in spec.config.items():  # e.g. hidden_dropout_prob: set on the encoder's config and modules
            setattr(model.config.encoder, key, value)
        return model
    try:
        sentence_encoder = read_sentence_transformers_settings(path, revision=spec.revision) is not None
    except ValueError as error:  # e.g. a Dense module after the pooling: not a pipeline this method trains
        raise RecipeError(f"{recipe.source}: model.pretrained: {error}") from None
    if sentence_encoder:  # a sentence-transformers model (hfgen's or any): its pooling is replaced by contrastive.pooling
        model = SentenceEncoderModel.from_pretrained(path, revision=spec.revision, dtype="float32", **spec.config)
        model.config.pooling = pooling
        return model
    return SentenceEncoderModel.from_encoder(path, pooling=pooling, revision=spec.revision, dtype="float32", **spec.config)


class ProjectionHead(nn.Module):
    """SimCSE's training-only MLP over the pooled embedding (dense + tanh, as BERT's pooler)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x))


class ContrastiveObjective(TrainingObjective):
    """Encoder + optional head as one module (one DDP wrapper): texts -> embeddings split into groups.

    `texts_per_forward`: None runs the whole padded batch in one forward. A number sorts the texts by length and
    encodes them in forwards of about that many, each trimmed to its own longest text: the same embeddings (right
    padding; BERT ignores masked columns) for less compute on CPU, where padding costs as much as text and a
    32-text forward still keeps the matrix products efficient (a GPU prefers one large forward)."""

    fsdp_forward_methods = ("embed_texts",)  # run like forward under FSDP (the shards gathered for it)

    def __init__(self, model: nn.Module, head: nn.Module | None = None, texts_per_forward: int | None = None):
        super().__init__()
        self.model, self.head = model, head if head is not None else nn.Identity()
        self.texts_per_forward = texts_per_forward

    def embed_texts(self, texts: list[str], **kwargs) -> torch.Tensor:
        """The encoder's `encode` (strings in, embeddings out) through this module, for evaluation under FSDP."""
        return self.model.encode(texts, **kwargs)

    def forward(self, groups: int, repeat: int = 1, **inputs) -> tuple[torch.Tensor, ...]:
        """`inputs` hold `groups` blocks of n texts each (anchors, positives[, negatives]); `repeat=2` encodes
        them twice (different dropout masks, SimCSE). Returns groups * repeat tensors of (n, hidden)."""
        if repeat > 1:
            inputs = {k: v.repeat(repeat, *([1] * (v.dim() - 1))) for k, v in inputs.items()}
        pooled = self.head(self.encode(inputs))  # (repeat * groups * n, hidden)
        return tuple(pooled.chunk(groups * repeat))

    def encode(self, inputs: dict) -> torch.Tensor:
        """Pooled embeddings (texts, hidden) of a padded batch, in its order."""
        mask = inputs.get("attention_mask")
        count = mask.shape[0] if mask is not None else 0
        if self.texts_per_forward is None or mask is None or count < 2 * self.texts_per_forward:
            return self.model(**inputs).pooled_embeddings
        order = mask.sum(dim=1).argsort()  # shortest first: neighbours need about the same width
        pooled = []
        for rows in order.tensor_split(count // self.texts_per_forward):
            # up to the last column any of these texts uses (with left padding: every column, nothing trimmed)
            width = int(mask[rows].any(dim=0).nonzero().max()) + 1
            pooled.append(self.model(**{k: v[rows, :width] for k, v in inputs.items()}).pooled_embeddings)
        return torch.cat(pooled)[order.argsort()]  # back to the batch's order


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def training_examples(recipe: Recipe, stats: TextStats, rank: int = 0, world_size: int = 1) -> list[dict] | StreamedExamples:
    """Training rows as dicts of strings: {"text"} (simcse) or {"anchor", "positive"[, "negative"]} (pairs);
    rows with an empty text are skipped and counted. In memory, or with `data.streaming` read from the stream as
    training goes (process `rank` of `world_size` reading its own part)."""
    data, options = recipe.data, recipe.contrastive
    columns = {"data.text_column": data.text_column}
    if options.objective == "pairs":
        if data.text_pair_column is None:
            raise RecipeError(f"{recipe.source}: data.text_pair_column: objective 'pairs' needs the column of positives")
        columns.update({"data.text_pair_column": data.text_pair_column, "contrastive.negative_column": options.negative_column})
    dataset = build_dataset(data.dataset, streaming=data.streaming, encoding=data.encoding)
    require_columns(dataset, columns, ref=data.dataset)
    rows = select_split(dataset, data.train_split, "data.train_split", ref=data.dataset)
    require_text_columns(rows, columns, ref=data.dataset)
    names = {"text": data.text_column} if options.objective == "simcse" else {"anchor": data.text_column, "positive": data.text_pair_column}
    if options.negative_column:
        names["negative"] = options.negative_column
    if data.streaming:
        if data.max_train_samples is not None:
            rows = rows.take(data.max_train_samples)
        return StreamedExamples(rows_of_process(rows, rank, world_size), names, seed=recipe.train.seed, stats=stats)
    if data.max_train_samples is not None:
        rows = rows.shuffle(seed=recipe.train.seed).select(range(min(data.max_train_samples, len(rows))))
    if options.objective == "simcse":
        return [{"text": text} for text in iter_documents(rows[data.text_column], "line", stats)]
    return [example for row in rows.select_columns(list(names.values())) if (example := text_example(row, names, stats))]


def text_example(row: dict, names: dict[str, str], stats: TextStats) -> dict | None:
    """{role: stripped text} of one row (`names`: role -> column), or None (counted) when one of them is empty."""
    stats.rows += 1
    example = {role: (row[column] or "").strip() for role, column in names.items()}
    if all(example.values()):
        stats.documents += 1
        return example
    stats.empty_skipped += 1
    return None


class StreamedExamples(torch.utils.data.IterableDataset):
    """Training examples read from a streamed dataset as training goes, through a seeded buffer reshuffled every
    epoch (`set_epoch`); simcse texts are cut into lines like the in-memory path (`iter_documents`)."""

    def __init__(self, rows, names: dict[str, str], seed: int, stats: TextStats, shuffle_buffer: int | None = 10_000):
        self.rows, self.names, self.seed, self.stats, self.shuffle_buffer, self.epoch = rows, names, seed, stats, shuffle_buffer, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict]:
        rows = epoch_rows(self.rows, self.seed, self.shuffle_buffer, self.epoch)
        if list(self.names) == ["text"]:
            column = self.names["text"]
            yield from ({"text": text} for text in iter_documents((row[column] for row in rows), "line", self.stats))
        else:
            yield from (example for row in rows if (example := text_example(row, self.names, self.stats)))


class ExamplesDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        return self.examples[index]


def collate_texts(tokenizer, max_length: int, stats: TextStats):
    """Batch of example dicts -> one padded token batch of all their texts, role after role, and the group count."""

    def collate(examples: list[dict]) -> dict:
        roles = list(examples[0])
        texts = [example[role] for role in roles for example in examples]  # anchors..., positives..., negatives...
        return {**tokenize_batch(tokenizer, texts, max_length, stats), "groups": len(roles)}

    return collate


def retrieval_set(recipe: Recipe) -> tuple[list[str], list[int]] | None:
    """(texts, labels) of the labelled retrieval check, or None when `contrastive.retrieval_dataset` is null."""
    options = recipe.contrastive
    if not options.retrieval_dataset:
        return None
    dataset = build_dataset(options.retrieval_dataset)
    require_columns(dataset, {"contrastive.retrieval_text_column": options.retrieval_text_column,
                              "contrastive.retrieval_label_column": options.retrieval_label_column}, ref=options.retrieval_dataset)
    rows = select_split(dataset, options.retrieval_split, "contrastive.retrieval_split", ref=options.retrieval_dataset)
    if options.retrieval_max_samples is not None:
        rows = rows.shuffle(seed=RETRIEVAL_SEED).select(range(min(options.retrieval_max_samples, len(rows))))
    kept = [(text, label) for text, label in zip(rows[options.retrieval_text_column], rows[options.retrieval_label_column])
            if text and text.strip()]
    return [text for text, _ in kept], [label for _, label in kept]


def evaluate_retrieval(accelerator, model, retrieval, recipe: Recipe, objective=None) -> dict:
    """Same-label recall@k of the retrieval set's embeddings, computed on the main process while the others wait;
    under FSDP every process runs the (sharded) encoder through `objective` and the main process scores."""
    options = recipe.contrastive
    results: dict = {}
    sharded = is_sharded(accelerator)
    if accelerator.is_main_process or sharded:
        started = time.perf_counter()
        texts, labels = retrieval
        encode = objective.embed_texts if sharded else accelerator.unwrap_model(model).encode
        with accelerator.autocast():
            embeddings = encode(texts, batch_size=recipe.train.eval_batch_size or 64, max_length=options.retrieval_max_length)
    if accelerator.is_main_process:
        scores = same_label_recall_at_k(embeddings, labels, ks=options.retrieval_k)
        results = {f"retrieval_{k}": v for k, v in scores.items()}
        results["retrieval_texts"] = len(texts)
        logger.info("retrieval on %s (%d texts, %.0f s): %s", options.retrieval_dataset, len(texts), time.perf_counter() - started, scores)
    accelerator.wait_for_everyone()
    return results


# --------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------


def contrastive_method(recipe: Recipe):
    """The method of `method: contrastive`: SimCLR for an hfgen image encoder, else text (this module)."""
    from ..image_splits import is_image_model

    if is_image_model(recipe):
        from .contrastive_images import SimCLR

        return SimCLR(recipe)
    return TextContrastive(recipe)


class TextContrastive:
    """`method: contrastive` on texts (SimCSE or pairs), on the training engine."""

    name, unit = "contrastive", "examples"

    @property
    def unshardable(self) -> str | None:
        """Why this run cannot go under FSDP2, or None (it can, unless it trains LoRA adapters)."""
        if self.options.lora is not None:
            return "contrastive.lora trains a few adapter weights, which every device holds whole anyway; DDP is the engine for it"
        return None

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.contrastive

    def build(self, run: TrainingRun) -> None:
        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        if options.tokenizer:
            tokenizer = load_tokenizer(options.tokenizer, key=f"{recipe.source}: contrastive.tokenizer")
        elif recipe.model.pretrained:
            from ...pretrained import resolve_pretrained

            tokenizer = load_tokenizer(resolve_pretrained(recipe.model.pretrained), recipe.model.revision,
                                       key=f"{recipe.source}: model.pretrained (set contrastive.tokenizer)")
        else:
            raise RecipeError(f"{recipe.source}: contrastive.tokenizer: a model from scratch needs a tokenizer (folder or Hub id)")
        self.tokenizer = tokenizer
        model = build_sentence_encoder(recipe, vocab_size=len(tokenizer))
        check_vocabulary(model, tokenizer, recipe.source)
        model.set_tokenizer(tokenizer)
        set_training_attention(model, options.attn_implementation, options.fast_dropout, run.device.type)
        if options.lora is not None:
            model = apply_lora(model, options.lora, "sentence_encoder", recipe.source, base_model=recipe.model.pretrained)
        self.encoder = model

        self.stats = stats = TextStats()
        require_max_steps_when_streaming(recipe)
        accelerator = run.accelerator
        examples = training_examples(recipe, stats, rank=accelerator.process_index, world_size=accelerator.num_processes)
        collate = collate_texts(tokenizer, options.max_length, stats)
        if isinstance(examples, StreamedExamples):  # each process reads its own part: its loader is not sharded again
            loader = torch.utils.data.DataLoader(examples, batch_size=train.batch_size, drop_last=True,
                                                 num_workers=data.num_workers, collate_fn=collate)
        else:
            logger.info("%d training examples (%d rows with an empty text skipped)", len(examples), stats.empty_skipped)
            loader = build_dataloader(ExamplesDataset(examples), train.batch_size, seed=train.seed, shuffle=True, drop_last=True,
                                      num_workers=data.num_workers, collate_fn=collate)
        self.retrieval = retrieval_set(recipe)
        head = ProjectionHead(model.config.hidden_size) if options.mlp_head else None
        choices = speed_choices(run.device.type)  # length-sorted chunks of texts per forward on CPU, fused AdamW
        objective = ContrastiveObjective(model, head, choices.texts_per_forward)
        optimizer = build_optimizer(parameter_groups(objective, train.learning_rate, train.weight_decay), train,
                                    fused=choices.fused_adamw)
        _, (self.objective,), (self.optimizer,) = run.prepare(loader, [objective], [optimizer],
                                                              loader_is_per_process=isinstance(examples, StreamedExamples))
        self.repeat = 2 if options.objective == "simcse" else 1

    def before_training(self) -> dict:
        if self.retrieval is None:  # the "before" figures
            return {}
        return {f"initial_{k}": v for k, v in self.evaluate().items()}

    def step(self, batch) -> Step:
        groups = batch.pop("groups")
        embeddings = self.objective(groups, self.repeat, **batch)  # (anchors, positives[, negatives]), each (n, hidden)
        anchors, positives = embeddings[0], embeddings[1]
        negatives = embeddings[2] if len(embeddings) > 2 else None
        options = self.options
        loss = info_nce_loss(anchors, positives, negatives, options.temperature, options.gather_across_processes)
        backward_and_step(self.run.accelerator, loss, self.objective, self.optimizer, self.run.train.max_grad_norm)
        return Step(losses={"loss": loss}, count=anchors.shape[0])

    def log_values(self) -> dict:
        return {"truncated_texts": self.stats.truncated}

    def evaluate(self) -> dict:
        if self.retrieval is None:
            return {}
        return evaluate_retrieval(self.run.accelerator, self.encoder, self.retrieval, self.recipe, objective=self.objective)

    def finish(self, results: dict) -> Final:
        results.update(self.run.text_counts(self.stats.as_dict("train_")))
        results.update(self.evaluate())
        return Final(model=self.run.accelerator.unwrap_model(self.objective).model, tokenizer=self.tokenizer,
                     card_family="sentence_encoder")
