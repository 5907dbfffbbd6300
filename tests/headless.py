"""Load a page in headless Chromium and report what went wrong, through the DevTools protocol:
uncaught exceptions, console errors and warnings, log entries (failed loads, CSP violations),
failed requests, and every request that left the machine's files; plus a screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # URLs other than file:, data:, about:
    screenshot: bytes = b""
    loaded: bool = False


def load(url: str, *, width: int = 1200, height: int = 1600, timeout: float = 60.0) -> PageLoad:
    import base64

    import websocket  # websocket-client (dev extra)

    profile = tempfile.mkdtemp(prefix="audiokit-chromium-")
    log_path = os.path.join(profile, "stderr.log")
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={os.path.join(profile, 'data')}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        f"--window-size={width},{height}",
        "about:blank",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)
    result = PageLoad()
    ws = None
    try:
        deadline = time.monotonic() + timeout
        port = None
        while port is None:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"Chromium did not start: {open(log_path, errors='replace').read()[-2000:]}")
            match = re.search(
                r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", open(log_path, errors="replace").read()
            )
            port = int(match[1]) if match else None
            time.sleep(0.05)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        next_id = [0]

        def send(method: str, params: dict | None = None) -> int:
            next_id[0] += 1
            ws.send(json.dumps({"id": next_id[0], "method": method, "params": params or {}}))
            return next_id[0]

        def handle(message: dict) -> None:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                result.errors.append(
                    f"exception: {details.get('exception', {}).get('description') or details.get('text')}"
                )
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "warning", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                result.errors.append(f"console.{params['type']}: {text}")
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                entry = params["entry"]
                result.errors.append(f"log {entry['level']}: {entry['text']} {entry.get('url', '')}")
            elif method == "Network.loadingFailed":
                result.errors.append(f"load failed: {params.get('errorText')}")
            elif method == "Network.requestWillBeSent":
                request_url = params["request"]["url"]
                if not request_url.startswith(("file:", "data:", "about:")):
                    result.requests.append(request_url)
            elif method == "Page.loadEventFired":
                result.loaded = True

        def wait_for(request_id: int) -> dict:
            while True:
                message = json.loads(ws.recv())
                if message.get("id") == request_id:
                    return message
                handle(message)

        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            wait_for(send(method))
        wait_for(send("Page.navigate", {"url": url}))
        while not result.loaded and time.monotonic() < deadline:
            handle(json.loads(ws.recv()))
        # Late messages (an image that fails to decode after load) get a moment to arrive.
        ws.settimeout(0.5)
        try:
            while True:
                handle(json.loads(ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        ws.settimeout(timeout)
        shot = wait_for(send("Page.captureScreenshot", {"format": "png"}))
        result.screenshot = base64.b64decode(shot["result"]["data"])
        return result
    finally:
        if ws is not None:
            ws.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def not_blank(png: bytes) -> tuple[float, float]:
    """(standard deviation of the grey levels, share of pixels that are not the background)."""
    import io

    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    background = np.bincount(grey.astype(np.uint8).ravel()).argmax()
    return float(grey.std()), float((np.abs(grey - background) > 8).mean())
