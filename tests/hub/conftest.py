"""Fixtures for the Hub tests: the local Hub (hfgen.testing), and every family trained and pushed once
per session with the README's own commands."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from hfgen.testing.pytest_plugin import HUB_TEST_TOKEN, hub_env, hub_repo_id, hub_server  # noqa: F401  (fixtures)
from tests.train.conftest import tiny_images  # noqa: F401  (fixture: a save_to_disk image set)

from .families import (
    FAMILIES,
    README_FOLDER,
    README_RECIPE,
    README_REPO,
    HubFamily,
    readme_commands,
    substitute,
    write_family_recipe,
)


@dataclass
class PushedFamily:
    family: HubFamily
    folder: Path  # the finished run's output_dir
    run_repo: str  # pushed by the run (hub.push), to main
    script_repo: str  # pushed by scripts/push.py, to the branch the README names


@pytest.fixture(scope="session")
def pushed_families(hub_server, tmp_path_factory, tiny_images):  # noqa: F811
    """Each family trained with the README's pretrain command (hub.push, hub.push_checkpoints) and its
    folder pushed again with the README's push.py command; returns (root, client env, {name: PushedFamily})."""
    from hfgen.cli import finetune_main, pretrain_main, push_main

    root = tmp_path_factory.mktemp("hub-families")
    env = hub_server.client_env(root / "hf_home", token=HUB_TEST_TOKEN)
    commands = readme_commands()
    pushed = {}
    with pytest.MonkeyPatch.context() as patch:
        for key in ("HF_ENDPOINT", "HF_TOKEN", "NO_PROXY", "no_proxy"):
            patch.setenv(key, env[key])
        patch.setenv("HFGEN_CACHE", str(root / "hfgen-cache"))
        for family in FAMILIES:
            pretrained = pushed[family.pretrained_from].folder if family.pretrained_from else None
            recipe = write_family_recipe(family, root / family.name, tiny_images, pretrained=pretrained)
            run_repo, script_repo = f"hfgen-tests/{family.name}-run", f"hfgen-tests/{family.name}-script"
            train_main = finetune_main if family.method == "classifier" else pretrain_main  # the README's command, its script
            train_main(substitute(commands["pretrain"], {README_RECIPE: str(recipe), f"hub.repo_id={README_REPO}": f"hub.repo_id={run_repo}"}))
            folder = root / family.name / "recipe-out"
            push_main(substitute(commands["push"], {README_FOLDER: str(folder), README_REPO: script_repo}))
            pushed[family.name] = PushedFamily(family, folder, run_repo, script_repo)
    return root, env, pushed
