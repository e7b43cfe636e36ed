"""Thin entry point: see hfgen.cli.generate_main."""

from hfgen.cli import generate_main

if __name__ == "__main__":
    generate_main()
