"""The local Hub (hfgen.testing.hub_server) against the real huggingface_hub client: typed errors,
revisions, privacy, classic LFS, conflicts; and hfgen.push_to_hub's refusals."""

import json
import urllib.error
import urllib.request

import pytest
import torch
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hfgen.hub import push_to_hub
from hfgen.models import DCGANConfig, DCGANModel
from hfgen.testing import HubServer

TOKEN = "hf_hub_server_test"


@pytest.fixture
def api(hub_server):
    return HfApi(endpoint=hub_server.url, token=TOKEN)


@pytest.fixture
def repo(api, hub_repo_id):
    """A repo holding weights.bin and notes/a.txt on main, and notes/b.txt on the branch dev."""
    repo_id = hub_repo_id("server")
    api.create_repo(repo_id)
    api.create_commit(repo_id, [CommitOperationAdd("weights.bin", bytes(range(256)) * 4), CommitOperationAdd("notes/a.txt", b"a")], commit_message="files")
    api.create_branch(repo_id, branch="dev")
    api.create_commit(repo_id, [CommitOperationAdd("notes/b.txt", b"b")], commit_message="on dev", revision="dev")
    return repo_id


def saved_model(folder, width=8):
    torch.manual_seed(0)
    model = DCGANModel(DCGANConfig(latent_dim=8, generator_width=width, discriminator_width=width))
    model.save_pretrained(folder)
    return folder


def test_hub_missing_repo_file_and_revision_raise_typed_errors(hub_server, repo, tmp_path):
    download = dict(endpoint=hub_server.url, token=TOKEN, cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("hfgen-tests/does-not-exist", "weights.bin", **download)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "missing.bin", **download)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "weights.bin", revision="no-such-branch", **download)
    assert open(hf_hub_download(repo, "weights.bin", **download), "rb").read() == bytes(range(256)) * 4


def test_hub_branches_revisions_and_history(hub_server, api, repo, tmp_path):
    main_files = {f.path for f in api.list_repo_tree(repo, recursive=True)}
    dev_files = {f.path for f in api.list_repo_tree(repo, recursive=True, revision="dev")}
    assert dev_files - main_files == {"notes/b.txt"}
    assert {b.name for b in api.list_repo_refs(repo).branches} == {"main", "dev"}
    assert [c.title for c in api.list_repo_commits(repo, revision="dev")] == ["on dev", "files", "initial commit"]
    old = api.list_repo_commits(repo)[1].commit_id  # the initial commit, by id
    assert [f.path for f in api.list_repo_tree(repo, revision=old)] == [".gitattributes"]
    assert [f.path for f in api.list_repo_tree(repo, "notes", revision="dev")] == ["notes/a.txt", "notes/b.txt"]
    snapshot = snapshot_download(repo, revision="dev", endpoint=hub_server.url, token=TOKEN, local_dir=tmp_path / "dev")
    assert (tmp_path / "dev" / "notes" / "b.txt").read_text() == "b" and snapshot
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_branch(repo, branch="dev")
    assert conflict.value.response.status_code == 409
    api.delete_branch(repo, branch="dev")
    assert {b.name for b in api.list_repo_refs(repo).branches} == {"main"}


def test_hub_conflicts_are_4xx_with_what_the_client_needs(api, repo):
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo(repo)
    assert exists.value.response.status_code == 409 and "url" in exists.value.response.json()
    assert api.create_repo(repo, exist_ok=True).repo_id == repo
    stale = api.list_repo_commits(repo)[1].commit_id
    with pytest.raises(HfHubHTTPError) as moved:
        api.create_commit(repo, [CommitOperationAdd("x.txt", b"x")], commit_message="late", parent_commit=stale)
    assert moved.value.response.status_code == 412
    assert "x.txt" not in {f.path for f in api.list_repo_tree(repo)}


def test_hub_range_requests_and_download_headers(hub_server, repo):
    url = f"{hub_server.url}/{repo}/resolve/main/weights.bin"
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as head:
        assert head.headers["Content-Length"] == "1024" and len(head.headers["X-Repo-Commit"]) == 40
        assert head.headers["ETag"].startswith('"')
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=10-19"})) as part:
        assert part.status == 206 and part.read() == (bytes(range(256)) * 4)[10:20]
        assert part.headers["Content-Range"] == "bytes 10-19/1024"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{hub_server.url}/{repo}/resolve/main/nope.bin")
    assert missing.value.code == 404 and missing.value.headers["X-Error-Code"] == "EntryNotFound"


