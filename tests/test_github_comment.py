"""``gradlog comment``: one sticky pull-request comment, against a fake GitHub API on loopback.

Each test starts its own server (tests/fake_github.py) on 127.0.0.1, port 0, and stops it;
the real command line reaches it through ``GITHUB_API_URL``, as GitHub Enterprise would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fake_github import BOT, PR, REPO, TOKEN, FakeGitHub, serving
from runlogs import gradlog

from gradlog.analysis import github_comment
from gradlog.errors import GradlogError

MARKER = "<!-- gradlog-report -->"
REPORT = "## ✅ gradlog: healthy\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n"


@pytest.fixture
def api():
    with serving(FakeGitHub()) as state:
        yield state


@pytest.fixture
def report(tmp_path: Path) -> Path:
    path = tmp_path / "report.md"
    path.write_text(REPORT, encoding="utf-8")
    return path


def comment(api: FakeGitHub, tmp_path: Path, *args: str, token: str = TOKEN, **env: str):
    """``gradlog comment`` as a workflow runs it: the variables Actions sets, and an event."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": PR}}))
    variables = {
        "GITHUB_TOKEN": token,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": api.base,
        **env,
    }
    return gradlog("comment", *args, env=variables)


def one_line_error(proc) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("Error: "), err
    assert "Traceback" not in err and TOKEN not in err
    return err


def test_creates_the_comment_when_none_has_the_marker(api, tmp_path, report) -> None:
    api.add("LGTM")
    api.add(f"> {MARKER}\n> quoted by a reviewer")  # the marker not at the start: not ours
    proc = comment(api, tmp_path, str(report))
    assert proc.returncode == 0, proc.stderr.decode()
    assert [(m, p) for m, p, _ in api.writes()] == [("POST", f"/repos/{REPO}/issues/{PR}/comments")]
    made = api.comments[-1]
    assert made["body"] == f"{MARKER}\n{REPORT}"
    assert f"comment created: {REPO}#{PR} {made['html_url']}" in proc.stderr.decode()
    again = comment(api, tmp_path, str(report))  # the same report again: nothing to edit
    assert again.returncode == 0 and "comment unchanged" in again.stderr.decode()
    assert len(api.writes()) == 1 and len(api.comments) == 3


def test_a_second_run_updates_the_first_comment(api, tmp_path, report) -> None:
    assert comment(api, tmp_path, str(report)).returncode == 0
    report.write_text("## ❌ gradlog: collapse\n", encoding="utf-8")
    proc = comment(api, tmp_path, str(report))
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(api.comments) == 1
    assert api.comments[0]["body"] == f"{MARKER}\n## ❌ gradlog: collapse\n"
    assert [m for m, _, _ in api.writes()] == ["POST", "PATCH"]
    assert "comment updated" in proc.stderr.decode()


def test_finds_the_marker_on_a_later_page_and_edits_its_own(api, tmp_path, report) -> None:
    api.page_size = 2
    for i in range(3):
        api.add(f"comment {i}")
    api.add(f"{MARKER}\nsomeone else's, copied", {"login": "mallory", "type": "User"})
    ours = api.add(f"{MARKER}\nold report", {"login": "ci-user", "type": "User"})
    api.login = "ci-user"  # a personal token: GET /user names it
    proc = comment(api, tmp_path, str(report))
    assert proc.returncode == 0, proc.stderr.decode()
    pages = [p for m, p, _ in api.requests if m == "GET" and p.endswith("/comments")]
    assert len(pages) == 3  # 5 comments, 2 a page: the Link header was followed
    assert api.writes() == [
        ("PATCH", f"/repos/{REPO}/issues/comments/{ours['id']}", {"body": f"{MARKER}\n{REPORT}"})
    ]
    assert api.comments[3]["body"] == f"{MARKER}\nsomeone else's, copied"


def test_an_actions_token_prefers_the_bots_comment(api, tmp_path, report) -> None:
    api.add(f"{MARKER}\nposted by hand", {"login": "alice", "type": "User"})
    bots = api.add(f"{MARKER}\nold report", BOT)
    proc = comment(api, tmp_path, str(report), "--marker", MARKER)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [(m, p) for m, p, _ in api.writes()] == [
        ("PATCH", f"/repos/{REPO}/issues/comments/{bots['id']}")
    ]


