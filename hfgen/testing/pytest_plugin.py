"""pytest fixtures for testing Hub features offline against `HubServer`, with the real client.

Use them from a conftest.py (`from hfgen.testing.pytest_plugin import hub_server, hub_env, hub_repo_id`)
or load the module as a plugin (`pytest_plugins = ["hfgen.testing.pytest_plugin"]` in a root conftest).

Where the client runs matters. huggingface_hub reads `HF_ENDPOINT` (and `HF_HOME`, `HF_HUB_DISABLE_XET`)
once, when it is imported, and transformers imports it early; so:
- hfgen's own pushes and pulls (`hfgen.push_to_hub`, `hub.push`, `hub.push_checkpoints` and the resume
  from a Hub branch) read `HF_ENDPOINT` at each call, and `hub_env` sets it for this process;
- `from_pretrained("ns/name")` and `scripts/*.py --model ns/name` go through huggingface_hub's
  import-time endpoint: run them in a subprocess started with the environment `hub_env` returns.
"""

from __future__ import annotations

import uuid

import pytest

from .hub_server import HubServer

HUB_TEST_TOKEN = "hf_hfgen_local_test_token"


@pytest.fixture(scope="session")
def hub_server():
    """A local Hub on 127.0.0.1 for the whole session (every token accepted, regular uploads)."""
    with HubServer() as server:
        yield server


@pytest.fixture
def hub_env(hub_server, tmp_path, monkeypatch):
    """Point this process's hfgen Hub calls at `hub_server` (HF_ENDPOINT, HF_TOKEN, NO_PROXY) and return
    the environment for client subprocesses (the same, plus an isolated HF_HOME)."""
    env = hub_server.client_env(tmp_path / "hf_home", token=HUB_TEST_TOKEN)
    for key in ("HF_ENDPOINT", "HF_TOKEN", "NO_PROXY", "no_proxy"):
        monkeypatch.setenv(key, env[key])
    return env


@pytest.fixture
def hub_repo_id():
    """A fresh `namespace/name` for each call, so tests sharing the session server never collide."""

    def make(name: str = "model") -> str:
        return f"hfgen-tests/{name}-{uuid.uuid4().hex[:8]}"

    return make
