"""Checkpoint state as safetensors + JSON, read back without ever unpickling.

Accelerate's `load_state` reads `custom_checkpoint_*.pkl` and `random_states_*.pkl` with torch's full,
code-running unpickler, so a crafted checkpoint (one fetched from a Hub branch, say) runs arbitrary code
on resume. Here a state object (an optimizer, scheduler or EMA `state_dict()`, the RNG
states) is written as two files instead:

    {name}.safetensors   every tensor and numpy array of the state, under generated keys
    {name}.json          the structure, with each tensor replaced by a reference to its key

Both formats are pure data: reading them can fail, but cannot execute anything. Every value in the JSON
that is not a plain list, str, int, float, bool or null is a one-key object naming what it is (`dict`,
`tuple`, `float`, `tensor`, `ndarray`), so int dict keys, tuples and nan/inf survive the trip.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointFileError(RuntimeError):
    """A checkpoint file is missing, truncated or not what hfgen wrote."""


def save_state(state, folder: str | os.PathLike, name: str) -> list[Path]:
    """Write `state` as `folder/{name}.safetensors` and `folder/{name}.json`; returns both paths.

    `state` may nest dicts (str or int keys), lists and tuples of None, bool, int, float (nan/inf too),
    str, torch tensors (any dtype or shape, any device: saved from CPU copies), numpy arrays and numpy
    scalars (saved as python numbers). Anything else raises TypeError naming where it is in `state`.
    Each file is written to `<file>.tmp` and renamed into place, so neither is ever half-written.
    """
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, tensors, "state")
    tensors_path, json_path = folder / f"{name}.safetensors", folder / f"{name}.json"

    tmp = tensors_path.with_name(tensors_path.name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, tensors_path)
    tmp = json_path.with_name(json_path.name + ".tmp")
    # allow_nan=False: a stray nan must have gone through the tagged encoding, not become invalid JSON.
    tmp.write_text(json.dumps(structure, allow_nan=False) + "\n")
    os.replace(tmp, json_path)
    return [tensors_path, json_path]


def load_state(folder: str | os.PathLike, name: str, device: str | torch.device | None = None):
    """Read back what `save_state(state, folder, name)` wrote; tensors go to `device` when given
    (numpy arrays stay numpy). Raises CheckpointFileError, naming the file, when either file is
    missing, damaged or does not describe a state hfgen wrote."""
    folder = Path(folder)
    tensors_path, json_path = folder / f"{name}.safetensors", folder / f"{name}.json"
    try:
        structure = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise CheckpointFileError(f"{json_path} is missing") from None
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as err:
        raise CheckpointFileError(f"{json_path} is damaged (not the JSON hfgen wrote): {err}") from err
    try:
        tensors = load_file(str(tensors_path))
    except FileNotFoundError:
        raise CheckpointFileError(f"{tensors_path} is missing") from None
    except (OSError, SafetensorError) as err:
        raise CheckpointFileError(
            f"{tensors_path} is damaged (truncated or not a safetensors file): {err}"
        ) from err
    if device is not None:
        tensors = {key: tensor.to(device) for key, tensor in tensors.items()}
    try:
        return _decode(structure, tensors, json_path, tensors_path, "state")
    except RecursionError:
        raise CheckpointFileError(f"{json_path} is damaged (nested too deeply to be a state hfgen wrote)") from None


def capture_rng_state() -> dict:
    """The state of every random generator a training step may draw from: python's `random`, numpy's
    global generator, torch's CPU generator and, when CUDA is available, every CUDA device's."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Set the generators back to what `capture_rng_state` returned (also after `load_state`, which may
    have moved the tensors to a GPU: the setters want CPU byte tensors)."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    algorithm, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((algorithm, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached_gaussian)))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        # Resuming on fewer GPUs than the run was saved on: the devices that exist get their states back.
        for index, device_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state.cpu(), index)


def _encode(value, tensors: dict[str, torch.Tensor], where: str):
    """`value` as JSON data; tensors and arrays go into `tensors` under generated keys."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):  # numpy scalars (np.float32(...), np.int64(...)) as python numbers
        return _encode(value.item(), tensors, where)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else {"float": repr(float(value))}  # 'nan', 'inf', '-inf'
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise TypeError(f"{where}: cannot save a {value.layout} tensor, only dense ones")
        key = f"t{len(tensors)}"
        # A contiguous CPU copy of its own: safetensors refuses views and tensors that share storage.
        tensors[key] = value.detach().cpu().clone(memory_format=torch.contiguous_format)
        return {"tensor": key}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        try:
            # A C-ordered copy in native byte order (torch only takes that; the dtype is restored on load).
            # Not np.ascontiguousarray: it turns 0-d arrays into 1-d ones.
            tensors[key] = torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("="), order="C"))
        except TypeError as err:
            raise TypeError(f"{where}: cannot save a numpy array of dtype {value.dtype}: {err}") from None
        return {"ndarray": key, "dtype": value.dtype.str}
    if isinstance(value, tuple):
        return {"tuple": [_encode(item, tensors, f"{where}[{i}]") for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, tensors, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        items = []
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise TypeError(f"{where}: dict key {key!r} is a {type(key).__name__}; only str and int keys can be saved")
            # [key, value] pairs, not a JSON object: JSON object keys are strings, and optimizer
            # state dicts key their per-parameter state by int.
            items.append([key if isinstance(key, str) else int(key), _encode(item, tensors, f"{where}[{key!r}]")])
        return {"dict": items}
    raise TypeError(f"{where}: cannot save a {type(value).__module__}.{type(value).__qualname__}")


def _decode(data, tensors: dict[str, torch.Tensor], json_path: Path, tensors_path: Path, where: str):
    """Rebuild what `_encode` turned into `data`; anything it cannot have written is a damaged file."""

    def damaged(what: str) -> CheckpointFileError:
        return CheckpointFileError(f"{json_path} is damaged (not the state hfgen wrote): {where}: {what}")

    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return [_decode(item, tensors, json_path, tensors_path, f"{where}[{i}]") for i, item in enumerate(data)]
    if not isinstance(data, dict) or not data:
        raise damaged(f"unexpected {type(data).__name__}")
    marker = next(iter(data))
    body = data[marker]
    if marker in ("tensor", "ndarray"):
        if not isinstance(body, str) or body not in tensors:
            raise CheckpointFileError(f"{tensors_path} lacks tensor {body!r} that {json_path} refers to at {where}")
        if marker == "tensor" and len(data) == 1:
            return tensors[body]
        if marker == "ndarray" and set(data) == {"ndarray", "dtype"}:
            try:
                return tensors[body].cpu().numpy().astype(np.dtype(data["dtype"]), copy=False)
            except (TypeError, ValueError) as err:
                raise damaged(f"cannot rebuild a numpy array of dtype {data['dtype']!r}: {err}") from err
    elif len(data) == 1 and marker == "float" and body in ("nan", "inf", "-inf"):
        return float(body)
    elif len(data) == 1 and marker == "tuple" and isinstance(body, list):
        return tuple(_decode(item, tensors, json_path, tensors_path, f"{where}[{i}]") for i, item in enumerate(body))
    elif len(data) == 1 and marker == "dict" and isinstance(body, list):
        result = {}
        for pair in body:
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int)) and not isinstance(pair[0], bool)):
                raise damaged(f"dict entry {pair!r} is not a [str or int key, value] pair")
            key, item = pair
            result[key] = _decode(item, tensors, json_path, tensors_path, f"{where}[{key!r}]")
        return result
    raise damaged(f"unknown marker {marker!r}")
