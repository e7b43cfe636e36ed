"""Recurrent text classifier (embedding -> LSTM/GRU/RNN -> pooling -> head) as a `transformers` model.

It takes what a tokenizer gives (`input_ids`, `attention_mask`; `token_type_ids` are accepted and ignored), so
`pipeline("text-classification", model=folder)` runs it, and it returns transformers' `SequenceClassifierOutput`
with the loss of `config.problem_type` (single-label cross-entropy, multi-label BCE, regression MSE), as BERT's
head does. Padding may sit on either side: the valid tokens of each row are moved to its front before the
recurrent pass, and the pass itself is packed, so padding never reaches the recurrent state.

This file imports only `torch`, `transformers` and its sibling configuration file (relative import), so a saved
model folder loads with `trust_remote_code=True` where hfgen is not installed.
"""

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput

from .configuration_rnn_classifier import RNNClassifierConfig


_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class RNNClassifierPreTrainedModel(PreTrainedModel):
    config_class = RNNClassifierConfig
    base_model_prefix = "rnn"
    main_input_name = "input_ids"
    input_modalities = "text"
    _supports_sdpa = True  # no attention at all: any attention setting a trainer picks (eager, sdpa) leaves it as it is

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # loading replaces the parameters built in __init__, so the frozen embedding table is frozen again here
        model = super().from_pretrained(*args, **kwargs)
        if model.config.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        return model

    @torch.no_grad()
    def _init_weights(self, module):
        # Embeddings: N(0, 1/d) (unit expected norm), padding row zero. Recurrent weights: PyTorch's
        # U(-1/sqrt(h), 1/sqrt(h)), with the LSTM forget-gate bias at 1 (Jozefowicz et al., 2015) so that early
        # training keeps long-range state. Linear layers: Glorot uniform, zero bias.
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=1.0 / math.sqrt(module.embedding_dim))
            if module.padding_idx is not None:
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for name, parameter in module.named_parameters():
                init.uniform_(parameter, -bound, bound)
            if isinstance(module, nn.LSTM):
                hidden = module.hidden_size  # gate order i, f, g, o
                for name, parameter in module.named_parameters():
                    if name.startswith("bias_"):
                        (init.ones_ if name.startswith("bias_ih") else init.zeros_)(parameter[hidden : 2 * hidden])
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)


def _valid_first(inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`inputs` (batch, length, ...) with each row's valid positions (mask 1) moved to its front, order kept."""
    order = torch.argsort((mask == 0).to(torch.int8), dim=1, stable=True)  # valid first, each group in order
    index = order.view(*order.shape, *([1] * (inputs.dim() - 2))).expand_as(inputs)
    return inputs.gather(1, index)


class RNNClassifierModel(RNNClassifierPreTrainedModel):
    """
    Embeddings and the recurrent encoder: `last_hidden_state` (batch, length, features) holds the per-token states
    (zero at padded positions, valid tokens first), `pooler_output` (batch, features) the pooled vector
    (features = `hidden_size` x directions).
    """

    def __init__(self, config: RNNClassifierConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = _CELLS[config.cell](
            config.embedding_dim, config.hidden_size, num_layers=config.num_layers, batch_first=True,
            bidirectional=config.bidirectional, dropout=config.dropout if config.num_layers > 1 else 0.0,
        )  # fmt: skip
        self.post_init()
        if config.freeze_embeddings:
            self.embeddings.weight.requires_grad_(False)

    @property
    def num_features(self) -> int:
        return self.config.hidden_size * (2 if self.config.bidirectional else 1)

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, return_dict=None, **kwargs):
        """
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, length)`): token ids.
            attention_mask (`torch.LongTensor` of shape `(batch_size, length)`, *optional*): 1 for tokens, 0 for
                padding (left or right); default all ones.
            token_type_ids: accepted for tokenizer compatibility and ignored (a recurrent reader has no segments).
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, length, embedding_dim)`, *optional*): instead
                of `input_ids`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("RNNClassifierModel: pass exactly one of input_ids and inputs_embeds.")
        embedded = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds  # (batch, length, dim)
        batch, length = embedded.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=embedded.device)
        mask = attention_mask.to(torch.bool)
        lengths = mask.sum(dim=1)
        right_padded = torch.arange(length, device=mask.device) < lengths.unsqueeze(1)
        if not bool(torch.equal(mask, right_padded)):  # not right-padded (e.g. a left-padding tokenizer)
            embedded, mask = _valid_first(embedded, mask), _valid_first(mask, mask)
        embedded = self.dropout(embedded)
        if bool(mask.all()):  # no padding (always so at batch 1): the plain pass, the same math without packing's cost
            states, state = self.encoder(embedded)  # (batch, length, features)
        else:
            # an empty row (no valid token) reads one padding step, so that every row has a state; its mask stays 0
            packed = pack_padded_sequence(embedded, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
            outputs, state = self.encoder(packed)
            states, _ = pad_packed_sequence(outputs, batch_first=True, total_length=length)  # (batch, length, features)
        valid = mask.unsqueeze(-1)
        if self.config.pooling == "max":
            pooled = states.masked_fill(~valid, torch.finfo(states.dtype).min).amax(dim=1)
            pooled = pooled.masked_fill((lengths == 0).unsqueeze(-1), 0.0)
        elif self.config.pooling == "mean":
            pooled = (states * valid).sum(dim=1) / lengths.clamp(min=1).unsqueeze(-1).to(states.dtype)
        else:  # last: the final hidden state of the top layer, each direction
            hidden = state[0] if isinstance(state, tuple) else state  # (layers * directions, batch, hidden_size)
            directions = 2 if self.config.bidirectional else 1
            pooled = torch.cat(list(hidden[-directions:]), dim=-1)
        if return_dict is False:
            return states, pooled
        return BaseModelOutputWithPooling(last_hidden_state=states, pooler_output=pooled)


class RNNClassifierForSequenceClassification(RNNClassifierPreTrainedModel):
    """
    [`RNNClassifierModel`] with a classification (or regression) head on its pooled vector. `config.num_labels`
    outputs; `config.problem_type` picks the loss when `labels` are given, as transformers' BERT head does.
    """

    def __init__(self, config: RNNClassifierConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.rnn = RNNClassifierModel(config)
        features = self.rnn.num_features
        if config.classifier_hidden_size > 0:
            self.classifier = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(features, config.classifier_hidden_size), nn.ReLU(),
                nn.Dropout(config.dropout), nn.Linear(config.classifier_hidden_size, config.num_labels),
            )  # fmt: skip
        else:
            self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(features, config.num_labels))
        self.post_init()

    def get_input_embeddings(self):
        return self.rnn.embeddings

    def set_input_embeddings(self, value):
        self.rnn.embeddings = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, inputs_embeds=None, labels=None, return_dict=None, **kwargs):
        """
        Args:
            labels (`torch.Tensor`, *optional*): (batch,) class ids (single-label), (batch, num_labels) multi-hot
                floats (multi-label), or (batch,) float targets (regression, `num_labels == 1`).
        Other arguments: as [`RNNClassifierModel.forward`].
        """
        _, pooled = self.rnn(input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, return_dict=False)
        logits = self.classifier(pooled)  # (batch, num_labels)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels)
        if return_dict is False:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits, labels):
        config = self.config
        if config.problem_type is None:  # as transformers' sequence classifiers infer it
            if self.num_labels == 1:
                config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                config.problem_type = "single_label_classification"
            else:
                config.problem_type = "multi_label_classification"
        if config.problem_type == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
        if config.problem_type == "single_label_classification":
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels).float(), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
