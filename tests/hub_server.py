"""A tiny in-memory Hugging Face Hub on 127.0.0.1 for offline tests.

It answers the endpoints that ``huggingface_hub`` calls for ``create_repo``, ``upload_folder``
(preupload, then a commit whose files come inline as base64, i.e. "regular" uploads) and
``snapshot_download`` (repo info, then HEAD and GET on ``resolve``), so the real client code
runs end to end with ``HF_ENDPOINT`` pointed here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class _Repo:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.commits: list[str] = []

    @property
    def sha(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


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

            def do_POST(self):
                path = unquote(urlparse(self.path).path)
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
                parts = path.split("/")
                # /api/models/{org}/{name}/{preupload|commit}/{revision}
                if len(parts) >= 7 and parts[1] == "api" and parts[2] == "models":
                    repo_id, action = f"{parts[3]}/{parts[4]}", parts[5]
                    repo = hub.repos.get(repo_id)
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"},
                                          {"X-Error-Code": "RepoNotFound"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        return self._send(200, {"files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in files]})
                    if action == "commit":
                        for line in body.decode().splitlines():
                            item = json.loads(line)
                            if item["key"] == "file":
                                v = item["value"]
                                repo.files[v["path"]] = base64.b64decode(v["content"])
                        sha = hashlib.sha1(json.dumps(sorted(
                            (k, hashlib.sha1(v).hexdigest()) for k, v in repo.files.items()
                        )).encode() + str(len(repo.commits)).encode()).hexdigest()
                        repo.commits.append(sha)
                        return self._send(200, {"commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                                                "commitOid": sha, "success": True})
                return self._send(404, {"error": f"unknown endpoint {path}"})

            def _get(self, head: bool):
                path = unquote(urlparse(self.path).path)
                hub.requests.append(("HEAD" if head else "GET", path))
                parts = path.split("/")
                # /api/models/{org}/{name}/revision/{revision}
                if len(parts) >= 7 and parts[1:3] == ["api", "models"] and parts[5] == "revision":
                    repo = hub.repos.get(f"{parts[3]}/{parts[4]}")
                    if repo is None or not repo.commits:
                        return self._send(404, {"error": "Repository not found"},
                                          {"X-Error-Code": "RepoNotFound"}, head)
                    return self._send(200, {
                        "id": f"{parts[3]}/{parts[4]}", "sha": repo.sha, "private": False,
                        "siblings": [{"rfilename": f} for f in sorted(repo.files)]}, head=head)
                # /api/models/{org}/{name}/tree/{revision}: the file listing of a snapshot
                if len(parts) >= 7 and parts[1:3] == ["api", "models"] and parts[5] == "tree":
                    repo = hub.repos.get(f"{parts[3]}/{parts[4]}")
                    if repo is None:
                        return self._send(404, {"error": "Repository not found"},
                                          {"X-Error-Code": "RepoNotFound"}, head)
                    return self._send(200, [
                        {"type": "file", "path": f, "size": len(d),
                         "oid": hashlib.sha1(d).hexdigest()}
                        for f, d in sorted(repo.files.items())], head=head)
                # /{org}/{name}/resolve/{revision}/{filename...}
                if len(parts) >= 6 and parts[3] == "resolve":
                    repo = hub.repos.get(f"{parts[1]}/{parts[2]}")
                    filename = "/".join(parts[5:])
                    if repo is None or filename not in repo.files:
                        return self._send(404, {"error": "Entry not found"},
                                          {"X-Error-Code": "EntryNotFound"}, head)
                    data = repo.files[filename]
                    return self._send(200, data, {
                        "X-Repo-Commit": repo.sha,
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
