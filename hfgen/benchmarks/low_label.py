"""`low_label` workload: does pretraining help when labels are scarce? (The reason to pretrain an encoder.)

The same image encoder is fine-tuned on 1% and 10% of the Fashion-MNIST training labels (600 / 6,000 images, a
seeded slice; a stratified 10% of it is held out for model selection, as a user with that many labels would),
starting from (a) random initialisation, (b) the autoencoder of `recipes/pretrain/autoencoder_fashion_mnist.yaml`,
(c) the SimCLR encoder of `recipes/pretrain/simclr_fashion_mnist.yaml`, every layer fine-tuned with the recipe
`recipes/finetune/image_encoder_fashion_mnist.yaml` and a fixed number of optimizer steps per label budget, and
scored on the whole test split (10,000 images). Two more columns train the head only on the frozen pretrained
encoders (`classifier.freeze_encoder`: a linear probe with that many labels, learning rate 1e-2, no dropout). The pretrained encoders saw the 60,000 training images without
labels. Prints the test accuracies side by side.

The pretrained folders are the recipes' `train.output_dir`s; a missing one is pretrained first with its recipe
(with ``--quick``: a short run of `QUICK_PRETRAIN_STEPS` steps, so the table shows the pipeline, not the method).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from hfgen.benchmarks import machine

ROOT = Path(__file__).resolve().parents[2]
FINETUNE = ROOT / "recipes" / "finetune" / "image_encoder_fashion_mnist.yaml"
PRETRAINED = {
    "autoencoder": ROOT / "recipes" / "pretrain" / "autoencoder_fashion_mnist.yaml",
    "simclr": ROOT / "recipes" / "pretrain" / "simclr_fashion_mnist.yaml",
}
TRAIN_IMAGES = 60_000
FRACTIONS = {"1%": 0.01, "10%": 0.10}
STEPS = {"1%": 300, "10%": 800}  # ~35 and ~10 epochs of the labelled slice at batch 64
QUICK_STEPS = {"1%": 40, "10%": 60}
QUICK_PRETRAIN_STEPS = 100
QUICK_TEST = 2000
BATCH_SIZE = 64  # smaller than the full recipe's 128: 540 training images are only 8 batches


def pretrained_folder(name: str, quick: bool) -> Path:
    """The output folder of pretraining recipe `name`, trained first when it holds no finished model."""
    from hfgen.config import load_recipe
    from hfgen.train import run

    recipe_path = PRETRAINED[name]
    overrides = []
    if quick:
        overrides = [f"train.max_steps={QUICK_PRETRAIN_STEPS}", "train.eval_every=null", "train.sample_every=null",
                     f"train.output_dir={Path(tempfile.gettempdir()) / f'hfgen-low-label-{name}'}",
                     f"{'contrastive' if name == 'simclr' else 'autoencoder'}.probe.final_train_samples=5000"]
    recipe = load_recipe(recipe_path, overrides)
    folder = Path(recipe.train.output_dir)
    if not (folder / "config.json").is_file():
        print(f"[low_label] pretraining {name} with {recipe_path.relative_to(ROOT)} into {folder}", flush=True)
        run(recipe)
    return folder


def finetune(init: str, folder: Path | None, budget: str, quick: bool, work: Path, frozen: bool = False) -> dict:
    """Fine-tune from `folder` (None: random init; `frozen`: the head only) on `budget` of the labels; the test results."""
    from hfgen.config import load_recipe
    from hfgen.train import run

    labelled = int(TRAIN_IMAGES * FRACTIONS[budget])
    steps = (QUICK_STEPS if quick else STEPS)[budget]
    model = [f"model.pretrained={folder}"] if folder else ["model.pretrained=null", "model.type=hfgen-image-encoder",
                                                          "model.hidden_sizes=[32,64,128]", "model.depths=[1,1,1]", "model.stem_stride=2"]
    overrides = [
        *model,
        f"data.max_train_samples={labelled}",
        f"train.max_steps={steps}",
        f"train.batch_size={BATCH_SIZE}",
        f"train.warmup_steps={steps // 10}",
        f"train.save_every={steps}",
        "train.log_every=1000",
        "classifier.early_stopping_patience=null",  # a fixed budget of steps for every init
        f"classifier.freeze_encoder={str(frozen).lower()}",
        # a head alone is a linear model: it takes a larger rate, and no dropout (10% labels: 0.79 -> 0.82)
        *(["train.learning_rate=1e-2", "model.classifier_dropout=0.0"] if frozen else []),
        f"train.output_dir={work / f'{init}-{budget}'}",
        "train.overwrite=true",
        "train.report_to=jsonl",
    ]
    if quick:
        overrides.append(f"data.max_eval_samples={QUICK_TEST}")
    started = time.perf_counter()
    out = run(load_recipe(FINETUNE, overrides))
    results = json.loads((out / "eval_results.json").read_text())
    return {
        "test_accuracy": results["eval_accuracy"],
        "best_validation_accuracy": results.get("best_validation_accuracy"),
        "labelled_images": labelled,
        "steps": results["steps"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def run(quick: bool = False) -> dict:
    """Fine-tune every init on every label budget; returns (and prints) the test accuracies side by side."""
    folders = {name: pretrained_folder(name, quick) for name in PRETRAINED}
    # column -> (pretrained folder or None, encoder frozen)
    inits = {"random init": (None, False), **{name: (folder, False) for name, folder in folders.items()}}
    inits.update({f"{name}, frozen": (folder, True) for name, folder in folders.items()})
    results: dict = {budget: {} for budget in FRACTIONS}
    with tempfile.TemporaryDirectory(prefix="hfgen-low-label-") as work:
        for budget in FRACTIONS:
            for init, (folder, frozen) in inits.items():
                print(f"[low_label] {budget} labels, {init}", flush=True)
                name = init.replace(" ", "_").replace(",", "")
                results[budget][init] = finetune(name, folder, budget, quick, Path(work), frozen=frozen)
    table = ["| labels | " + " | ".join(inits) + " |", "|---|" + "---|" * len(inits)]
    for budget, fraction in FRACTIONS.items():
        row = [f"{results[budget][init]['test_accuracy']:.4f}" for init in inits]
        table.append(f"| {budget} ({int(TRAIN_IMAGES * fraction):,}) | " + " | ".join(row) + " |")
    print("\n".join(table), flush=True)
    return {
        "machine": machine(),  # the recipes' default threads
        "settings": {
            "finetune_recipe": str(FINETUNE.relative_to(ROOT)),
            "pretrained": {name: str(folder) for name, folder in folders.items()},
            "steps": QUICK_STEPS if quick else STEPS,
            "batch_size": BATCH_SIZE,
            "test_images": QUICK_TEST if quick else 10_000,
            "quick": quick,
        },
        "results": results,
        "table": table,
    }
