"""A stand-in contender for `run_contenders` (run as a child process, not a test module; no torch, so it starts fast):
``python -m tests.benchmarks.fake_contender NAME SETTINGS_PATH RESULT_PATH``. It echoes its settings but the
``precision`` it was told; with ``speeds`` ({precision: throughput}) in them it reports ``items_per_s`` for that
precision, and with ``used`` it reports that as the ``precision`` it trained in (as an hfgen run does)."""

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    name, settings_path, result_path = sys.argv[1:4]
    if name == "crash":
        raise SystemExit("crashed on purpose")
    settings = json.loads(Path(settings_path).read_text())
    told = settings.pop("precision")
    result = {"contender": name, **settings}
    if "speeds" in settings:
        result["items_per_s"] = settings["speeds"][told]
    if "used" in settings:
        result["precision"] = settings["used"]
    Path(result_path).write_text(json.dumps(result))
