"""Run in a fresh interpreter by the Hub tests (not a pytest module): pull models by repo id from the
local Hub (HF_ENDPOINT set before huggingface_hub is imported), run each family's probe, execute card
code and CLI commands, and save what came out.

    python pull_script.py SPEC.json     SPEC: {"block_hfgen", "endpoint", "jobs", "snippets", "generate", "out"}
"""

import json
import sys

spec = json.load(open(sys.argv[1]))
if spec["block_hfgen"]:
    sys.modules["hfgen"] = None  # the repo must load without hfgen: block it even where it is installed
    try:
        import hfgen
    except ImportError:
        pass
    else:
        raise SystemExit("hfgen is importable")
else:
    import hfgen  # noqa: F401  (registers hfgen's model types with the Auto classes)

import torch
import transformers
from huggingface_hub import constants

assert constants.ENDPOINT == spec["endpoint"], (constants.ENDPOINT, spec["endpoint"])
torch.set_num_threads(1)  # as the test computes the local outputs: CPU kernels may sum in another order with more threads
results = {}
for job in spec["jobs"]:
    auto_class = getattr(transformers, job["auto_class"])
    model = auto_class.from_pretrained(job["model_id"], revision=job["revision"], trust_remote_code=job["trust_remote_code"], dtype=torch.float32)
    model.eval()
    scope = {"model": model, "model_id": job["model_id"], "revision": job["revision"], "torch": torch}
    with torch.no_grad():
        exec(job["probe"], scope)
    results[job["key"]] = {
        "module": type(model).__module__,
        "state": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "output": scope["output"],
    }
for setup, code in spec.get("snippets", []):
    scope = {"__name__": "card_snippet"}
    exec(setup, scope)  # the user's own inputs the card names (an image file, a list of images)
    exec(code, scope)  # a model card's usage code, verbatim
for argv in spec.get("generate", []):
    from hfgen.cli import generate_main

    generate_main(argv)
torch.save(results, spec["out"])
