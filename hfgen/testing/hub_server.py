"""A local, in-memory Hugging Face Hub that the real `huggingface_hub` client talks to.

No machine of this project reaches huggingface.co, and no package fakes the upload side of the
Hub, so hfgen ships this small server (stdlib `http.server`, like `moto` serves AWS for tests).
It speaks the subset of the Hub protocol that `create_repo`, `upload_folder`, `create_commit`,
`push_to_hub`, `hf_hub_download`, `snapshot_download` and `from_pretrained` use:

    POST   /api/repos/create                          409 (with `url`) when it exists
    DELETE /api/repos/delete
    GET    /api/whoami-v2
    POST   /api/validate-yaml                         always answers JSON
    GET    /api/{models,datasets,spaces}/{id}[/revision/{rev}]      sha, siblings (blobs=1: sizes, lfs)
    POST   /api/{type}s/{id}/preupload/{rev}          uploadMode, shouldIgnore, oid of unchanged files
    POST   /api/{type}s/{id}/commit/{rev}             ndjson: header, file, lfsFile, deletedFile/Folder;
                                                      parentCommit mismatch -> 412; ?create_pr=1
    GET    /api/{type}s/{id}/tree/{rev}[/{path}]      ?recursive=; no xetHash (downloads stay plain HTTP)
    POST   /api/{type}s/{id}/paths-info/{rev}
    GET    /api/{type}s/{id}/refs                     ?include_prs=1
    GET    /api/{type}s/{id}/commits/{rev}
    POST/DELETE /api/{type}s/{id}/branch/{branch},  POST /api/{type}s/{id}/tag/{rev}, DELETE .../tag/{tag}
    HEAD/GET /[datasets/|spaces/]{id}/resolve/{rev}/{path}
                                                      X-Repo-Commit, quoted ETag, X-Linked-Etag and
                                                      X-Linked-Size for LFS files, Range -> 206
    POST   /[datasets/|spaces/]{id}.git/info/lfs/objects/batch,  PUT the object to the href it answers

Behaviour the client relies on, as measured against huggingface_hub 2.4:
- errors carry `X-Error-Code` (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and
  `X-Error-Message`; a bare 404 would turn into a misleading connection error on the client side;
- client errors are 4xx, never 5xx (the client retries 5xx, which would duplicate commits);
- paths are routed on the raw, still-quoted URL, so `refs%2Fpr%2F1` is one revision;
- `uploadMode` is "regular" for every file unless `lfs_threshold` is set: a client with `hf_xet`
  installed sends "lfs" files through Xet, which this server does not speak, so use
  `lfs_threshold` together with `HF_HUB_DISABLE_XET=1` in the client to exercise classic LFS.

Tokens: any bearer token is accepted (or only those in `tokens`, a {token: user name} map). A
repository belongs to the token that created it: a private one is "not found" for every other
token, and only its owner may write to it. Tokens are compared in memory and never logged or
written to `storage` (only their SHA-256 is).

Run it by hand for manual checks:

    python -m hfgen.testing.hub_server --port 8765 [--storage DIR]

prints the environment to export (`HF_ENDPOINT=...`) before starting the client. The client
reads `HF_ENDPOINT` when `huggingface_hub` is first imported, so set it before that import.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import fnmatch
import hashlib
import hmac
import json
import os
import re
import sys
import threading
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
COMMIT_RE = re.compile(r"^[0-9a-f]{7,40}$")
PR_RE = re.compile(r"^refs/pr/(\d+)$")
DEFAULT_USER = "user"
INITIAL_GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n*.pt filter=lfs diff=lfs merge=lfs -text\n"


class HubError(Exception):
    """An error answer: HTTP status, `X-Error-Code` (what the client types its exception by), message."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file's content (what the Hub calls `oid` for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class FileEntry:
    """One file of a commit: its content lives in the store's blobs, keyed by sha256."""

    sha256: str
    size: int
    git_oid: str  # git id of the content (regular) or of the LFS pointer (LFS)
    lfs: bool


