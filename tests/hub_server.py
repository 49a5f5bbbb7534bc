"""A Hugging Face Hub-compatible HTTP server for tests (routes and facts: /work/shared/HUB_PROTOCOL.md).

Real `huggingface_hub` and `datasets` clients talk to it over HTTP: create repos, upload through the
LFS batch API, commit (NDJSON), branch and tag, list trees/refs/commits, and download with `resolve`
(HEAD, GET and Range). State persists in a folder, so a server restarted on the same folder serves
the same repos:

    root/objects/<sha256[:2]>/<sha256>           every file's bytes, content-addressed
    root/repos/<type>/<ns>/<name>/repo.json      branches, tags, commit list, private flag
    root/repos/<type>/<ns>/<name>/commits/<oid>.json   one commit: parents, message, full file tree

Mutations are written file-then-rename, and a branch moves only after its commit file is on disk, so
a client killed mid-push leaves the repo at its previous commit. Uploaded LFS bodies are checked
against their sha256 and size before they are stored.

Test hooks: `server.fail("commit")` makes commits fail (the connection is dropped, as a crashing Hub
or proxy would), `server.block("lfs_put", after=n)` holds the n-th LFS upload until `release()`
(set `reached` tells the test it got there), `server.requests` records `(method, path)` of each call.

Run standalone: `python -m tests.hub_server --root /tmp/hub --port 8555 --token hf_test`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_EXTENSIONS = (
    ".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".gif", ".webp", ".bin", ".safetensors", ".pt", ".pth", ".npy",
    ".npz", ".zip", ".gz", ".tar", ".zst", ".onnx", ".h5", ".msgpack", ".pkl", ".model",
)
LFS_THRESHOLD = 10 * 1024 * 1024
INITIAL_GITATTRIBUTES = "".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in LFS_EXTENSIONS)
HEX40 = re.compile(r"^[0-9a-f]{40}$")


class HubError(Exception):
    def __init__(self, status: int, message: str, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class DropConnection(Exception):
    """Close the socket without answering (a crashed server or a proxy cutting the line)."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


@dataclass
class Fault:
    kind: str  # "fail" | "block"
    after: int = 0  # let this many requests through first
    seen: int = 0
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


