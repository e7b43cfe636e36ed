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


def main(argv: list[str] | None = None) -> None:
    """`hfgen pretrain|generate|evaluate ...`"""
    argv = sys.argv[1:] if argv is None else argv
    commands = {"pretrain": pretrain_main, "generate": generate_main, "evaluate": evaluate_main}
    if not argv or argv[0] not in commands:
        sys.exit(f"usage: hfgen {{{','.join(commands)}}} ...")
    commands[argv[0]](argv[1:])
