"""Thin entry point: see hfgen.cli.pretrain_main."""

from hfgen.cli import pretrain_main

if __name__ == "__main__":
    pretrain_main()
