"""Check the web page of ``dfdetect serve`` in headless Chromium: upload a file, screenshot the result.

Starts ``dfdetect serve`` on 127.0.0.1 (or uses ``--url``, loopback only), opens
the page in Debian's ``chromium`` driven over the DevTools protocol through a
pipe (``--remote-debugging-pipe``: no Playwright/Selenium, no browser download),
picks the file in the form, submits it, waits for the verdict (and the
Grad-CAM picture for images, the annotated video for videos), checks what the
page shows and saves a full-page PNG.

    apt-get install -y chromium
    python scripts/page_screenshot.py --model model.pt --file ../shared/data/photos/faces/multiface.jpg --out page.png
    python scripts/page_screenshot.py --model model.pt --file clip.mp4 --out video.png

Exit 0 when the page shows a verdict without an error (and, for an image, one
table row per face and a loaded Grad-CAM picture; for a video, its sampled frames
and, unless --no-annotate, the annotated video loaded in its player); 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from deepfake_cli.media.images import is_video_path
from deepfake_cli.serve.local import LocalServer, require_loopback, wait_ready


class Chromium:
    """Headless Chromium spoken to over the DevTools protocol on file descriptors 3 and 4."""

    def __init__(self, binary: str, width: int, height: int):
        self._profile = tempfile.mkdtemp(prefix="dfdetect-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:  # in the child: Chromium reads commands on fd 3, answers on fd 4
            # Move both ends above 4 first: the pipes may themselves be fds 3 and 4.
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)  # os.dup2 makes the copies inheritable
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--disable-extensions",
             f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=wire_pipes, close_fds=False,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        self.session: str | None = None

    def _read(self) -> None:
        buffer = b""
        with os.fdopen(self._from_browser, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buffer += chunk
                *messages, buffer = buffer.split(b"\0")
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message and message["id"] in self._replies:
                        self._replies[message["id"]].put(message)
                    else:
                        self._events.put(message)

    def send(self, method: str, params: dict | None = None, timeout: float = 60.0, session: bool = True) -> dict:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = queue.Queue()
            message = {"id": ident, "method": method, "params": params or {}}
            if session and self.session:
                message["sessionId"] = self.session
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._replies[ident].get(timeout=timeout)
        del self._replies[ident]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            event = self._events.get(timeout=max(0.01, deadline - time.monotonic()))
            if event.get("method") == method:
                return event.get("params", {})

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        return result.get("result", {}).get("value")

    def open_page(self, url: str, width: int, height: int) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def set_file(self, selector: str, path: Path) -> None:
        root = self.send("DOM.getDocument")["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(path.resolve())]})

    def screenshot(self, path: Path, width: int) -> None:
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close", session=False, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            os.close(self._to_browser)
        shutil.rmtree(self._profile, ignore_errors=True)


PAGE_STATE = """(() => {
  const shown = (id) => getComputedStyle(document.getElementById(id)).display !== "none";
  const cam = document.getElementById("cam");
  return {
    status: document.getElementById("status").textContent,
    error: shown("error") ? document.getElementById("error").textContent : null,
    verdict: shown("result") ? document.getElementById("verdict-label").textContent : null,
    face_rows: document.querySelectorAll("#faces tr").length - 1,
    cam_width: cam.complete ? cam.naturalWidth : 0,
    cam_caption: document.getElementById("cam-caption").textContent,
    frame_rows: document.querySelectorAll("#frames tr").length - 1,
    model: document.getElementById("model").textContent,
    annotated: (() => {
      const v = document.getElementById("annotated");
      return {src: v.getAttribute("src"), shown: shown("annotated-panel"), ready: v.readyState,
              error: v.error ? v.error.code : null, width: v.videoWidth, height: v.videoHeight};
    })(),
  };
})()"""

# Plays the page's annotated video a moment (muted, as autoplay rules want): what it reached.
PLAY_ANNOTATED = """(async () => {
  const v = document.getElementById("annotated");
  const deadline = Date.now() + 20000;
  while (v.readyState < 2 && !v.error && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  let played = false;
  if (!v.error) { v.muted = true; try { await v.play(); played = true; } catch (e) {} }
  await new Promise(r => setTimeout(r, 500));
  v.pause();
  return {ready: v.readyState, error: v.error ? v.error.code : null, width: v.videoWidth, played, time: v.currentTime};
})()"""


def finished(state: dict, video: bool) -> bool:
    if state["error"]:
        return True
    if not state["verdict"] or "done" not in state["status"]:
        return False
    if video:  # and the annotated video's first frame (or its error), when one was asked for
        annotated = state["annotated"]
        return not annotated["src"] or annotated["ready"] >= 2 or annotated["error"] is not None
    return state["verdict"] == "NO FACE" or state["cam_width"] > 0 or state["cam_caption"].startswith("Grad-CAM unavailable")


def run(url: str, args: argparse.Namespace) -> int:
    video = is_video_path(args.file)
    browser = Chromium(args.chromium, args.width, args.height)
    try:
        browser.open_page(f"{url}/", args.width, args.height)
        browser.set_file("#file", args.file)
        browser.evaluate(f"document.getElementById('annotate').checked = {'false' if args.no_annotate else 'true'}")
        browser.evaluate("document.getElementById('upload').requestSubmit()")
        deadline = time.monotonic() + args.timeout
        state = browser.evaluate(PAGE_STATE)
        while not finished(state, video) and time.monotonic() < deadline:
            time.sleep(0.5)
            state = browser.evaluate(PAGE_STATE)
        time.sleep(0.3)  # let the canvas and image paint
        browser.screenshot(args.out, args.width)
    finally:
        browser.close()
    print(json.dumps(state, indent=2))
    print(f"screenshot: {args.out}")
    ok = finished(state, video) and not state["error"] and bool(state["verdict"])
    if ok and not video and state["verdict"] != "NO FACE":
        ok = state["face_rows"] > 0 and state["cam_width"] > 0
    if ok and video:
        ok = state["frame_rows"] > 0
        if not args.no_annotate:
            annotated = state["annotated"]
            ok = ok and annotated["shown"] and annotated["error"] is None and annotated["ready"] >= 2
    print("page check:", "OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, required=True, help="image or video to upload through the page")
    parser.add_argument("--out", type=Path, default=Path("page.png"))
    parser.add_argument("--model", "-m", help="model for the server we start (default: the default model)")
    parser.add_argument("--url", help="use a running server instead (loopback only)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the result")
    parser.add_argument("--no-annotate", action="store_true", help="videos: untick the page's 'annotated copy' box")
    args = parser.parse_args()
    if not args.file.is_file():
        raise SystemExit(f"no such file: {args.file}")
    if not shutil.which(args.chromium):
        raise SystemExit(f"'{args.chromium}' not found: apt-get install -y chromium")
    if args.url:
        try:
            url = require_loopback(args.url)
        except ValueError as exc:
            raise SystemExit(f"refusing {exc}") from None
        wait_ready(url)
        return run(url, args)
    serve_args = ["--log-level", "warning"] + (["--model", args.model] if args.model else [])
    with LocalServer(serve_args) as url:
        return run(url, args)


if __name__ == "__main__":
    sys.exit(main())
