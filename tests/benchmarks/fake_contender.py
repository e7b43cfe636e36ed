"""A stand-in contender for `run_contenders` (run as a child process, not a test module; no torch, so it starts fast):
``python -m tests.benchmarks.fake_contender NAME SETTINGS_PATH RESULT_PATH``."""

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    name, settings_path, result_path = sys.argv[1:4]
    if name == "crash":
        raise SystemExit("crashed on purpose")
    Path(result_path).write_text(json.dumps({"contender": name, **json.loads(Path(settings_path).read_text())}))
