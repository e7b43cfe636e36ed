"""`hub.push_checkpoints`: every checkpoint goes to a branch as it is saved, and a run on a fresh machine
resumes from that branch exactly; the token is never in a pushed file, a local file or a log."""

import hashlib
import logging

from hfgen.config import load_recipe
from hfgen.train import run
from tests.train.helpers import assert_same_weights, read_metrics

from .families import FAMILIES, write_family_recipe

GAN = next(f for f in FAMILIES if f.name == "dcgan")
SECRET = "hf_hfgenSecretTokenThatMustNeverLeak42"


def test_hub_checkpoints_resume_on_a_fresh_machine_and_the_token_never_leaks(
    hub_server, hub_env, hub_repo_id, tiny_images, tmp_path, monkeypatch, caplog, capfd
):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    repo = hub_repo_id("dcgan-checkpoints")
    hub = ("hub.push=true", f"hub.repo_id={repo}", "hub.push_checkpoints=true")
    first = run(load_recipe(write_family_recipe(GAN, tmp_path, tiny_images, "train.max_steps=4", "train.save_every=2", *hub, name="first")))

    branch = hub_server.files(repo, "checkpoints")
    assert {path.split("/")[1] for path in branch if path.startswith("checkpoints/")} == {"checkpoint-00000002", "checkpoint-00000004"}
    assert "recipe.yaml" in branch and "checkpoints/checkpoint-00000004/train_state.json" in branch
    assert [c.title for c in hub_server.commits(repo, "checkpoints")][:2] == ["checkpoint-00000004", "checkpoint-00000002"]
    assert not [path for path in hub_server.files(repo) if path.startswith("checkpoints/")]  # main: the model only

    # a fresh machine: same recipe and repo, an empty output_dir, two more steps
    second = run(load_recipe(write_family_recipe(GAN, tmp_path, tiny_images, "train.max_steps=6", "train.save_every=2", *hub, name="second")))
    baseline = run(load_recipe(write_family_recipe(GAN, tmp_path, tiny_images, "train.max_steps=6", "train.save_every=2", name="baseline")))

    assert [m["step"] for m in read_metrics(second) if "d_loss" in m] == [5, 6]  # continued from step 4
    assert_same_weights(second, baseline)
    branch = hub_server.files(repo, "checkpoints")
    assert {path.split("/")[1] for path in branch if path.startswith("checkpoints/")} == {"checkpoint-00000004", "checkpoint-00000006"}

    # the token: it did authenticate the pushes, yet is in no file of any branch, no file the runs wrote,
    # no log line, no output
    assert hub_server.store.repos[("model", repo)].owner == hashlib.sha256(SECRET.encode()).hexdigest()
    pushed = {f"{branch}:{path}": data for branch in ("main", "checkpoints") for path, data in hub_server.files(repo, branch).items()}
    written = {str(path): path.read_bytes() for folder in (first, second) for path in folder.rglob("*") if path.is_file()}
    leaks = [name for name, data in {**pushed, **written}.items() if SECRET.encode() in data]
    assert not leaks, leaks
    out, err = capfd.readouterr()
    assert caplog.records and SECRET not in caplog.text and SECRET not in out + err
