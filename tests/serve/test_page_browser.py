"""The web page in headless Chromium: a video upload shows the annotated copy playing inline,
and a borderline verdict is marked (skipped without Chromium)."""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from conftest import ORIGINAL_004, REPO, need_shared

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed (apt-get install -y chromium)")


def _page_tools():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import page_screenshot
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return page_screenshot


def _upload_and_wait(browser, tools, path, timeout: float = 240.0) -> dict:
    browser.set_file("#file", path)
    browser.evaluate("document.getElementById('upload').requestSubmit()")
    deadline = time.monotonic() + timeout
    state = browser.evaluate(tools.PAGE_STATE)
    while not tools.finished(state, True) and time.monotonic() < deadline:
        time.sleep(0.5)
        state = browser.evaluate(tools.PAGE_STATE)
    return state


def test_the_page_plays_the_annotated_video_inline(sepcnn_ckpt, monkeypatch):
    need_shared(ORIGINAL_004)
    from deepfake_cli.media.annotate import h264_available
    from deepfake_cli.serve.local import LocalServer

    if not h264_available():
        pytest.skip("PyAV without libx264: the annotated copy is mp4v, which browsers do not play")
    tools = _page_tools()
    monkeypatch.setenv("DFDETECT_VIDEO_FRAMES", "3")  # the server's sampling: a quick scan
    # Band 1: every verdict is borderline, so the page must mark it.
    monkeypatch.setenv("DFDETECT_PREDICT_BORDERLINE_BAND", "1")
    with LocalServer(["--log-level", "warning", "-m", str(sepcnn_ckpt)]) as url:
        browser = tools.Chromium(CHROMIUM, 1280, 900)
        try:
            browser.open_page(f"{url}/", 1280, 900)
            state = _upload_and_wait(browser, tools, ORIGINAL_004)
            played = browser.evaluate(tools.PLAY_ANNOTATED)
            badge = browser.evaluate("getComputedStyle(document.getElementById('borderline')).display")
            facts = browser.evaluate("document.getElementById('facts').textContent")
        finally:
            browser.close()
    assert state["error"] is None and state["verdict"] in ("FAKE?", "REAL?"), state
    annotated = state["annotated"]
    assert annotated["shown"] and annotated["src"].startswith("/annotated/") and annotated["error"] is None, annotated
    assert (annotated["width"], annotated["height"]) == (1280, 720), annotated
    assert played["error"] is None and played["played"] and played["time"] > 0, played
    assert badge != "none" and "borderline" in facts and "margin" in facts
