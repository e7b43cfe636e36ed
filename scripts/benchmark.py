"""Thin entry point: see hfgen.cli.benchmark_main."""

from hfgen.cli import benchmark_main

if __name__ == "__main__":
    benchmark_main()
