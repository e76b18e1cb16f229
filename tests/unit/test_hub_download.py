"""End to end through the real online path of `hub.download`, against a fake Hub on 127.0.0.1.

huggingface_hub (2.x) talks to three endpoints here, and the fake below serves just those:

  GET  /api/models/{repo_id}/tree/{revision}?recursive=True  list_repo_files, and snapshot_download's listing
  GET  /api/models/{repo_id}/revision/{revision}             snapshot_download's repo_info (branch -> commit)
  HEAD /{repo_id}/resolve/{revision}/{filename}              per-file metadata: X-Repo-Commit, ETag, Content-Length
  GET  /{repo_id}/resolve/{revision}/{filename}              the file itself

Errors are answered as the Hub does: a status plus an `X-Error-Code` header (RepoNotFound,
RevisionNotFound, GatedRepo, EntryNotFound), which huggingface_hub turns into its exception types.
"""

from __future__ import annotations

import hashlib
import json
import threading
import types
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import torch

from mistral_serve.model import hub
from mistral_serve.model.args import ModelArgs
from mistral_serve.model.errors import CheckpointError
from mistral_serve.model.loader import load_folder
from mistral_serve.model.writer import random_parameters, write_checkpoint

ARGS = ModelArgs(dim=32, n_layers=1, head_dim=8, hidden_dim=64, n_heads=4, n_kv_heads=2, vocab_size=100)


