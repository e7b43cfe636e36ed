"""Each CPU speed choice of the training engine (`hfgen.train.hardware.speed_choices`) measured on and off, on the
machine at hand: a choice is kept only where this benchmark shows it helps there.

Workloads are the steps the choices exist for, timed in one process, interleaved (on, off, on, off, ...) so drift
in the machine's load hits both arms alike, at the precision `train.mixed_precision: auto` picks here:

- ``attention``: eager vs sdpa attention for a MiniLM fine-tuning step (32 texts x 64 tokens) and a BERT 4x256 MLM
  step (32 x 128 tokens);
- ``fast_dropout``: hfgen's 16-bit-slice dropout masks vs torch's, in the MiniLM step (eager attention);
- ``cls_only_last_layer``: the classifier's last layer on [CLS] alone vs every token;
- ``fused_adamw``: torch's fused AdamW vs its for-loop, on MiniLM's 22M parameters;
- ``texts_per_forward``: a `method: contrastive` step on the `contrastive` benchmark's batches of 32 (anchor, positive)
  pairs of 20newsgroups spans, encoded in length-sorted forwards of `texts_per_forward` (32) texts vs one forward of all 64.

`python scripts/benchmark.py speed_choices [--quick]`; the result names the CPU and prints each speed-up.
"""

from __future__ import annotations

import itertools
import time

import torch

from ..config import load_recipe
from ..train.hardware import cpu_facts, resolve_mixed_precision


def _time_steps(step, steps: int) -> float:
    """Seconds per call of `step` (after one warm-up call)."""
    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def _interleaved(arms: dict, steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per step of each arm, the arms taking turns `rounds` times."""
    seen: dict[str, list[float]] = {name: [] for name in arms}
    for _ in range(rounds):
        for name, step in arms.items():
            seen[name].append(_time_steps(step, steps))
    return {name: sorted(times)[len(times) // 2] for name, times in seen.items()}


def _minilm_classifier(attention: str, fast_dropout: bool, cls_only: bool):
    from transformers import AutoModelForSequenceClassification

    from ..pretrained import resolve_pretrained
    from ..train.cls_only import enable_cls_only_last_layer
    from ..train.fast_dropout import set_training_attention

    model = AutoModelForSequenceClassification.from_pretrained(resolve_pretrained("minilm"), num_labels=2, dtype="float32")
    set_training_attention(model, attention, fast_dropout, "cpu")
    if cls_only:
        enable_cls_only_last_layer(model)
    return model.train()


def _training_step(loss_of, optimizer: torch.optim.Optimizer, precision: str):
    """One training step of every arm: `loss_of()` under CPU autocast at `precision`, backward, optimizer step."""

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = loss_of()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _classifier_step(model, precision: str, batch: dict, fused: bool = True):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=fused)
    return _training_step(lambda: model(**batch).loss, optimizer, precision)


def _mlm_step(attention: str, precision: str, batch_size: int, length: int):
    from transformers import BertConfig, BertForMaskedLM

    from ..train.methods.mlm import masked_lm_loss

    config = BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    model = BertForMaskedLM(config).train()
    model.set_attn_implementation(attention)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, 30000, (batch_size, length), generator=generator)
    labels = torch.where(torch.rand(batch_size, length, generator=generator) < 0.15, input_ids, -100)
    return _training_step(lambda: masked_lm_loss(model, input_ids, labels).loss, optimizer, precision)


def _contrastive_step(texts_per_forward: int | None, precision: str, settings: dict, batches: list[dict]):
    """One `method: contrastive` (pairs) step of MiniLM with mean pooling, as the method builds it on CPU, at the
    `contrastive` benchmark's `settings` (temperature, learning rate), cycling through `batches`."""
    from ..losses.nt_xent import info_nce_loss
    from ..train.fast_dropout import set_training_attention
    from ..train.methods.contrastive import ContrastiveObjective, build_sentence_encoder
    from .contrastive import RECIPE

    model = build_sentence_encoder(load_recipe(RECIPE, ["contrastive.objective=pairs", f"contrastive.pooling={settings['pooling']}"]))
    set_training_attention(model, "auto", True, "cpu")
    objective = ContrastiveObjective(model, None, texts_per_forward).train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=settings["learning_rate"], fused=True)
    cycle = itertools.cycle(batches)

    def loss_of():
        batch = dict(next(cycle))
        anchors, positives = objective(batch.pop("groups"), **batch)
        return info_nce_loss(anchors, positives, None, settings["temperature"], gather_across_processes=False)

    step = _training_step(loss_of, optimizer, precision)
    step.objective = objective  # what it trains, for a check
    return step


