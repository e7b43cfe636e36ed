"""Small shared checks for the training tests."""

import json
from pathlib import Path

from safetensors.torch import load_file


def read_metrics(output_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "logs" / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(dir_a, dir_b):
    a, b = load_file(Path(dir_a) / "model.safetensors"), load_file(Path(dir_b) / "model.safetensors")
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, f"tensors differ: {different[:5]}"