def test_a_marker_of_its_own_and_a_pr_number_option(api, tmp_path, report) -> None:
    api.add(f"{MARKER}\ndefault marker", BOT)
    proc = comment(
        api, tmp_path, str(report), "--marker", "<!-- gradlog: nightly -->", "--pr", str(PR)
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert api.comments[-1]["body"].startswith("<!-- gradlog: nightly -->\n")
    assert len(api.comments) == 2  # the other marker's comment left alone


def test_a_report_too_long_for_a_comment_is_refused_before_any_request(api, tmp_path) -> None:
    big = tmp_path / "big.md"
    big.write_text("x" * 65_536, encoding="utf-8")  # with the marker, over the limit
    err = one_line_error(comment(api, tmp_path, str(big)))
    assert "65,536-character limit" in err and "--max-chars 65512" in err
    assert api.requests == []


def test_githubs_422_body_too_long_is_one_line(api, tmp_path, report) -> None:
    api.body_limit = 40  # the server counts otherwise than we do: its answer still reads well
    err = one_line_error(comment(api, tmp_path, str(report)))
    assert (
        f"POST /repos/{REPO}/issues/{PR}/comments: 422 Validation Failed; Body is too long" in err
    )


def test_bad_credentials_are_one_line(api, tmp_path, report) -> None:
    err = one_line_error(comment(api, tmp_path, str(report), token="wrong"))
    assert "401 Bad credentials (check GITHUB_TOKEN)" in err
    assert api.writes() == []


def test_an_unknown_repository_is_one_line(api, tmp_path, report) -> None:
    err = one_line_error(comment(api, tmp_path, str(report), "--repo", "octo/missing"))
    assert "GET /repos/octo/missing/issues/7/comments: 404 Not Found (check the repository" in err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"GITHUB_TOKEN": ""}, "GITHUB_TOKEN is not set"),
        ({"GITHUB_EVENT_PATH": ""}, "no pull request: pass --pr N"),
        ({"GITHUB_EVENT_PATH": "{tmp}/push.json"}, "no pull request: pass --pr N"),
        ({"GITHUB_REPOSITORY": "no-slash"}, "expected OWNER/NAME"),
        ({"GITHUB_API_URL": "file:///etc"}, "expected an http(s) URL"),
    ],
)
def test_missing_settings_are_refused(tmp_path, env, expected) -> None:
    (tmp_path / "push.json").write_text('{"ref": "refs/heads/main"}')
    (tmp_path / "pr.json").write_text(json.dumps({"pull_request": {"number": PR}}))
    variables = {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(tmp_path / "pr.json"),
        **{k: v.replace("{tmp}", str(tmp_path)) for k, v in env.items()},
    }
    with pytest.raises(GradlogError, match=re.escape(expected)):
        github_comment.target(variables)


def test_the_pull_request_number_comes_from_the_event(tmp_path) -> None:
    event = tmp_path / "event.json"
    base = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": REPO, "GITHUB_EVENT_PATH": str(event)}
    event.write_text(json.dumps({"pull_request": {"number": 12}}))
    assert github_comment.target(base).number == 12
    event.write_text(json.dumps({"issue": {"number": 13, "pull_request": {}}}))
    assert github_comment.target(base).number == 13  # a comment on a pull request
    assert github_comment.target(base, number=5).number == 5
    assert github_comment.target(base).api == "https://api.github.com"
    with pytest.raises(GradlogError, match="one-line HTML comment"):
        github_comment.check_marker("gradlog")


def test_an_unreachable_api_is_one_line(tmp_path, report) -> None:
    with serving(FakeGitHub()) as gone:
        pass  # stopped: its port now refuses connections
    err = one_line_error(comment(gone, tmp_path, str(report)))
    assert "cannot connect" in err


def test_dry_run_prints_the_body_and_sends_nothing(api, tmp_path, report) -> None:
    proc = comment(api, tmp_path, str(report), "--dry-run")
    assert proc.returncode == 0
    assert proc.stdout.decode() == f"{MARKER}\n{REPORT}"
    assert api.requests == []
