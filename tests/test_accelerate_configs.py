"""The Accelerate configs shipped in recipes/accelerate/ parse as `accelerate launch --config_file` reads them, and
every engine key they set is one Accelerate's launcher knows."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig

import accelerate.commands.launch as launch

FOLDER = Path(__file__).resolve().parents[1] / "recipes" / "accelerate"
CONFIGS = sorted(FOLDER.glob("*.yaml"))
LAUNCH_OPTIONS = set(re.findall(r'"--([a-z0-9_]+)"', Path(launch.__file__).read_text()))


def test_every_engine_has_a_config():
    kinds = {yaml.safe_load(p.read_text())["distributed_type"] for p in CONFIGS}
    assert kinds == {"MULTI_GPU", "FSDP", "DEEPSPEED"}
    assert {p.stem for p in CONFIGS} >= {"multi_gpu", "multi_node", "fsdp2", "deepspeed_zero2", "deepspeed_zero3"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_names_only_known_engine_options(path):
    config = ClusterConfig.from_yaml_file(str(path))  # unknown top-level keys raise here
    assert config.num_processes >= config.num_machines >= 1
    assert path.read_text().startswith("# ") and "accelerate launch --config_file recipes/accelerate/" in path.read_text()
    for section in (config.fsdp_config or {}, config.deepspeed_config or {}):
        unknown = sorted(set(section) - LAUNCH_OPTIONS)
        assert not unknown, f"{path.name}: {unknown} are not options of accelerate launch"
    if config.fsdp_config:
        assert config.fsdp_config["fsdp_version"] == 2 and config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if config.deepspeed_config:
        stage = config.deepspeed_config["zero_stage"]
        assert path.stem == f"deepspeed_zero{stage}"
        assert stage != 3 or config.deepspeed_config["zero3_save_16bit_model"]  # a whole model folder on save


def test_slurm_script_is_valid_bash_and_uses_the_multi_node_config():
    script = FOLDER / "slurm_multi_node.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "--config_file recipes/accelerate/multi_node.yaml" in text and "--machine_rank \\$SLURM_PROCID" in text
