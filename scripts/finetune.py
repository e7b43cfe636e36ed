"""Thin entry point: see hfgen.cli.finetune_main."""

from hfgen.cli import finetune_main

if __name__ == "__main__":
    finetune_main()
