"""`method: tokenizer` — train a BERT WordPiece tokenizer on a corpus, saved as a transformers tokenizer.

The result reloads with `AutoTokenizer.from_pretrained(output_dir)`, adds `[CLS] ... [SEP]` (and
`token_type_ids` for sentence pairs) like bert-base-uncased, and is what `method: mlm` trains when a
recipe names no tokenizer. `model.type: bert` trains a fresh WordPiece vocabulary; `model.pretrained`
retrains that tokenizer's own pipeline (normaliser, pre-tokeniser, special tokens) on the corpus.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from ...config import Recipe, RecipeError, TokenizerSection, save_recipe
from ...data import build_dataset, require_columns, select_split
from ...data.text import TextStats, iter_documents
from ..checkpoint import write_json_atomic

logger = logging.getLogger("hfgen")

BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0-4


def train_wordpiece_tokenizer(texts: Iterable[str], options: TokenizerSection | None = None, base=None):
    """Train a WordPiece tokenizer on `texts` and return it as a transformers `BertTokenizer`.

    Args:
        texts: documents (any iterable; consumed once, lazily, so a stream works).
        options: vocabulary size, minimum frequency, casing, alphabet limit, saved max length.
        base: an existing transformers tokenizer whose pipeline is retrained instead (`train_new_from_iterator`).

    Example:
        >>> tokenizer = train_wordpiece_tokenizer(["a first document", "a second one"], TokenizerSection(vocab_size=100))
        >>> tokenizer("a pair", "of sentences")["token_type_ids"]
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    options = options or TokenizerSection()
    if base is not None:
        tokenizer = base.train_new_from_iterator(
            texts, vocab_size=options.vocab_size, min_frequency=options.min_frequency, limit_alphabet=options.limit_alphabet
        )
        tokenizer.model_max_length = options.model_max_length
        return tokenizer
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=options.lowercase, strip_accents=None)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=options.vocab_size,
        min_frequency=options.min_frequency,
        limit_alphabet=options.limit_alphabet,
        special_tokens=BERT_SPECIAL_TOKENS,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    wordpiece.train_from_iterator(texts, trainer=trainer)
    # The trainer breaks frequency ties in hash-map order, so ids (and, at the cut-off, a few pieces) vary from
    # run to run; numbering the pieces in sorted order after the special tokens makes equal vocabularies identical.
    pieces = sorted(set(wordpiece.get_vocab()) - set(BERT_SPECIAL_TOKENS))
    vocab = {token: index for index, token in enumerate(BERT_SPECIAL_TOKENS + pieces)}
    # BertTokenizer rebuilds the identical pipeline around the vocabulary and adds BERT's post-processor
    # ([CLS] A [SEP] B [SEP] with token_type_ids 0/1), so the result is a stock transformers tokenizer.
    return BertTokenizer(vocab=vocab, do_lower_case=options.lowercase, model_max_length=options.model_max_length)


def load_tokenizer(ref: str, revision: str | None = None, key: str = "tokenizer"):
    """`AutoTokenizer.from_pretrained(ref)`, or an error naming the recipe key and what would work."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(ref, revision=revision)
    except Exception as err:
        raise RecipeError(
            f"{key}: cannot load a tokenizer from {ref!r} ({type(err).__name__}: {' '.join(str(err).split())[:300]}); "
            "give a folder holding tokenizer.json / vocab.txt (e.g. the output_dir of a `method: tokenizer` run) or a Hub id"
        ) from err


def check_vocabulary(model, tokenizer, source: str | None) -> None:
    """Fail when the tokenizer's vocabulary and the model's embedding table differ in size."""
    embeddings = model.get_input_embeddings().num_embeddings
    if len(tokenizer) != embeddings:
        raise RecipeError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the model's embedding table has {embeddings} rows "
            f"(vocab_size); use the tokenizer the model was trained with, or set model.vocab_size: {len(tokenizer)} "
            "for a model from scratch"
        )


def corpus_texts(recipe: Recipe, stats: TextStats, limit: int | None = None):
    """The non-empty documents of the recipe's training split (streamed when `data.streaming`)."""
    data = recipe.data
    dataset = build_dataset(data.dataset, streaming=data.streaming, encoding=data.encoding)
    require_columns(dataset, {"data.text_column": data.text_column}, ref=data.dataset)
    rows = select_split(dataset, data.train_split, "data.train_split", ref=data.dataset)
    documents = iter_documents((row[data.text_column] for row in rows), "line", stats)
    for count, document in enumerate(documents):
        if limit is not None and count >= limit:
            return
        yield document


def run(recipe: Recipe) -> Path:
    """Train the recipe's tokenizer and save it (with `tokenizer_stats.json`) in `train.output_dir`."""
    from accelerate import PartialState

    options, out = recipe.tokenizer, Path(recipe.train.output_dir)
    if recipe.model.config:
        raise RecipeError(
            f"{recipe.source}: model.{next(iter(recipe.model.config))}: model config fields do not apply to "
            "method tokenizer; set tokenizer.vocab_size etc."
        )
    if recipe.model.type not in (None, "bert"):
        raise RecipeError(f"{recipe.source}: model.type: method tokenizer trains BERT WordPiece tokenizers ('bert'), got {recipe.model.type!r}")
    if (out / "tokenizer.json").is_file() and not recipe.train.overwrite:
        raise RecipeError(f"{recipe.source}: train.output_dir {str(out)!r} already holds a tokenizer; set train.overwrite=true to replace it")
    state = PartialState()
    if state.is_main_process:  # one process does the (CPU, single-pass) training; the others wait
        out.mkdir(parents=True, exist_ok=True)
        save_recipe(recipe, out / "recipe.yaml")
        base = load_tokenizer(recipe.model.pretrained, recipe.model.revision, "model.pretrained") if recipe.model.pretrained else None
        stats = TextStats()
        limit = recipe.data.max_train_samples if options.max_documents is None else options.max_documents
        tokenizer = train_wordpiece_tokenizer(corpus_texts(recipe, stats, limit), options, base=base)
        tokenizer.save_pretrained(out)
        write_json_atomic(out / "tokenizer_stats.json", {"vocab_size": len(tokenizer), **stats.as_dict()})
        logger.info(
            "trained a %d-token WordPiece vocabulary on %d documents (%d empty rows skipped); saved to %s",
            len(tokenizer), stats.documents, stats.empty_skipped, out,
        )
    state.wait_for_everyone()
    return out
