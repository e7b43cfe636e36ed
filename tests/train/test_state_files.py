"""Checkpoint state as safetensors + JSON: everything a resume needs comes back exactly, and a damaged
or crafted file is an error naming it, never code run by unpickling."""

import copy
import io
import math
import random
import re
import tokenize
from pathlib import Path

import numpy as np
import pytest
import torch

from hfgen.train import state_files
from hfgen.train.state_files import (
    CheckpointFileError,
    capture_rng_state,
    load_state,
    restore_rng_state,
    save_state,
)


def round_trip(state, tmp_path, name="state"):
    save_state(state, tmp_path, name)
    return load_state(tmp_path, name)


def assert_identical(got, want, where="state"):
    """Same types all the way down (int stays int, tuple stays tuple) and exactly equal values."""
    assert type(got) is type(want), f"{where}: {type(got)} != {type(want)}"
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert torch.equal(got, want), where
    elif isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and np.array_equal(got, want), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where
        for key in want:
            assert_identical(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            assert_identical(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == want, where


def test_nested_state_with_every_supported_type_round_trips_exactly(tmp_path):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    state = {
        "ints": {0: {"step": 3}, 7: [1, -2, 2**40]},
        "floats": [0.1, -0.0, 1e300, float("nan"), float("inf"), float("-inf")],
        "misc": (True, False, None, "", "tensor", ("nested", (1, 2.5))),
        "looks_like_a_marker": {"tensor": "t0", "dict": [], "float": "nan"},
        "tensors": [
            torch.randn(2, 3).to(torch.bfloat16),
            torch.tensor([True, False, True]),
            torch.tensor([0, 255], dtype=torch.uint8),
            torch.tensor(2**62, dtype=torch.int64),
            torch.tensor(1.5),
            torch.zeros(0, 4),
        ],
        # views and a tensor sharing storage with them: safetensors alone refuses these
        "views": [base, base[1:], base.t(), base[:, 1]],
        "arrays": [np.arange(5, dtype=np.uint32), np.array([[1.5, 2.5]], dtype=np.float16), np.array([True]), np.array(3, dtype=np.int8)],
    }
    assert_identical(round_trip(state, tmp_path), state)
    scalars = round_trip({"f": np.float32(0.5), "i": np.int64(-3), "b": np.bool_(True)}, tmp_path)
    assert scalars == {"f": 0.5, "i": -3, "b": True}


def test_unsupported_values_raise_type_error_naming_where(tmp_path):
    with pytest.raises(TypeError, match=r"state\['model'\]\[1\]: cannot save a builtins.object"):
        save_state({"model": [1, object()]}, tmp_path, "state")
    with pytest.raises(TypeError, match=r"dict key 1.5 is a float"):
        save_state({1.5: 0}, tmp_path, "state")


@pytest.mark.parametrize("fused", [False, True])
def test_adamw_state_resumes_bitwise_identically(tmp_path, fused):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    batches = [torch.randn(16, 4) for _ in range(6)]

    def step(model, opt, batch):
        opt.zero_grad()
        model(batch).pow(2).mean().backward()
        opt.step()

    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused or None)
    for batch in batches[:3]:
        step(model, opt, batch)
    save_state(opt.state_dict(), tmp_path, "optimizer")

    resumed = copy.deepcopy(model)
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1e-2, fused=fused or None)
    resumed_opt.load_state_dict(load_state(tmp_path, "optimizer"))
    for batch in batches[3:]:
        step(model, opt, batch)
        step(resumed, resumed_opt, batch)
    for want, got in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(want, got)


def test_lambda_lr_scheduler_state_round_trips(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (step + 1))
    for _ in range(3):
        opt.step()
        scheduler.step()
    assert_identical(round_trip(scheduler.state_dict(), tmp_path), scheduler.state_dict())


def test_diffusers_ema_state_round_trips(tmp_path):
    from diffusers.training_utils import EMAModel

    model = torch.nn.Linear(3, 2)
    ema = EMAModel(model.parameters(), decay=0.9)
    for _ in range(2):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        ema.step(model.parameters())
    loaded = round_trip(ema.state_dict(), tmp_path)
    assert_identical(loaded, ema.state_dict())

    fresh = EMAModel(torch.nn.Linear(3, 2).parameters(), decay=0.5)
    fresh.load_state_dict(loaded)
    assert fresh.optimization_step == ema.optimization_step == 2
    for want, got in zip(ema.shadow_params, fresh.shadow_params):
        assert torch.equal(want, got)


def test_rng_states_restore_the_same_draws(tmp_path):
    random.random(), np.random.rand(), torch.randn(2)  # leave the generators somewhere arbitrary
    save_state(capture_rng_state(), tmp_path, "random_states")
    want = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(1), np.random.seed(1), torch.manual_seed(1)

    restore_rng_state(load_state(tmp_path, "random_states"))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[:2] == want[:2] and torch.equal(got[2], want[2])


def test_truncated_tensors_file_is_a_checkpoint_file_error(tmp_path):
    tensors_path, _ = save_state({"w": torch.randn(64, 64)}, tmp_path, "optimizer")
    data = tensors_path.read_bytes()
    tensors_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFileError, match=re.escape(str(tensors_path)) + ".*damaged"):
        load_state(tmp_path, "optimizer")


def test_garbage_json_is_a_checkpoint_file_error(tmp_path):
    _, json_path = save_state({"w": torch.randn(2)}, tmp_path, "optimizer")
    json_path.write_text("{'w': <garbage")
    with pytest.raises(CheckpointFileError, match=re.escape(str(json_path)) + ".*damaged"):
        load_state(tmp_path, "optimizer")


def test_json_referring_to_a_missing_tensor_is_a_checkpoint_file_error(tmp_path):
    _, json_path = save_state({"w": torch.randn(2)}, tmp_path, "optimizer")
    json_path.write_text('{"dict": [["w", {"tensor": "t9"}]]}')
    with pytest.raises(CheckpointFileError, match="lacks tensor 't9'"):
        load_state(tmp_path, "optimizer")


def test_module_never_unpickles():
    # The code only: the docstring has to be able to say what it avoids.
    source = Path(state_files.__file__).read_text()
    code = " ".join(
        token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type not in (tokenize.COMMENT, tokenize.STRING)
    )
    assert "pickle" not in code  # also catches allow_pickle and cPickle
    assert not re.search(r"\btorch\s*\.\s*load\b", code)
