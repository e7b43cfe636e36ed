"""Thin entry point: see hfgen.cli.evaluate_main."""

from hfgen.cli import evaluate_main

if __name__ == "__main__":
    evaluate_main()
