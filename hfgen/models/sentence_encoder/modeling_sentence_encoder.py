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
from transformers.utils import ModelOutput

from .configuration_sentence_encoder import SentenceEncoderConfig


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
    Texts -> one embedding each: `forward` on token ids, `encode` on strings. Saved with `save_pretrained`, the folder
    also holds the sentence-transformers files (modules.json, pooling config), so `SentenceTransformer(folder)` loads it
    (with hfgen installed, or `trust_remote_code=True` when the folder carries this code).
    """

    def __init__(self, config: SentenceEncoderConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # BERT's pooler is unused: pooling happens here
        self._tokenizer = None
        self.post_init()

    @classmethod
    def from_encoder(cls, encoder_name_or_path: str, pooling: str = "mean", normalize: bool = True, max_length: int = 256, **kwargs):
        """A sentence encoder around pretrained encoder weights (e.g. a BERT/MiniLM folder or an MLM checkpoint,
        whose head is dropped)."""
        encoder = AutoModel.from_pretrained(encoder_name_or_path, **kwargs)
        config = SentenceEncoderConfig(encoder=encoder.config.to_dict(), pooling=pooling, normalize=normalize, max_length=max_length)
        model = cls(config)
        missing, unexpected = model.encoder.load_state_dict(encoder.state_dict(), strict=False)
        if missing or [k for k in unexpected if not k.startswith("pooler.")]:
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
            self._tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
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
        """`PreTrainedModel.save_pretrained`, plus the files that make the folder a sentence-transformers model:
        the Transformer module at the root (this model's token states), then Pooling (and Normalize)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        write_sentence_transformers_files(save_directory, self.config)


def write_sentence_transformers_files(folder, config: SentenceEncoderConfig) -> None:
    """modules.json, sentence_bert_config.json and 1_Pooling/config.json (+ 2_Normalize) for `config`."""
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
        os.path.join("1_Pooling", "config.json"): pooling,
    }
    for name, content in files.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(content, f, indent=2)
    if config.normalize:
        os.makedirs(os.path.join(folder, "2_Normalize"), exist_ok=True)


__all__ = ["SentenceEncoderModel", "SentenceEncoderOutput", "SentenceEncoderPreTrainedModel", "pool", "write_sentence_transformers_files"]
