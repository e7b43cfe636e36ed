"""`contrastive` workload: hfgen's `method: contrastive` (`objective: pairs`) against sentence-transformers'
`SentenceTransformerTrainer` with `MultipleNegativesRankingLoss`.

Both continue training the same all-MiniLM-L6-v2 weights (`model.pretrained: minilm`, mean pooling) with InfoNCE
over in-batch negatives (hfgen's temperature 0.05 = sentence-transformers' scale 20) on the same (anchor, positive)
pairs for one pass, with the same batch size, learning rate, linear warm-up and decay, weight decay, clipping,
max_length, seed and torch threads, each at its best precision on the machine at hand (`hfgen.benchmarks.precision`:
hfgen at `train.mixed_precision: auto`, the peer at the faster of fp32 and bf16 in a trial of `TRIAL_STEPS` steps).
The pairs need no download: two adjacent
`WORDS_PER_TEXT`-word spans of one 20newsgroups post (a classic self-supervised pairing: the two halves of a
passage should embed close together), one pair per post, from the train split for training and from the test
split for the held-out check.

- ``hfgen``: the recipe ``recipes/pretrain/simcse_minilm.yaml`` switched to ``objective: pairs`` on a jsonl of the
  pairs, through `hfgen.train.run` (its own retrieval check off: the benchmark scores both models alike);
  ``hfgen_other_precision`` the same at the fixed precision `auto` did not pick.
- ``peer``: `SentenceTransformer(minilm)` + `MultipleNegativesRankingLoss(scale=20)` +
  `SentenceTransformerTrainer(args=SentenceTransformerTrainingArguments(bf16=..., use_cpu=True))`.

Each contender runs in its own fresh Python process (Accelerate and the Trainer keep process-wide state), one
after the other. Throughput is training pairs per second of the training loop as each measures it (hfgen: from
the first batch to the last optimizer step; the peer: ``train_samples_per_second`` of ``trainer.train()``); the
end-to-end wall time of each process (imports, load, train, save, evaluate), its CPU seconds (on a shared machine,
a wall time far above them means the contender waited for a core: its throughput is understated) and its peak
memory (``peak_memory``: `hfgen.benchmarks.memory.peak_memory_mb` at the end of that process) are reported too.
Quality is computed by the same code for both after training, on `SentenceTransformer` models encoding alike: held-out
pair recall@1 (each test anchor must retrieve its own positive among all test positives) and MRR.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "pretrain" / "simcse_minilm.yaml"
DATASET = "20newsgroups"
WORDS_PER_TEXT = 32  # ~38 MiniLM tokens on average: all but a few spans fit max_length 64 untruncated
CONTENDERS = ("hfgen", "hfgen_other_precision", "peer")
TRIAL_STEPS = 16  # the peer's precision trial, at each precision
PEER_NAME = "sentence-transformers SentenceTransformerTrainer + MultipleNegativesRankingLoss"


def settings_for(quick: bool, threads: int | None = None) -> dict:
    """What both contenders share."""
    from hfgen.config import load_recipe
    from hfgen.train.accelerator import cpu_threads_per_process

    recipe = load_recipe(RECIPE)
    steps = 40 if quick else 250
    temperature = recipe.contrastive.temperature
    return {
        "recipe": RECIPE.relative_to(RECIPE.parents[2]).as_posix(),  # recipes/...: no machine path in results
        "model": recipe.model.pretrained,
        "pooling": recipe.contrastive.pooling,
        "dataset": DATASET,
        "words_per_text": WORDS_PER_TEXT,
        "steps": steps,  # one pass over steps * batch_size pairs
        "batch_size": 32,  # 31 in-batch negatives per anchor
        "eval_pairs": 500 if quick else 2000,
        "eval_batch_size": 64,
        "max_length": 64,
        "temperature": temperature,
        "peer_scale": 1.0 / temperature,  # MultipleNegativesRankingLoss multiplies cosine similarities by it
        "learning_rate": 5.0e-5,  # sentence-transformers' default
        "warmup_steps": steps // 10,  # sentence-transformers' usual warmup_ratio 0.1
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,  # the Trainer's default
        "seed": recipe.train.seed,
        "cpu_threads": threads or cpu_threads_per_process(),  # torch threads of every contender
    }


def trial_settings(settings: dict) -> dict:
    """The settings of the peer's precision trial: the full run's, for `TRIAL_STEPS` steps and a small check."""
    return {**settings, "steps": TRIAL_STEPS, "warmup_steps": TRIAL_STEPS // 10, "eval_pairs": 2 * settings["eval_batch_size"]}


def adjacent_span_pairs(texts: list[str], count: int, words: int, seed: int) -> list[dict]:
    """Up to `count` pairs {"anchor", "positive"}: two adjacent `words`-word spans of one text, at a seeded offset,
    one pair per text (texts taken in a seeded order; those shorter than 2 * words skipped). Deterministic."""
    rng = random.Random(seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    pairs = []
    for index in order:
        tokens = (texts[index] or "").split()
        if len(tokens) < 2 * words:
            continue
        start = rng.randrange(len(tokens) - 2 * words + 1)
        pairs.append({"anchor": " ".join(tokens[start : start + words]),
                      "positive": " ".join(tokens[start + words : start + 2 * words])})
        if len(pairs) == count:
            break
    return pairs


def write_pairs(settings: dict, folder: Path) -> tuple[Path, Path]:
    """train.jsonl (steps * batch_size pairs) and test.jsonl (eval_pairs) in `folder`."""
    from hfgen.data import build_dataset

    dataset = build_dataset(settings["dataset"])
    paths = []
    for split, count in (("train", settings["steps"] * settings["batch_size"]), ("test", settings["eval_pairs"])):
        pairs = adjacent_span_pairs(dataset[split]["text"], count, settings["words_per_text"], settings["seed"])
        if len(pairs) < count:
            raise ValueError(f"{settings['dataset']} {split}: only {len(pairs)} texts of {2 * settings['words_per_text']}+ words, {count} needed")
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
        paths.append(path)
    return paths[0], paths[1]


def read_pairs(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def pair_retrieval(model, pairs: list[dict], settings: dict) -> dict:
    """Held-out pair retrieval of a `SentenceTransformer`: recall@1 and MRR of each anchor's own positive among all positives."""
    model.max_seq_length = settings["max_length"]
    model.eval()

    def encode(texts):
        return model.encode(texts, batch_size=settings["eval_batch_size"], convert_to_tensor=True, normalize_embeddings=True,
                            show_progress_bar=False).float()

    anchors = encode([pair["anchor"] for pair in pairs])  # (n, hidden)
    positives = encode([pair["positive"] for pair in pairs])  # (n, hidden)
    similarity = anchors @ positives.T  # (n anchors, n positives)
    own = similarity.diagonal().unsqueeze(1)
    rank = (similarity > own).sum(dim=1) + 1  # 1: the own positive is the nearest
    return {"pair_recall@1": (rank == 1).float().mean().item(), "pair_mrr": (1.0 / rank.float()).mean().item(),
            "eval_pairs": len(pairs)}