@dataclass
class Commit:
    oid: str
    parents: list[str]
    files: dict[str, FileEntry]
    title: str
    message: str
    date: str
    author: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    owner: str  # sha256 of the creating token
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[int, str] = field(default_factory=dict)  # number -> commit oid (refs/pr/N)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> str:
        """Commit oid of a branch, tag, refs/pr/N or (a prefix of) a commit id."""
        if revision in self.branches:
            return self.branches[revision]
        if revision.startswith("refs/heads/") and revision[11:] in self.branches:
            return self.branches[revision[11:]]
        if revision in self.tags:
            return self.tags[revision]
        if (m := PR_RE.match(revision)) and int(m.group(1)) in self.pull_requests:
            return self.pull_requests[int(m.group(1))]
        if COMMIT_RE.match(revision):
            found = [oid for oid in self.commits if oid.startswith(revision)]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def ref_of(self, revision: str) -> tuple[str, object]:
        """The branch (or pull request) a commit to `revision` moves: ('branch', name) or ('pr', number)."""
        revision = revision.removeprefix("refs/heads/")
        if revision in self.branches:
            return "branch", revision
        if (m := PR_RE.match(revision)) and int(m.group(1)) in self.pull_requests:
            return "pr", int(m.group(1))
        self.resolve(revision)  # a tag or a commit: it exists, but one cannot commit to it
        raise HubError(400, f"Invalid rev id: {revision} is not a branch; commits go to a branch", "RevisionNotFound")


def _fingerprint(token: str | None) -> str | None:
    return hashlib.sha256(token.encode()).hexdigest() if token else None


