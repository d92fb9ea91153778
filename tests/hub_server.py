"""A Hugging Face Hub stand-in on 127.0.0.1 for tests: the real `huggingface_hub` client talks to it.

Repos live in memory as commits (path -> bytes) with branch refs. Download routes: revision info
(`/api/models/{repo}[/revision/{rev}]`), tree listing, paths-info, refs, and `resolve` with HEAD/GET,
`X-Repo-Commit`, `ETag` (git blob sha1), `Content-Length` and byte ranges. Upload routes: repo creation,
preupload (every file "regular"), NDJSON commits (a stale `parentCommit` is refused with 412), YAML
validation and whoami. Errors carry the `X-Error-Code` header the client maps to typed exceptions.
Plain file URLs (`/openai/...`) stand in for HTTPS downloads outside the Hub. Every request is logged
(`server.log`), and `server.faults` holds callables that may answer a request in place of the server.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

GITATTRIBUTES = (
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.npz filter=lfs diff=lfs merge=lfs -text\n"
)
_REPO_KEYWORDS = {"revision", "tree", "preupload", "commit", "commits", "refs", "paths-info"}
_TREE_PAGE = 1000


def git_blob_sha(data: bytes) -> str:
    """Return the git blob sha1 of `data` (the Hub's ETag for regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    """One immutable snapshot of a repo."""

    sha: str
    files: dict[str, bytes]
    parent: str | None
    message: str


@dataclass
class Repo:
    """A repo: commits by sha and refs (branch -> sha); `gated` repos refuse downloads with 403."""

    repo_id: str
    repo_type: str = "model"
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False

    def resolve(self, revision: str) -> Commit | None:
        """Return the commit a branch name or (full) commit sha points to, or None."""
        sha = self.refs.get(revision, revision)
        return self.commits.get(sha)


@dataclass
class RequestRecord:
    """What one request asked for and what it got."""

    method: str
    path: str
    status: int = 0
    bytes_sent: int = 0
    range: str | None = None


@dataclass
class HubRequest:
    """The request a fault hook sees; `handler.reply(...)` answers it."""

    method: str
    path: str
    headers: Mapping[str, str]
    handler: _Handler


Fault = Callable[[HubRequest], bool]
"""A fault hook: return True after answering the request itself (through `request.handler.reply`)."""


class HubServer:
    """In-memory Hub with a request log and a fault list; start() binds 127.0.0.1 on a free port."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.url_files: dict[str, bytes] = {}
        self.log: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Bind 127.0.0.1:0 and serve in a daemon thread."""
        handler = type("BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name="hub-server").start()
        return self

    def stop(self) -> None:
        """Shut the server down."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def url(self) -> str:
        """Base URL (`http://127.0.0.1:<port>`)."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # ---- state -----------------------------------------------------------------------------

    def create_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes] | None = None,
        *,
        repo_type: str = "model",
        gated: bool = False,
        exist_ok: bool = False,
    ) -> str:
        """Create a repo whose first commit holds `.gitattributes` plus `files`; return the head sha."""
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                if not exist_ok:
                    raise ValueError(f"repo {repo_id} exists")
                return self.commit(repo_id, files or {}, repo_type=repo_type) if files else self.head(repo_id)
            repo = Repo(repo_id, repo_type, gated=gated)
            self.repos[key] = repo
            initial = {".gitattributes": GITATTRIBUTES, **dict(files or {})}
            return self._add_commit(repo, "main", initial, "initial commit")

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        *,
        deletions: tuple[str, ...] = (),
        branch: str = "main",
        repo_type: str = "model",
        message: str = "update",
    ) -> str:
        """Add a commit on `branch` (created from main when new) that adds/replaces files; return its sha."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            base = repo.resolve(branch) or repo.resolve("main")
            assert base is not None
            tree = {p: b for p, b in base.files.items() if not _deleted(p, deletions)}
            tree.update(files)
            return self._add_commit(repo, branch, tree, message, parent=base.sha)

    def head(self, repo_id: str, branch: str = "main", *, repo_type: str = "model") -> str:
        """Return the sha a branch points to."""
        return self.repos[(repo_type, repo_id)].refs[branch]

    def _add_commit(
        self, repo: Repo, branch: str, files: dict[str, bytes], message: str, parent: str | None = None
    ) -> str:
        seed = f"{repo.repo_id}\0{branch}\0{parent}\0{message}\0{next(self._counter)}".encode()
        for path in sorted(files):
            seed += f"\0{path}\0{git_blob_sha(files[path])}".encode()
        sha = hashlib.sha1(seed).hexdigest()
        repo.commits[sha] = Commit(sha, files, parent, message)
        repo.refs[branch] = sha
        return sha

    def add_url_file(self, path: str, data: bytes) -> str:
        """Serve `data` at `/{path}` (a plain HTTPS-style file URL); return the full URL."""
        with self.lock:
            self.url_files["/" + path.lstrip("/")] = data
        return f"{self.url}/{path.lstrip('/')}"

    def clear_log(self) -> None:
        """Forget the request log."""
        with self.lock:
            self.log.clear()

    def requests_matching(self, needle: str = "", method: str | None = None) -> list[RequestRecord]:
        """Logged requests whose path contains `needle` (and with this method, when given)."""
        with self.lock:
            return [r for r in self.log if needle in r.path and (method is None or r.method == method)]


def _deleted(path: str, deletions: tuple[str, ...]) -> bool:
    return any(path == d or (d.endswith("/") and path.startswith(d)) for d in deletions)


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # silence stderr logging
        pass

    # ---- plumbing --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        record = RequestRecord(self.command, self.path, range=self.headers.get("Range"))
        self._record = record
        with self.hub.lock:
            self.hub.log.append(record)
            faults = list(self.hub.faults)
        request = HubRequest(self.command, self.path, self.headers, self)
        if any(fault(request) for fault in faults):
            return
        try:
            self._route()
        except Exception as exc:  # a server bug must show up as a 500, not a hung client
            self.reply(500, {"error": f"{type(exc).__name__}: {exc}"})

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch

    def reply(
        self,
        status: int,
        body: bytes | dict | list | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Send a response (dict/list bodies as JSON); HEAD sends headers only."""
        if isinstance(body, dict | list):
            payload = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        else:
            payload = body or b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self._record.status = status
        if self.command != "HEAD":
            self.wfile.write(payload)
            self._record.bytes_sent = len(payload)

    def _error(self, status: int, code: str, message: str, extra: Mapping[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **(extra or {})}
        self.reply(status, {"error": message}, headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # ---- routing ---------------------------------------------------------------------------

    def _route(self) -> None:
        split = urlsplit(self.path)
        raw = split.path
        query = parse_qs(split.query)
        if raw in self.hub.url_files:
            return self._send_file(self.hub.url_files[raw], extra={})
        parts = [p for p in raw.split("/") if p]
        if parts[:2] == ["api", "whoami-v2"]:
            return self.reply(200, {"type": "user", "name": "tester", "orgs": [], "auth": {}})
        if parts[:2] == ["api", "validate-yaml"]:
            self._body()
            return self.reply(200, {"errors": [], "warnings": []})
        if parts[:3] == ["api", "repos", "create"]:
            return self._create_repo()
        if len(parts) >= 3 and parts[0] == "api" and parts[1] in {"models", "datasets", "spaces"}:
            return self._api(parts[1][:-1], parts[2:], query)
        repo_type = "model"
        if parts and parts[0] in {"datasets", "spaces"}:
            repo_type, parts = parts[0][:-1], parts[1:]
        if "resolve" in parts:
            at = parts.index("resolve")
            if at in (1, 2) and len(parts) > at + 2:
                repo_id = "/".join(parts[:at])
                path = unquote("/".join(parts[at + 2 :]))
                return self._resolve(repo_type, repo_id, unquote(parts[at + 1]), path)
        self._error(404, "NotFound", f"no route for {self.command} {raw}")

    def _repo(self, repo_type: str, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository Not Found: {repo_id}")
        return repo

    def _commit(self, repo: Repo, revision: str) -> Commit | None:
        commit = repo.resolve(revision)
        if commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def _api(self, repo_type: str, parts: list[str], query: dict[str, list[str]]) -> None:
        n = 2 if len(parts) >= 2 and parts[1] not in _REPO_KEYWORDS else 1
        repo_id, rest = "/".join(parts[:n]), parts[n:]
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            if repo is None:
                return None
            action = rest[0] if rest else "revision"
            revision = unquote(rest[1]) if len(rest) > 1 else "main"
            if action == "refs":
                branches = [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.refs.items()
                ]
                return self.reply(200, {"branches": branches, "tags": [], "converts": []})
            if action == "preupload":
                return self._preupload(repo, revision)
            if action == "commit":
                return self._create_commit(repo, revision)
            commit = self._commit(repo, revision)
            if commit is None:
                return None
            if action == "revision":
                return self._info(repo, commit)
            if action == "tree":
                folder = unquote("/".join(rest[2:])).strip("/")
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                return self._tree(repo, commit, folder, recursive, query)
            if action == "paths-info":
                return self._paths_info(commit)
        return self._error(404, "NotFound", f"unknown API route {self.path}")

    # ---- download side ---------------------------------------------------------------------

    def _info(self, repo: Repo, commit: Commit) -> None:
        siblings = [{"rfilename": p} for p in sorted(commit.files)]
        self.reply(
            200,
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": commit.sha,
                "private": False,
                "gated": "manual" if repo.gated else False,
                "siblings": siblings,
                "tags": [],
            },
        )

    def _entry(self, path: str, data: bytes) -> dict:
        return {"type": "file", "path": path, "size": len(data), "oid": git_blob_sha(data)}

    def _tree(self, repo: Repo, commit: Commit, folder: str, recursive: bool, query: dict) -> None:
        prefix = f"{folder}/" if folder else ""
        below = {p: d for p, d in commit.files.items() if p.startswith(prefix)}
        if folder and not below:
            return self._error(
                404,
                "EntryNotFound",
                f"{folder} does not exist on {commit.sha}",
                {"X-Repo-Commit": commit.sha},
            )
        entries, dirs = [], set()
        for path in sorted(below):
            rel = path[len(prefix) :].split("/")
            for depth in range(1, len(rel)):
                if recursive or depth == 1:
                    dirs.add(prefix + "/".join(rel[:depth]))
            if recursive or len(rel) == 1:
                entries.append(self._entry(path, below[path]))
        entries += [
            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
            for d in sorted(dirs)
        ]
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + _TREE_PAGE]
        headers = {}
        if start + _TREE_PAGE < len(entries):
            rev = quote(commit.sha, safe="")
            path = f"/{quote(folder, safe='')}" if folder else ""
            nxt = f"{self.hub.url}/api/{repo.repo_type}s/{repo.repo_id}/tree/{rev}{path}"
            flag = "true" if recursive else "false"
            headers["Link"] = f'<{nxt}?recursive={flag}&cursor={start + _TREE_PAGE}>; rel="next"'
        self.reply(200, page, headers)

    def _paths_info(self, commit: Commit) -> None:
        form = parse_qs(self._body().decode())
        paths = form.get("paths", [])
        out = [self._entry(p, commit.files[p]) for p in paths if p in commit.files]
        self.reply(200, out)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            if repo is None:
                return
            if repo.gated:
                return self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted.")
            commit = self._commit(repo, revision)
            if commit is None:
                return
            data = commit.files.get(path)
        if data is None:
            return self._error(
                404, "EntryNotFound", f"{path} does not exist at {revision}", {"X-Repo-Commit": commit.sha}
            )
        self._send_file(data, extra={"X-Repo-Commit": commit.sha, "ETag": f'"{git_blob_sha(data)}"'})

    def _send_file(self, data: bytes, extra: Mapping[str, str]) -> None:
        headers = {"Accept-Ranges": "bytes", **extra}
        spec = self.headers.get("Range")
        if not spec or self.command == "HEAD":
            return self.reply(200, data, headers)
        span = _parse_range(spec, len(data))
        if span is None:
            return self.reply(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
        begin, end = span
        headers["Content-Range"] = f"bytes {begin}-{end - 1}/{len(data)}"
        self.reply(206, data[begin:end], headers)

    # ---- upload side -----------------------------------------------------------------------

    def _create_repo(self) -> None:
        payload = json.loads(self._body() or b"{}")
        repo_id = f"{payload.get('organization') or 'tester'}/{payload['name']}"
        repo_type = payload.get("type") or "model"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.url}/{prefix}{repo_id}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                return self.reply(409, {"error": "You already created this model repo", "url": url})
            self.hub.create_repo(repo_id, repo_type=repo_type)
        self.reply(200, {"url": url, "name": repo_id})

    def _preupload(self, repo: Repo, revision: str) -> None:
        payload = json.loads(self._body() or b"{}")
        files = [
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
            for f in payload.get("files", [])
        ]
        self.reply(200, {"files": files, "commitOid": repo.refs.get(revision)})

    def _create_commit(self, repo: Repo, revision: str) -> None:
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        if revision not in repo.refs:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        header = next((ln["value"] for ln in lines if ln["key"] == "header"), {})
        parent = header.get("parentCommit")
        if parent and parent != repo.refs[revision]:
            return self._error(
                412,
                "PreconditionFailed",
                f"parentCommit {parent} is not the head of {revision} ({repo.refs[revision]})",
            )
        added: dict[str, bytes] = {}
        deleted: list[str] = []
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                added[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                deleted.append(value["path"])
            elif line["key"] == "deletedFolder":
                deleted.append(value["path"].rstrip("/") + "/")
            elif line["key"] != "header":
                return self.reply(400, {"error": f"unsupported commit operation {line['key']}"})
        sha = self.hub.commit(
            repo.repo_id,
            added,
            deletions=tuple(deleted),
            branch=revision,
            repo_type=repo.repo_type,
            message=header.get("summary", ""),
        )
        self.reply(200, {"commitOid": sha, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{sha}"})


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """Parse a single `bytes=` range into [begin, end); None when unsatisfiable."""
    unit, _, value = spec.partition("=")
    if unit.strip() != "bytes" or "," in value:
        return None
    first, _, last = value.strip().partition("-")
    if first == "":
        begin, end = max(size - int(last), 0), size
    else:
        begin = int(first)
        end = min(int(last) + 1, size) if last else size
    return (begin, end) if begin < end else None
