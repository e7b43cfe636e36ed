"""Sentence encoder: a transformer encoder + pooling (+ L2 normalisation) as a `transformers` model, trained by
hfgen's contrastive method (SimCSE, supervised pairs) and loadable by sentence-transformers.

This file imports only `torch`, `transformers` and its sibling configuration file (relative import), so a saved
model folder loads with `trust_remote_code=True` where hfgen is not installed.
"""

import json
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel
from transformers.utils import ModelOutput, cached_file

from .configuration_sentence_encoder import POOLING_MODES, SentenceEncoderConfig


@dataclass
class SentenceEncoderOutput(ModelOutput):
    """
    Output of [`SentenceEncoderModel`].

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            The encoder's token states (what sentence-transformers' `Transformer` module reads).
        pooled_embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The pooled states, before normalisation (what training heads take).
        embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`):
            The sentence embeddings: pooled, and L2-normalised when `config.normalize`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    pooled_embeddings: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None


def pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor | None, mode: str) -> torch.Tensor:
    """(batch, length, hidden) token states -> (batch, hidden): mean over the unmasked tokens, or the first token."""
    if mode == "cls":
        return last_hidden_state[:, 0]
    if attention_mask is None:
        return last_hidden_state.mean(dim=1)
    weights = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (batch, length, 1)
    return (last_hidden_state * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


class SentenceEncoderPreTrainedModel(PreTrainedModel):
    config_class = SentenceEncoderConfig
    base_model_prefix = "sentence_encoder"
    main_input_name = "input_ids"
    input_modalities = "text"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module):
        # BERT's initialisation, for weights a checkpoint does not provide (e.g. a model from scratch)
        std = getattr(self.config.encoder, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                nn.init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class SentenceEncoderModel(SentenceEncoderPreTrainedModel):
    """
    Texts -> one embedding each: `forward` on token ids, `encode` on strings. `save_pretrained` writes a standard
    sentence-transformers folder (the stock encoder, modules.json, Pooling, Normalize): `SentenceTransformer(folder)`
    and `AutoModel` (the encoder) load it without hfgen or custom code; `SentenceEncoderModel.from_pretrained` reads
    it back whole, and also reads folders of earlier hfgen versions (`model_type: hfgen-sentence-encoder`).
    """

    saves_code = False  # hfgen.hub.prepare_for_hub: the saved folder is stock transformers + sentence-transformers

    def __init__(self, config: SentenceEncoderConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder)
        if getattr(self.encoder, "pooler", None) is not None:
            # BERT's pooler (the NSP head's dense layer) is unused: pooling happens here. It stays in the saved
            # encoder, as loaded, so the folder is a whole `BertModel`; frozen, it is no DDP "unused parameter".
            self.encoder.pooler.requires_grad_(False)
        self._tokenizer = None
        self.post_init()

    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, pooling: str = "mean", normalize: bool = True, max_length: int = 256, **kwargs):
        """A sentence encoder around pretrained encoder weights (e.g. a BERT/MiniLM folder or an MLM checkpoint,
        whose head is dropped)."""
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **kwargs)
        fields = {k: v for k, v in encoder.config.to_dict().items() if k != "_name_or_path"}  # never a machine path
        config = SentenceEncoderConfig(encoder=fields, pooling=pooling, normalize=normalize, max_length=max_length)
        model = cls(config)
        missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        # an MLM checkpoint has no pooler: the new one keeps its initialisation (it does not take part in pooling)
        if [k for k in missing if not k.startswith("pooler.")] or unexpected:
            raise ValueError(f"encoder weights of {encoder_name_or_path!r} do not fit: missing {missing}, unexpected {unexpected}")
        model.name_or_path = encoder_name_or_path
        return model

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.encoder.set_input_embeddings(value)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SentenceEncoderOutput:
        encoder_inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "inputs_embeds": inputs_embeds}
        if token_type_ids is not None:
            encoder_inputs["token_type_ids"] = token_type_ids
        states = self.encoder(**encoder_inputs, return_dict=True).last_hidden_state  # (batch, length, hidden)
        pooled = pool(states, attention_mask, self.config.pooling)  # (batch, hidden)
        embeddings = F.normalize(pooled, dim=-1) if self.config.normalize else pooled
        return SentenceEncoderOutput(last_hidden_state=states, pooled_embeddings=pooled, embeddings=embeddings)

    # ---- strings in, embeddings out -----------------------------------------------------------------------------

    @property
    def tokenizer(self):
        """The tokenizer saved beside the weights (loaded on first use), or the one given to `set_tokenizer`."""
        if self._tokenizer is None:
            self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path, **getattr(self, "_tokenizer_kwargs", {}))
        return self._tokenizer

    def set_tokenizer(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    @torch.no_grad()
    def encode(self, texts, batch_size: int = 32, max_length: int | None = None, normalize: bool | None = None,
               convert_to_numpy: bool = False):
        """Embed `texts` (a string or a list of strings): a (n, hidden) float32 tensor (or numpy array), row i for
        text i, L2-normalised unless `normalize=False` (default: `config.normalize`). Runs in eval mode, in batches
        sorted by length (less padding), on the model's device."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        normalize = self.config.normalize if normalize is None else normalize
        was_training = self.training
        self.eval()
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = torch.empty(len(texts), self.config.hidden_size)
        for start in range(0, len(texts), batch_size):
            chunk = order[start : start + batch_size]
            inputs = self.tokenizer([texts[i] for i in chunk], padding=True, truncation=True,
                                    max_length=max_length or self.config.max_length, return_tensors="pt").to(self.device)
            pooled = self(**inputs).pooled_embeddings.float()
            out[chunk] = (F.normalize(pooled, dim=-1) if normalize else pooled).cpu()
        self.train(was_training)
        out = out[0] if single else out
        return out.numpy() if convert_to_numpy else out

    # ---- sentence-transformers folder layout --------------------------------------------------------------------

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Write a standard sentence-transformers folder: the encoder as the stock transformers model it is
        (`config.json` says e.g. `model_type: bert`; `AutoModel` gives a `BertModel`), then the Pooling (and
        Normalize) modules that hold this config's pooling, normalisation and max_length. Nothing in it is code:
        `SentenceTransformer(folder)` loads it with neither hfgen nor `trust_remote_code`."""
        state = kwargs.get("state_dict")
        if state is not None:  # this model's state (e.g. gathered from FSDP shards): the encoder's part, by its own names
            kwargs["state_dict"] = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        self.encoder.save_pretrained(save_directory, *args, **kwargs)
        write_sentence_transformers_files(save_directory, self.config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """A sentence encoder from a sentence-transformers folder or Hub repo (Transformer + Pooling mean/cls
        [+ Normalize], as `save_pretrained` writes and sentence-transformers itself saves), or from a folder of
        hfgen < 0.2 (`model_type: hfgen-sentence-encoder`, loaded as it was saved). A plain encoder without
        `modules.json` is refused: wrap it with `from_encoder`, which says the pooling."""
        path = str(pretrained_model_name_or_path)
        hub = {k: kwargs[k] for k in HUB_KWARGS if k in kwargs}
        config_file = cached_file(path, "config.json", _raise_exceptions_for_missing_entries=False, **hub)
        if config_file is not None and _read_json(config_file).get("model_type") == SentenceEncoderConfig.model_type:
            return super().from_pretrained(path, *args, **kwargs)  # the old format: config + weights as saved
        settings = read_sentence_transformers_settings(path, **hub)
        if settings is None:
            raise ValueError(
                f"{path} is not a sentence encoder: it has no modules.json. A plain encoder (BERT, MiniLM, an MLM "
                "checkpoint) becomes one with SentenceEncoderModel.from_encoder(path, pooling='mean' or 'cls')."
            )
        subfolder = settings.pop("subfolder")
        if subfolder:
            kwargs["subfolder"] = subfolder
        model = cls.from_encoder(path, **settings, **kwargs)
        model._tokenizer_kwargs = {**hub, **({"subfolder": subfolder} if subfolder else {})}
        return model


HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")

POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean", "pooling_mode_max_tokens": "max",
                 "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens": "weightedmean",
                 "pooling_mode_lasttoken": "lasttoken"}


def write_sentence_transformers_files(folder, config: SentenceEncoderConfig) -> None:
    """modules.json, sentence_bert_config.json, config_sentence_transformers.json and 1_Pooling/config.json
    (+ 2_Normalize) for `config`, in the module names and keys every sentence-transformers release since 2.x reads."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if config.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {
        "word_embedding_dimension": config.hidden_size,
        "pooling_mode_cls_token": config.pooling == "cls",
        "pooling_mode_mean_tokens": config.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    files = {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": config.max_length, "do_lower_case": False},
        "config_sentence_transformers.json": {"similarity_fn_name": "cosine" if config.normalize else "dot"},
        os.path.join("1_Pooling", "config.json"): pooling,
    }
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(content, f, indent=2)
    if config.normalize:
        os.makedirs(os.path.join(folder, "2_Normalize"), exist_ok=True)


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_sentence_transformers_settings(path: str, **hub) -> dict | None:
    """{"pooling", "normalize", "max_length", "subfolder"} of the sentence-transformers folder or Hub repo at
    `path`, or None when it has no modules.json. Raises ValueError for a pipeline this class cannot be (pooling
    other than mean/cls, extra modules such as Dense)."""
    modules_file = cached_file(path, "modules.json", _raise_exceptions_for_missing_entries=False, **hub)
    if modules_file is None:
        return None
    modules = sorted(_read_json(modules_file), key=lambda m: m.get("idx", 0))
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"{path}/modules.json: modules {kinds}; hfgen's SentenceEncoderModel is Transformer + Pooling "
                         "[+ Normalize]. Load this model with sentence_transformers.SentenceTransformer.")
    transformer, pooler = modules[0].get("path", ""), modules[1].get("path", "")
    pooling_file = cached_file(path, f"{pooler}/config.json".lstrip("/"), **hub)
    pooling_config = _read_json(pooling_file)
    if "pooling_mode" in pooling_config:  # sentence-transformers >= 6
        mode = pooling_config["pooling_mode"]
    else:
        modes = [name for key, name in POOLING_FLAGS.items() if pooling_config.get(key)]
        mode = modes[0] if len(modes) == 1 else "+".join(modes) or None
    if mode not in POOLING_MODES:
        raise ValueError(f"{path}/{pooler}/config.json: pooling {mode!r}; hfgen's SentenceEncoderModel pools with one of "
                         f"{list(POOLING_MODES)}. Load this model with sentence_transformers.SentenceTransformer.")
    settings_file = cached_file(path, f"{transformer}/sentence_bert_config.json".lstrip("/"),
                                _raise_exceptions_for_missing_entries=False, **hub)
    max_length = _read_json(settings_file).get("max_seq_length") if settings_file else None
    return {"pooling": mode, "normalize": len(modules) == 3, "max_length": max_length or 256, "subfolder": transformer or None}


__all__ = ["SentenceEncoderModel", "SentenceEncoderOutput", "SentenceEncoderPreTrainedModel", "pool",
           "read_sentence_transformers_settings", "write_sentence_transformers_files"]
