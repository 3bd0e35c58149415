"""A fake GitHub REST API on loopback: the few endpoints of a sticky pull-request comment.

It keeps one repository's pull-request comments in memory, pages them as GitHub does
(``per_page``, ``page`` and a ``Link`` header), checks the token, refuses a body over its
limit with GitHub's 422, and records every request it answered. A test starts it on port 0
of 127.0.0.1 in a thread and stops it (:func:`serving`).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "test-token-not-a-secret"
REPO = "octo/models"
PR = 7
BOT = {"login": "github-actions[bot]", "type": "Bot"}


@dataclass
class FakeGitHub:
    """The server's state; tests set it up and read it back."""

    comments: list[dict] = field(default_factory=list)
    requests: list[tuple[str, str, dict]] = field(default_factory=list)  # method, path, body
    login: str | None = None  # GET /user answers 403, as for an Actions token, when None
    page_size: int = 100  # the most per page, whatever per_page asks
    body_limit: int = 65_536
    base: str = ""
    _next_id: int = 1000

    def add(self, body: str, user: dict | None = None) -> dict:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "body": body,
            "user": user or {"login": "someone", "type": "User"},
            "html_url": f"https://github.example/{REPO}/pull/{PR}#issuecomment-{self._next_id}",
        }
        self.comments.append(comment)
        return comment

    def writes(self) -> list[tuple[str, str, dict]]:
        return [r for r in self.requests if r[0] != "GET"]


def _handler(state: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    comments_path = f"/repos/{REPO}/issues/{PR}/comments"
    one_comment = f"/repos/{REPO}/issues/comments/"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, data, headers: dict | None = None) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else {}
            state.requests.append((method, url.path, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._send(401, {"message": "Bad credentials"})
            if method == "GET" and url.path == "/user":
                if state.login is None:
                    return self._send(403, {"message": "Resource not accessible by integration"})
                return self._send(200, {"login": state.login, "type": "User"})
            if method in ("POST", "PATCH") and len(body.get("body", "")) > state.body_limit:
                return self._send(
                    422,
                    {
                        "message": "Validation Failed",
                        "errors": [
                            {
                                "resource": "IssueComment",
                                "code": "custom",
                                "field": "body",
                                "message": f"Body is too long (maximum is {state.body_limit} characters)",
                            }
                        ],
                    },
                )
            if method == "GET" and url.path == comments_path:
                size = min(int(query.get("per_page", 30)), state.page_size)
                page = int(query.get("page", 1))
                shown = state.comments[(page - 1) * size : page * size]
                headers = {}
                if page * size < len(state.comments):
                    nxt = f"{state.base}{url.path}?per_page={size}&page={page + 1}"
                    headers["Link"] = f'<{nxt}>; rel="next"'
                return self._send(200, shown, headers)
            if method == "POST" and url.path == comments_path:
                return self._send(201, state.add(body["body"], BOT))
            if method == "PATCH" and url.path.startswith(one_comment):
                wanted = int(url.path[len(one_comment) :])
                for c in state.comments:
                    if c["id"] == wanted:
                        c["body"] = body["body"]
                        return self._send(200, c)
            return self._send(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PATCH(self) -> None:
            self._handle("PATCH")

    return Handler


@contextmanager
def serving(state: FakeGitHub) -> Iterator[FakeGitHub]:
    """The fake API on an ephemeral loopback port, for the length of the ``with``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
