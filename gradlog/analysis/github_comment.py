"""One sticky pull-request comment: found by a hidden marker, updated in place, made once.

A workflow that comments on every push buries the pull request under copies of one report.
The convention instead: the comment's body starts with a hidden marker (an HTML comment,
``<!-- gradlog-report -->``); each run lists the pull request's comments (every page, by the
``Link`` header), edits the one that starts with the marker, and creates it only when there is
none. Among several, the oldest written by the token's own user wins (the user is asked once,
``GET /user``; an Actions token may not say, and then a bot's comment is preferred, since that
is what an Actions token writes as).

Standard library only (``urllib``): GitHub's REST API, version 2022-11-28, at ``GITHUB_API_URL``
(GitHub Enterprise Server, or a test's server on loopback). Every failure is one
:class:`GradlogError` line: the request, GitHub's status and message, and what to check.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gradlog.analysis.render.fit import COMMENT_LIMIT
from gradlog.errors import GradlogError

DEFAULT_API = "https://api.github.com"
TIMEOUT = 30.0  # seconds for one request
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')
_HINTS = {
    401: "check GITHUB_TOKEN",
    403: "the token needs 'pull-requests: write'; a fork's pull request gets a read-only token",
    404: "check the repository, the pull request number and that the token can see them",
}


@dataclass(frozen=True)
class Target:
    """Where the comment goes, and with what token."""

    api: str
    repo: str
    number: int
    token: str


@dataclass(frozen=True)
class Posted:
    action: str  # "created", "updated" or "unchanged"
    url: str


def target(
    environ: dict, *, number: int | None = None, repo: str | None = None, api: str | None = None
) -> Target:
    """The target from options, else from the variables GitHub Actions sets."""
    token = environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN")
    if not token:
        raise GradlogError(
            "GITHUB_TOKEN is not set: the token that may comment on the pull request"
        )
    repo = repo or environ.get("GITHUB_REPOSITORY")
    if not repo or not _REPO.match(repo):
        raise GradlogError(
            f"repository {repo!r}: expected OWNER/NAME (--repo, or GITHUB_REPOSITORY)"
            if repo
            else "no repository: pass --repo OWNER/NAME, or set GITHUB_REPOSITORY"
        )
    if number is None:
        number = _event_number(environ.get("GITHUB_EVENT_PATH"))
    api = (api or environ.get("GITHUB_API_URL") or DEFAULT_API).rstrip("/")
    if urllib.parse.urlsplit(api).scheme not in ("http", "https"):
        raise GradlogError(f"GITHUB_API_URL {api!r}: expected an http(s) URL")
    return Target(api, repo, number, token)


def _event_number(path: str | None) -> int:
    missing = "no pull request: pass --pr N, or run on a pull_request event (GITHUB_EVENT_PATH)"
    if not path:
        raise GradlogError(missing)
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GradlogError(f"{path} (GITHUB_EVENT_PATH): cannot read the event ({exc})") from None
    pull = event.get("pull_request") if isinstance(event, dict) else None
    issue = event.get("issue") if isinstance(event, dict) else None
    if isinstance(pull, dict) and isinstance(pull.get("number"), int):
        return pull["number"]
    if isinstance(issue, dict) and "pull_request" in issue and isinstance(issue.get("number"), int):
        return issue["number"]  # a comment on a pull request
    raise GradlogError(f"{path} (GITHUB_EVENT_PATH): {missing}")


def check_marker(marker: str) -> str:
    if not (marker.startswith("<!--") and marker.endswith("-->")) or "\n" in marker:
        raise GradlogError(f"--marker {marker!r}: expected a one-line HTML comment, <!-- ... -->")
    return marker


def comment_size(body: str) -> int:
    """Characters as GitHub may count them (UTF-16 code units: never fewer than code points)."""
    return len(body.encode("utf-16-le")) // 2


def sticky_body(report: str, marker: str) -> str:
    """The comment: the marker on its own line, then the report; refused over GitHub's limit."""
    body = f"{check_marker(marker)}\n{report}"
    size = comment_size(body)
    if size > COMMENT_LIMIT:
        room = COMMENT_LIMIT - comment_size(marker) - 1
        raise GradlogError(
            f"the comment would be {size:,} characters, over GitHub's {COMMENT_LIMIT:,}-character "
            f"limit: make the report with --max-chars {room}"
        )
    return body


