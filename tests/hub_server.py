"""A tiny in-memory Hugging Face Hub on 127.0.0.1 for offline tests.

It answers the endpoints that ``huggingface_hub`` calls for ``create_repo``, ``create_branch``,
``upload_folder`` (preupload, then a commit whose files come inline as base64, i.e. "regular"
uploads; ``create_pr=True`` opens ``refs/pr/N``) and ``snapshot_download`` / ``hf_hub_download``
(repo info, then HEAD and GET on ``resolve``), at any branch or pull-request revision, so the
real client code runs end to end with ``HF_ENDPOINT`` pointed here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class _Repo:
    """Files and commits per ref: ``main``, branches, and ``refs/pr/N`` for pull requests."""

    def __init__(self):
        self.refs: dict[str, dict[str, bytes]] = {"main": {}}
        self.ref_commits: dict[str, list[str]] = {"main": []}
        self.snapshots: dict[str, dict[str, bytes]] = {}  # commit sha -> files
        self.prs = 0

    def lookup(self, rev: str) -> dict[str, bytes] | None:
        """Files at a ref name or a commit sha (clients resolve files by the sha)."""
        return self.refs.get(rev, self.snapshots.get(rev))

    @property
    def files(self) -> dict[str, bytes]:
        return self.refs["main"]

    @property
    def commits(self) -> list[str]:
        return self.ref_commits["main"]

    @property
    def sha(self) -> str:
        return self.sha_of("main")

    def sha_of(self, ref: str) -> str:
        if ref in self.snapshots:
            return ref
        commits = self.ref_commits.get(ref) or []
        return commits[-1] if commits else "0" * 40

    def branch(self, name: str) -> None:
        self.refs[name] = dict(self.refs["main"])
        self.ref_commits[name] = list(self.ref_commits["main"])


class FakeHub:
    def __init__(self):
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code, body=b"", headers=None, head=False):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                    headers = {"Content-Type": "application/json", **(headers or {})}
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _parts(self) -> list[str]:
                # Split before unquoting: a revision such as refs/pr/1 arrives as refs%2Fpr%2F1.
                return [unquote(p) for p in urlparse(self.path).path.split("/")]

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
                query = urlparse(self.path).query
                hub.requests.append(("POST", path))
                body = self._body()
                if not self.headers.get("Authorization"):  # writes need a token, as on the Hub
                    return self._send(401, {"error": "Invalid credentials in Authorization "
                                                     "header"})
                if path == "/api/repos/create":
                    data = json.loads(body or b"{}")
                    repo_id = f"{data['organization']}/{data['name']}" \
                        if data.get("organization") else data["name"]
                    hub.repos.setdefault(repo_id, _Repo())
                    return self._send(200, {"url": f"{hub.url}/{repo_id}", "name": repo_id})
                if path == "/api/validate-yaml":  # model-card metadata check before upload
                    return self._send(200, {"errors": [], "warnings": []})
                parts = self._parts()
                # /api/models/{org}/{name}/{preupload|commit|branch}/{revision}
                if len(parts) >= 7 and parts[1] == "api" and parts[2] == "models":
                    repo_id, action, ref = f"{parts[3]}/{parts[4]}", parts[5], parts[6]
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"},
                                          {"X-Error-Code": "RepoNotFound"})
                    if action == "branch":
                        if ref in repo.refs:
                            return self._send(409, {"error": "Reference already exists"})
                        repo.branch(ref)
                        return self._send(200, {})
                    if action in ("preupload", "commit") and ref not in repo.refs:
                        return self._send(404, {"error": f"Invalid rev id: {ref}"},
                                          {"X-Error-Code": "RevisionNotFound"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in files]})
                    if action == "commit":
                        answer = {}
                        if "create_pr=1" in query:
                            repo.prs += 1
                            ref = f"refs/pr/{repo.prs}"
                            repo.branch(ref)
                            answer["pullRequestUrl"] = f"{hub.url}/{repo_id}/discussions/{repo.prs}"
                        files = repo.refs[ref]
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                v = item["value"]
                                files[v["path"]] = base64.b64decode(v["content"])
                            elif item["key"] == "deletedFile":
                                files.pop(item["value"]["path"], None)
                        commits = repo.ref_commits[ref]
                        sha = hashlib.sha1(json.dumps(sorted(
                            (k, hashlib.sha1(v).hexdigest()) for k, v in files.items()
                        )).encode() + f"{ref}{len(commits)}".encode()).hexdigest()
                        commits.append(sha)
                        repo.snapshots[sha] = dict(files)
                        return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                                                "commitOid": sha, "success": True, **answer})
                return self._send(404, {"error": f"unknown endpoint {path}"})

            def _ref(self, repo, ref: str, head: bool):
                """The files at ``ref``, or None after answering 404."""
                files = repo.lookup(ref)
                if files is None:
                    self._send(404, {"error": f"Invalid rev id: {ref}"},
                               {"X-Error-Code": "RevisionNotFound"}, head)
                return files

            def _get(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("HEAD" if head else "GET", path))
                parts = self._parts()
                # /api/models/{org}/{name}/revision/{revision}
                if len(parts) >= 7 and parts[1:3] == ["api", "models"] and parts[5] == "revision":
                    repo = hub.repos.get(f"{parts[3]}/{parts[4]}")
                    if repo is None or not repo.commits:
                        return self._send(404, {"error": "Repository not found"},
                                          {"X-Error-Code": "RepoNotFound"}, head)
                    files = self._ref(repo, parts[6], head)
                    if files is None:
                        return None
                    return self._send(200, {
                        "id": f"{parts[3]}/{parts[4]}", "sha": repo.sha_of(parts[6]),
                        "private": False,
                        "siblings": [{"rfilename": f} for f in sorted(files)]}, head=head)
                # /api/models/{org}/{name}/tree/{revision}: the file listing of a snapshot
                if len(parts) >= 7 and parts[1:3] == ["api", "models"] and parts[5] == "tree":
                    repo = hub.repos.get(f"{parts[3]}/{parts[4]}")
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"},
                                          {"X-Error-Code": "RepoNotFound"}, head)
                    files = self._ref(repo, parts[6], head)
                    if files is None:
                        return None
                    return self._send(200, [
                        {"type": "file", "path": f, "size": len(d),
                         "oid": hashlib.sha1(d).hexdigest()}
                        for f, d in sorted(files.items())], head=head)
                # /{org}/{name}/resolve/{revision}/{filename...}
                if len(parts) >= 6 and parts[3] == "resolve":
                    repo = hub.repos.get(f"{parts[1]}/{parts[2]}")
                    filename = "/".join(parts[5:])
                    files = (repo.lookup(parts[4]) if repo is not None else None) or {}
                    if filename not in files:
                        return self._send(404, {"error": "Entry not found"},
                                          {"X-Error-Code": "EntryNotFound"}, head)
                    data = files[filename]
                    return self._send(200, data, {
                        "X-Repo-Commit": repo.sha_of(parts[4]),
                        "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                        "Content-Type": "application/octet-stream"}, head=head)
                return self._send(404, {"error": f"unknown endpoint {path}"}, head=head)

            def do_GET(self):
                self._get(head=False)

            def do_HEAD(self):
                self._get(head=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
