"""A loopback Hugging Face Hub: the HTTP side of the Hub, for the real huggingface_hub / datasets clients.

A standard-library ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) keeps repos in memory as git-like commits (a
commit is a map path -> bytes; blob ids are git blob oids, so the client's "file unchanged" checks work as on
the Hub). It serves exactly the routes the clients of this project call: ``resolve`` (GET/HEAD, ETag,
X-Repo-Commit, Content-Length, Range), repo info, tree, paths-info, preupload (every file "regular": no
LFS/xet), the NDJSON commit, repo creation, YAML validation and whoami. Any other request is recorded in
``unknown_requests`` and answered 501, and any request for another host (the process's proxy points here) is
recorded in ``stray_requests`` and refused, so a missing route or an escaping request shows up in a test.

Clients read ``HF_ENDPOINT`` and the offline flags when imported, so tests run them in subprocesses with
``hub.env(home)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

USER = "user"
TOKEN = "hf_loopbackTestTokenThatMustNeverBeWritten"
EMPTY_TREE = hashlib.sha1(b"").hexdigest()
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_oid(content: bytes) -> str:
    """The oid git (and the Hub's ETag of a non-LFS file) gives ``content``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=lambda: {EMPTY_TREE: {}})
    head: str = EMPTY_TREE

    def files(self, revision: str) -> dict[str, bytes] | None:
        """The files at ``revision`` (``main`` or a commit sha), None for an unknown revision."""
        return self.commits.get(self.head if revision == "main" else revision)

    def commit(self, files: dict[str, bytes]) -> str:
        listing = "".join(f"{path}\0{git_blob_oid(content)}\n" for path, content in sorted(files.items()))
        sha = hashlib.sha1(f"{self.head}\n{listing}".encode()).hexdigest()
        self.commits[sha], self.head = files, sha
        return sha


@dataclass
class CommitRecord:
    repo_id: str
    repo_type: str
    summary: str
    added: list[str]
    deleted: list[str]


class HubError(Exception):
    """An error answer: status, the ``X-Error-Code`` the client maps to its exceptions, a message."""

    def __init__(self, status: int, code: str | None, message: str, **extra: str):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


class LoopbackHub:
    """The server; ``with LoopbackHub() as hub`` starts it and stops it at the end."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.commit_log: list[CommitRecord] = []
        self.unknown_requests: list[str] = []
        self.stray_requests: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="loopback-hub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> LoopbackHub:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def env(self, home: str | Path) -> dict[str, str]:
        """Environment for a client process: online, pointed at this server, caches under ``home``."""
        env = {key: value for key, value in os.environ.items() if not key.endswith("_OFFLINE")}
        for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_XET_CACHE"):
            env.pop(key, None)
        home = Path(home)
        env.update(
            HF_ENDPOINT=self.url,
            HF_HOME=str(home),
            HF_HUB_CACHE=str(home / "hub"),
            HF_DATASETS_CACHE=str(home / "datasets"),
            HF_TOKEN=TOKEN,
            HF_HUB_DISABLE_XET="1",  # uploads and downloads as plain HTTP, never to a xet storage host
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_UPDATE_DOWNLOAD_COUNTS="0",  # datasets would ping an S3 host
            HF_HUB_DISABLE_PROGRESS_BARS="1",
            # Any request for another host (datasets-server.<endpoint>, S3, ...) comes here and is refused.
            HTTP_PROXY=self.url,
            HTTPS_PROXY=self.url,
            http_proxy=self.url,
            https_proxy=self.url,
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
        )
        return env

    def add_folder(self, repo_id: str, folder: str | Path, repo_type: str = "model") -> str:
        """Put ``folder`` on the Hub as one commit of ``repo_id`` (a repo the tests start from); its sha."""
        files = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(Path(folder).rglob("*"))
            if path.is_file()
        }
        with self.lock:
            repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_type, repo_id))
            return repo.commit(files)

    def repo_files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        return dict(self.repos[(repo_type, repo_id)].files(revision))

    # --- routes -------------------------------------------------------------------------------------------

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository Not Found: {repo_type} {repo_id}")
        return repo

    def files_at(self, repo: Repo, revision: str) -> tuple[str, dict[str, bytes]]:
        files = repo.files(revision)
        if files is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return (repo.head if revision == "main" else revision), files

    def info(self, repo_type: str, repo_id: str, revision: str) -> dict:
        repo = self.repo(repo_type, repo_id)
        sha, files = self.files_at(repo, revision)
        info = {
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": sha,
            "private": False,
            "gated": False,
            "disabled": False,
            "lastModified": "2026-01-01T00:00:00.000Z",
            "siblings": [
                {"rfilename": path, "size": len(content), "blobId": git_blob_oid(content)}
                for path, content in sorted(files.items())
            ],
            "tags": [],
        }
        if "README.md" in files:
            info["cardData"] = _card_data(files["README.md"])
        return info

    def tree(self, repo_type: str, repo_id: str, revision: str, prefix: str, recursive: bool) -> list[dict]:
        _, files = self.files_at(self.repo(repo_type, repo_id), revision)
        prefix = prefix.strip("/")
        below = {path: content for path, content in files.items() if not prefix or path.startswith(prefix + "/")}
        if prefix and not below:
            if prefix in files:
                raise HubError(400, None, f"{prefix} is a file, not a folder")
            raise HubError(404, "EntryNotFound", f"{prefix} does not exist on {revision}")
        entries, folders = [], set()
        for path, content in sorted(below.items()):
            relative = path[len(prefix) + 1 :] if prefix else path
            parts = relative.split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add("/".join(([prefix] if prefix else []) + parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(_file_entry(path, content))
        entries += [_folder_entry(folder, files) for folder in sorted(folders)]
        return entries

    def paths_info(self, repo_type: str, repo_id: str, revision: str, paths: list[str]) -> list[dict]:
        _, files = self.files_at(self.repo(repo_type, repo_id), revision)
        found = []
        for path in paths:
            path = path.strip("/")
            if path in files:
                found.append(_file_entry(path, files[path]))
            elif any(name.startswith(path + "/") for name in files) or path == "":
                found.append(_folder_entry(path, files))
        return found

    def preupload(self, repo_type: str, repo_id: str, revision: str, body: dict) -> dict:
        _, files = self.files_at(self.repo(repo_type, repo_id), revision)
        return {
            "files": [
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(files[item["path"]]) if item["path"] in files else None,
                }
                for item in body["files"]
            ]
        }

    def commit(self, repo_type: str, repo_id: str, revision: str, lines: list[dict]) -> dict:
        repo = self.repo(repo_type, repo_id)
        if revision != "main":
            raise HubError(400, None, f"the loopback Hub commits to main only, not {revision}")
        files = dict(repo.files("main"))
        header, added, deleted = {}, [], []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, None, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
                added.append(value["path"])
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {value['path']}")
                deleted.append(value["path"])
            elif key == "deletedFolder":
                gone = [path for path in files if path.startswith(value["path"].rstrip("/") + "/")]
                for path in gone:
                    del files[path]
                deleted += gone
            else:
                raise HubError(400, None, f"the loopback Hub takes no {key!r} commit operation (no LFS)")
        sha = repo.commit(files)
        self.commit_log.append(CommitRecord(repo_id, repo_type, header.get("summary", ""), added, deleted))
        prefix = "" if repo_type == "model" else f"/{repo_type}s"
        return {"commitUrl": f"{self.url}{prefix}/{repo_id}/commit/{sha}", "commitOid": sha, "success": True}

    def create_repo(self, body: dict) -> dict:
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or USER}/{body['name']}"
        prefix = "" if repo_type == "model" else f"/{repo_type}s"
        url = f"{self.url}{prefix}/{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, None, f"You already created this {repo_type} repo", url=url)  # the client reads url
        self.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id)
        return {"url": url, "name": repo_id, "id": repo_id}


def _file_entry(path: str, content: bytes) -> dict:
    return {"type": "file", "path": path, "size": len(content), "oid": git_blob_oid(content)}


def _folder_entry(folder: str, files: dict[str, bytes]) -> dict:
    below = "".join(
        f"{path}\0{git_blob_oid(content)}" for path, content in sorted(files.items()) if path.startswith(folder)
    )
    return {"type": "directory", "path": folder, "oid": hashlib.sha1(below.encode()).hexdigest()}


def _card_data(readme: bytes) -> dict:
    """The YAML header of a card, as the Hub's ``cardData``."""
    import yaml

    text = readme.decode()
    if not text.startswith("---"):
        return {}
    return yaml.safe_load(text.split("---", 2)[1]) or {}


def _handler_for(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            logger.debug("loopback hub: " + format, *args)

        def do_HEAD(self):
            self.answer("HEAD")

        def do_GET(self):
            self.answer("GET")

        def do_POST(self):
            self.answer("POST")

        def do_PUT(self):
            self.answer("PUT")

        def do_DELETE(self):
            self.answer("DELETE")

        def do_CONNECT(self):  # an HTTPS request through the proxy settings: another host
            hub.stray_requests.append(f"CONNECT {self.path}")
            self.send(403, b"the loopback Hub reaches no other host", "text/plain")

        def answer(self, method: str) -> None:
            body = self.read_body()
            if self.path.startswith(("http://", "https://")) and not self.path.startswith(hub.url):
                hub.stray_requests.append(f"{method} {self.path}")
                return self.send(404, b'{"error": "the loopback Hub reaches no other host"}', "application/json")
            target = self.path[len(hub.url) :] if self.path.startswith(hub.url) else self.path
            url = urlsplit(target)
            segments = [unquote(part) for part in url.path.split("/")[1:]]
            query = parse_qs(url.query)
            try:
                with hub.lock:
                    result = self.route(method, segments, query, body)
            except HubError as error:
                headers = {"X-Error-Code": error.code} if error.code else {}
                payload = json.dumps({"error": error.message, **error.extra}).encode()
                return self.send(error.status, payload, "application/json", headers, head=method == "HEAD")
            if result is None:
                hub.unknown_requests.append(f"{method} {target}")
                logger.warning("loopback hub: no route for %s %s", method, target)
                return self.send(501, b'{"error": "no such route on the loopback Hub"}', "application/json")
            if isinstance(result, tuple):  # a file: (content, headers)
                return self.send_file(method, *result)
            self.send(200, json.dumps(result).encode(), "application/json")

        def route(self, method, segments, query, body):
            """The JSON answer, (file bytes, headers) for ``resolve``, or None for an unknown route."""
            if segments[:1] == ["api"]:
                return self.api_route(method, segments[1:], query, body)
            repo_type = "model"
            if segments and segments[0] in ("datasets", "spaces"):
                repo_type, segments = REPO_TYPES[segments[0]], segments[1:]
            if method in ("GET", "HEAD") and len(segments) >= 5 and segments[2] == "resolve":
                repo = hub.repo(repo_type, "/".join(segments[:2]))
                sha, files = hub.files_at(repo, segments[3])
                path = "/".join(segments[4:])
                if path not in files:
                    raise HubError(404, "EntryNotFound", f"Entry not found: {path}")
                return files[path], {"X-Repo-Commit": sha, "ETag": f'"{git_blob_oid(files[path])}"'}
            return None

        def api_route(self, method, segments, query, body):
            if method == "GET" and segments == ["whoami-v2"]:
                return {"type": "user", "name": USER, "auth": {"type": "access_token"}, "orgs": []}
            if method == "POST" and segments == ["repos", "create"]:
                return hub.create_repo(json.loads(body))
            if method == "POST" and segments == ["validate-yaml"]:
                return {"errors": [], "warnings": []}
            if len(segments) < 3 or segments[0] not in REPO_TYPES:
                return None
            repo_type, repo_id, rest = REPO_TYPES[segments[0]], "/".join(segments[1:3]), segments[3:]
            if method == "GET" and rest == []:
                return hub.info(repo_type, repo_id, "main")
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                return hub.info(repo_type, repo_id, rest[1])
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
                return hub.tree(repo_type, repo_id, rest[1], "/".join(rest[2:]), recursive)
            if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                paths = parse_qs(body.decode()).get("paths", [])
                return hub.paths_info(repo_type, repo_id, rest[1], paths)
            if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                return hub.preupload(repo_type, repo_id, rest[1], json.loads(body))
            if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                return hub.commit(repo_type, repo_id, rest[1], lines)
            return None

        def read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def send_file(self, method: str, content: bytes, headers: dict[str, str]) -> None:
            status, start, end = 200, 0, len(content)
            requested = self.headers.get("Range")
            if requested and requested.startswith("bytes="):
                first, _, last = requested[len("bytes=") :].split(",")[0].partition("-")
                start = int(first) if first else max(0, len(content) - int(last))
                end = min(len(content), int(last) + 1) if first and last else len(content)
                if start >= len(content) and content:
                    return self.send(416, b"", "text/plain", {"Content-Range": f"bytes */{len(content)}"})
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{len(content)}"}
            headers = {**headers, "Accept-Ranges": "bytes"}
            self.send(status, content[start:end], "application/octet-stream", headers, head=method == "HEAD")

        def send(self, status, payload, content_type, headers=None, head=False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if not head:
                self.wfile.write(payload)

    return Handler
