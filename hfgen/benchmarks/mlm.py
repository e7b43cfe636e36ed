"""`mlm` workload: hfgen's masked-LM training step against the plain transformers path.

The peer is the training loop of transformers' `examples/pytorch/language-modeling/run_mlm_no_trainer.py`:
documents tokenised with their own [CLS]/[SEP] and concatenated into `max_length` blocks (`group_texts`),
`DataCollatorForLanguageModeling` (dynamic 80/10/10 masking at 0.15) and `BertForMaskedLM(**batch)` with its
full prediction head, torch's default AdamW with BERT's no-decay groups. hfgen's side is built
from the functions `method: mlm` runs (`PackedSequences` + `build_dataloader`, `mask_tokens`,
`MaskedLMObjective` with sparse prediction, `set_attention` (eager attention on CPU), `build_optimizer` with fused
AdamW on CPU). Both train the same config (the 4 x 256 BERT of `recipes/pretrain/mlm_bert_small_corpus.yaml`,
MiniLM's 30,522-token vocabulary, 128-token sequences) from the same initial weights on the same documents,
with the same batch size, learning rate and torch threads (the cores this process may use, or
`$HFGEN_BENCHMARK_THREADS`: on a machine shared with other jobs, 1 thread avoids OpenMP waiting on a descheduled
partner thread, which slows every small op and so hides the difference), each at its best precision on the
machine at hand (`hfgen.benchmarks.precision`): hfgen at the precision `train.mixed_precision: auto` resolves to
here (and, as ``hfgen_other_precision``, at the fixed precision `auto` did not pick), the peer at the faster of
fp32 and bf16 autocast in a trial of `TRIAL_STEPS` steps before the timed run.

The loops run in one process, one step of each in turn, so all see the same machine load (a machine shared
with other jobs swings a sequential A-then-B timing by 2x). Throughput is tokens/s over the timed steps (all but
the first `UNTIMED_STEPS` of each: data, masking, forward, backward, optimizer), and, robust to load spikes, the
median over rounds of the peer's step time over hfgen's;
"loss per token seen" compares the mean masked-token loss over the last quarter of the steps, after the same
number of tokens. The full run adds one more arm, hfgen's loop with the full head (at hfgen's precision), to split
the gain between packing/loop and sparse prediction.

Peak memory (``peak_memory`` of each arm) is measured apart from the timing: the peak RSS of a fresh process
that builds only that arm the same way and trains it `PROBE_STEPS` steps (`memory_probe`); it includes the
Python/torch baseline, the same for both.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

# the model of recipes/pretrain/mlm_bert_small_corpus.yaml (no dropout, as Cramming), for both arms
MODEL = {"type": "bert", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024,
         "max_position_embeddings": 128, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
MAX_LENGTH, MASK_RATE, LEARNING_RATE, WEIGHT_DECAY, SEED = 128, 0.15, 5.0e-4, 0.01, 0
PROBE_STEPS = 4  # training steps of the memory probe: past the first optimizer step, which allocates Adam's state
UNTIMED_STEPS = 2  # the first steps of each arm pay for allocation and kernel selection
TRIAL_STEPS = UNTIMED_STEPS + 4  # the peer's precision trial, at each precision


def _documents(name: str, count: int) -> list[str]:
    from hfgen.data import build_dataset

    rows = build_dataset(name)["train"].shuffle(seed=SEED).select(range(count))
    return [text for text in rows["text"] if text and text.strip()]


class _PeerLoop:
    """run_mlm_no_trainer.py's data pipeline and loop (without its Accelerator wrapper, a no-op on one CPU process)."""

    def __init__(self, documents, tokenizer, model, batch_size, mixed_precision):
        from transformers import DataCollatorForLanguageModeling

        from hfgen.train.param_groups import parameter_groups

        # tokenize_function + group_texts, as the example does with --max_seq_length 128 (no --line_by_line)
        ids = [i for row in tokenizer(documents, verbose=False)["input_ids"] for i in row]
        total = len(ids) // MAX_LENGTH * MAX_LENGTH
        examples = [{"input_ids": ids[i : i + MAX_LENGTH]} for i in range(0, total, MAX_LENGTH)]
        collator = DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=MASK_RATE)
        self.loader = torch.utils.data.DataLoader(examples, batch_size=batch_size, shuffle=True, collate_fn=collator, drop_last=True,
                                                  generator=torch.Generator().manual_seed(SEED))
        self.batches = iter(self.loader)
        self.model = model.train()
        self.optimizer = torch.optim.AdamW(parameter_groups(model, LEARNING_RATE, WEIGHT_DECAY), lr=LEARNING_RATE)
        self.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16")

    def step(self) -> float:
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            batch = next(self.batches)
        with self.autocast():
            outputs = self.model(**batch)
        outputs.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        return outputs.loss.item()


