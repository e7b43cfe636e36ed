"""Thin entry point: see hfgen.cli.predict_main."""

from hfgen.cli import predict_main

if __name__ == "__main__":
    predict_main()
