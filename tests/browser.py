"""A real headless Chromium, driven over the DevTools protocol on a pipe (no port, no network).

The HTML report's tests open pages in it, read what the page's script drew, move the mouse,
drag and click as a user would, and collect every console message, uncaught exception and
browser log entry (a Content-Security-Policy violation is one). Standard library only:
Chromium's ``--remote-debugging-pipe`` reads JSON commands, each ended by a NUL byte, on file
descriptor 3 and writes replies and events on descriptor 4.

``python tests/browser.py PAGE.html OUT.png [SELECTOR]`` writes a screenshot of a page, the mouse
on the element SELECTOR finds (how ``docs/img/report-html.png`` is made).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT = 60.0  # a safety net for a loaded machine: every wait is on the browser's own reply


def find_browser() -> str | None:
    """The browser named by ``GRADLOG_TEST_BROWSER`` (it alone, when set), else the first of
    :data:`CANDIDATES` on the PATH; None when there is none."""
    named = os.environ.get("GRADLOG_TEST_BROWSER")
    if named:
        return shutil.which(named)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


_WIRE = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.execv(sys.argv[3], sys.argv[3:])"
)


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium; :meth:`open` gives a :class:`Page` (a fresh tab)."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="gradlog-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # a small Python puts the pipes on the descriptors 3 and 4 that Chromium reads and
        # writes (copied above 9 first, so that placing one cannot overwrite the other)
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_browser_r, from_browser_w)]
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WIRE,
                str(ends[0]),
                str(ends[1]),
                executable,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                f"--window-size={width},{height}",
                f"--user-data-dir={self._profile}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=ends,
        )
        for fd in (to_browser_r, from_browser_w, *ends):
            os.close(fd)
        self._reader = os.fdopen(self._from_browser, "rb", buffering=0)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._reader.read(1 << 16)
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies[message["id"]] = message
                    else:
                        self._events.append(message)
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self._cond:
            self._next += 1
            key = self._next
        message: dict = {"id": key, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        with self._cond:
            if not self._cond.wait_for(lambda: key in self._replies or self._closed, TIMEOUT):
                raise BrowserError(f"no reply to {method} in {TIMEOUT:.0f} s")
            if key not in self._replies:
                raise BrowserError(f"the browser exited before replying to {method}")
            reply = self._replies.pop(key)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str) -> dict:
        with self._cond:

            def found() -> dict | None:
                return next(
                    (
                        e
                        for e in self._events
                        if e["method"] == method and e.get("sessionId") == session
                    ),
                    None,
                )

            if not self._cond.wait_for(lambda: found() is not None or self._closed, TIMEOUT):
                raise BrowserError(f"no {method} in {TIMEOUT:.0f} s")
            event = found()
            if event is None:
                raise BrowserError(f"the browser exited before {method}")
            self._events.remove(event)
            return event

    def events(self, session: str) -> list[dict]:
        with self._cond:
            return [e for e in self._events if e.get("sessionId") == session]

    def open(self, path: Path) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session)
        self.wait_event("Page.loadEventFired", session)
        return Page(self, session)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except BrowserError:
            pass
        try:
            self._proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.browser.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}, self.session
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def messages(self) -> list[str]:
        """Every console message, uncaught exception and browser log entry so far."""
        out = []
        for e in self.browser.events(self.session):
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled":
                out.append(f"console.{p['type']}: {[a.get('value') for a in p['args']]}")
            elif e["method"] == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails']}")
            elif e["method"] == "Log.entryAdded":
                out.append(f"log.{p['entry']['level']}: {p['entry']['text']}")
        return out

    def mouse(self, kind: str, x: float, y: float, clicks: int = 0) -> None:
        params = {"type": kind, "x": x, "y": y, "button": "left" if clicks else "none"}
        if clicks:
            params["clickCount"] = clicks
        self.browser.send("Input.dispatchMouseEvent", params, self.session)

    def click(self, x: float, y: float, clicks: int = 1) -> None:
        self.mouse("mousePressed", x, y, clicks)
        self.mouse("mouseReleased", x, y, clicks)

    def centre(self, selector: str) -> tuple[float, float]:
        """The middle of the element ``selector`` finds, scrolled into view, in the viewport."""
        box = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        return box[0], box[1]

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG."""
        size = self.browser.send("Page.getLayoutMetrics", session=self.session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        params = {"format": "png", "captureBeyondViewport": True, "clip": clip}
        data = self.browser.send("Page.captureScreenshot", params, self.session)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


if __name__ == "__main__":
    # python tests/browser.py PAGE.html OUT.png [SELECTOR]: a screenshot, with the mouse
    # resting on the element SELECTOR finds (a chart's point shows its values)
    executable = find_browser()
    if executable is None:
        sys.exit("no Chromium found (apt-get install chromium)")
    with Browser(executable, height=1000) as browser:
        page = browser.open(Path(sys.argv[1]))
        if len(sys.argv) > 3:
            page.mouse("mouseMoved", *page.centre(sys.argv[3]))
        page.screenshot(Path(sys.argv[2]))