@dataclass
class Repo:
    files: dict[str, bytes]
    branches: tuple[str, ...] = ("main",)
    gated: str | None = None  # "downloads": files refused, listing allowed (as on the Hub); "all": everything refused
    commit: str = field(init=False)

    def __post_init__(self):
        digests = b"".join(hashlib.sha1(name.encode() + data).digest() for name, data in self.files.items())
        self.commit = hashlib.sha1(digests).hexdigest()


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path without query)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        if self._thread.is_alive():
            self.shutdown()
            self.server_close()
            self._thread.join()

    def answer(self, parts: list[str]) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for a request path split into unquoted segments."""
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] in ("tree", "revision"):
            repo_id, kind, rev, filename = f"{parts[2]}/{parts[3]}", parts[4], parts[5], None
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo_id, kind, rev, filename = f"{parts[0]}/{parts[1]}", "resolve", parts[3], "/".join(parts[4:])
        else:
            return _error(404, None)  # anything else huggingface_hub might ask (e.g. /api/agent-harnesses)
        repo = self.repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound")
        if repo.gated == "all" or (repo.gated == "downloads" and kind == "resolve"):
            return _error(401, "GatedRepo")
        if rev not in (repo.commit, *repo.branches):
            return _error(404, "RevisionNotFound")
        if kind == "revision":
            return _json({"id": repo_id, "sha": repo.commit, "siblings": [{"rfilename": f} for f in repo.files]})
        if kind == "tree":
            return _json([{"type": "file", "path": f, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                          for f, data in repo.files.items()])
        if filename not in repo.files:
            return _error(404, "EntryNotFound")
        data = repo.files[filename]
        return 200, {"X-Repo-Commit": repo.commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}, data


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub

    def do_GET(self):
        self._reply(send_body=True)

    def do_HEAD(self):
        self._reply(send_body=False)

    def _reply(self, send_body: bool):
        path = urlsplit(self.path).path
        self.server.requests.append((self.command, path))
        status, headers, body = self.server.answer([unquote(p) for p in path.split("/")[1:]])
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def _json(obj) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(obj).encode()


def _error(status: int, code: str | None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", **({"X-Error-Code": code} if code else {})}
    return status, headers, json.dumps({"error": code or "Not Found"}).encode()


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A running FakeHub that huggingface_hub talks to, with an empty cache and no token."""
    import huggingface_hub.hf_api
    import huggingface_hub.utils._http
    from huggingface_hub import constants

    server = FakeHub()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")
    # `huggingface_hub.list_repo_files` is a method of an HfApi built at import, which copied ENDPOINT then.
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", server.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub retries connection errors 5 times with 1..8 s sleeps; don't wait for real.
    monkeypatch.setattr(huggingface_hub.utils._http, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    yield server
    server.stop()


def checkpoint_files(folder: Path, layout: str) -> dict[str, bytes]:
    write_checkpoint(folder, ARGS, random_parameters(ARGS), layout=layout, dtype=torch.float32)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def hf_files(tmp_path):
    return checkpoint_files(tmp_path / "hf", "hf")


@pytest.fixture
def both_files(tmp_path, hf_files):
    return {**hf_files, **checkpoint_files(tmp_path / "mistral", "mistral"),
            "tokenizer.model.v3": b"not really a tokenizer", "README.md": b"# a model\n"}


def downloaded_weights(server: FakeHub) -> set[str]:
    return {path.rsplit("/", 1)[1] for method, path in server.requests
            if method == "GET" and "/resolve/" in path and path.endswith(".safetensors")}


def test_repo_with_both_layouts_downloads_one_copy_of_the_weights(fake_hub, both_files):
    fake_hub.repos["someone/both"] = Repo(both_files)
    folder = hub.download("someone/both")
    names = {p.name for p in folder.iterdir()}
    assert {"params.json", "consolidated.safetensors", "tokenizer.model.v3"} <= names
    assert not names & {"model.safetensors", "config.json", "README.md"}
    assert downloaded_weights(fake_hub) == {"consolidated.safetensors"}
    assert load_folder(folder).args == ARGS


def test_repo_with_hf_layout_only(fake_hub, hf_files):
    fake_hub.repos["someone/hf-only"] = Repo({**hf_files, "README.md": b"# a model\n"})
    folder = hub.download("someone/hf-only")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors"} <= names and "README.md" not in names
    assert load_folder(folder).args == ARGS


@pytest.mark.parametrize("offline_by", ["HF_HUB_OFFLINE", "server stopped"])
@pytest.mark.parametrize("repo", ["hf-only", "both"])
def test_second_download_without_the_hub_uses_the_cache(fake_hub, hf_files, both_files, monkeypatch,
                                                        repo, offline_by):
    from huggingface_hub import constants

    fake_hub.repos[f"someone/{repo}"] = Repo(hf_files if repo == "hf-only" else both_files)
    first = hub.download(f"someone/{repo}")
    if offline_by == "HF_HUB_OFFLINE":
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    else:
        fake_hub.stop()
    seen = len(fake_hub.requests)
    second = hub.download(f"someone/{repo}")
    assert second == first
    assert len(fake_hub.requests) == seen
    assert load_folder(second).args == ARGS


def test_unknown_repo(fake_hub):
    with pytest.raises(CheckpointError, match="no such model"):
        hub.download("someone/nothing-here")
    assert fake_hub.requests  # the answer came from the (fake) Hub, not from a connection failure


@pytest.mark.parametrize("gated", ["downloads", "all"])
def test_gated_repo_asks_for_a_token(fake_hub, hf_files, gated):
    fake_hub.repos["someone/gated"] = Repo(hf_files, gated=gated)
    with pytest.raises(CheckpointError, match="gated") as info:
        hub.download("someone/gated")
    assert "HF_TOKEN" in str(info.value)


def test_revision_is_sent_to_the_hub(fake_hub, hf_files):
    repo = fake_hub.repos["someone/tagged"] = Repo(hf_files, branches=("v1.0",))  # no "main" at all
    folder = hub.download("someone/tagged@v1.0")
    assert folder.name == repo.commit
    paths = {path for _, path in fake_hub.requests}
    assert {"/api/models/someone/tagged/tree/v1.0", "/api/models/someone/tagged/revision/v1.0"} <= paths
    assert not [p for p in paths if "main" in p]
    assert load_folder(folder).args == ARGS


def test_unknown_revision(fake_hub, hf_files):
    fake_hub.repos["someone/tagged"] = Repo(hf_files)
    with pytest.raises(CheckpointError, match="revision 'v9' does not exist"):
        hub.download("someone/tagged@v9")
