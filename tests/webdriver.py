"""A few lines of the W3C WebDriver protocol over urllib, driving Debian's chromium through
its chromedriver (both system packages; nothing is downloaded). Enough for vm-web's tests:
open a page, find elements, click, type, read text and the browser's console log."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from vmtools.lab.ports import free_port, holds_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000"]


def missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is not installed (Debian chromium, chromium-driver)"
    return None


class WebDriverError(RuntimeError):
    pass


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="vm-web-chromium-")
        # chromedriver takes the port it is given: one chosen free outside the kernel's
        # ephemeral range (lab/ports.py), and another if something took it first
        for _ in range(5):
            port = free_port()
            self.driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.base = f"http://127.0.0.1:{port}"
            if self._answers(port):
                break
            self.driver.wait()
        else:
            raise WebDriverError("chromedriver never held the port it was given")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": CHROMIUM,
                                   "args": FLAGS + [f"--user-data-dir={self.profile}"]}}}}
        self.sid = self._call("POST", "/session", caps)["sessionId"]

    def _answers(self, port: int, timeout: float = 60.0) -> bool:
        """chromedriver holds ``port`` itself and answers there (False: it exited)."""
        deadline = time.time() + timeout
        while self.driver.poll() is None:
            if holds_port(self.driver.pid, port):
                try:
                    self._call("GET", "/status")
                    return True
                except (OSError, WebDriverError):
                    pass
            if time.time() > deadline:
                self.driver.kill()
                raise WebDriverError(f"chromedriver did not answer on port {port} in "
                                     f"{timeout:g} s")
            time.sleep(0.1)
        return False

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            answer = json.loads(exc.read() or b"{}")
            raise WebDriverError(f"{method} {path}: {answer.get('value')}") from None
        return answer.get("value", answer) if path != "/session" else answer["value"]

    def cmd(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.sid}{path}", body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    @property
    def url(self) -> str:
        return self.cmd("GET", "/url")

    @property
    def title(self) -> str:
        return self.cmd("GET", "/title")

    def find(self, css: str) -> str:
        return self.cmd("POST", "/element", {"using": "css selector", "value": css})[ELEMENT]

    def find_all(self, css: str) -> list[str]:
        return [e[ELEMENT] for e in self.cmd("POST", "/elements",
                                             {"using": "css selector", "value": css})]

    def text(self, element: str) -> str:
        return self.cmd("GET", f"/element/{element}/text")

    def click(self, element: str) -> None:
        self.cmd("POST", f"/element/{element}/click", {})

    def type(self, element: str, text: str) -> None:
        self.cmd("POST", f"/element/{element}/value", {"text": text})

    def keys(self, text: str) -> None:
        """Keys to whatever has the focus (\\ue004 is Tab, \\ue007 Enter)."""
        self.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "kbd", "actions": [
            a for ch in text for a in ({"type": "keyDown", "value": ch},
                                       {"type": "keyUp", "value": ch})]}]})
        self.cmd("DELETE", "/actions")

    def script(self, source: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": source, "args": list(args)})

    def body_text(self) -> str:
        return self.text(self.find("body"))

    def log(self) -> list[dict]:
        """The console entries since the last call (chromedriver's log endpoint)."""
        return self.cmd("POST", "/se/log", {"type": "browser"})

    def screenshot(self, path: str) -> None:
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(self.cmd("GET", "/screenshot")))

    def wait_for(self, check, timeout: float = 60.0, what: str = "the page"):
        deadline = time.time() + timeout
        while True:
            try:
                got = check()
                if got:
                    return got
            except WebDriverError:
                pass
            if time.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.3)

    def quit(self) -> None:
        try:
            self.cmd("DELETE", "")
        except (OSError, WebDriverError):
            pass
        self.driver.terminate()
        try:
            self.driver.wait(10)
        except subprocess.TimeoutExpired:
            self.driver.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
