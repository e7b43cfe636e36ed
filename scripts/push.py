"""Thin entry point: see hfgen.cli.push_main."""

from hfgen.cli import push_main

if __name__ == "__main__":
    push_main()
