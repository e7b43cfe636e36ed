"""`finetune` workload: hfgen's `method: classifier` against transformers' `Trainer`.

All contenders fine-tune the same pretrained MiniLM (`model.pretrained: minilm`) on the same
rotten_tomatoes_critics training rows for one epoch, batch 32, with the same learning rate, warm-up,
weight decay, clipping and seed, and are scored on the same test rows. Each trains at its best precision
on the machine at hand (`hfgen.benchmarks.precision`): hfgen at `train.mixed_precision: auto`, every
Trainer at the faster of fp32 and bf16 in a trial of `TRIAL_EXAMPLES` examples of ``trainer_tuned`` (the
precision is the machine's matter, not the collator's, so one trial serves the three Trainer configurations):

- ``hfgen``: the recipe ``recipes/finetune/minilm_rotten_tomatoes_critics.yaml`` (no validation split,
  so it trains on exactly the peers' rows): tokenised once, length-grouped batches, dynamic padding,
  fused AdamW; ``hfgen_other_precision`` the same at the fixed precision `auto` did not pick.
- ``trainer_default``: transformers' ``examples/pytorch/text-classification/run_classification.py``
  as it runs by default: every example padded to ``max_seq_length`` 128 (``pad_to_max_length``),
  where the other contenders cut at the recipe's ``classifier.max_length`` (``auto``: the length hfgen picks),
  ``default_data_collator``, Trainer defaults otherwise.
- ``trainer_padding``: the Trainer with dynamic padding alone (``DataCollatorWithPadding``): the
  configuration the issue measured as (b). Reported because transformers' ``group_by_length`` orders each
  mega-batch of 50 batches longest first instead of shuffling the batches, which cost accuracy here.
- ``trainer_tuned``: what a savvy Trainer user configures: ``DataCollatorWithPadding`` (dynamic
  padding), length-grouped sampling (``group_by_length`` / ``train_sampling_strategy``).

Each contender runs in its own fresh Python process (Accelerate keeps process-wide state, and no
contender should inherit another's warm caches), one after the other. Throughput is training examples
per second of the training loop as each measures it (hfgen: from the first batch to the last
optimizer step, evaluation excluded; Trainer: ``train_samples_per_second`` of ``train()``); the
end-to-end wall time of each process (load, tokenise, train, predict the test split) is reported
too, and its peak memory (``peak_memory``: the peak RSS of that process, which runs only that contender;
it includes the Python/torch baseline, the same for all). ``peer`` is ``trainer_tuned`` and ``ratio`` is
hfgen over it; ``peer_default`` is ``trainer_default`` and ``ratio_vs_default`` hfgen over that.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "finetune" / "minilm_rotten_tomatoes_critics.yaml"
QUICK_TRAIN, QUICK_TEST = 2000, 500  # examples in --quick mode (a seeded slice of each split)
TRIAL_EXAMPLES, TRIAL_TEST = 960, 64  # the Trainer's precision trial: 30 steps at each precision
DEFAULT_MAX_SEQ_LENGTH = 128  # run_classification.py's --max_seq_length default
TRAINERS = ("trainer_tuned", "trainer_padding", "trainer_default")
CONTENDERS = ("hfgen", "hfgen_other_precision", *TRAINERS)


def settings_for(quick: bool, threads: int | None = None) -> dict:
    """What every contender shares, read from the recipe so the benchmark follows it."""
    from hfgen.config import load_recipe
    from hfgen.train.accelerator import cpu_threads_per_process

    recipe = load_recipe(RECIPE)
    train = recipe.train
    batch_size = 32
    train_examples = QUICK_TRAIN if quick else None
    # quick runs are ~60 steps: a warm-up of the recipe's length would never reach the peak rate
    warmup = max(1, QUICK_TRAIN // batch_size // 10) if quick else train.warmup_steps
    settings = {
        "recipe": RECIPE.relative_to(RECIPE.parents[2]).as_posix(),  # recipes/...: no machine path in results
        "model": recipe.model.pretrained,
        "dataset": recipe.data.dataset,
        "text_column": recipe.data.text_column,
        "label_column": recipe.data.label_column,
        "train_examples": train_examples,  # None: the whole train split
        "test_examples": QUICK_TEST if quick else None,
        "epochs": 1,
        "batch_size": batch_size,
        "eval_batch_size": 128,
        "learning_rate": train.learning_rate,
        "weight_decay": train.weight_decay,
        "warmup_steps": warmup,
        "max_grad_norm": train.max_grad_norm,
        "max_length": recipe.classifier.max_length,
        "default_max_seq_length": DEFAULT_MAX_SEQ_LENGTH,  # trainer_default pads every example to this
        "seed": train.seed,
        "cpu_threads": threads or cpu_threads_per_process(),  # torch threads of every contender
    }
    if settings["max_length"] == "auto":  # hfgen's own choice on the same rows: every contender cuts at one length
        settings["max_length"] = resolved_max_length(recipe, settings)
    return settings


def resolved_max_length(recipe, settings: dict) -> int:
    """The length `classifier.max_length: auto` picks for this run's training rows (the classifier's own
    `resolve_max_length`), so the Trainer's truncation matches hfgen's."""
    from transformers import AutoTokenizer

    from hfgen.pretrained import resolve_pretrained
    from hfgen.train.methods.classifier import resolve_max_length

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(settings["model"]))
    return resolve_max_length(recipe, tokenizer, benchmark_rows(settings)[0], {})


def trial_settings(settings: dict) -> dict:
    """The settings of the Trainer's precision trial: the full run's, on `TRIAL_EXAMPLES` training rows."""
    return {**settings, "train_examples": TRIAL_EXAMPLES, "test_examples": TRIAL_TEST}


def benchmark_rows(settings: dict):
    """The train and test rows every contender uses: hfgen's own selection (`data.max_train_samples`
    is a seeded shuffle then the first N)."""
    from hfgen.data import build_dataset

    dataset = build_dataset(settings["dataset"])
    rows = []
    for split, limit in (("train", settings["train_examples"]), ("test", settings["test_examples"])):
        part = dataset[split]
        if limit is not None and limit < len(part):
            part = part.shuffle(seed=settings["seed"]).select(range(limit))
        rows.append(part)
    return rows


def run_hfgen(settings: dict, output_dir: str, extra_overrides: tuple[str, ...] = ()) -> dict:
    from hfgen.benchmarks.precision import precision_used
    from hfgen.config import load_recipe
    from hfgen.train import run

    overrides = [
        f"train.output_dir={output_dir}", "train.overwrite=true", "train.num_epochs=1", "train.max_steps=null",
        f"train.batch_size={settings['batch_size']}", f"train.eval_batch_size={settings['eval_batch_size']}",
        f"train.mixed_precision={settings['precision']}", "train.save_every=null", "train.report_to=none",
        "train.eval_every=null", "classifier.validation_size=0", "classifier.early_stopping_patience=null",
        "classifier.eval_every_epoch=false", f"train.cpu_threads={settings['cpu_threads']}",
        f"train.warmup_steps={settings['warmup_steps']}",
    ]  # fmt: skip
    if settings["train_examples"] is not None:
        overrides += [f"data.max_train_samples={settings['train_examples']}", f"data.max_eval_samples={settings['test_examples']}"]
    out = run(load_recipe(RECIPE, [*overrides, *extra_overrides]))
    results = json.loads((Path(out) / "eval_results.json").read_text())
    return {
        "parameters": results["parameters"],
        "trainable_parameters": results["trainable_parameters"],
        "examples_per_s": results["train_examples_per_s"],
        "train_seconds": results["train_seconds"],
        "accuracy": results["eval_accuracy"],
        "f1_macro": results["eval_f1_macro"],
        **precision_used(results),
    }


def run_trainer(settings: dict, output_dir: str, dynamic_padding: bool, group_by_length: bool) -> dict:
    """transformers' Trainer as run_classification.py drives it, padding every example to max_length (its
    default) or each batch to its longest (``dynamic_padding``), optionally with length-grouped batches."""
    import dataclasses

    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
        set_seed,
    )

    from hfgen.pretrained import resolve_pretrained

    torch.set_num_threads(settings["cpu_threads"])
    train_rows, test_rows = benchmark_rows(settings)
    path = resolve_pretrained(settings["model"])
    tokenizer = AutoTokenizer.from_pretrained(path)
    text, label = settings["text_column"], settings["label_column"]

    def preprocess(batch):  # run_classification.py's preprocess_function
        if dynamic_padding:
            return tokenizer(batch[text], padding=False, max_length=settings["max_length"], truncation=True)
        return tokenizer(batch[text], padding="max_length", max_length=settings["default_max_seq_length"], truncation=True)

    train_data = train_rows.map(preprocess, batched=True, remove_columns=[text])
    test_data = test_rows.map(preprocess, batched=True, remove_columns=[text])
    names = train_rows.features[label].names
    set_seed(settings["seed"])  # before the model, as run_classification.py: the new head's init
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)}
    )
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    grouping = {}
    if group_by_length:  # the option's name changed in transformers 5
        grouping = {"group_by_length": True} if "group_by_length" in fields else {"train_sampling_strategy": "group_by_length"}
    args = TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=settings["batch_size"],
        per_device_eval_batch_size=settings["eval_batch_size"],
        num_train_epochs=settings["epochs"],
        learning_rate=settings["learning_rate"],
        weight_decay=settings["weight_decay"],
        warmup_steps=settings["warmup_steps"],
        lr_scheduler_type="linear",
        max_grad_norm=settings["max_grad_norm"] if settings["max_grad_norm"] is not None else 0.0,
        bf16=settings["precision"] == "bf16",
        use_cpu=True,
        seed=settings["seed"],
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=50,
        disable_tqdm=True,
        **grouping,
    )
    collator = DataCollatorWithPadding(tokenizer) if dynamic_padding else default_data_collator
    trainer = Trainer(model=model, args=args, train_dataset=train_data, data_collator=collator, processing_class=tokenizer)
    metrics = trainer.train().metrics
    predictions = trainer.predict(test_data)
    predicted = predictions.predictions.argmax(-1)
    labels = np.asarray(test_data[label][:])
    from hfgen.metrics.classification import single_label_metrics

    scores = single_label_metrics(labels, predicted, len(names))
    return {
        "examples_per_s": metrics["train_samples_per_second"],
        "train_seconds": metrics["train_runtime"],
        "accuracy": scores["accuracy"],
        "f1_macro": scores["f1_macro"],
    }


def _contender_main(name: str, settings_path: str, result_path: str) -> None:
    from hfgen.benchmarks import write_contender_result

    settings = json.loads(Path(settings_path).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        if name.startswith("hfgen"):  # hfgen, hfgen_other_precision
            result = run_hfgen(settings, str(Path(tmp) / "out"))
        else:
            result = run_trainer(settings, str(Path(tmp) / "out"), dynamic_padding=name != "trainer_default",
                                 group_by_length=name == "trainer_tuned")
    write_contender_result(result, result_path)


def run(quick: bool = False, threads: int | None = None) -> dict:
    """Measure the Trainer's precision trial, then run every contender in its own process, one after the other
    (``threads`` torch threads each: default, every core); returns the comparison."""
    import torch
    import transformers

    from hfgen.benchmarks import comparison, peer_precision_in_processes, run_contenders
    from hfgen.benchmarks.precision import hfgen_arms

    settings = settings_for(quick, threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = peer_precision_in_processes(__name__, "trainer_tuned", trial_settings(settings), Path(tmp), "examples_per_s",
                                              trial=f"{TRIAL_EXAMPLES} training examples of trainer_tuned")
        results = run_contenders(__name__, CONTENDERS, settings, Path(tmp), {**hfgen_arms(), **dict.fromkeys(TRAINERS, trainer)})
    hfgen, other, tuned, padding, default = (results[name] for name in CONTENDERS)
    return comparison(
        "finetune",
        {**settings, "torch": torch.__version__, "transformers": transformers.__version__,
         "throughput": "training examples per second of the training loop (1 epoch)"},
        hfgen=hfgen,
        peer={"name": "transformers Trainer, DataCollatorWithPadding + group_by_length (trainer_tuned)", **tuned},
        hfgen_other_precision=other,
        throughput_key="examples_per_s",
        quality_key="accuracy",
        threads=settings["cpu_threads"],
        peer_padding={"name": "transformers Trainer, DataCollatorWithPadding, no length grouping (trainer_padding)", **padding},
        peer_default={"name": "transformers Trainer, run_classification.py defaults, pad to 128 (trainer_default)", **default},
        ratio_vs_padding=hfgen["examples_per_s"] / padding["examples_per_s"],
        ratio_vs_default=hfgen["examples_per_s"] / default["examples_per_s"],
        # against the most accurate Trainer configuration
        accuracy_delta_points=100 * (hfgen["accuracy"] - max(tuned["accuracy"], padding["accuracy"], default["accuracy"])),
    )


if __name__ == "__main__":
    _contender_main(*sys.argv[1:4])
