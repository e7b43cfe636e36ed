"""Every family: pushed by a training run and by scripts/push.py, pulled by repo id in fresh processes
(with hfgen, and without it through trust_remote_code) with identical weights and outputs."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import load_file

import hfgen
from hfgen.hub import LOCAL_MODEL_ID, push_to_hub

from .families import FAMILIES, README_REPO, readme_commands, substitute

PULL_SCRIPT = Path(__file__).with_name("pull_script.py")
FAMILY_IDS = [f.name for f in FAMILIES]


def local_result(pushed):
    """What the probe gives on the local folder, loaded in this process."""
    family = pushed.family
    model = getattr(transformers, family.auto_class).from_pretrained(pushed.folder, dtype=torch.float32).eval()
    scope = {"model": model, "model_id": str(pushed.folder), "revision": None, "torch": torch}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as pull_script.py: CPU kernels may sum in another order with more threads
    try:
        with torch.no_grad():
            exec(family.probe, scope)
    finally:
        torch.set_num_threads(threads)
    return scope["output"]


def run_pull(tmp_path, env, spec):
    spec = {"out": str(tmp_path / "pulled.pt"), "endpoint": env["HF_ENDPOINT"], **spec}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(tmp_path / "modules")
    # cwd is not the checkout: hfgen is importable only as installed, so block_hfgen really blocks it
    process = subprocess.run([sys.executable, str(PULL_SCRIPT), str(tmp_path / "spec.json")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-4000:]
    return torch.load(tmp_path / "pulled.pt"), process.stdout + process.stderr


@pytest.mark.parametrize("name", FAMILY_IDS)
def test_hub_push_uploads_the_finished_run_in_one_commit(pushed_families, hub_server, name):
    _, _, pushed = pushed_families
    p = pushed[name]
    history = hub_server.commits(p.run_repo)
    assert [c.title for c in history][1:] == ["initial commit"]  # the push is one commit
    files = hub_server.files(p.run_repo)
    assert {"config.json", "model.safetensors", "README.md", "eval_results.json", "recipe.yaml"} <= set(files)
    assert not [f for f in files if f.startswith(("checkpoints/", "logs/", "samples/step-"))]
    assert files["model.safetensors"] == (p.folder / "model.safetensors").read_bytes()
    config = json.loads(files["config.json"])
    if config["model_type"].startswith("hfgen-"):  # hfgen's own code ships with the weights
        assert set(config["auto_map"]) >= {"AutoConfig", p.family.auto_class}
        assert {f"{module}.py" for module, _ in (v.split(".") for v in config["auto_map"].values())} <= set(files)
    if p.family.method in ("gan", "vae"):
        assert "sample_grid.png" in files
    checkpoints = hub_server.files(p.run_repo, "checkpoints")  # the README's hub.push_checkpoints=true
    assert any(path.startswith("checkpoints/checkpoint-") for path in checkpoints) and "recipe.yaml" in checkpoints
    card = files["README.md"].decode()
    assert f'"{p.run_repo}"' in card and LOCAL_MODEL_ID not in card  # the usage code names the repo

    # scripts/push.py: the branch the README names, the message it gives; main keeps only .gitattributes
    argv = readme_commands()["push"]
    branch, message = argv[argv.index("--revision") + 1], argv[argv.index("--commit-message") + 1]
    assert [c.title for c in hub_server.commits(p.script_repo, branch)] == [message, "initial commit"]
    assert set(hub_server.files(p.script_repo)) == {".gitattributes"}
    assert hub_server.files(p.script_repo, branch)["model.safetensors"] == files["model.safetensors"]


@pytest.mark.parametrize("name", FAMILY_IDS)
def test_hub_repush_of_an_unchanged_folder_makes_no_commit(pushed_families, hub_server, hub_env, name):
    _, _, pushed = pushed_families
    p = pushed[name]
    head = hub_server.commits(p.run_repo)[0].oid

    info = push_to_hub(p.folder, p.run_repo)

    assert hub_server.commits(p.run_repo)[0].oid == head
    assert info.oid == head


def pull_jobs(pushed, trust_remote_code):
    branch = (argv := readme_commands()["push"])[argv.index("--revision") + 1]
    return [
        {"key": f"{name}:{repo}", "model_id": repo, "revision": revision, "auto_class": p.family.auto_class,
         "probe": p.family.probe, "trust_remote_code": trust_remote_code}
        for name, p in pushed.items()
        for repo, revision in ((p.run_repo, None), (p.script_repo, branch))
    ]


def assert_same_as_local(results, pushed):
    for name, p in pushed.items():
        weights = load_file(p.folder / "model.safetensors")
        expected = local_result(p)
        for repo in (p.run_repo, p.script_repo):
            got = results[f"{name}:{repo}"]
            for key, tensor in weights.items():  # tied weights are saved once; every saved tensor must match
                assert torch.equal(got["state"][key], tensor), (name, repo, key)
            assert torch.equal(got["output"], expected), (name, repo)


@pytest.mark.slow  # a fresh interpreter importing hfgen + transformers: 6-10 s
def test_hub_pull_by_repo_id_in_a_fresh_process_with_hfgen(pushed_families, hub_server, tmp_path):
    _, env, pushed = pushed_families
    generate = substitute(readme_commands()["generate"], {README_REPO: pushed["dcgan"].script_repo, "grid.png": str(tmp_path / "grid.png")})
    generate[generate.index("--num-images") + 1] = "4"
    snippets = []  # the usage code of every pushed card, verbatim (it names the repo)
    for p in pushed.values():
        card = hub_server.files(p.run_repo)["README.md"].decode()
        snippets += [(p.family.snippet_setup, code) for code in re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)]

    results, log = run_pull(tmp_path, env, {"block_hfgen": False, "jobs": pull_jobs(pushed, False), "snippets": snippets, "generate": [generate]})

    assert_same_as_local(results, pushed)
    assert all(r["module"].startswith(("hfgen.", "transformers.models.")) for r in results.values())
    assert (tmp_path / "grid.png").stat().st_size > 0
    assert env["HF_TOKEN"] not in log


@pytest.mark.slow  # a fresh interpreter importing transformers: 4-7 s
def test_hub_pull_by_repo_id_without_hfgen_through_trust_remote_code(pushed_families, tmp_path):
    _, env, pushed = pushed_families

    results, log = run_pull(tmp_path, env, {"block_hfgen": True, "jobs": pull_jobs(pushed, True)})

    assert_same_as_local(results, pushed)
    for key, result in results.items():
        own = json.loads((pushed[key.split(":")[0]].folder / "config.json").read_text())["model_type"].startswith("hfgen-")
        assert result["module"].startswith("transformers_modules." if own else "transformers.models."), (key, result["module"])
    assert env["HF_TOKEN"] not in log


def test_hub_push_is_in_the_public_api():
    assert hfgen.push_to_hub is push_to_hub
    assert os.path.isfile(Path(hfgen.__file__).parents[1] / "scripts" / "push.py")