class _HfgenLoop:
    """The step of `hfgen.train.methods.mlm.run`, from the same functions."""

    def __init__(self, documents, tokenizer, model, batch_size, mixed_precision, sparse_prediction=True):
        from hfgen.config import TrainSection
        from hfgen.data.collators import mask_tokens
        from hfgen.data.text import PackedSequences
        from hfgen.train.methods.mlm import MaskedLMObjective, set_attention
        from hfgen.train.optim import build_optimizer
        from hfgen.train.param_groups import parameter_groups
        from hfgen.train.batches import build_dataloader

        sequences = PackedSequences.from_texts(documents, tokenizer, MAX_LENGTH)
        self.loader = build_dataloader(sequences, batch_size, seed=SEED, shuffle=True, drop_last=True)
        self.batches, self.epoch = iter(self.loader), 0
        self.attention = set_attention(model, "auto", torch.device("cpu"))  # as `method: mlm` does (mlm.attention: auto)
        self.objective = MaskedLMObjective(model.train(), sparse=sparse_prediction)
        train = TrainSection(output_dir="unused", learning_rate=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        self.optimizer = build_optimizer(parameter_groups(model, LEARNING_RATE, WEIGHT_DECAY), train, fused=True)
        special = sorted(set(tokenizer.all_special_ids))
        self.mask = lambda ids: mask_tokens(ids, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer),
                                            special_token_ids=special, mask_rate=MASK_RATE)
        self.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed_precision == "bf16")

    def step(self) -> float:
        try:
            batch = next(self.batches)
        except StopIteration:
            self.epoch += 1
            self.loader.batch_sampler.sampler.set_epoch(self.epoch)
            self.batches = iter(self.loader)
            batch = next(self.batches)
        input_ids, labels = self.mask(batch["input_ids"])
        with self.autocast():
            loss, _, _ = self.objective(input_ids, labels)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def _model(tokenizer):
    from transformers import AutoConfig, AutoModelForMaskedLM

    torch.manual_seed(SEED)
    fields = {k: v for k, v in MODEL.items() if k != "type"}
    config = AutoConfig.for_model(MODEL["type"], **fields, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return AutoModelForMaskedLM.from_config(config)


def _setup(quick: bool, threads: int | None) -> dict:
    """What every arm shares, built once: settings, torch threads, tokenizer, documents and initial model."""
    from hfgen.pretrained import resolve_pretrained
    from hfgen.train.accelerator import cpu_threads_per_process
    from hfgen.train.methods.tokenizer import load_tokenizer

    steps, batch_size = (12, 32) if quick else (60, 32)
    torch.set_num_threads(threads or int(os.environ.get("HFGEN_BENCHMARK_THREADS", "0")) or cpu_threads_per_process())
    tokenizer = load_tokenizer(resolve_pretrained("minilm"))  # MiniLM's 30,522-token uncased WordPiece
    documents = _documents("text_corpus", 4000 if quick else 20000)
    return {"steps": steps, "batch_size": batch_size, "tokenizer": tokenizer, "documents": documents,
            "model": _model(tokenizer)}  # every arm starts from these weights


def _arm(contender: str, shared: dict, model, precision: str):
    """The loop of ``contender`` (hfgen, hfgen_other_precision, peer or hfgen_full_head) on ``model`` in ``precision``
    (``no`` or ``bf16``)."""
    args = (shared["documents"], shared["tokenizer"], model, shared["batch_size"], precision)
    if contender == "peer":
        return _PeerLoop(*args)
    return _HfgenLoop(*args, sparse_prediction=contender != "hfgen_full_head")


def _tokens_per_s(seconds: list[float], batch_size: int) -> float:
    """Throughput of an arm's step times, leaving out its first `UNTIMED_STEPS`."""
    timed = seconds[UNTIMED_STEPS:]
    return batch_size * MAX_LENGTH * len(timed) / sum(timed)


def _peer_precision(shared: dict) -> dict:
    """The peer's precision: `pick_peer_precision` over a `TRIAL_STEPS`-step trial of its loop at each precision."""
    import copy

    from hfgen.benchmarks.precision import pick_peer_precision

    def measure(precision: str) -> float:
        arm, seconds = _arm("peer", shared, copy.deepcopy(shared["model"]), precision), []
        for _ in range(TRIAL_STEPS):
            started = time.perf_counter()
            arm.step()
            seconds.append(time.perf_counter() - started)
        return _tokens_per_s(seconds, shared["batch_size"])

    return pick_peer_precision(measure, trial=f"{TRIAL_STEPS} steps, the first {UNTIMED_STEPS} untimed")


def memory_probe(contender: str, precision: str, quick: bool = False, threads: int | None = None) -> dict:
    """Peak memory of this process after building only ``contender``'s arm in ``precision`` and training it
    `PROBE_STEPS` steps (run it in a fresh process: `hfgen.benchmarks.memory.measure_peak_memory`)."""
    from hfgen.benchmarks.memory import peak_memory_mb

    shared = _setup(quick, threads)
    arm = _arm(contender, shared, shared.pop("model"), precision)
    for _ in range(PROBE_STEPS):
        arm.step()
    return peak_memory_mb()


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Measure the peer's precision trial, then train the arms in turn, one step each, for the same number of
    steps; compare tokens/s and the loss after the same number of tokens. ``threads``: torch threads (default
    `$HFGEN_BENCHMARK_THREADS`, else every core this process may use)."""
    import copy

    from hfgen.benchmarks import comparison
    from hfgen.benchmarks.memory import measure_peak_memory
    from hfgen.benchmarks.precision import hfgen_arms

    shared = _setup(quick, threads)
    steps, batch_size, tokenizer, documents = (shared[k] for k in ("steps", "batch_size", "tokenizer", "documents"))
    precisions = {**hfgen_arms("cpu"), "peer": _peer_precision(shared)}  # both loops run on the CPU
    precisions["hfgen_full_head"] = precisions["hfgen"]
    names = ["hfgen", "peer", "hfgen_other_precision"] + ([] if quick else ["hfgen_full_head"])
    arms = {name: _arm(name, shared, copy.deepcopy(shared["model"]), precisions[name]["precision"]) for name in names}
    seconds = {name: [] for name in arms}
    losses = {name: [] for name in arms}
    for _ in range(steps):
        for name, arm in arms.items():
            started = time.perf_counter()
            losses[name].append(arm.step())
            seconds[name].append(time.perf_counter() - started)
    last = max(1, steps // 4)

    def summary(name):
        return {"tokens_per_s": _tokens_per_s(seconds[name], batch_size), "median_step_s": statistics.median(seconds[name][UNTIMED_STEPS:]),
                "last_quarter_loss": sum(losses[name][-last:]) / last, "first_loss": losses[name][0], **precisions[name]}

    hfgen, peer = summary("hfgen"), summary("peer")
    for name, entry in (("hfgen", hfgen), ("peer", peer)):  # after the timing, one process at a time
        entry["peak_memory"] = measure_peak_memory(__name__, name, entry["precision"], quick, threads)
    # each round's steps ran back to back under the same load: the median of their ratios is robust to load spikes
    round_ratios = (p / h for p, h in zip(seconds["peer"][UNTIMED_STEPS:], seconds["hfgen"][UNTIMED_STEPS:]))
    extra = {"hfgen_full_head": summary("hfgen_full_head")} if "hfgen_full_head" in arms else {}
    return comparison(
        "mlm",
        {"steps": steps, "batch_size": batch_size, "max_length": MAX_LENGTH, "mask_rate": MASK_RATE, "learning_rate": LEARNING_RATE,
         "model": MODEL, "vocab_size": len(tokenizer), "documents": len(documents), "threads": torch.get_num_threads(),
         "timing": f"arms interleaved step by step; first {UNTIMED_STEPS} steps of each untimed",
         "peak_memory": f"peak of a fresh process building one arm and training it {PROBE_STEPS} steps"},
        hfgen=hfgen,
        peer={"name": "transformers run_mlm_no_trainer.py loop (group_texts, DataCollatorForLanguageModeling, full head)", **peer},
        hfgen_other_precision=summary("hfgen_other_precision"),
        throughput_key="tokens_per_s",
        quality_key="last_quarter_loss",
        quality_higher_is_better=False,
        threads=torch.get_num_threads(),
        ratio_median_of_rounds=statistics.median(round_ratios),
        **extra,
    )
