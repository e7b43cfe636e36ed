"""Dropout with cheaper random masks on CPU.

torch's CPU dropout draws one Bernoulli number per element with a serial Mersenne-Twister loop:
about 2 ms for a (32, 30, 384) activation on one core, and it does not speed up with more threads.
A BERT step drops ~6M elements (hidden states and attention probabilities), which made dropout 10-20%
of a MiniLM fine-tuning step on 2 CPU cores. `fast_dropout` takes four 16-bit slices from every
64-bit draw of the same generator (so seeding, checkpointed RNG state and resume work as before) and
keeps an element when its low 15 bits are at least ``p * 32768``: the keep probability is ``1 - p``
to within 1/32768, the masks are independent across elements, and generation is ~2.5x faster. On
other devices it is torch's own dropout.

`use_fast_dropout(model)` switches a model's `nn.Dropout` modules and, for models that use
transformers' attention interface, the attention-probability dropout (attention ``hfgen_eager``:
transformers' eager attention math with this dropout). Weights, names and saved files do not change.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTENTION_NAME = "hfgen_eager"
_SLICE_BITS = 15  # of each 16-bit slice; the top bit of the 64-bit draw is always 0 (random_() draws [0, 2^63))


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (inverted dropout)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    count = x.numel()
    draws = torch.empty((count + 3) // 4, dtype=torch.int64).random_()  # 4 slices of 16 bits per draw
    slices = draws.view(torch.int16)[:count].view(x.shape)
    keep = torch.bitwise_and(slices, (1 << _SLICE_BITS) - 1) >= round(p * (1 << _SLICE_BITS))
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))


class FastDropout(torch.nn.Dropout):
    """`nn.Dropout` computed with `fast_dropout` (same ``p``, same state: a drop-in class swap)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)


def eager_attention_fast_dropout(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention (scores, additive mask, softmax, dropout, weighted sum) with `fast_dropout`.

    query/key/value: (batch, heads, length, head_size); returns (batch, length, heads, head_size) and the weights.
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    weights = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, query length, key length)
    if attention_mask is not None:
        weights = weights + attention_mask[:, :, :, : key.shape[-2]]
    weights = fast_dropout(F.softmax(weights, dim=-1), dropout, module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return output, weights


def register_fast_attention() -> str:
    """Register ``hfgen_eager`` with transformers' attention and mask interfaces (idempotent); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(ATTENTION_NAME, eager_attention_fast_dropout)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)  # additive float masks, as eager attention takes
    return ATTENTION_NAME


def use_fast_dropout(model: torch.nn.Module, attention: bool = True) -> int:
    """Swap every `nn.Dropout` of ``model`` to `FastDropout` and, with ``attention``, set the model's
    attention to ``hfgen_eager`` (models built on transformers' attention interface); returns the
    number of dropout modules switched."""
    switched = 0
    for module in model.modules():
        if type(module) is torch.nn.Dropout:
            module.__class__ = FastDropout
            switched += 1
    if attention and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(register_fast_attention())
    return switched


def set_training_attention(model: torch.nn.Module, attn_implementation: str, fast_dropout: bool, device_type: str) -> str:
    """Set the attention kernel and dropout a transformers text encoder trains with, for this run only (the saved
    config keeps the model's default); returns the attention used.

    ``attn_implementation`` "auto" is eager on CPU (transformers' sdpa backward is slower there on short texts; the
    same math) and sdpa elsewhere; ``fast_dropout`` on CPU swaps in `FastDropout` (with eager attention: ``hfgen_eager``,
    the same math with the cheaper masks). `method: classifier` and `method: contrastive` share this choice.
    """
    from .hardware import speed_choices

    choices = speed_choices(device_type)
    attention = choices.attention if attn_implementation == "auto" else attn_implementation
    model.set_attn_implementation(attention)
    if fast_dropout and choices.fast_dropout:
        use_fast_dropout(model, attention=attention == "eager")
    return attention
