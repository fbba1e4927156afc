"""Headless Chromium driven over the Chrome DevTools protocol, for the browser tests.

Starts the distribution's ``chromium`` (Debian package ``chromium``; ``.ci/run`` installs it)
with a private profile and remote debugging on 127.0.0.1, and talks to its page over the
DevTools websocket (aiohttp, already a locked dependency). It records every console error,
uncaught exception and browser log error of the page, clicks with real mouse events, evaluates
script, and takes screenshots. The process is stopped by its own PID.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

#: Executable names of Chromium, the distribution's first.
EXECUTABLES = ("chromium", "chromium-browser")
INSTALL_HINT = "apt-get install -y chromium (.ci/run installs it when missing)"


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, EXECUTABLES) if path), None)


class Browser:
    """One headless Chromium with one page; use as ``async with Browser(profile) as page``."""

    def __init__(self, profile: Path, width: int = 1280, height: int = 900) -> None:
        self.profile, self.width, self.height = profile, width, height
        self.process: subprocess.Popen | None = None

    async def __aenter__(self) -> Page:
        executable = find_chromium()
        if executable is None:
            raise RuntimeError(f"chromium is not installed: {INSTALL_HINT}")
        self.profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={self.width},{self.height}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port = await asyncio.to_thread(self._port)
        targets = await asyncio.to_thread(self._targets, port)
        target = next(t for t in targets if t["type"] == "page")
        self.page = Page()
        await self.page.connect(target["webSocketDebuggerUrl"])
        return self.page

    def _port(self) -> int:
        """The port Chromium chose, from the DevToolsActivePort file it writes into its profile."""
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with status {self.process.returncode} before it listened")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)
        raise RuntimeError("chromium did not open its DevTools port within 30 s")

    @staticmethod
    def _targets(port: int) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            return json.loads(response.read())

    async def __aexit__(self, *exc: object) -> None:
        page = getattr(self, "page", None)
        if page is not None:
            await page.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Page:
    """The DevTools session of one page: commands, the page's errors, and helpers built on them."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self._next_id = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._loaded = asyncio.Event()

    async def connect(self, url: str) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession()
        self._socket = await self._session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")

    async def close(self) -> None:
        self._reader.cancel()
        await self._socket.close()
        await self._session.close()

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools error: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                self._event(data["method"], data.get("params", {}))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert", "warning"):
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params["args"])
            self.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"uncaught: {details.get('exception', {}).get('description', details['text'])}")
        elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
            self.errors.append(f"log {params['entry']['level']}: {params['entry']['text']} {params['entry'].get('url', '')}")

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        await self._socket.send_str(json.dumps({"id": self._next_id, "method": method, "params": params}))
        return await asyncio.wait_for(future, timeout=30)

    async def open(self, url: str) -> None:
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), timeout=30)

    async def reload(self) -> None:
        self._loaded.clear()
        await self.send("Page.reload", ignoreCache=True)
        await asyncio.wait_for(self._loaded.wait(), timeout=30)

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page; a script error fails the test with its message."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> bool:
        """Whether ``expression`` becomes true within ``timeout`` seconds (for what follows an event, e.g. hashchange)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.evaluate(f"Boolean({expression})"):
                return True
            await asyncio.sleep(0.05)
        return False

    async def images_loaded(self) -> bool:
        """Whether every image of the page loads and decodes (lazy ones are loaded first); False names none."""
        return await self.evaluate(
            "Promise.all(Array.from(document.images).map(i => { i.loading = 'eager';"
            " return i.decode().then(() => i.naturalWidth > 0, () => false); })).then(all => all.every(Boolean))"
        )

    async def click(self, selector: str) -> None:
        """A real left click (mouse events) in the middle of the first element matching ``selector``."""
        box = await self.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return null;"
            " el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        assert box is not None, f"nothing matches {selector!r}"
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    async def choose(self, select: str, value: str) -> None:
        """Pick ``value`` in the ``<select>`` matching ``select``, with the change event a user's choice fires."""
        await self.evaluate(
            f"(() => {{ const s = document.querySelector({json.dumps(select)}); s.value = {json.dumps(value)};"
            " if (s.value !== " + json.dumps(value) + ") throw new Error('no such option');"
            " s.dispatchEvent(new Event('change', {bubbles: true})); })()"
        )

    async def set_viewport(self, width: int, height: int, mobile: bool = False) -> None:
        await self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    async def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = await self.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        result = await self.send("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
