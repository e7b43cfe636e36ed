"""Command-line entry points. `scripts/*.py` and the `hfgen` console script call these; each
parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys


# Which script trains which methods: a recipe of the other kind is refused, naming the right script.
SCRIPT_METHODS = {
    "scripts/pretrain.py": ("gan", "vae", "diffusion", "tokenizer", "mlm", "contrastive", "autoencoder"),
    "scripts/finetune.py": ("classifier",),
}


def _train_main(argv: list[str] | None, script: str, description: str, example: str) -> None:
    """Parse `--recipe RECIPE [key.sub=value ...]`, load the recipe, check it is this script's kind, and run it;
    every user error ends as one message and its exit code (hfgen.errors)."""
    parser = argparse.ArgumentParser(prog=script, description=description)
    parser.add_argument("--recipe", required=True, help=f"path to a recipe YAML, e.g. {example}")
    parser.add_argument("overrides", nargs="*", help="recipe overrides such as train.batch_size=64 train.max_steps=200")
    args = parser.parse_args(argv)
    from .config import RecipeError, load_recipe
    from .errors import run_reporting_user_errors
    from .train import run

    def main():
        recipe = load_recipe(args.recipe, args.overrides)
        if recipe.method not in SCRIPT_METHODS[script]:
            right = next(name for name, methods in SCRIPT_METHODS.items() if recipe.method in methods)
            raise RecipeError(f"{recipe.source}: method {recipe.method!r} is not trained by {script} "
                              f"(it trains {', '.join(SCRIPT_METHODS[script])}); run {right} --recipe {args.recipe}")
        return run(recipe)

    run_reporting_user_errors(main, script)


def pretrain_main(argv: list[str] | None = None) -> None:
    """`accelerate launch scripts/pretrain.py --recipe RECIPE [key.sub=value ...]`"""
    _train_main(argv, "scripts/pretrain.py", "Train a model from a recipe (pretraining methods).",
                "recipes/pretrain/dcgan_fashion_mnist.yaml")


def finetune_main(argv: list[str] | None = None) -> None:
    """`accelerate launch scripts/finetune.py --recipe RECIPE [key.sub=value ...]` (method classifier)."""
    _train_main(argv, "scripts/finetune.py", "Fine-tune a pretrained model from a recipe (method: classifier).",
                "recipes/finetune/minilm_rotten_tomatoes_critics.yaml")


def predict_main(argv: list[str] | None = None) -> None:
    """`python scripts/predict.py --model DIR_OR_REPO --input texts.csv --text-column text --out preds.csv`"""
    parser = argparse.ArgumentParser(description="Predict labels for a file of texts with a fine-tuned classifier.")
    parser.add_argument("--model", required=True, help="output folder of a classifier run, or a Hub repo id")
    parser.add_argument("--input", required=True, help="csv, tsv, json, jsonl or parquet file of texts")
    parser.add_argument("--text-column", default="text", help="column holding the text (a list of words for token models)")
    parser.add_argument("--text-pair-column", default=None, help="second text of sentence-pair models")
    parser.add_argument("--out", required=True, help="file to write (csv, tsv, jsonl or parquet): the input columns plus the predictions")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=None, help="tokens per text (default: the tokenizer's limit, at most 512)")
    parser.add_argument("--threshold", type=float, default=0.5, help="multi-label models: a label is predicted above this probability")
    parser.add_argument("--revision", default=None, help="branch, tag or commit on the Hub")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    args = parser.parse_args(argv)

    from .predict import predict_file

    try:
        path = predict_file(
            args.model, args.input, args.out, text_column=args.text_column, text_pair_column=args.text_pair_column,
            batch_size=args.batch_size, max_length=args.max_length, threshold=args.threshold,
            revision=args.revision, device=args.device,
        )
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(path)


def benchmark_main(argv: list[str] | None = None) -> None:
    """`python scripts/benchmark.py WORKLOAD|all [--quick] [--json PATH] [--threads N]`"""
    from .benchmarks import TARGETS, WORKLOADS, describe, failed, run_all, run_workload

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="a small slice: minutes instead of the full run")
    common.add_argument("--json", default=None, help="also write the results to this JSON file")
    common.add_argument("--threads", type=int, default=None, help="CPU threads per contender (default: every core this process may use)")
    parser = argparse.ArgumentParser(
        description="Measure hfgen against the reference implementation of a workload: same model, data, budget and "
        "precision, in one run. Prints JSON with hfgen's and the peer's throughput, quality and peak memory, and their ratio."
    )
    workloads = parser.add_subparsers(dest="workload", required=True, metavar="WORKLOAD")
    summary = ", ".join(f"{name} >= {target}x" for name, target in TARGETS.items())
    workloads.add_parser(
        "all", parents=[common], help=f"every comparative workload in turn, then a table against the targets ({summary})",
        description=f"Run every comparative workload in turn ({', '.join(TARGETS)}), then print a table of throughputs, ratios "
        f"against the targets ({summary}), quality and peak memory. A workload that fails is reported with its error and the "
        "others still run; the exit status is 1 if any failed. --json writes one object keyed by workload.",
    )
    subparsers = {name: workloads.add_parser(name, parents=[common], help=describe(name), description=describe(name)) for name in sorted(WORKLOADS)}
    if "distill" in subparsers:  # its own options
        from .benchmarks.distill import SETS, STUDENTS  # no torch at import: the parser stays quick to build

        distill = subparsers["distill"]
        distill.add_argument("--sets", nargs="+", choices=SETS, default=None, help="the text sets to measure (default: all)")
        distill.add_argument("--students", nargs="+", choices=tuple(STUDENTS), default=None,
                             help="the students to train, each distilled and on labels alone (default: all); the teacher is always timed")
    args = parser.parse_args(argv)
    if args.workload == "all":
        results = run_all(quick=args.quick, json_path=args.json, threads=args.threads)
        if failed(results):
            sys.exit(f"benchmark workloads failed: {', '.join(failed(results))}")
        return
    options = {key: tuple(value) for key in ("sets", "students") if (value := getattr(args, key, None)) is not None}
    run_workload(args.workload, quick=args.quick, json_path=args.json, threads=args.threads, **options)


def generate_main(argv: list[str] | None = None) -> None:
    """`python scripts/generate.py --model DIR_OR_REPO --num-images 64 --out grid.png`"""
    parser = argparse.ArgumentParser(description="Sample a PNG grid from an hfgen image generator (DCGAN, VAE).")
    parser.add_argument("--model", required=True, help="output folder of a training run, or a Hub repo id")
    parser.add_argument("--num-images", type=int, default=64)
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", nargs="+", default=None, help="class ids or names (class-conditional models); cycled to fill the grid")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: about square)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit on the Hub")
    parser.add_argument("--trust-remote-code", action="store_true", help="load with the model code stored in the repo (hfgen not needed)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    args = parser.parse_args(argv)

    from .generation import generate_grid

    try:
        path = generate_grid(
            args.model, args.num_images, args.out, seed=args.seed, labels=args.labels, nrow=args.nrow,
            revision=args.revision, trust_remote_code=args.trust_remote_code, device=args.device,
        )
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(path)


def evaluate_main(argv: list[str] | None = None) -> None:
    """`python scripts/evaluate.py --model DIR_OR_REPO --dataset NAME_OR_PATH [--split test] [--out results.json]`"""
    parser = argparse.ArgumentParser(
        description="Evaluate a trained hfgen model on a dataset split. Classifiers (text, sentence-pair, token, image): "
        "the classification metrics the trainer reports. Generators (DCGAN, VAE, diffusion pipelines): FID, KID, precision/recall against real "
        "images. Which one is read from the model's config."
    )
    parser.add_argument("--model", required=True, help="output folder of a training run, or a Hub repo id")
    parser.add_argument("--dataset", required=True, help="catalog name, local path (csv, jsonl, parquet, image folder, ...) or Hub id")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--image-column", default="image", help="column holding the images (image classifiers)")
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    parser.add_argument("--revision", default=None, help="branch, tag or commit on the Hub")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    classifiers = parser.add_argument_group("classifiers")
    classifiers.add_argument("--text-column", default="text", help="column holding the text (a list of words for token models)")
    classifiers.add_argument("--text-pair-column", default=None, help="second text of sentence-pair models")
    classifiers.add_argument("--label-column", default="label", help="labels: class names or ints as in the model's label2id, "
                             "ClassLabel ids, lists of them (multi-label, token tags), or numbers (regression)")
    classifiers.add_argument("--batch-size", type=int, default=64)
    classifiers.add_argument("--max-length", type=int, default=None, help="tokens per text (default: the tokenizer's limit, at most 512)")
    classifiers.add_argument("--threshold", type=float, default=0.5, help="multi-label models: a label is predicted above this probability")
    generators = parser.add_argument_group("generators")
    generators.add_argument("--num-samples", type=int, default=None, help="generated images (default: 10,000 on GPU, 2,000 on CPU)")
    generators.add_argument("--num-real", type=int, default=None, help="reference images (default: as many as --num-samples)")
    generators.add_argument("--extractor", choices=["inception", "domain"], default="inception")
    generators.add_argument("--extractor-model", default=None, help="for --extractor domain: an image classifier folder trained on the same dataset")
    generators.add_argument("--seed", type=int, default=0)
    generators.add_argument("--trust-remote-code", action="store_true")
    args = parser.parse_args(argv)

    import json

    from .data import DatasetError
    from .evaluation import evaluate_classifier, evaluate_generator_model, model_kind
    from .train.checkpoint import write_json_atomic

    try:
        if model_kind(args.model, args.revision, args.trust_remote_code) == "classifier":
            results = evaluate_classifier(
                args.model, args.dataset, split=args.split, text_column=args.text_column, text_pair_column=args.text_pair_column,
                label_column=args.label_column, image_column=args.image_column, batch_size=args.batch_size,
                max_length=args.max_length, threshold=args.threshold, revision=args.revision, device=args.device,
            )  # fmt: skip
        else:
            results = evaluate_generator_model(
                args.model, args.dataset, split=args.split, num_samples=args.num_samples, num_real=args.num_real,
                extractor=args.extractor, extractor_model=args.extractor_model, seed=args.seed, revision=args.revision,
                trust_remote_code=args.trust_remote_code, device=args.device,
            )  # fmt: skip
    except (ValueError, OSError, DatasetError) as err:  # a bad model, dataset, column or label: the message says which
        parser.exit(2, f"error: {err}\n")
    print(json.dumps(results, indent=2))
    if args.out:
        write_json_atomic(args.out, results)


def push_main(argv: list[str] | None = None) -> None:
    """`python scripts/push.py --model DIR --repo-id NS/NAME [--private] [--revision BRANCH] [--commit-message MSG]`"""
    parser = argparse.ArgumentParser(
        description="Push a finished training folder (model, card, results, recipe) to the Hugging Face Hub in one commit. "
        "The token comes from HF_TOKEN or `hf auth login` (never a flag: flags end up in shell history); "
        "HF_ENDPOINT selects another Hub."
    )
    parser.add_argument("--model", required=True, help="a finished run's output folder, or any save_pretrained folder")
    parser.add_argument("--repo-id", required=True, help="namespace/name; created when missing")
    parser.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its visibility)")
    parser.add_argument("--revision", default=None, help="branch to push to, created from main when missing (default: main)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to the branch")
    args = parser.parse_args(argv)

    from .hub import push_to_hub

    try:
        info = push_to_hub(args.model, args.repo_id, private=args.private, revision=args.revision,
                           commit_message=args.commit_message, create_pr=args.create_pr)
    except ValueError as err:
        parser.exit(2, f"error: {err}\n")
    print(info.pr_url or info.commit_url)


def main(argv: list[str] | None = None) -> None:
    """`hfgen pretrain|generate|evaluate|push|finetune|predict|benchmark ...`"""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"pretrain": pretrain_main, "generate": generate_main, "evaluate": evaluate_main, "push": push_main,
                "finetune": finetune_main, "predict": predict_main, "benchmark": benchmark_main}
    if not argv or argv[0] not in commands:
        sys.exit(f"usage: hfgen {{{','.join(commands)}}} ...")
    commands[argv[0]](argv[1:])
