"""`augment` workload: do generated labelled images help a classifier when labels are scarce?

For 1% and 10% of the Fashion-MNIST training labels (600 / 6,000 images, one seeded slice saved as a dataset folder,
with the whole test split beside it), each of the three class-conditional generator families (DCGAN, VAE, DDPM) is
trained **on that labelled slice only** with its recipe (`recipes/pretrain/{dcgan,vae,ddpm}_fashion_mnist.yaml`,
fewer steps: `GENERATOR_STEPS`). Then the image classifier of the `low_label` workload (an hfgen image encoder from
random init, the fine-tuning recipe, a fixed number of steps per budget) is trained on the slice alone, and on the
slice plus `IMAGES_PER_CLASS` generated images per class from each generator (`classifier.synthetic`), for `SEEDS`
(classifier seeds: initialisation, validation hold-out and batch order; the slice and the generated images are the
same for every seed). Test accuracy on the 10,000 test images, mean ± std over the seeds.

Results are written to the JSON file after every run, and runs already in it are skipped, so an interrupted
experiment continues where it stopped (``--json`` names the file).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from hfgen.benchmarks import machine

ROOT = Path(__file__).resolve().parents[2]
FINETUNE = ROOT / "recipes" / "finetune" / "image_encoder_fashion_mnist.yaml"
GENERATORS = {
    "DCGAN": ROOT / "recipes" / "pretrain" / "dcgan_fashion_mnist.yaml",
    "VAE": ROOT / "recipes" / "pretrain" / "vae_fashion_mnist.yaml",
    "DDPM": ROOT / "recipes" / "pretrain" / "ddpm_fashion_mnist.yaml",
}
TRAIN_IMAGES = 60_000
FRACTIONS = {"1%": 0.01, "10%": 0.10}
GENERATOR_STEPS = {"DCGAN": {"1%": 2000, "10%": 3000}, "VAE": {"1%": 2000, "10%": 3000}, "DDPM": {"1%": 1000, "10%": 1500}}
GENERATOR_BATCH = 64
CLASSIFIER_STEPS = {"1%": 300, "10%": 800}  # as the low_label workload
CLASSIFIER_BATCH = 64
IMAGES_PER_CLASS = 100
SEEDS = (0, 1, 2)
QUICK = {"generator_steps": 30, "classifier_steps": 20, "images_per_class": 5, "seeds": (0,), "test": 500}


def labelled_slice(budget: str, work: Path, quick: bool) -> Path:
    """The seeded slice of `budget` of the training images (with labels) and the test split, as a dataset folder."""
    from hfgen.data import build_dataset

    folder = work / f"fashion_mnist_{budget.rstrip('%')}pct"
    if (folder / "dataset_dict.json").is_file():
        return folder
    import datasets

    full = build_dataset("fashion_mnist")
    count = int(TRAIN_IMAGES * FRACTIONS[budget])
    test = full["test"].select(range(QUICK["test"])) if quick else full["test"]
    datasets.DatasetDict({"train": full["train"].shuffle(seed=0).select(range(count)), "test": test}).save_to_disk(str(folder))
    return folder


def train_generator(family: str, budget: str, data: Path, work: Path, quick: bool) -> tuple[Path, float]:
    """A class-conditional `family` generator trained on the slice only; its folder and training seconds."""
    from hfgen.config import load_recipe
    from hfgen.train import run

    out = work / f"{family.lower()}-{budget.rstrip('%')}pct"
    index = out / ("model_index.json" if family == "DDPM" else "config.json")
    if index.is_file():
        return out, json.loads((out / "eval_results.json").read_text())["train_seconds"]
    steps = QUICK["generator_steps"] if quick else GENERATOR_STEPS[family][budget]
    section = {"DCGAN": "gan", "VAE": "vae", "DDPM": "diffusion"}[family]
    overrides = [
        f"data.dataset={data}", "data.label_column=label", "data.eval_split=test", f"train.max_steps={steps}",
        f"train.batch_size={GENERATOR_BATCH}", f"train.warmup_steps={min(200, steps // 10)}", f"train.save_every={steps}",
        "train.sample_every=null", "train.eval_every=null", "train.log_every=100", f"train.output_dir={out}",
        "train.overwrite=true", "train.report_to=jsonl", f"{section}.fid.extractor_model=null", f"{section}.fid.inception_at_end=false",
    ]
    if family == "VAE":
        overrides.append(f"vae.kl_warmup_steps={steps // 4}")
    print(f"[augment] training the {family} on {budget} of the labels ({steps} steps)", flush=True)
    run(load_recipe(GENERATORS[family], overrides))
    return out, json.loads((out / "eval_results.json").read_text())["train_seconds"]


def train_classifier(budget: str, data: Path, seed: int, generator: Path | None, work: Path, quick: bool) -> dict:
    from hfgen.config import load_recipe
    from hfgen.train import run

    steps = QUICK["classifier_steps"] if quick else CLASSIFIER_STEPS[budget]
    per_class = QUICK["images_per_class"] if quick else IMAGES_PER_CLASS
    overrides = [
        "model.pretrained=null", "model.type=hfgen-image-encoder", "model.hidden_sizes=[32,64,128]", "model.depths=[1,1,1]",
        "model.stem_stride=2", f"data.dataset={data}", f"train.max_steps={steps}", f"train.batch_size={CLASSIFIER_BATCH}",
        f"train.warmup_steps={steps // 10}", f"train.save_every={steps}", "train.log_every=1000", f"train.seed={seed}",
        "classifier.early_stopping_patience=null", f"train.output_dir={work / 'classifier'}", "train.overwrite=true",
        "train.report_to=jsonl", "classifier.confusion_matrix=false",
    ]
    if generator is not None:
        overrides += [f"classifier.synthetic.model={generator}", f"classifier.synthetic.images_per_class={per_class}"]
    started = time.perf_counter()
    out = run(load_recipe(FINETUNE, overrides))
    results = json.loads((out / "eval_results.json").read_text())
    return {"test_accuracy": results["eval_accuracy"], "best_validation_accuracy": results.get("best_validation_accuracy"),
            "train_examples": results["data"]["train"]["examples"], "steps": results["steps"],
            "seconds": round(time.perf_counter() - started, 1)}


def run(quick: bool = False, json_path: str | None = None, work: str | None = None) -> dict:
    """Every (budget, training set, seed) run; returns (and prints) the accuracy table."""
    work = Path(work or os.environ.get("HFGEN_AUGMENT_WORK") or Path(tempfile.gettempdir()) / f"hfgen-augment{'-quick' if quick else ''}")
    work.mkdir(parents=True, exist_ok=True)
    path = Path(json_path) if json_path else work / "augment.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    runs, generators = done.get("runs", {}), done.get("generators", {})
    seeds = QUICK["seeds"] if quick else SEEDS
    conditions = ["real only", *(f"+ {family}" for family in GENERATORS)]

    def save() -> dict:
        table = summary_table(runs, conditions, seeds)
        result = {
            "machine": machine(),
            "settings": {
                "finetune_recipe": str(FINETUNE.relative_to(ROOT)), "generators": {k: str(v.relative_to(ROOT)) for k, v in GENERATORS.items()},
                "generator_steps": GENERATOR_STEPS if not quick else QUICK["generator_steps"], "generator_batch": GENERATOR_BATCH,
                "generators_trained_on": "the labelled slice only (images and labels), nothing else",
                "classifier_steps": CLASSIFIER_STEPS if not quick else QUICK["classifier_steps"], "classifier_batch": CLASSIFIER_BATCH,
                "images_per_class": IMAGES_PER_CLASS if not quick else QUICK["images_per_class"], "seeds": list(seeds),
                "test_images": QUICK["test"] if quick else 10_000, "quick": quick,
            },
            "generators": generators, "runs": runs, "table": table,
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, path)
        return result

    for budget in FRACTIONS:
        data = labelled_slice(budget, work, quick)
        folders = {}
        for family in GENERATORS:
            folders[family], seconds = train_generator(family, budget, data, work, quick)
            generators[f"{family} {budget}"] = {"folder": str(folders[family]), "train_seconds": round(seconds, 1)}
            save()
        for condition in conditions:
            for seed in seeds:
                key = f"{budget} | {condition} | seed {seed}"
                if key in runs:
                    continue
                print(f"[augment] {key}", flush=True)
                generator = folders[condition[2:]] if condition != "real only" else None
                runs[key] = train_classifier(budget, data, seed, generator, work, quick)
                save()
    result = save()
    print("\n".join(result["table"]), flush=True)
    return result


def summary_table(runs: dict, conditions: list[str], seeds) -> list[str]:
    """Markdown rows: test accuracy mean ± std over seeds, per budget and training set."""
    table = ["| labels | " + " | ".join(conditions) + " |", "|---|" + "---|" * len(conditions)]
    for budget, fraction in FRACTIONS.items():
        cells = []
        for condition in conditions:
            values = [runs[k]["test_accuracy"] for k in (f"{budget} | {condition} | seed {s}" for s in seeds) if k in runs]
            if not values:
                cells.append("—")
            elif len(values) == 1:
                cells.append(f"{values[0]:.4f} (1 seed)")
            else:
                cells.append(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}")
        table.append(f"| {budget} ({int(TRAIN_IMAGES * fraction):,}) | " + " | ".join(cells) + " |")
    return table
