"""Checks of a user's local text files before `datasets` reads them, so a bad file is named with its cause
(empty, header only, undecodable bytes at an offset, malformed JSON at a line) instead of datasets' generic
`DatasetGenerationError`. Files are read in chunks: a large corpus costs one pass, not its size in memory."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from .errors import DatasetError

CHUNK = 1 << 20  # bytes per read
CHECKED_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".txt"}


def check_text_file(path: Path, encoding: str = "utf-8") -> None:
    """Raise `DatasetError` naming `path` when it is empty, holds only a header row (csv/tsv), has bytes that do not
    decode as `encoding` (with the byte offset and the `data.encoding` key), or holds malformed JSON (with the line).
    Compressed files are left to the loader."""
    suffix = path.suffix.lower()
    if suffix not in CHECKED_SUFFIXES:
        return
    try:
        decoder = codecs.getincrementaldecoder(encoding)()
    except LookupError:
        raise DatasetError(f"data.encoding: {encoding!r} is not a known text encoding (e.g. utf-8, latin-1, cp1252)") from None
    lines, offset, pending, has_content = [], 0, "", False
    json_state = _JSONLinesCheck(path) if suffix in (".json", ".jsonl") else None
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(CHUNK)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                at = offset + err.start
                raise DatasetError(
                    f"{path}: byte {at} ({chunk[err.start:err.start + 1]!r}) is not valid {encoding}; if the file is in "
                    "another encoding, set data.encoding (e.g. data.encoding=latin-1 or cp1252)"
                ) from None
            offset += len(chunk)
            pending += text
            *complete, pending = pending.split("\n")
            if not chunk:
                complete.append(pending)
            for line in complete:
                has_content = has_content or bool(line.strip())
                if len(lines) < 2 and line.strip():
                    lines.append(line)
                if json_state is not None:
                    json_state.add(line)
            if not chunk:
                break
    if not has_content:
        raise DatasetError(f"{path}: the file is empty; it needs at least one row of data")
    if suffix in (".csv", ".tsv") and len(lines) < 2:
        raise DatasetError(f"{path}: the file holds only a header row ({lines[0].strip()[:200]!r}) and no data rows")
    if json_state is not None:
        json_state.finish()


class _JSONLinesCheck:
    """JSON Lines (one object per line) or one JSON document: either must parse; the first bad line is named."""

    MAX_DOCUMENT = 64 << 20  # a single-document .json above this is left to the loader

    def __init__(self, path: Path):
        self.path, self.line_number, self.first_error, self.document, self.size = path, 0, None, [], 0
        self.first_content_line = None

    def add(self, line: str) -> None:
        self.line_number += 1
        if self.size <= self.MAX_DOCUMENT:
            self.document.append(line)
            self.size += len(line)
        if line.strip() and self.first_content_line is None:
            self.first_content_line = self.line_number
        if self.first_error is None and line.strip():
            try:
                json.loads(line)
            except ValueError as err:
                self.first_error = (self.line_number, err)

    def finish(self) -> None:
        if self.first_error is None:
            return  # JSON Lines, every line parsed
        if self.size <= self.MAX_DOCUMENT:
            try:
                json.loads("\n".join(self.document))
                return  # one JSON document (an array of rows, or columns)
            except ValueError:
                pass
        line, err = self.first_error
        if line == self.first_content_line and self.size <= self.MAX_DOCUMENT:  # not JSON Lines: one broken document
            try:
                json.loads("\n".join(self.document))
            except json.JSONDecodeError as whole:
                line, err = whole.lineno, whole
        message = getattr(err, "msg", str(err))
        raise DatasetError(f"{self.path}: line {line} is not valid JSON ({message}); a .json/.jsonl file holds one "
                           "JSON object per line, or one JSON document")
