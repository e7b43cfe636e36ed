"""`distill` workload: how much of a fine-tuned MiniLM's accuracy a small student keeps, and at what cost.

For each text set (`rotten_tomatoes_critics`, `20newsgroups`): the teacher (the MiniLM of
`recipes/finetune/minilm_<set>.yaml`, trained first when its output folder holds no model), then two students, each
trained twice by its recipe, once distilled from the teacher and once on the labels alone (`classifier.teacher=null`,
every other setting equal): a BiLSTM (`recipes/finetune/bilstm_distil_<set>.yaml`, MiniLM's word embeddings) and a
2-layer MiniLM cut from the teacher (`recipes/finetune/minilm2_distil_<set>.yaml`). Reported per model: test
accuracy, parameters, size on disk, training seconds, and CPU inference examples/s (tokenisation included, fp32,
`torch.inference_mode`) at batch 1 and batch 64 over the first test texts, the best of `TIMING_PASSES` passes (one
pass of 200 texts varied by +-20% between runs). Models are timed one after another in this process, at the same
thread count. The students' folders stay in `outputs/distill_benchmark/` (a temporary folder with ``--quick``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from hfgen.benchmarks import machine

ROOT = Path(__file__).resolve().parents[2]
SETS = ("rotten_tomatoes_critics", "20newsgroups")
STUDENTS = {"bilstm": "bilstm_distil_{}.yaml", "minilm2": "minilm2_distil_{}.yaml"}
BATCH_ONE_TEXTS, BATCH_64_TEXTS = 200, 1280
TIMING_PASSES = 3
QUICK = {"data.max_train_samples": 400, "data.max_eval_samples": 200, "train.num_epochs": 1}


def _recipe_path(name: str) -> Path:
    return ROOT / "recipes" / "finetune" / name


def _overrides(quick: bool, output_dir: Path | None = None) -> list[str]:
    found = [f"{key}={value}" for key, value in QUICK.items()] if quick else []
    return found + ([f"train.output_dir={output_dir}"] if output_dir else [])


def teacher_folder(dataset: str, quick: bool, work: Path) -> Path:
    """The teacher's output folder (the recipe's `train.output_dir`), fine-tuned first when it holds no model."""
    from hfgen.config import load_recipe
    from hfgen.train import run

    overrides = _overrides(quick, work / f"teacher-{dataset}" if quick else None)
    recipe = load_recipe(_recipe_path(f"minilm_{dataset}.yaml"), overrides)
    folder = Path(recipe.train.output_dir)
    if not (folder / "model.safetensors").is_file():
        print(f"[distill] fine-tuning the teacher minilm_{dataset}.yaml into {folder}", flush=True)
        run(recipe)
    return folder


def train_student(dataset: str, student: str, teacher: Path, distilled: bool, quick: bool, work: Path) -> Path:
    from hfgen.config import load_recipe
    from hfgen.train import run

    name = f"{student}-{dataset}-{'distilled' if distilled else 'labels'}"
    overrides = _overrides(quick, work / name) + [f"classifier.teacher={teacher}" if distilled else "classifier.teacher=null",
                                                  "train.overwrite=true", "train.report_to=jsonl"]
    if student == "minilm2":
        overrides.append(f"model.pretrained={teacher}")  # the student is cut from this run's teacher
    print(f"[distill] {name}", flush=True)
    return run(load_recipe(_recipe_path(STUDENTS[student].format(dataset)), overrides))


def inference_speed(model, tokenizer, texts: list[str], batch_size: int, max_length: int) -> float:
    """Examples/s of tokenise + forward (inference mode) over `texts` in batches of `batch_size`: the best of
    `TIMING_PASSES` passes."""
    import torch

    with torch.inference_mode():
        model(**tokenizer(texts[:batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"))  # warm-up
        seconds = []
        for _ in range(TIMING_PASSES):
            started = time.perf_counter()
            for start in range(0, len(texts), batch_size):
                batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                model(**batch)
            seconds.append(time.perf_counter() - started)
        return len(texts) / min(seconds)


def describe_model(folder: Path, texts: list[str]) -> dict:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import hfgen.models  # noqa: F401  (registers the RNN classifier)

    results = json.loads((folder / "eval_results.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype="float32").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    max_length = int(results.get("max_length") or 128)
    return {
        "test_accuracy": results["eval_accuracy"],
        "test_f1_macro": results.get("eval_f1_macro"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "disk_mb": round(sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20, 1),
        "train_seconds": round(results["train_seconds"], 1),
        "epochs": round(results.get("epochs", 0), 2),
        "examples_per_s_batch_1": round(inference_speed(model, tokenizer, texts[:BATCH_ONE_TEXTS], 1, max_length), 1),
        "examples_per_s_batch_64": round(inference_speed(model, tokenizer, texts[:BATCH_64_TEXTS], 64, max_length), 1),
        "max_length": max_length,
    }


def test_texts(dataset: str) -> list[str]:
    from hfgen.data import build_dataset

    return [str(text) for text in build_dataset(dataset)["test"]["text"][:BATCH_64_TEXTS]]


def run(quick: bool = False, threads: int | None = None, sets: tuple[str, ...] = SETS,
        students: tuple[str, ...] = tuple(STUDENTS)) -> dict:
    """The teacher and `students` (keys of `STUDENTS`), each distilled and on labels alone, on each of `sets`;
    returns (and prints) the table. The teacher is timed in the same run as its students, so their speed ratios
    are of one machine and one day."""
    unknown = sorted(set(sets) - set(SETS)) + sorted(set(students) - set(STUDENTS))
    if unknown:
        raise ValueError(f"distill: unknown set or student {unknown}; sets: {list(SETS)}, students: {list(STUDENTS)}")
    import tempfile

    import torch

    from hfgen.train.accelerator import cpu_threads_per_process

    torch.set_num_threads(cpu_threads_per_process(threads))
    results: dict = {}
    table = ["| set | model | test accuracy | of teacher | parameters | disk MB | train s | ex/s batch 1 | ex/s batch 64 |",
             "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="hfgen-distill-") as temporary:
        work = Path(temporary) if quick else ROOT / "outputs" / "distill_benchmark"
        for dataset in sets:
            teacher = teacher_folder(dataset, quick, work)
            texts = test_texts(dataset)
            rows = {"teacher (MiniLM, 6 layers)": describe_model(teacher, texts)}
            for student in students:
                for distilled in (True, False):
                    folder = train_student(dataset, student, teacher, distilled, quick, work)
                    label = f"{'BiLSTM' if student == 'bilstm' else 'MiniLM, 2 layers'} {'distilled' if distilled else 'labels only'}"
                    rows[label] = describe_model(folder, texts)
            results[dataset] = rows
            base = rows["teacher (MiniLM, 6 layers)"]
            for label, row in rows.items():
                table.append(
                    f"| {dataset} | {label} | {row['test_accuracy']:.4f} | {row['test_accuracy'] / base['test_accuracy']:.1%} "
                    f"| {row['parameters'] / 1e6:.1f}M | {row['disk_mb']:.0f} | {row['train_seconds']:.0f} "
                    f"| {row['examples_per_s_batch_1']:.0f} ({row['examples_per_s_batch_1'] / base['examples_per_s_batch_1']:.1f}x) "
                    f"| {row['examples_per_s_batch_64']:.0f} ({row['examples_per_s_batch_64'] / base['examples_per_s_batch_64']:.1f}x) |"
                )
    print("\n".join(table), flush=True)
    return {"machine": machine(threads), "settings": {"quick": quick, "sets": list(sets), "students": list(students), "inference": "fp32, tokenisation included",
                                                      "batch_1_texts": BATCH_ONE_TEXTS, "batch_64_texts": BATCH_64_TEXTS},
            "results": results, "table": table}
