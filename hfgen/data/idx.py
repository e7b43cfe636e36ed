"""Reader for the IDX format of (Fashion-)MNIST (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS")."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

# Third byte of the magic number -> element type (all big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in ``.gz``) into an array of its shape.

    The header is checked against the payload: a wrong magic number, a truncated or
    oversized payload, or a broken gzip stream raises `DatasetError` naming the file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"Cannot read IDX file {path}: {err}. Re-download or reinstall it.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DatasetError(
            f"{path} is not an IDX file: bad magic number {raw[:4].hex() or '(empty file)'} "
            "(expected 0000 then a type byte 08-0e and the number of dimensions)."
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DatasetError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes).")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(
            f"IDX file {path} has {len(raw):,} bytes but its header (shape {shape}) needs {expected:,}: "
            "the file is truncated or corrupt. Re-download or reinstall it."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))
