"""Headless Chromium driven over the DevTools protocol: open a page, wait for its text, collect the
console errors and uncaught exceptions, take a screenshot."""

import base64
import itertools
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

from tests.integration.processes import stop, wait_until
from tests.ops.test_light_curves_browser import headless_browser


class Page:
    """One browser tab. ``errors`` accumulates console errors and uncaught exceptions."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.errors: list[str] = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride", width=1600, height=1000, deviceScaleFactor=1, mobile=False
        )

    def call(self, method: str, **params: Any) -> dict:
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=120))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note(message)

    def _note(self, event: dict) -> None:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description", details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")

    def text(self) -> str:
        result = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''")
        return result["result"].get("value", "")

    def open(self, url: str, *expected: str, dismiss: str | None = None, timeout: float = 90.0) -> str:
        """Navigate to ``url`` and wait until its text holds every ``expected`` string, clicking the
        ``dismiss`` button of any dialog in the way; returns the text."""

        def shows_everything() -> bool:
            if dismiss:
                self.click_button(dismiss)
            return all(piece in self.text() for piece in expected)

        self.call("Page.navigate", url=url)
        wait_until(shows_everything, f"{url} to show {expected}", timeout, interval=1.0)
        time.sleep(2.0)  # late requests (charts, metadata) finish and report their errors
        return self.text()

    def click_button(self, label: str) -> None:
        """Click every button whose text is ``label`` (none: nothing happens)."""
        script = (
            "[...document.querySelectorAll('button')]"
            f".filter(b => b.innerText.trim() === {json.dumps(label)}).forEach(b => b.click())"
        )
        self.call("Runtime.evaluate", expression=script)

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def browser_page() -> Iterator[Page]:
    """A page of a fresh headless Chromium (temporary profile), closed at the end."""
    with tempfile.TemporaryDirectory(prefix="lc-chromium-") as profile:
        command = [*headless_browser(profile), "--remote-debugging-port=0", "about:blank"]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            wait_until(lambda: port_file.exists() and port_file.read_text().strip(), "Chromium", 60.0, 0.5)
            port = int(port_file.read_text().split()[0])
            targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = next(t for t in targets if t["type"] == "page")
            with connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30) as socket:
                yield Page(socket)
        finally:
            stop(process)
