"""RNN text classifier configuration.

This file is self-contained (it imports only from `transformers`) so that a saved model folder loads with
`trust_remote_code=True` where hfgen is not installed.
"""

from transformers import PreTrainedConfig


CELLS = ("lstm", "gru", "rnn")
POOLINGS = ("max", "mean", "last")


class RNNClassifierConfig(PreTrainedConfig):
    r"""
    Configuration of an [`RNNClassifierForSequenceClassification`]: token embeddings, a recurrent encoder (LSTM, GRU
    or Elman RNN; uni- or bidirectional, one or more layers), a pooling over the valid (unpadded) time steps and a
    classification or regression head. The BiLSTM student of Tang et al. (2019, arXiv:1903.12136) is
    `cell="lstm", bidirectional=True, pooling="last", classifier_hidden_size=...`.

    Args:
        vocab_size (`int`, *optional*, defaults to 30522):
            Rows of the embedding table: the tokenizer's vocabulary (hfgen sets it from the tokenizer).
        embedding_dim (`int`, *optional*, defaults to 300):
            Size of a token embedding (set from the BERT checkpoint when the embeddings are copied from one).
        hidden_size (`int`, *optional*, defaults to 300):
            Units of the recurrent layer, per direction.
        num_layers (`int`, *optional*, defaults to 1):
            Stacked recurrent layers.
        cell (`str`, *optional*, defaults to `"lstm"`):
            `"lstm"`, `"gru"` or `"rnn"` (tanh Elman network).
        bidirectional (`bool`, *optional*, defaults to `True`):
            Read the text in both directions; the features are the two directions concatenated.
        pooling (`str`, *optional*, defaults to `"max"`):
            How the per-token states become one vector: `"max"` or `"mean"` over the valid time steps, or `"last"`
            (the final state of each direction: the last token forwards, the first token backwards).
        dropout (`float`, *optional*, defaults to 0.1):
            Dropout on the embeddings, between recurrent layers and on the pooled features.
        classifier_hidden_size (`int`, *optional*, defaults to 0):
            0: the head is one linear layer; > 0: a hidden ReLU layer of this size first (Tang et al.).
        freeze_embeddings (`bool`, *optional*, defaults to `False`):
            Keep the embedding table fixed during training (useful when it was copied from a pretrained model).
        pad_token_id (`int`, *optional*, defaults to 0):
            The padding token's id: its embedding row starts at zero.

    Example:

    ```python
    >>> from hfgen.models import RNNClassifierConfig, RNNClassifierForSequenceClassification
    >>> config = RNNClassifierConfig(vocab_size=30522, num_labels=2, cell="gru")
    >>> model = RNNClassifierForSequenceClassification(config)
    >>> logits = model(input_ids, attention_mask=attention_mask).logits  # (batch, 2)
    ```
    """

    model_type = "hfgen-rnn-classifier"

    vocab_size: int = 30522
    embedding_dim: int = 300
    hidden_size: int = 300
    num_layers: int = 1
    cell: str = "lstm"
    bidirectional: bool = True
    pooling: str = "max"
    dropout: float = 0.1
    classifier_hidden_size: int = 0
    freeze_embeddings: bool = False
    pad_token_id: int | None = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            _check_int(self, name, minimum=1)
        _check_int(self, "classifier_hidden_size", minimum=0)
        if self.cell not in CELLS:
            raise ValueError(f"RNNClassifierConfig: cell={self.cell!r} is not supported; use one of {list(CELLS)}.")
        if self.pooling not in POOLINGS:
            raise ValueError(f"RNNClassifierConfig: pooling={self.pooling!r} is not supported; use one of {list(POOLINGS)}.")
        if not isinstance(self.dropout, (int, float)) or isinstance(self.dropout, bool) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RNNClassifierConfig: dropout={self.dropout!r} must be a number in [0, 1).")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"RNNClassifierConfig: pad_token_id={self.pad_token_id!r} is outside the vocabulary [0, {self.vocab_size}).")


def _check_int(config, name, minimum):
    value = getattr(config, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"RNNClassifierConfig: {name}={value!r} must be an integer >= {minimum}.")
