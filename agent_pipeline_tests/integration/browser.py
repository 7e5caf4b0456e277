"""A headless Chromium (Debian's package) driven over the DevTools protocol: no browser download,
no WebDriver. Enough to open a page, wait for what a person would read, click a button by its
label, read a link and save a screenshot."""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

from agent_pipeline.lib.core import processes
from agent_pipeline_tests.integration.services import binary


class Browser:
    def __init__(self, width: int = 1600, height: int = 1000) -> None:
        exe = binary("chromium", "/usr/lib/chromium/chromium")
        self.profile = Path(tempfile.mkdtemp(prefix="agent-pipeline-chromium-"))
        self.proc = processes.start_group(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            log_path=self.profile / "chromium.log",
        )  # fmt: skip
        port_file = self.profile / "DevToolsActivePort"
        processes.wait_until(lambda: port_file.is_file() and port_file.read_text().strip(), 60, what="chromium up")
        self.port = int(port_file.read_text().split()[0])
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback DevTools endpoint
            target = json.loads(resp.read())
        from websockets.sync.client import connect

        self.ws = connect(target["webSocketDebuggerUrl"], max_size=2**28, open_timeout=20)
        self.ids = itertools.count(1)
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, timeout: float = 60, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_text(self, *needles: str, timeout: float = 60) -> str:
        found = {"text": ""}

        def all_there() -> bool:
            found["text"] = self.text()
            return all(n in found["text"] for n in needles)

        try:
            processes.wait_until(all_there, timeout, interval=0.5, what=f"page text {needles}")
        except TimeoutError as exc:
            missing = [n for n in needles if n not in found["text"]]
            raise AssertionError(f"{missing} not on the page; it shows:\n{found['text'][:3000]}") from exc
        return found["text"]

    def click(self, label: str, selector: str = "button") -> bool:
        """Click the first visible ``selector`` whose text is ``label``; False when there is none."""
        return bool(
            self.evaluate(
                f"""(() => {{
                  const el = [...document.querySelectorAll({json.dumps(selector)})]
                    .find(e => e.innerText && e.innerText.trim() === {json.dumps(label)} && e.offsetParent !== null);
                  if (!el) return false; el.click(); return true; }})()"""
            )
        )

    def type_into(self, selector: str, text: str) -> bool:
        """Focus the first ``selector`` and type ``text`` as keystrokes would (React sees input events)."""
        if not self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return false; "
            "el.focus(); return true; })()"
        ):
            return False
        self.call("Input.insertText", text=text)
        return True

    def scroll_to_text(self, text: str) -> bool:
        """Scroll the first element whose own text is ``text`` to the top of its scroll area."""
        return bool(
            self.evaluate(
                f"""(() => {{
                  const el = [...document.querySelectorAll('body *')]
                    .find(e => e.children.length === 0 && e.textContent.trim() === {json.dumps(text)});
                  if (!el) return false; el.scrollIntoView({{block: 'start'}}); return true; }})()"""
            )
        )

    def links(self, contains: str) -> list[str]:
        return self.evaluate(
            f"[...document.querySelectorAll('a')].map(a => a.href).filter(h => h.includes({json.dumps(contains)}))"
        )

    def frame_texts(self) -> str:
        """Text of every frame of the page, iframes included (the DOM pierced)."""
        root = self.call("DOM.getDocument", depth=-1, pierce=True)["root"]
        out: list[str] = []

        def walk(node) -> None:
            if node.get("nodeType") == 3:
                out.append(node.get("nodeValue", ""))
            for key in ("children", "shadowRoots"):
                for child in node.get(key, []):
                    walk(child)
            if "contentDocument" in node:
                walk(node["contentDocument"])

        walk(root)
        return " ".join(out)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        return path

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            processes.stop_group(self.proc)
            shutil.rmtree(self.profile, ignore_errors=True)