def run_hfgen(settings: dict, train_path: str, output_dir: str) -> tuple[dict, object]:
    from sentence_transformers import SentenceTransformer

    from hfgen.benchmarks.precision import precision_used
    from hfgen.config import load_recipe
    from hfgen.train import run

    overrides = [
        f"data.dataset={train_path}", "data.train_split=train", "data.text_column=anchor", "data.text_pair_column=positive",
        "data.max_train_samples=null", "contrastive.objective=pairs", f"contrastive.temperature={settings['temperature']}",
        f"contrastive.max_length={settings['max_length']}", f"contrastive.pooling={settings['pooling']}",
        "contrastive.retrieval_dataset=null", f"train.output_dir={output_dir}", "train.overwrite=true",
        "train.num_epochs=1", "train.max_steps=null", f"train.batch_size={settings['batch_size']}",
        f"train.learning_rate={settings['learning_rate']}", f"train.warmup_steps={settings['warmup_steps']}",
        "train.lr_scheduler=linear", f"train.weight_decay={settings['weight_decay']}",
        f"train.max_grad_norm={settings['max_grad_norm']}", f"train.mixed_precision={settings['precision']}",
        f"train.seed={settings['seed']}", f"train.cpu_threads={settings['cpu_threads']}", "train.save_every=null",
        "train.report_to=none", "train.resume=never", f"train.log_every={settings['steps']}",
    ]  # fmt: skip
    out = run(load_recipe(RECIPE, overrides))
    results = json.loads((Path(out) / "eval_results.json").read_text())
    if results["steps"] != settings["steps"]:
        raise RuntimeError(f"hfgen trained {results['steps']} steps, the benchmark asked for {settings['steps']}")
    result = {"pairs_per_s": results["train_examples_per_s"], "train_seconds": results["train_seconds"],
              "truncated_texts": results.get("train_truncated"), **precision_used(results)}
    return result, SentenceTransformer(str(out), device="cpu")