def _span_pair_batches(settings: dict, count: int) -> list[dict]:
    """`count` batches of the `contrastive` benchmark's (anchor, positive) span pairs at its `settings`, collated as
    the method does."""
    from transformers import AutoTokenizer

    from ..data import build_dataset
    from ..data.text import TextStats
    from ..pretrained import resolve_pretrained
    from ..train.methods.contrastive import collate_texts
    from .contrastive import adjacent_span_pairs

    size = settings["batch_size"]
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(settings["model"]))
    texts = build_dataset(settings["dataset"])["train"]["text"]
    pairs = adjacent_span_pairs(texts, count * size, settings["words_per_text"], settings["seed"])
    collate = collate_texts(tokenizer, settings["max_length"], TextStats())
    return [collate(pairs[start : start + size]) for start in range(0, len(pairs), size)]


def run(quick: bool = False, threads: int | None = None) -> dict:
    from ..train.accelerator import keep_freed_cpu_memory
    from ..train.hardware import speed_choices
    from . import machine
    from .contrastive import settings_for as contrastive_settings

    if threads is not None:
        torch.set_num_threads(threads)
    keep_freed_cpu_memory()  # as the engine runs on CPU (train.reuse_cpu_memory): no page faults in any arm's steps
    precision, reason = resolve_mixed_precision("auto", "cpu")
    steps, rounds = (3, 3) if quick else (8, 5)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "input_ids": torch.randint(1000, 30000, (32, 64), generator=generator),
        "attention_mask": torch.ones(32, 64, dtype=torch.long),
        "labels": torch.randint(0, 2, (32,), generator=generator),
    }
    torch.manual_seed(0)
    classifier = {
        "eager_fast_dropout_cls_only": _classifier_step(_minilm_classifier("eager", True, True), precision, batch),
        "sdpa": _classifier_step(_minilm_classifier("sdpa", False, True), precision, batch),
        "eager_torch_dropout": _classifier_step(_minilm_classifier("eager", False, True), precision, batch),
        "eager_fast_dropout_all_tokens": _classifier_step(_minilm_classifier("eager", True, False), precision, batch),
        "for_loop_adamw": _classifier_step(_minilm_classifier("eager", True, True), precision, batch, fused=False),
    }
    seconds = _interleaved(classifier, steps, rounds)
    mlm = _interleaved({"eager": _mlm_step("eager", precision, 32, 128), "sdpa": _mlm_step("sdpa", precision, 32, 128)},
                       max(2, steps // 2), rounds)
    pair_settings = contrastive_settings(quick)
    pairs = _span_pair_batches(pair_settings, 8)
    chunk = speed_choices("cpu").texts_per_forward
    contrastive = _interleaved({"texts_per_forward": _contrastive_step(chunk, precision, pair_settings, pairs),
                                "one_forward": _contrastive_step(None, precision, pair_settings, pairs)}, max(2, steps // 2), rounds)
    base = seconds["eager_fast_dropout_cls_only"]
    speedups = {
        "classifier attention: eager over sdpa": seconds["sdpa"] / seconds["eager_torch_dropout"],
        "classifier fast_dropout over torch's dropout": seconds["eager_torch_dropout"] / base,
        "classifier cls_only_last_layer over all tokens": seconds["eager_fast_dropout_all_tokens"] / base,
        "fused AdamW over the for-loop": seconds["for_loop_adamw"] / base,
        "mlm attention: eager over sdpa": mlm["sdpa"] / mlm["eager"],
        f"contrastive: length-sorted forwards of {chunk} texts over one forward": contrastive["one_forward"] / contrastive["texts_per_forward"],
    }
    result = {
        "workload": "speed_choices",
        "precision": precision,
        "precision_reason": reason,
        "seconds_per_step": {"classifier": seconds, "mlm": mlm, "contrastive": contrastive},
        "speedups": speedups,  # > 1: the choice helps on this machine
        "machine": machine(threads),
    }
    print(f"Machine: {cpu_facts().describe()}; precision {precision}", flush=True)
    for name, value in speedups.items():
        print(f"{name}: {value:.2f}x", flush=True)
    return result
