"""Command-line entry points. `scripts/*.py` and the `hfgen` console script call these; each
parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import sys


def pretrain_main(argv: list[str] | None = None) -> None:
    """`accelerate launch scripts/pretrain.py --recipe RECIPE [key.sub=value ...]`"""
    parser = argparse.ArgumentParser(description="Train a model from a recipe (pretraining methods).")
    parser.add_argument("--recipe", required=True, help="path to a recipe YAML, e.g. recipes/pretrain/dcgan_fashion_mnist.yaml")
    parser.add_argument("overrides", nargs="*", help="recipe overrides such as train.batch_size=64 model.latent_dim=64")
    args = parser.parse_args(argv)
    from .config import RecipeError, load_recipe
    from .train import run

    try:
        recipe = load_recipe(args.recipe, args.overrides)
    except RecipeError as err:
        parser.exit(2, f"error: {err}\n")
    run(recipe)



def finetune_main(argv: list[str] | None = None) -> None:
    """`accelerate launch scripts/finetune.py --recipe RECIPE [key.sub=value ...]` (method classifier)."""
    parser = argparse.ArgumentParser(description="Fine-tune a pretrained model from a recipe (method: classifier).")
    parser.add_argument("--recipe", required=True, help="path to a recipe YAML, e.g. recipes/finetune/minilm_rotten_tomatoes_critics.yaml")
    parser.add_argument("overrides", nargs="*", help="recipe overrides such as train.num_epochs=1 data.max_train_samples=2000")
    args = parser.parse_args(argv)
    from .config import RecipeError, load_recipe
    from .data import DatasetError
    from .train import run

    try:
        recipe = load_recipe(args.recipe, args.overrides)
        run(recipe)
    except (RecipeError, DatasetError) as err:  # a bad recipe or bad data: the message says what to fix
        parser.exit(2, f"error: {err}\n")


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
    """`python scripts/benchmark.py WORKLOAD [--quick] [--json PATH]`"""
    from .benchmarks import WORKLOADS, run_workload

    parser = argparse.ArgumentParser(description="Measure hfgen against the reference implementation of a workload.")
    parser.add_argument("workload", choices=sorted(WORKLOADS), help="what to measure")
    parser.add_argument("--quick", action="store_true", help="a small slice: minutes instead of the full run")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per contender (workloads that support it, e.g. finetune)")
    args = parser.parse_args(argv)
    run_workload(args.workload, quick=args.quick, json_path=args.json, threads=args.threads)


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
    """`python scripts/evaluate.py --model DIR_OR_REPO --dataset fashion_mnist [--extractor inception|domain]`"""
    parser = argparse.ArgumentParser(description="Evaluate a trained hfgen generator (FID, KID, precision/recall against real images).")
    parser.add_argument("--model", required=True, help="output folder of a training run, or a Hub repo id")
    parser.add_argument("--dataset", required=True, help="catalog name, local path or Hub id of the real images")
    parser.add_argument("--split", default="test", help="reference split (default: test)")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--num-samples", type=int, default=None, help="generated images (default: 10,000 on GPU, 2,000 on CPU)")
    parser.add_argument("--num-real", type=int, default=None, help="reference images (default: as many as --num-samples)")
    parser.add_argument("--extractor", choices=["inception", "domain"], default="inception")
    parser.add_argument("--extractor-model", default=None, help="for --extractor domain: an image classifier folder trained on the same dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON file for the results (default: print only)")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    import json

    import torch

    from .generation import load_generator
    from .metrics.features import build_extractor, evaluate_generator
    from .train.checkpoint import write_json_atomic

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    num_samples = args.num_samples or (10_000 if device.startswith("cuda") else 2_000)
    try:
        generator = load_generator(args.model, args.revision, args.trust_remote_code, device)
        extractor = build_extractor(args.extractor, device, args.extractor_model)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    results = evaluate_generator(
        generator, extractor, args.dataset, args.split, num_samples=num_samples,
        num_real=args.num_real or num_samples, seed=args.seed,
    )
    results["model"] = args.model
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