def upsert(to: Target, body: str, marker: str) -> Posted:
    """Edit the pull request's comment that starts with ``marker``, or create it."""
    login = _login(to)
    comments = _comments(to)
    found = _pick(comments, marker, login)
    if found is None:
        path = f"/repos/{to.repo}/issues/{to.number}/comments"
        made = _call(to, "POST", path, {"body": body})
        return Posted("created", str(made.get("html_url", "")))
    if found.get("body") == body:  # no edit, no "edited" mark, no notification
        return Posted("unchanged", str(found.get("html_url", "")))
    made = _call(to, "PATCH", f"/repos/{to.repo}/issues/comments/{found['id']}", {"body": body})
    return Posted("updated", str(made.get("html_url", "")))


def _pick(comments: list, marker: str, login: str | None) -> dict | None:
    ours = [c for c in comments if isinstance(c, dict) and str(c.get("body")).startswith(marker)]
    if login is not None:  # another user's comment cannot be edited: only ours count
        ours = [c for c in ours if (c.get("user") or {}).get("login") == login]
    else:
        bots = [c for c in ours if (c.get("user") or {}).get("type") == "Bot"]
        ours = bots or ours
    return ours[0] if ours else None


def _login(to: Target) -> str | None:
    """The token's user, or None when the API will not say (an Actions token)."""
    try:
        me = _call(to, "GET", "/user")
    except GradlogError:
        return None
    return me.get("login") if isinstance(me, dict) else None


def _comments(to: Target) -> list:
    url = f"{to.api}/repos/{to.repo}/issues/{to.number}/comments?per_page=100"
    out: list = []
    while url:
        page, link = _request(to, "GET", url)
        if not isinstance(page, list):
            raise GradlogError(f"GitHub API: GET {_show(url)}: expected a list of comments")
        out += page
        nxt = _NEXT.search(link or "")
        url = nxt.group(1) if nxt else None
        if url and urllib.parse.urlsplit(url).netloc != urllib.parse.urlsplit(to.api).netloc:
            raise GradlogError(f"GitHub API: the next page is on another host ({_show(url)})")
    return out


def _call(to: Target, method: str, path: str, data: dict | None = None):
    return _request(to, method, to.api + path, data)[0]


def _request(to: Target, method: str, url: str, data: dict | None = None):
    """(decoded JSON, Link header) of one request; one GradlogError line on any failure."""
    request = urllib.request.Request(
        url,
        method=method,
        data=None if data is None else json.dumps(data).encode("utf-8"),
        headers={
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {to.token}",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "gradlog",
            **({"Content-Type": "application/json"} if data is not None else {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            raw = response.read()
            link = response.headers.get("Link")
    except urllib.error.HTTPError as exc:
        raise GradlogError(_http_error(method, url, exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GradlogError(
            f"GitHub API: {method} {_show(url)}: cannot connect ({reason})"
        ) from None
    try:
        return (json.loads(raw) if raw.strip() else {}), link
    except ValueError:
        raise GradlogError(f"GitHub API: {method} {_show(url)}: the answer is not JSON") from None


def _http_error(method: str, url: str, exc: urllib.error.HTTPError) -> str:
    try:
        answer = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        answer = {}
    message = str(answer.get("message") or exc.reason) if isinstance(answer, dict) else ""
    errors = answer.get("errors") if isinstance(answer, dict) else None
    if isinstance(errors, list):  # 422: "Validation Failed" says little, its errors say what
        details = [str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)]
        message = "; ".join([message, *details]) if details else message
    hint = _HINTS.get(exc.code)
    text = f"GitHub API: {method} {_show(url)}: {exc.code} {message[:300]}"
    return f"{text} ({hint})" if hint else text


def _show(url: str) -> str:
    """A URL without its query (the page number is noise, and nothing secret is in it)."""
    return urllib.parse.urlsplit(url).path
