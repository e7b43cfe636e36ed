"""Classifier building blocks: best-model selection / early stopping state, fine-tuning parameter groups
(layer-wise lr decay), and the [CLS]-only last layer (same logits and gradients)."""

import pytest
import torch

from hfgen.train.param_groups import layer_depths, parameter_groups
from hfgen.train.selection import ModelSelection, metric_greater_is_better


def test_selection_tracks_best_and_patience():
    selection = ModelSelection("accuracy", greater_is_better=True, patience=2, threshold=0.01)
    assert selection.update({"accuracy": 0.80}, step=10)
    assert not selection.update({"accuracy": 0.805}, step=20)  # within the threshold: no improvement
    assert not selection.should_stop
    assert not selection.update({"accuracy": 0.79}, step=30)
    assert selection.should_stop and (selection.best_value, selection.best_step) == (0.80, 10)
    restored = ModelSelection("accuracy")
    restored.load_state_dict(selection.state_dict())
    assert restored == selection


def test_lower_is_better_metrics_and_unknown_metric():
    assert not metric_greater_is_better("eval_loss") and not metric_greater_is_better("mse")
    assert metric_greater_is_better("f1_macro")
    selection = ModelSelection("mse", greater_is_better=False)
    assert selection.update({"mse": 2.0}, 1) and selection.update({"mse": 1.0}, 2) and not selection.update({"mse": 1.5}, 3)
    with pytest.raises(KeyError, match="'f1' is not among the evaluation metrics"):
        ModelSelection("f1").update({"accuracy": 1.0}, 1)


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    from tests.train.classifier_fixtures import TINY_BERT

    return BertForSequenceClassification(BertConfig(**TINY_BERT, num_labels=3))


def test_layer_depths_of_bert():
    depths, top = layer_depths(_tiny_bert())
    assert top == 3  # embeddings 0, layers 1..2, pooler + head 3
    assert depths["bert.embeddings.word_embeddings.weight"] == 0
    assert depths["bert.encoder.layer.1.attention.self.query.weight"] == 2
    assert depths["classifier.weight"] == 3 and depths["bert.pooler.dense.weight"] == 3


def test_layer_decay_rates_and_no_decay_for_biases_and_norms():
    model = _tiny_bert()
    groups = parameter_groups(model, learning_rate=1e-3, weight_decay=0.01, layer_lr_decay=0.5)
    rate = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert rate[id(params["classifier.weight"])] == pytest.approx(1e-3)
    assert rate[id(params["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(5e-4)
    assert rate[id(params["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert decay[id(params["bert.encoder.layer.0.output.LayerNorm.weight"])] == 0.0
    assert decay[id(params["classifier.bias"])] == 0.0 and decay[id(params["classifier.weight"])] == 0.01
    assert sum(len(g["params"]) for g in groups) == len(params)
    flat = parameter_groups(model, 1e-3, 0.01)
    assert {g["lr"] for g in flat} == {1e-3} and len(flat) == 2
    torch.optim.AdamW(groups, lr=1e-3, fused=True)  # groups are what AdamW (fused) takes


def test_cls_only_last_layer_gives_the_same_logits_and_gradients():
    import copy

    from hfgen.train.cls_only import enable_cls_only_last_layer

    torch.manual_seed(0)
    model = _tiny_bert().eval()
    fast = copy.deepcopy(model)
    assert enable_cls_only_last_layer(fast)
    input_ids = torch.randint(5, 99, (4, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0  # padding
    reference, shortcut = model(input_ids, attention_mask).logits, fast(input_ids, attention_mask).logits
    torch.testing.assert_close(shortcut, reference, rtol=1e-5, atol=1e-6)
    reference.sum().backward(), shortcut.sum().backward()
    for (name, a), (_, b) in zip(model.named_parameters(), fast.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert fast.state_dict().keys() == model.state_dict().keys()  # same weights and names: saves as before


def test_fast_dropout_keeps_one_minus_p_scaled_and_is_seeded():
    from hfgen.train.fast_dropout import FastDropout, fast_dropout, use_fast_dropout

    x = torch.ones(200_000, requires_grad=True)
    torch.manual_seed(0)
    y = fast_dropout(x, 0.1)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.003  # 0.9 within ~4 standard errors
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient flows through the kept elements only
    torch.manual_seed(0)
    assert torch.equal(fast_dropout(x.detach(), 0.1), y.detach())  # the global generator: seeded, checkpointed
    assert fast_dropout(x, 0.1, training=False) is x
    model = _tiny_bert()
    names = set(model.state_dict())
    assert use_fast_dropout(model) > 0 and model.config._attn_implementation == "hfgen_eager"
    assert all(type(m) is not torch.nn.Dropout for m in model.modules()) and any(isinstance(m, FastDropout) for m in model.modules())
    assert set(model.state_dict()) == names
    model.eval()
    reference = _tiny_bert().eval()
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(5, 99, (2, 7))
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    torch.testing.assert_close(model(ids, mask).logits, reference(ids, mask).logits)  # same math without dropout


@pytest.mark.parametrize(
    ("requested", "fast", "device_type", "attention", "fast_modules"),
    [
        ("auto", True, "cpu", "hfgen_eager", True),  # CPU default: eager math with the cheaper masks
        ("auto", True, "cuda", "sdpa", False),  # elsewhere: sdpa, torch's dropout
        ("sdpa", True, "cpu", "sdpa", True),  # an explicit kernel is kept; nn.Dropout modules still switch
        ("auto", False, "cpu", "eager", False),
    ],
)
def test_set_training_attention_shared_by_classifier_and_contrastive(requested, fast, device_type, attention, fast_modules):
    from hfgen.train.fast_dropout import FastDropout, set_training_attention

    model = _tiny_bert()
    set_training_attention(model, requested, fast, device_type)
    assert model.config._attn_implementation == attention
    assert any(isinstance(m, FastDropout) for m in model.modules()) == fast_modules
