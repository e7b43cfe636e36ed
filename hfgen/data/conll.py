"""CoNLL-style files for token classification (NER): one token per line with its tag in the last
column, a blank line between sentences, ``-DOCSTART-`` lines ignored (the CoNLL-2003 layout).

    EU B-ORG
    rejects O
    German B-MISC

A file becomes split ``train``; a folder of them gives one split per file stem (``train.conll``,
``test.conll``; ``dev`` is read as ``validation``). Columns: ``tokens`` and ``tags`` (lists of strings),
which a recipe names with ``data.text_column: tokens`` and ``data.label_column: tags``.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from .errors import DatasetError

CONLL_SUFFIXES = {".conll", ".iob", ".bio", ".iob2"}
_SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation"}


def is_conll(path: Path) -> bool:
    """A CoNLL file, or a folder holding CoNLL files."""
    if path.is_file():
        return path.suffix.lower() in CONLL_SUFFIXES
    return path.is_dir() and any(p.suffix.lower() in CONLL_SUFFIXES for p in path.iterdir() if p.is_file())


def read_conll(path: Path) -> datasets.Dataset:
    """One CoNLL file as a Dataset of sentences (``tokens``, ``tags``)."""
    sentences: list[tuple[list[str], list[str]]] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise DatasetError(f"{path}:{number}: expected a token and its tag separated by whitespace, got {line!r}")
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise DatasetError(f"{path} holds no sentences (token-tag lines separated by blank lines)")
    return datasets.Dataset.from_dict({"tokens": [s[0] for s in sentences], "tags": [s[1] for s in sentences]})


def load_conll(path: Path) -> datasets.DatasetDict:
    """A CoNLL file (split ``train``) or a folder of them (a split per file stem)."""
    path = Path(path)
    if path.is_file():
        return datasets.DatasetDict({"train": read_conll(path)})
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CONLL_SUFFIXES)
    splits = {}
    for file in files:
        split = _SPLIT_ALIASES.get(file.stem.lower(), file.stem.lower())
        if split in splits:
            raise DatasetError(f"{path} has two files for split {split!r}; keep one per split")
        splits[split] = read_conll(file)
    return datasets.DatasetDict(splits)
