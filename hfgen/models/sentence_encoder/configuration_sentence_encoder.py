"""Sentence encoder configuration.

This file is self-contained (it imports only from `transformers`) so that a saved model folder loads with
`trust_remote_code=True` where hfgen is not installed.
"""

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


POOLING_MODES = ("mean", "cls")


class SentenceEncoderConfig(PreTrainedConfig):
    r"""
    Configuration of a [`SentenceEncoderModel`]: a transformer encoder (BERT, MiniLM, ...) whose token states are
    pooled into one embedding per text, optionally L2-normalised, as in Sentence-BERT (Reimers & Gurevych, 2019) and
    SimCSE (Gao et al., 2021).

    Args:
        encoder (`dict` or `PreTrainedConfig`, *optional*, defaults to a `BertConfig`):
            Config of the token encoder, any model type `AutoModel` builds (`"model_type"` key in a dict).
        pooling (`str`, *optional*, defaults to `"mean"`):
            `"mean"`: average of the token states over the attention mask (Sentence-BERT's default); `"cls"`: the state
            of the first token.
        normalize (`bool`, *optional*, defaults to `True`):
            L2-normalise the embeddings, so a dot product is the cosine similarity.
        max_length (`int`, *optional*, defaults to 256):
            Tokens per text that `encode` keeps (longer texts are truncated); also written to
            `sentence_bert_config.json` for sentence-transformers.

    Example:

    ```python
    >>> from transformers import BertConfig
    >>> from hfgen.models import SentenceEncoderConfig, SentenceEncoderModel
    >>> config = SentenceEncoderConfig(encoder=BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37))
    >>> model = SentenceEncoderModel(config)
    ```
    """

    model_type = "hfgen-sentence-encoder"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: PreTrainedConfig | dict | None = None
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 256

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.pooling not in POOLING_MODES:
            raise ValueError(f"SentenceEncoderConfig: pooling={self.pooling!r} is not supported; use one of {list(POOLING_MODES)}.")
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 1:
            raise ValueError(f"SentenceEncoderConfig: max_length={self.max_length!r} must be a positive integer.")

    @property
    def hidden_size(self) -> int:
        """The embedding size (the encoder's hidden size); sentence-transformers reads it."""
        return self.encoder.hidden_size


__all__ = ["SentenceEncoderConfig"]
