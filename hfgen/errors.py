"""The one error path of hfgen's scripts: a user error (a bad recipe, bad data, an output folder that cannot be used,
a launch that came up wrong, a run that diverged) is printed as one message, without a traceback, and the script
exits with the code of its kind; `HFGEN_DEBUG=1` shows the traceback instead.

Exit codes (stable, for shell scripts and schedulers):

| code | kind | raised as |
|---|---|---|
| 2 | the recipe or a command-line argument | `hfgen.config.RecipeError` |
| 3 | the data | `hfgen.data.DatasetError` |
| 4 | the output folder or a checkpoint in it | `OutputDirError`, `CheckpointMismatch`, `CheckpointFileError` |
| 5 | the launch (process count) | `hfgen.train.accelerator.LaunchError` |
| 6 | the run diverged (NaN/inf) | `hfgen.train.divergence.TrainingDiverged` |
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def user_error_codes() -> dict[type, int]:
    """Each user-error class and its exit code (imported on use: the script's `--help` stays fast)."""
    from .config import RecipeError
    from .data.errors import DatasetError
    from .train.accelerator import LaunchError
    from .train.checkpoint import CheckpointMismatch, OutputDirError
    from .train.divergence import TrainingDiverged
    from .train.state_files import CheckpointFileError

    return {RecipeError: 2, DatasetError: 3, OutputDirError: 4, CheckpointMismatch: 4, CheckpointFileError: 4,
            LaunchError: 5, TrainingDiverged: 6}


def exit_code_of(err: BaseException) -> int | None:
    """The exit code of a user error, None for anything else (a bug: its traceback is shown)."""
    for kind, code in user_error_codes().items():
        if isinstance(err, kind):
            return code
    return None


def run_reporting_user_errors(main: Callable[[], T], prog: str) -> T:
    """Call `main()`; a user error becomes `prog: error: <message>` on stderr (once, from the first process of a
    multi-process launch) and `SystemExit(code)`."""
    try:
        return main()
    except Exception as err:  # noqa: BLE001 (re-raised unless it is a user error)
        code = exit_code_of(err)
        if code is None or os.environ.get("HFGEN_DEBUG", "") not in ("", "0"):
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"{prog}: error: {err}", file=sys.stderr, flush=True)
        raise SystemExit(code) from None