def run_peer(settings: dict, train_path: str, output_dir: str) -> tuple[dict, object]:
    """sentence-transformers' documented training recipe for (anchor, positive) pairs."""
    import torch
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import (
        MultipleNegativesRankingLoss,
    )

    from hfgen.pretrained import resolve_pretrained

    torch.set_num_threads(settings["cpu_threads"])
    model = SentenceTransformer(resolve_pretrained(settings["model"]), device="cpu")
    model.max_seq_length = settings["max_length"]
    train_data = Dataset.from_list(read_pairs(train_path))  # columns anchor, positive: the loss's inputs in order
    loss = MultipleNegativesRankingLoss(model, scale=settings["peer_scale"])
    args = SentenceTransformerTrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=1,
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup_steps"],
        lr_scheduler_type="linear",
        weight_decay=settings["weight_decay"],
        max_grad_norm=settings["max_grad_norm"],
        bf16=settings["precision"] == "bf16",
        use_cpu=True,
        seed=settings["seed"],
        dataloader_drop_last=True,  # as hfgen (the pair count is a multiple of the batch: no batch is dropped)
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=settings["steps"],
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_data, loss=loss)
    output = trainer.train()
    if output.global_step != settings["steps"]:
        raise RuntimeError(f"the peer trained {output.global_step} steps, the benchmark asked for {settings['steps']}")
    metrics = output.metrics
    return {"pairs_per_s": metrics["train_samples_per_second"], "train_seconds": metrics["train_runtime"]}, model


def _contender_main(name: str, settings_path: str, result_path: str) -> None:
    import torch

    from hfgen.benchmarks import write_contender_result

    settings = json.loads(Path(settings_path).read_text())
    folder = Path(settings_path).parent
    torch.set_num_threads(settings["cpu_threads"])
    with tempfile.TemporaryDirectory() as tmp:
        contender = run_peer if name == "peer" else run_hfgen  # hfgen, hfgen_other_precision
        result, model = contender(settings, str(folder / "train.jsonl"), str(Path(tmp) / "out"))
        torch.set_num_threads(settings["cpu_threads"])  # the same for both encodings, whatever training set
        result.update(pair_retrieval(model, read_pairs(folder / "test.jsonl"), settings))
    write_contender_result(result, result_path)


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Measure the peer's precision trial, then run every contender in its own process, one after the other
    (``threads`` torch threads each: default, every core); returns the comparison."""
    import sentence_transformers
    import torch
    import transformers

    from hfgen.benchmarks import comparison, peer_precision_in_processes, run_contenders
    from hfgen.benchmarks.precision import hfgen_arms

    settings = settings_for(quick, threads)
    with tempfile.TemporaryDirectory() as tmp:
        trial = trial_settings(settings)
        peer_precision = peer_precision_in_processes(__name__, "peer", trial, Path(tmp), "pairs_per_s", trial=f"{TRIAL_STEPS} steps",
                                                     prepare=lambda folder: write_pairs(trial, folder))
        write_pairs(settings, Path(tmp))
        results = run_contenders(__name__, CONTENDERS, settings, Path(tmp), {**hfgen_arms(), "peer": peer_precision})
    hfgen, peer = results["hfgen"], results["peer"]
    return comparison(
        "contrastive",
        {**settings, "torch": torch.__version__, "transformers": transformers.__version__,
         "sentence_transformers": sentence_transformers.__version__,
         "throughput": "training (anchor, positive) pairs per second of the training loop (one pass)",
         "quality": "held-out pair recall@1: each test anchor retrieves its own positive among all test positives"},
        hfgen=hfgen,
        peer={"name": PEER_NAME, **peer},
        hfgen_other_precision=results["hfgen_other_precision"],
        throughput_key="pairs_per_s",
        quality_key="pair_recall@1",
        threads=settings["cpu_threads"],
        quality_delta={"pair_recall@1_points": 100 * (hfgen["pair_recall@1"] - peer["pair_recall@1"]),
                       "pair_mrr": hfgen["pair_mrr"] - peer["pair_mrr"]},
    )


if __name__ == "__main__":
    _contender_main(*sys.argv[1:4])