class HubStore:
    """Repositories, commits and file contents, guarded by one lock; optionally saved under `storage`."""

    def __init__(self, storage: str | os.PathLike | None = None):
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content (regular files and LFS objects alike)
        self.pending_lfs: set[str] = set()  # oids announced through the LFS batch API, not yet PUT
        self.storage = Path(storage) if storage else None
        self._counter = 0
        if self.storage is not None:
            self._load()

    # ---- persistence (a JSON index + content-addressed blob files) ----
    def _load(self) -> None:
        index = self.storage / "index.json"
        if not index.is_file():
            return
        data = json.loads(index.read_text())
        self._counter = data["counter"]
        for raw in data["repos"]:
            commits = {
                oid: Commit(**{**c, "files": {p: FileEntry(**f) for p, f in c["files"].items()}}) for oid, c in raw.pop("commits").items()
            }
            prs = {int(k): v for k, v in raw.pop("pull_requests").items()}
            repo = Repo(**raw, commits=commits, pull_requests=prs)
            self.repos[(repo.repo_type, repo.repo_id)] = repo
        for path in (self.storage / "blobs").glob("*"):
            self.blobs[path.name] = path.read_bytes()

    def save(self) -> None:
        if self.storage is None:
            return
        blobs = self.storage / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        for sha, data in self.blobs.items():
            if not (blobs / sha).exists():
                (blobs / f".{sha}.tmp").write_bytes(data)
                os.replace(blobs / f".{sha}.tmp", blobs / sha)
        data = {"counter": self._counter, "repos": [asdict(r) for r in self.repos.values()]}
        tmp = self.storage / "index.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.storage / "index.json")

    # ---- repositories ----
    def get_repo(self, repo_type: str, repo_id: str, token: str | None, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        fingerprint = _fingerprint(token)
        owner = repo is not None and fingerprint is not None and hmac.compare_digest(repo.owner, fingerprint)
        if repo is None or (repo.private and not owner):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if write and token is None:
            raise HubError(401, "You must be authenticated to write to a repository (set HF_TOKEN or run `hf auth login`)")
        if write and not owner:
            raise HubError(403, f"You don't have the rights to write to {repo_id}: it belongs to another token")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool, token: str) -> tuple[Repo, bool]:
        """Create the repo with an initial commit holding .gitattributes; returns (repo, created)."""
        key = (repo_type, repo_id)
        if key in self.repos:
            return self.repos[key], False
        repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, owner=_fingerprint(token), created_at=_now())
        self.repos[key] = repo
        self.add_blob(INITIAL_GITATTRIBUTES)
        entry = FileEntry(hashlib.sha256(INITIAL_GITATTRIBUTES).hexdigest(), len(INITIAL_GITATTRIBUTES), git_blob_oid(INITIAL_GITATTRIBUTES), False)
        commit = self.new_commit(repo, [], {".gitattributes": entry}, "initial commit", "", "hub")
        repo.branches["main"] = commit.oid
        return repo, True

    def add_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha, data)
        return sha

    def new_commit(self, repo: Repo, parents: list[str], files: dict[str, FileEntry], title: str, message: str, author: str) -> Commit:
        self._counter += 1
        seed = json.dumps([repo.repo_id, parents, sorted((p, f.git_oid) for p, f in files.items()), title, self._counter])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), parents, files, title, message, _now(), author)
        repo.commits[commit.oid] = commit
        return commit


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools connections
    server: _HTTPServer

    # ---- plumbing ----
    def log_message(self, format, *args):
        if self.server.hub.verbose:
            sys.stderr.write(f"hub: {self.command} {self.path.split('?')[0]} -> {args[1] if len(args) > 1 else ''}\n")

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _body(self) -> bytes:
        if getattr(self, "_cached_body", None) is not None:
            return self._cached_body
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._cached_body = body
        return body

    def _json_body(self):
        try:
            return json.loads(self._body() or b"{}")
        except json.JSONDecodeError as err:
            raise HubError(400, f"request body is not JSON: {err}") from None

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        token = auth[7:].strip() or None
        known = self.server.hub.tokens
        if token is not None and known is not None and token not in known:
            raise HubError(401, "Invalid credentials in Authorization header")
        return token

    def _user(self, token: str | None) -> str:
        known = self.server.hub.tokens
        return (known or {}).get(token, DEFAULT_USER) if token else "anonymous"

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, data, status: int = 200, headers: dict | None = None, content_type: str = "application/json"):
        self._send(status, json.dumps(data).encode(), headers, content_type)

    def _dispatch(self):
        self._cached_body = None
        try:
            with self.server.hub.store.lock:
                self._route()
        except HubError as err:
            headers = {"X-Error-Message": err.message.splitlines()[0], **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            if self.command in ("POST", "PUT"):
                try:
                    self._body()  # drain, so the kept-alive connection stays in sync
                except Exception:
                    self.close_connection = True
            self._send_json({"error": err.message}, err.status, headers)
        except Exception as err:  # a bug here must not look like a transient outage (5xx is retried)
            if self.server.hub.verbose:
                import traceback

                traceback.print_exc()
            self._send_json({"error": f"local hub: {type(err).__name__}: {err}"}, 400, {"X-Error-Message": f"local hub: {type(err).__name__}"})

    @property
    def base_url(self) -> str:
        return self.server.hub.url

    # ---- routing ----
    def _route(self):
        raw_path, _, query = self.path.partition("?")
        self.query = parse_qs(query)
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        method = self.command
        if segments[:1] == ["api"]:
            rest = segments[1:]
            if rest == ["repos", "create"] and method == "POST":
                return self.create_repo()
            if rest == ["repos", "delete"] and method == "DELETE":
                return self.delete_repo()
            if rest == ["whoami-v2"] and method == "GET":
                return self.whoami()
            if rest == ["validate-yaml"] and method == "POST":
                return self.validate_yaml()
            if len(rest) == 3 and rest[:2] == ["hfgen-lfs", "objects"] and method == "PUT":
                return self.lfs_put(rest[2])
            if len(rest) >= 2 and rest[0] in REPO_TYPES:
                if len(rest) == 2:  # a namespace-less id: every repo here lives under a namespace
                    raise HubError(404, "Repository not found", "RepoNotFound")
                return self.repo_api(REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:])
        else:
            repo_type = "model"
            if segments and segments[0] in ("datasets", "spaces") and len(segments) >= 3:
                repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
            if len(segments) >= 2 and segments[1].endswith(".git") and segments[2:] == ["info", "lfs", "objects", "batch"] and method == "POST":
                return self.lfs_batch(repo_type, f"{segments[0]}/{segments[1][:-4]}")
            if len(segments) >= 5 and segments[2] == "resolve" and method in ("GET", "HEAD"):
                return self.resolve(repo_type, f"{segments[0]}/{segments[1]}", segments[3], "/".join(segments[4:]))
        raise HubError(404, f"the local hfgen hub does not implement {method} {raw_path}")

    def repo_api(self, repo_type: str, repo_id: str, action: list[str]):
        method, store = self.command, self.server.hub.store
        if not action and method == "GET":
            return self.repo_info(repo_type, repo_id, "main")
        name, args = action[0], action[1:]
        if name == "revision" and args and method == "GET":
            return self.repo_info(repo_type, repo_id, "/".join(args))
        if name == "preupload" and args and method == "POST":
            return self.preupload(repo_type, repo_id, "/".join(args))
        if name == "commit" and args and method == "POST":
            return self.commit(repo_type, repo_id, "/".join(args))
        if name == "tree" and args and method == "GET":
            return self.tree(repo_type, repo_id, args[0], "/".join(args[1:]))
        if name == "paths-info" and args and method == "POST":
            return self.paths_info(repo_type, repo_id, "/".join(args))
        if name == "refs" and method == "GET":
            return self.refs(repo_type, repo_id)
        if name == "commits" and args and method == "GET":
            return self.commits(repo_type, repo_id, "/".join(args))
        if name == "branch" and args and method in ("POST", "DELETE"):
            return self.branch(repo_type, repo_id, "/".join(args))
        if name == "tag" and args and method in ("POST", "DELETE"):
            return self.tag(repo_type, repo_id, "/".join(args))
        if name.startswith("xet-"):
            store.get_repo(repo_type, repo_id, self._token())
            raise HubError(
                400,
                "the local hfgen hub does not speak Xet: it answered uploadMode 'lfs' because it runs with an "
                "lfs_threshold; set HF_HUB_DISABLE_XET=1 in the client to use classic LFS",
            )
        raise HubError(404, f"the local hfgen hub does not implement {method} /api/{repo_type}s/{repo_id}/{'/'.join(action)}")

    # ---- account and repos ----
    def whoami(self):
        token = self._token()
        if token is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        name = self._user(token)
        self._send_json({"type": "user", "id": name, "name": name, "fullname": name, "orgs": [],
                         "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}})

    def create_repo(self):
        token = self._token()
        if token is None:
            raise HubError(401, "You must be authenticated to create a repository (set HF_TOKEN or run `hf auth login`)")
        body = self._json_body()
        name, namespace = body.get("name"), body.get("organization") or self._user(token)
        repo_type = body.get("type") or "model"
        if not name or repo_type not in URL_PREFIXES:
            raise HubError(400, f"invalid repository name or type: {body.get('name')!r}, {repo_type!r}")
        repo_id = f"{namespace}/{name}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        store = self.server.hub.store
        _, created = store.create_repo(repo_type, repo_id, private, token)
        url = f"{self.base_url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if not created:
            self._send_json({"error": "You already created this model repo", "url": url}, 409)
            return
        store.save()
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self):
        body = self._json_body()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self._user(self._token())}/{body.get('name')}"
        store = self.server.hub.store
        store.get_repo(repo_type, repo_id, self._token(), write=True)
        del store.repos[(repo_type, repo_id)]
        store.save()
        self._send_json({})

    def validate_yaml(self):
        body = self._json_body()
        content = body.get("content") or ""
        errors = []
        if content.startswith("---"):
            end = content.find("\n---", 3)
            if end < 0:
                errors.append({"message": "metadata block opened with --- is never closed"})
            else:
                try:
                    metadata = yaml.safe_load(content[3:end])
                    if metadata is not None and not isinstance(metadata, dict):
                        errors.append({"message": "metadata must be a YAML mapping"})
                except yaml.YAMLError as err:
                    errors.append({"message": f"invalid YAML: {err}"})
        if errors:
            self._send_json({"errors": errors, "warnings": []}, 400)
        else:
            self._send_json({"errors": [], "warnings": []})

    # ---- reading ----
    def _commit_at(self, repo_type: str, repo_id: str, revision: str) -> tuple[Repo, Commit]:
        repo = self.server.hub.store.get_repo(repo_type, repo_id, self._token())
        return repo, repo.commits[repo.resolve(revision)]

    def repo_info(self, repo_type: str, repo_id: str, revision: str):
        repo, commit = self._commit_at(repo_type, repo_id, revision)
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.git_oid)
                if entry.lfs:
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
            siblings.append(sibling)
        self._send_json({
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": commit.oid, "private": repo.private, "disabled": False,
            "gated": False, "lastModified": commit.date, "createdAt": repo.created_at, "tags": [],
            "downloads": 0, "likes": 0, "siblings": siblings,
        })

    def _tree_entry(self, path: str, entry: FileEntry) -> dict:
        item = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
        if entry.lfs:
            item["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
        return item

    @staticmethod
    def _folder_entry(path: str, files: dict[str, FileEntry]) -> dict:
        inside = sorted((p, f.git_oid) for p, f in files.items() if p.startswith(path + "/"))
        return {"type": "directory", "oid": hashlib.sha1(json.dumps(inside).encode()).hexdigest(), "size": 0, "path": path}

    def tree(self, repo_type: str, repo_id: str, revision: str, path: str):
        _, commit = self._commit_at(repo_type, repo_id, revision)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        path = path.strip("/")
        prefix = path + "/" if path else ""
        if path and path in commit.files:
            raise HubError(400, f"{path} is a file, not a folder")
        below = {p: f for p, f in commit.files.items() if p.startswith(prefix)}
        if path and not below:
            raise HubError(404, f"{path} does not exist at {revision}", "EntryNotFound")
        entries, folders = [], set()
        for p, entry in sorted(below.items()):
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way to this file
                folder = prefix + "/".join(parts[:depth])
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    entries.append(self._folder_entry(folder, commit.files))
            if recursive or len(parts) == 1:
                entries.append(self._tree_entry(p, entry))
        self._send_json(entries)

    def paths_info(self, repo_type: str, repo_id: str, revision: str):
        _, commit = self._commit_at(repo_type, repo_id, revision)
        body = self._body().decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            paths = json.loads(body or "{}").get("paths", [])
        else:
            paths = parse_qs(body).get("paths", [])
        entries = []
        for path in paths:
            path = path.strip("/")
            if path in commit.files:
                entries.append(self._tree_entry(path, commit.files[path]))
            elif any(p.startswith(path + "/") for p in commit.files):
                entries.append(self._folder_entry(path, commit.files))
        self._send_json(entries)

    def refs(self, repo_type: str, repo_id: str):
        repo = self.server.hub.store.get_repo(repo_type, repo_id, self._token())
        data = {
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(repo.branches.items())],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(repo.tags.items())],
            "converts": [],
        }
        if self.query.get("include_prs"):
            data["pullRequests"] = [{"name": str(n), "ref": f"refs/pr/{n}", "targetCommit": c} for n, c in sorted(repo.pull_requests.items())]
        self._send_json(data)

    def commits(self, repo_type: str, repo_id: str, revision: str):
        repo, commit = self._commit_at(repo_type, repo_id, revision)
        history = []
        while commit is not None:
            history.append({"id": commit.oid, "title": commit.title, "message": commit.message, "date": commit.date,
                            "authors": [{"user": commit.author}]})
            commit = repo.commits[commit.parents[0]] if commit.parents else None
        self._send_json(history)

    def resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
        repo = self.server.hub.store.get_repo(repo_type, repo_id, self._token())
        commit = repo.commits[repo.resolve(revision)]
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = self.server.hub.store.blobs[entry.sha256]
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": entry.size})
        status, body = 200, data
        ranges = self.headers.get("Range")
        if ranges and (m := re.fullmatch(r"bytes=(\d*)-(\d*)", ranges.strip())):
            start, end = m.group(1), m.group(2)
            first = int(start) if start else max(0, len(data) - int(end or 0))
            last = int(end) if (start and end) else len(data) - 1
            if first >= len(data) and len(data) > 0:
                raise HubError(416, f"range {ranges} is outside the {len(data)}-byte file", headers={"Content-Range": f"bytes */{len(data)}"})
            last = min(last, len(data) - 1)
            status, body = 206, data[first : last + 1]
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        headers["Content-Length"] = len(body)
        self._send(status, body, headers, content_type="application/octet-stream")

    # ---- writing ----
    def _upload_mode(self, size: int) -> str:
        threshold = self.server.hub.lfs_threshold
        return "lfs" if threshold is not None and size >= threshold else "regular"

    def preupload(self, repo_type: str, repo_id: str, revision: str):
        store = self.server.hub.store
        repo = store.get_repo(repo_type, repo_id, self._token(), write=True)
        head = repo.commits[repo.resolve(revision)]
        body = self._json_body()
        ignore = [line.strip() for line in (body.get("gitIgnore") or "").splitlines() if line.strip() and not line.startswith("#")]
        answers = []
        for item in body.get("files", []):
            path, size = item["path"], int(item["size"])
            mode = self._upload_mode(size)
            answer = {"path": path, "uploadMode": mode, "shouldIgnore": any(fnmatch.fnmatch(path, p) for p in ignore)}
            existing = head.files.get(path)
            if existing is not None:  # lets the client skip unchanged files: sha256 for LFS, git oid otherwise
                answer["oid"] = existing.sha256 if mode == "lfs" else git_blob_oid(store.blobs[existing.sha256])
            answers.append(answer)
        self._send_json({"files": answers, "commitOid": head.oid})

    def commit(self, repo_type: str, repo_id: str, revision: str):
        store = self.server.hub.store
        token = self._token()
        repo = store.get_repo(repo_type, repo_id, token, write=True)
        kind, ref = repo.ref_of(revision)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit payload starts with a header line")
        header = lines[0]["value"]
        head_oid = repo.branches[ref] if kind == "branch" else repo.pull_requests[ref]
        parent = header.get("parentCommit")
        if parent and not head_oid.startswith(parent):
            raise HubError(412, f"A commit has happened since {parent}: the head of {revision} is {head_oid}. Please refresh and try again.")
        files = dict(repo.commits[head_oid].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "").strip("/")
            if key == "file":
                data = base64.b64decode(value["content"]) if value.get("encoding", "base64") == "base64" else value["content"].encode()
                files[path] = FileEntry(store.add_blob(data), len(data), git_blob_oid(data), False)
            elif key == "lfsFile":
                oid = value["oid"]
                if oid not in store.blobs:
                    raise HubError(422, f"LFS object {oid} for {path} was never uploaded (POST .../info/lfs/objects/batch, then PUT it)")
                size = len(store.blobs[oid])
                files[path] = FileEntry(oid, size, git_blob_oid(lfs_pointer(oid, size)), True)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        title = header.get("summary") or "Update"
        if self.query.get("create_pr") and kind == "branch":
            number = max(repo.pull_requests, default=0) + 1
            kind, ref = "pr", number
        commit = store.new_commit(repo, [head_oid], files, title, header.get("description") or "", self._user(token))
        if kind == "branch":
            repo.branches[ref] = commit.oid
        else:
            repo.pull_requests[ref] = commit.oid
        store.save()
        prefix = f"{self.base_url}/{URL_PREFIXES[repo_type]}{repo_id}"
        self._send_json({
            "success": True, "commitOid": commit.oid, "commitUrl": f"{prefix}/commit/{commit.oid}", "hookOutput": "",
            "pullRequestUrl": f"{prefix}/discussions/{ref}" if kind == "pr" else None,
        })

    def branch(self, repo_type: str, repo_id: str, name: str):
        store = self.server.hub.store
        repo = store.get_repo(repo_type, repo_id, self._token(), write=True)
        if self.command == "DELETE":
            if name not in repo.branches or name == "main":
                raise HubError(404 if name not in repo.branches else 400, f"cannot delete branch {name}", "RevisionNotFound" if name not in repo.branches else None)
            del repo.branches[name]
        else:
            if name in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            if name.startswith("refs/") or not name:
                raise HubError(400, f"Invalid reference for a branch: {name}")
            start = (self._json_body() or {}).get("startingPoint") or "main"
            repo.branches[name] = repo.resolve(start)
        store.save()
        self._send_json({})

    def tag(self, repo_type: str, repo_id: str, name: str):
        store = self.server.hub.store
        repo = store.get_repo(repo_type, repo_id, self._token(), write=True)
        if self.command == "DELETE":
            if name not in repo.tags:
                raise HubError(404, f"tag {name} does not exist", "RevisionNotFound")
            del repo.tags[name]
        else:  # POST /tag/{revision} {"tag": name}
            tag = self._json_body().get("tag")
            if not tag:
                raise HubError(400, "missing tag name")
            if tag in repo.tags:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = repo.resolve(name)
        store.save()
        self._send_json({})

    def lfs_batch(self, repo_type: str, repo_id: str):
        store = self.server.hub.store
        store.get_repo(repo_type, repo_id, self._token(), write=True)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "the local hfgen hub serves LFS downloads through /resolve; batch is for uploads")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item = {"oid": oid, "size": size, "authenticated": True}
            if oid not in store.blobs:
                store.pending_lfs.add(oid)
                item["actions"] = {"upload": {"href": f"{self.base_url}/api/hfgen-lfs/objects/{oid}", "expires_in": 3600}}
            objects.append(item)
        self._send_json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, content_type="application/vnd.git-lfs+json")

    def lfs_put(self, oid: str):
        store = self.server.hub.store
        data = self._body()
        if oid not in store.pending_lfs:
            raise HubError(403, f"LFS object {oid} was not announced through the batch API")
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"LFS object content does not match its oid {oid}")
        store.blobs[oid] = data
        store.pending_lfs.discard(oid)
        store.save()
        self._send(200)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class HubServer:
    """The local Hub: `start()` serves it from a background thread, `url` is its `HF_ENDPOINT`.

    Args:
        host, port: where to listen (port 0: any free port).
        storage: a folder to keep repos in across restarts; None keeps everything in memory.
        tokens: {token: user name} to accept only these tokens; None accepts any token.
        lfs_threshold: files of at least this many bytes are uploaded as LFS objects (the client
            must then run with HF_HUB_DISABLE_XET=1); None: every file is a regular git blob.
        verbose: log each request (never its headers) to stderr.

    Example:
        with HubServer() as hub:
            env = hub.client_env(tmp_path / "hf_home")  # for a subprocess that imports huggingface_hub
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, storage: str | os.PathLike | None = None,
                 tokens: dict[str, str] | None = None, lfs_threshold: int | None = None, verbose: bool = False):
        self.store = HubStore(storage)
        self.tokens, self.lfs_threshold, self.verbose = tokens, lfs_threshold, verbose
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hfgen-hub", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def client_env(self, hf_home: str | os.PathLike, token: str | None = "hf_local_hub_token", base: dict | None = None) -> dict:
        """Environment for a client process: this endpoint, an isolated HF_HOME, a token, no proxy."""
        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
            env.pop(key, None)
        env.update(
            HF_ENDPOINT=self.url, HF_HOME=str(hf_home), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
            HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_ETAG_TIMEOUT="30", HF_HUB_DOWNLOAD_TIMEOUT="30",
        )
        if token is None:
            env.pop("HF_TOKEN", None)
        else:
            env["HF_TOKEN"] = token
        return env

    # ---- inspection, for tests ----
    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[Commit]:
        """The history of `revision`, newest first."""
        with self.store.lock:
            repo = self.store.repos[(repo_type, repo_id)]
            commit, history = repo.commits[repo.resolve(revision)], []
            while commit is not None:
                history.append(commit)
                commit = repo.commits[commit.parents[0]] if commit.parents else None
            return history

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """Every file of `revision` with its content."""
        with self.store.lock:
            commit = self.commits(repo_id, revision, repo_type)[0]
            return {path: self.store.blobs[entry.sha256] for path, entry in commit.files.items()}


def main(argv: list[str] | None = None) -> None:
    """`python -m hfgen.testing.hub_server --port 8765 [--storage DIR]`"""
    parser = argparse.ArgumentParser(description="A local Hugging Face Hub for offline tests and manual checks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0: any free port")
    parser.add_argument("--storage", default=None, help="folder that keeps repos across restarts (default: memory only)")
    parser.add_argument("--lfs-threshold", type=int, default=None, help="bytes from which files go through classic LFS (clients need HF_HUB_DISABLE_XET=1)")
    parser.add_argument("--quiet", action="store_true", help="do not log requests")
    args = parser.parse_args(argv)
    hub = HubServer(args.host, args.port, storage=args.storage, lfs_threshold=args.lfs_threshold, verbose=not args.quiet)
    print(f"export HF_ENDPOINT={hub.url} NO_PROXY=127.0.0.1,localhost HF_TOKEN=hf_local_hub_token", flush=True)
    if args.lfs_threshold is not None:
        print("export HF_HUB_DISABLE_XET=1", flush=True)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