class HubStore:
    """Repos, commits and objects on disk. Every public method takes the store lock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()

    # -- objects
    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    def has_object(self, sha256: str, size: Optional[int] = None) -> bool:
        path = self.object_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def put_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if not self.has_object(sha):
            path = self.object_path(sha)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.root / "tmp" / uuid.uuid4().hex
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha

    def adopt_file(self, tmp: Path, sha256: str, size: int) -> None:
        """Move an uploaded temp file into the store after checking its hash and size."""
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        actual_size = tmp.stat().st_size
        if digest.hexdigest() != sha256 or actual_size != size:
            tmp.unlink(missing_ok=True)
            raise HubError(400, f"LFS object {sha256}: content does not match its oid/size ({actual_size} bytes received)")
        path = self.object_path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, path)

    # -- repos
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        ns, name = repo_id.split("/", 1)
        return self.root / "repos" / repo_type / ns / name

    def load_repo(self, repo_type: str, repo_id: str) -> dict:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        if not path.is_file():
            raise HubError(404, f"Repository Not Found for url: {repo_type}s/{repo_id}.", "RepoNotFound")
        return json.loads(path.read_text())

    def save_repo(self, repo_type: str, repo_id: str, repo: dict) -> None:
        _write_json(self.repo_dir(repo_type, repo_id) / "repo.json", repo)

    def load_commit(self, repo_type: str, repo_id: str, oid: str) -> dict:
        return json.loads((self.repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json").read_text())

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> bool:
        """Create the repo with an initial commit holding `.gitattributes`; False if it exists."""
        with self.lock:
            if (self.repo_dir(repo_type, repo_id) / "repo.json").is_file():
                return False
            repo = {"id": repo_id, "type": repo_type, "private": bool(private), "created": _now(),
                    "branches": {}, "tags": {}, "commits": []}
            data = INITIAL_GITATTRIBUTES.encode()
            tree = {".gitattributes": self._entry(data, lfs=False)}
            oid = self._write_commit(repo_type, repo_id, repo, "main", tree, "initial commit", "", None)
            repo["branches"]["main"] = oid
            self.save_repo(repo_type, repo_id, repo)
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            self.load_repo(repo_type, repo_id)
            shutil.rmtree(self.repo_dir(repo_type, repo_id))

    def _entry(self, data: bytes, lfs: bool) -> dict:
        sha = self.put_bytes(data)
        return self._entry_for(sha, len(data), lfs, data if not lfs else None)

    def _entry_for(self, sha256: str, size: int, lfs: bool, data: Optional[bytes] = None) -> dict:
        if lfs:
            pointer = lfs_pointer(sha256, size)
            return {"sha256": sha256, "size": size, "lfs": True, "oid": git_blob_oid(pointer), "pointer_size": len(pointer)}
        if data is None:
            data = self.object_path(sha256).read_bytes()
        return {"sha256": sha256, "size": size, "lfs": False, "oid": git_blob_oid(data)}

    def _write_commit(self, repo_type, repo_id, repo, branch, tree, title, message, parent) -> str:
        date = _now()
        body = json.dumps({"parent": parent, "tree": tree, "title": title, "message": message, "date": date,
                           "nonce": uuid.uuid4().hex}, sort_keys=True)
        oid = hashlib.sha1(body.encode()).hexdigest()
        commit = {"id": oid, "parents": [parent] if parent else [], "title": title, "message": message,
                  "date": date, "tree": tree, "branch": branch}
        _write_json(self.repo_dir(repo_type, repo_id) / "commits" / f"{oid}.json", commit)
        repo["commits"].append(oid)
        return oid

    def resolve(self, repo: dict, revision: str) -> str:
        if revision in repo["branches"]:
            return repo["branches"][revision]
        if revision in repo["tags"]:
            return repo["tags"][revision]["oid"]
        for prefix in ("refs/heads/", "refs/tags/"):
            if revision.startswith(prefix):
                return self.resolve(repo, revision[len(prefix):])
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            matches = [c for c in repo["commits"] if c.startswith(revision)]
            if len(matches) == 1:
                return matches[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def commit(self, repo_type: str, repo_id: str, branch: str, lines: list[dict]) -> str:
        with self.lock:
            repo = self.load_repo(repo_type, repo_id)
            if branch not in repo["branches"]:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo["branches"][branch]
            header = next((l["value"] for l in lines if l.get("key") == "header"), None)
            if header is None:
                raise HubError(400, "commit payload has no header line")
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                raise HubError(412, f"A commit has happened since. parentCommit {parent} is not the head of {branch} ({head})")
            tree = dict(self.load_commit(repo_type, repo_id, head)["tree"])
            for line in lines:
                key, value = line.get("key"), line.get("value") or {}
                if key == "header":
                    continue
                path = value.get("path", "")
                if not path or path.startswith("/") or ".." in path.split("/"):
                    raise HubError(400, f"invalid path {path!r}")
                if key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                    tree[path] = self._entry(base64.b64decode(value["content"]), lfs=False)
                elif key == "lfsFile":
                    sha, size = value["oid"], value.get("size")
                    if not self.has_object(sha, size):
                        raise HubError(422, f"LFS object {sha} for {path} was not uploaded", "LfsObjectNotFound")
                    size = size if size is not None else self.object_path(sha).stat().st_size
                    tree[path] = self._entry_for(sha, int(size), lfs=True)
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    for p in [p for p in tree if p.startswith(prefix)]:
                        del tree[p]
                else:
                    raise HubError(400, f"unknown commit line key {key!r}")
            oid = self._write_commit(repo_type, repo_id, repo, branch, tree, header.get("summary", ""),
                                     header.get("description", ""), head)
            repo["branches"][branch] = oid
            self.save_repo(repo_type, repo_id, repo)
            return oid

    def create_ref(self, repo_type: str, repo_id: str, kind: str, name: str, revision: str, message: str = "") -> None:
        with self.lock:
            repo = self.load_repo(repo_type, repo_id)
            oid = self.resolve(repo, revision)
            if name in repo["branches"] or name in repo["tags"]:
                what = "Tag" if kind == "tag" else "Branch"
                raise HubError(409, f"{what} {name} already exists (as a branch or tag)")
            if kind == "tag":
                repo["tags"][name] = {"oid": oid, "message": message, "date": _now()}
            else:
                repo["branches"][name] = oid
            self.save_repo(repo_type, repo_id, repo)

    def delete_ref(self, repo_type: str, repo_id: str, kind: str, name: str) -> None:
        with self.lock:
            repo = self.load_repo(repo_type, repo_id)
            table = repo["tags"] if kind == "tag" else repo["branches"]
            if name not in table:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            del table[name]
            self.save_repo(repo_type, repo_id, repo)


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HubHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # quiet; `server.requests` records calls
        pass

    # ------------------------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size_line = self.rfile.readline()
                if not size_line:
                    raise DropConnection()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                chunk = self.rfile.read(size)
                if len(chunk) < size:
                    raise DropConnection()
                out += chunk
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            raise DropConnection()
        return data

    def _body_to_file(self, path: Path) -> None:
        """Stream the request body to `path` (LFS uploads can be large)."""
        with open(path, "wb") as f:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                f.write(self._body())
                return
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    raise DropConnection()
                f.write(chunk)
                remaining -= len(chunk)

    def _json_body(self) -> Any:
        data = self._body()
        return json.loads(data) if data else {}

    def _send(self, status: int, body: bytes = b"", headers: Optional[dict] = None, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, status: int, data: Any, headers: Optional[dict] = None) -> None:
        self._send(status, json.dumps(data).encode(), headers)

    def _error(self, err: HubError) -> None:
        # The request body may be unread: close the connection rather than misread it as the next request.
        self.close_connection = True
        headers = {"X-Error-Message": err.message.replace("\n", " ")[:500], "Connection": "close"}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send_json(err.status, {"error": err.message}, headers)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.server.token}"

    def _require_write(self) -> None:
        if not self._authorised():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _check_read(self, repo: dict) -> None:
        if repo.get("private") and not self._authorised():
            raise HubError(404, f"Repository Not Found for url: {repo['id']}.", "RepoNotFound")

    @property
    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]}"

    # -------------------------------------------------------------------------------- dispatch
    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        raw_parts = [p for p in url.path.split("/") if p != ""]
        query = parse_qs(url.query)
        self.server.record(self.command, url.path)
        try:
            self._route(raw_parts, query)
        except DropConnection:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
        except HubError as err:
            self._error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a server bug: say so loudly to the client and the test
            self.server.errors.append(f"{self.command} {self.path}: {type(exc).__name__}: {exc}")
            self._error(HubError(500, f"internal error: {type(exc).__name__}: {exc}"))

    def _route(self, raw: list[str], query: dict) -> None:
        parts = [unquote(p) for p in raw]
        method = self.command
        store = self.server.store
        if parts[:2] == ["api", "whoami-v2"] and method == "GET":
            if not self._authorised():
                raise HubError(401, "Invalid credentials in Authorization header")
            return self._send_json(200, {"type": "user", "name": self.server.user, "fullname": self.server.user,
                                         "orgs": [], "auth": {"type": "access_token",
                                                              "accessToken": {"displayName": "test", "role": "write"}}})
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self._create_repo()
        if parts[:3] == ["api", "repos", "delete"] and method == "DELETE":
            self._require_write()
            body = self._json_body()
            repo_id = f"{body.get('organization') or self.server.user}/{body['name']}"
            store.delete_repo(body.get("type") or "model", repo_id)
            return self._send_json(200, {})
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in REPO_TYPES:
            return self._repo_api(REPO_TYPES[parts[1]], f"{parts[2]}/{parts[3]}", raw[4:], query)
        if parts[:1] == ["__lfs__"] and method == "PUT" and len(parts) == 2:
            return self._lfs_put(parts[1])
        # /{prefix}ns/name.git/info/lfs/objects/batch and /{prefix}ns/name/resolve/rev/path
        repo_type = "model"
        rest_raw = raw
        if raw and raw[0] in ("datasets", "spaces"):
            repo_type, rest_raw = REPO_TYPES[raw[0]], raw[1:]
        rest = [unquote(p) for p in rest_raw]
        if len(rest) == 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            return self._lfs_batch(repo_type, f"{rest[0]}/{rest[1][:-4]}")
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
        raise HubError(404, f"no route for {method} {self.path}")

    # ----------------------------------------------------------------------------------- routes
    def _create_repo(self) -> None:
        self._require_write()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.server.user}/{body['name']}"
        url = f"{self.base_url}/{URL_PREFIX[repo_type]}{repo_id}"
        # huggingface_hub 2.x sends `visibility`; older clients send `private`.
        private = bool(body.get("private")) or body.get("visibility") in ("private", "protected")
        if not self.server.store.create_repo(repo_type, repo_id, private):
            return self._send_json(409, {"error": "You already created this repo", "url": url},
                                   {"X-Error-Message": "You already created this repo"})
        self._send_json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        body = self._json_body()
        content = body.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.S)
        errors = []
        if match:
            try:
                data = yaml.safe_load(match.group(1))
                if data is not None and not isinstance(data, dict):
                    errors.append({"message": "metadata must be a YAML mapping"})
            except yaml.YAMLError as exc:
                errors.append({"message": f"invalid YAML: {exc}"})
        if errors:
            return self._send_json(400, {"error": errors[0]["message"], "errors": errors, "warnings": []})
        self._send_json(200, {"errors": [], "warnings": []})

    def _repo_api(self, repo_type: str, repo_id: str, raw_rest: list[str], query: dict) -> None:
        store = self.server.store
        method = self.command
        rest = [unquote(p) for p in raw_rest]
        with store.lock:
            repo = store.load_repo(repo_type, repo_id)
        self._check_read(repo)
        action = rest[0] if rest else ""
        if method == "GET" and action in ("", "revision"):
            revision = rest[1] if action == "revision" and len(rest) > 1 else "main"
            return self._repo_info(repo_type, repo_id, repo, revision)
        if method == "GET" and action == "refs":
            def ref(name, oid, kind):
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": oid}
            return self._send_json(200, {
                "branches": [ref(n, o, "heads") for n, o in sorted(repo["branches"].items())],
                "tags": [ref(n, t["oid"], "tags") for n, t in sorted(repo["tags"].items())],
                "converts": [], "pullRequests": []})
        if method == "GET" and action == "tree" and len(rest) >= 2:
            recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
            return self._tree(repo_type, repo_id, repo, rest[1], "/".join(rest[2:]).strip("/"), recursive)
        if method == "POST" and action == "paths-info" and len(rest) >= 2:
            return self._paths_info(repo_type, repo_id, repo, rest[1])
        if method == "GET" and action == "commits" and len(rest) >= 2:
            return self._commits(repo_type, repo_id, repo, rest[1])
        if method == "POST" and action == "preupload" and len(rest) >= 2:
            self._require_write()
            return self._preupload(repo_type, repo_id, repo, rest[1])
        if method == "POST" and action == "commit" and len(rest) >= 2:
            self._require_write()
            return self._commit(repo_type, repo_id, rest[1], query)
        if action in ("tag", "branch") and len(rest) >= 2 and method in ("POST", "DELETE"):
            self._require_write()
            if method == "DELETE":
                store.delete_ref(repo_type, repo_id, action, rest[1])
                return self._send_json(200, {})
            body = self._json_body()
            if action == "tag":
                store.create_ref(repo_type, repo_id, "tag", body.get("tag", ""), rest[1], body.get("message", ""))
            else:
                store.create_ref(repo_type, repo_id, "branch", rest[1], body.get("startingPoint") or "main")
            return self._send_json(200, {})
        raise HubError(404, f"no route for {method} {self.path}")

    def _tree_at(self, repo_type: str, repo_id: str, repo: dict, revision: str) -> tuple[str, dict]:
        with self.server.store.lock:
            oid = self.server.store.resolve(repo, revision)
            return oid, self.server.store.load_commit(repo_type, repo_id, oid)

    def _repo_info(self, repo_type: str, repo_id: str, repo: dict, revision: str) -> None:
        oid, commit = self._tree_at(repo_type, repo_id, repo, revision)
        info = {"_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
                "sha": oid, "lastModified": commit["date"], "createdAt": repo["created"], "private": repo["private"],
                "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(commit["tree"])]}
        readme = commit["tree"].get("README.md")
        if readme:
            text = self.server.store.object_path(readme["sha256"]).read_text(encoding="utf-8", errors="replace")
            match = re.match(r"^---\s*\n(.*?)\n---", text, re.S)
            if match:
                try:
                    info["cardData"] = yaml.safe_load(match.group(1)) or {}
                except yaml.YAMLError:
                    pass
        if repo_type == "model":
            info["modelId"] = repo_id
        self._send_json(200, info)

    @staticmethod
    def _file_entry(path: str, e: dict) -> dict:
        out = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
        if e["lfs"]:
            out["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": e["pointer_size"]}
        return out

    @staticmethod
    def _dir_entry(path: str, tree: dict) -> dict:
        prefix = path + "/"
        oid = hashlib.sha1("".join(f"{p}:{e['oid']}\n" for p, e in sorted(tree.items()) if p.startswith(prefix)).encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    def _entries_under(self, tree: dict, base: str, recursive: bool) -> list[dict]:
        prefix = f"{base}/" if base else ""
        files, dirs = [], set()
        for path in sorted(tree):
            if not path.startswith(prefix):
                continue
            rel = path[len(prefix):]
            segments = rel.split("/")
            for depth in range(1, len(segments)):
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(segments[:depth]))
            if recursive or len(segments) == 1:
                files.append(self._file_entry(path, tree[path]))
        return [self._dir_entry(d, tree) for d in sorted(dirs)] + files

    def _tree(self, repo_type, repo_id, repo, revision, path, recursive) -> None:
        _, commit = self._tree_at(repo_type, repo_id, repo, revision)
        tree = commit["tree"]
        if path and path in tree:
            raise HubError(400, f"{path} is a file, not a directory")
        if path and not any(p.startswith(path + "/") for p in tree):
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        self._send_json(200, self._entries_under(tree, path, recursive))

    def _paths_info(self, repo_type, repo_id, repo, revision) -> None:
        body = self._body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        _, commit = self._tree_at(repo_type, repo_id, repo, revision)
        tree = commit["tree"]
        out = []
        for path in paths:
            path = path.strip("/")
            if path in tree:
                out.append(self._file_entry(path, tree[path]))
            elif path and any(p.startswith(path + "/") for p in tree):
                out.append(self._dir_entry(path, tree))
        self._send_json(200, out)

    def _commits(self, repo_type, repo_id, repo, revision) -> None:
        oid, _ = self._tree_at(repo_type, repo_id, repo, revision)
        out = []
        while oid:
            commit = self.server.store.load_commit(repo_type, repo_id, oid)
            out.append({"id": oid, "title": commit["title"], "message": commit["message"],
                        "authors": [{"user": self.server.user}], "date": commit["date"]})
            oid = commit["parents"][0] if commit["parents"] else None
        self._send_json(200, out)

    def _preupload(self, repo_type, repo_id, repo, revision) -> None:
        body = self._json_body()
        _, commit = self._tree_at(repo_type, repo_id, repo, revision)
        tree = commit["tree"]
        files = []
        for f in body.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            path = f["path"]
            lfs = path.lower().endswith(LFS_EXTENSIONS) or int(f.get("size", 0)) >= LFS_THRESHOLD or b"\0" in sample
            entry = tree.get(path)
            oid = None
            if entry is not None:
                oid = entry["sha256"] if entry["lfs"] else entry["oid"]
            files.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._send_json(200, {"files": files, "commitOid": commit["id"]})

    def _commit(self, repo_type, repo_id, branch, query) -> None:
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the test hub")
        data = self._body()
        self.server.apply_fault("commit")
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        oid = self.server.store.commit(repo_type, repo_id, branch, lines)
        url = f"{self.base_url}/{URL_PREFIX[repo_type]}{repo_id}/commit/{oid}"
        self._send_json(200, {"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._require_write()
        store = self.server.store
        with store.lock:
            repo = store.load_repo(repo_type, repo_id)
        self._check_read(repo)
        body = self._json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            item = {"oid": oid, "size": size, "authenticated": True}
            if not store.has_object(oid, size):
                item["actions"] = {"upload": {"href": f"{self.base_url}/__lfs__/{oid}?size={size}",
                                              "header": {"X-Lfs-Size": str(size)}, "expires_in": 3600}}
            objects.append(item)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", oid):
            raise HubError(400, "bad oid")
        size = int(parse_qs(urlsplit(self.path).query).get("size", ["-1"])[0])
        tmp = self.server.store.root / "tmp" / f"{oid}.{uuid.uuid4().hex}"
        try:
            self._body_to_file(tmp)
            self.server.apply_fault("lfs_put")
            self.server.store.adopt_file(tmp, oid, size if size >= 0 else tmp.stat().st_size)
        finally:
            tmp.unlink(missing_ok=True)
        self._send(200, b"", content_type="text/plain")

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        store = self.server.store
        with store.lock:
            repo = store.load_repo(repo_type, repo_id)
        self._check_read(repo)
        oid, commit = self._tree_at(repo_type, repo_id, repo, revision)
        entry = commit["tree"].get(path)
        if entry is None:
            err = HubError(404, f"Entry not found: {path}", "EntryNotFound")
            err_headers = {"X-Repo-Commit": oid}
            headers = {"X-Error-Message": err.message, "X-Error-Code": err.code, **err_headers}
            return self._send_json(404, {"error": err.message}, headers)
        etag = entry["sha256"] if entry["lfs"] else entry["oid"]
        headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry["size"])})
        size = entry["size"]
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (m.group(1) == "" and m.group(2) == ""):
                raise HubError(416, f"bad range {rng}")
            if m.group(1) == "":
                start, end = max(0, size - int(m.group(2))), size - 1
            else:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size or start > end:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}", **headers})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return
        with open(store.object_path(entry["sha256"]), "rb") as f:
            f.seek(start)
            remaining = length
            while remaining:
                chunk = f.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                remaining -= len(chunk)


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, token: str, user: str = "tester", host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), HubHandler)
        self.store = HubStore(root)
        self.token = token
        self.user = user
        self.requests: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self._faults: dict[str, Fault] = {}
        self._fault_lock = threading.Lock()

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # a client that went away (tests kill clients on purpose)
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, method: str, path: str) -> None:
        with self._fault_lock:
            self.requests.append((method, path))

    # -- test hooks
    def fail(self, point: str, after: int = 0) -> Fault:
        """Drop the connection of every request at `point` ("commit" | "lfs_put") after `after` have passed."""
        fault = Fault("fail", after)
        with self._fault_lock:
            self._faults[point] = fault
        return fault

    def block(self, point: str, after: int = 0) -> Fault:
        """Hold request number `after + 1` at `point` (and any later one) until `release()`; `reached` is
        set when the first one is held. Held requests then fail (connection dropped)."""
        fault = Fault("block", after)
        with self._fault_lock:
            self._faults[point] = fault
        return fault

    def release(self) -> None:
        with self._fault_lock:
            faults, self._faults = list(self._faults.values()), {}
        for fault in faults:
            fault.released.set()

    def apply_fault(self, point: str) -> None:
        with self._fault_lock:
            fault = self._faults.get(point)
            if fault is None:
                return
            fault.seen += 1
            if fault.seen <= fault.after:
                return
        fault.reached.set()
        if fault.kind == "block":
            fault.released.wait(timeout=120)
        raise DropConnection()


class HubServer:
    """Start/stop wrapper: `with HubServer(root, token) as hub: hub.url`."""

    def __init__(self, root: str | Path, token: str = "hf_test_token_0123456789", user: str = "tester", port: int = 0) -> None:
        self.root = Path(root)
        self.token = token
        self.user = user
        self.port = port
        self.httpd: Optional[HubHTTPServer] = None
        self.thread: Optional[threading.Thread] = None

    def start(self) -> "HubServer":
        self.httpd = HubHTTPServer(self.root, self.token, self.user, port=self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.release()
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.httpd is not None, "server not started"
        return self.httpd.url

    def __getattr__(self, name: str) -> Any:  # fail/block/release/requests/errors/store
        httpd = self.__dict__.get("httpd")
        if httpd is None:
            raise AttributeError(name)
        return getattr(httpd, name)

    def client_env(self, home: str | Path) -> dict[str, str]:
        """Environment for a client subprocess talking to this server (HF_HOME under `home`)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update({
            "HF_ENDPOINT": self.url,
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
            "HF_HOME": str(Path(home) / "hf_home"),
            "HF_DATASETS_CACHE": str(Path(home) / "datasets_cache"),
        })
        env.pop("TRANSFORMERS_OFFLINE", None)
        return env


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Hub-compatible test server")
    parser.add_argument("--root", default=tempfile.mkdtemp(prefix="hub-"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="hf_test_token_0123456789")
    args = parser.parse_args()
    server = HubServer(args.root, args.token, port=args.port).start()
    print(f"serving {args.root} at {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