def test_hub_private_repo_is_not_found_for_other_tokens(tmp_path):
    with HubServer(tokens={"hf_alice": "alice", "hf_bob": "bob"}) as server:
        alice, bob = HfApi(endpoint=server.url, token="hf_alice"), HfApi(endpoint=server.url, token="hf_bob")
        alice.create_repo("alice/secret", private=True)
        alice.create_repo("alice/public")
        assert alice.model_info("alice/secret").private is True
        for who in (bob, HfApi(endpoint=server.url, token=False)):
            with pytest.raises(RepositoryNotFoundError):
                who.model_info("alice/secret")
            with pytest.raises(RepositoryNotFoundError):
                hf_hub_download("alice/secret", ".gitattributes", endpoint=server.url, token=who.token, cache_dir=tmp_path)
        with pytest.raises(HfHubHTTPError) as forbidden:
            bob.create_commit("alice/public", [CommitOperationAdd("x", b"x")], commit_message="not mine")
        assert forbidden.value.response.status_code == 403
        with pytest.raises(HfHubHTTPError) as unknown:
            HfApi(endpoint=server.url, token="hf_mallory").model_info("alice/public")
        assert unknown.value.response.status_code == 401
        assert bob.whoami()["name"] == "bob"


def test_hub_classic_lfs_above_the_regular_threshold(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # read at import; the LFS path needs it off
    folder = saved_model(tmp_path / "model", width=16)
    size = (folder / "model.safetensors").stat().st_size
    with HubServer(lfs_threshold=size // 2) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        first = push_to_hub(folder, "ns/lfs-model")
        again = push_to_hub(folder, "ns/lfs-model")

        api = HfApi(endpoint=server.url, token=TOKEN)
        entries = {f.path: f for f in api.list_repo_tree("ns/lfs-model")}
        assert entries["model.safetensors"].lfs is not None and entries["model.safetensors"].lfs.size == size
        assert entries["config.json"].lfs is None
        assert again.oid == first.oid and len(server.commits("ns/lfs-model")) == 2  # unchanged LFS file: no commit
        url = f"{server.url}/ns/lfs-model/resolve/main/model.safetensors"
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as head:
            assert head.headers["X-Linked-Etag"] == f'"{entries["model.safetensors"].lfs.sha256}"'
            assert head.headers["X-Linked-Size"] == str(size)
        path = hf_hub_download("ns/lfs-model", "model.safetensors", endpoint=server.url, token=TOKEN, cache_dir=tmp_path / "cache")
        assert open(path, "rb").read() == (folder / "model.safetensors").read_bytes()


def test_hub_storage_keeps_repos_across_restarts(tmp_path):
    with HubServer(storage=tmp_path / "store") as server:
        api = HfApi(endpoint=server.url, token=TOKEN)
        api.create_repo("ns/kept")
        api.create_commit("ns/kept", [CommitOperationAdd("a.txt", b"kept")], commit_message="keep")
    with HubServer(storage=tmp_path / "store") as server:
        path = hf_hub_download("ns/kept", "a.txt", endpoint=server.url, token=TOKEN, cache_dir=tmp_path / "cache")
        assert open(path).read() == "kept"
    assert TOKEN not in (tmp_path / "store" / "index.json").read_text()


def test_hub_push_refuses_a_folder_holding_the_token_or_no_model(hub_server, hub_env, tmp_path):
    folder = saved_model(tmp_path / "model")
    (folder / "notes.txt").write_text(f"my token is {hub_env['HF_TOKEN']}")
    with pytest.raises(ValueError, match="notes.txt contains your Hub token"):
        push_to_hub(folder, "hfgen-tests/leaky")
    with pytest.raises(RepositoryNotFoundError):  # refused before anything was created
        HfApi(endpoint=hub_server.url, token=TOKEN).model_info("hfgen-tests/leaky")
    with pytest.raises(ValueError, match="not a saved model folder"):
        push_to_hub(tmp_path, "hfgen-tests/empty")
    with pytest.raises(ValueError, match="namespace/name"):
        push_to_hub(saved_model(tmp_path / "other"), "no-namespace")


def test_hub_push_script_prints_the_commit_and_creates_private_repos(hub_server, hub_env, hub_repo_id, tmp_path, capsys):
    from hfgen.cli import push_main

    repo_id = hub_repo_id("private")
    push_main(["--model", str(saved_model(tmp_path / "model")), "--repo-id", repo_id, "--private"])

    assert capsys.readouterr().out.strip().endswith(hub_server.commits(repo_id)[0].oid)
    assert hub_server.store.repos[("model", repo_id)].private
    config = json.loads(hub_server.files(repo_id)["config.json"])
    assert config["model_type"] == "hfgen-dcgan"
    with pytest.raises(SystemExit):
        push_main(["--model", str(tmp_path), "--repo-id", repo_id])
