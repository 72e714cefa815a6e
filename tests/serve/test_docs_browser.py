"""/docs and /redoc render in headless Chromium from the app's own assets (skipped without Chromium)."""

from __future__ import annotations

import shutil
import sys
import time

import pytest

from conftest import REPO

CHROMIUM = shutil.which("chromium")


def _poll(browser, expression: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    value = browser.evaluate(expression)
    while not value and time.monotonic() < deadline:
        time.sleep(0.3)
        value = browser.evaluate(expression)
    return value


@pytest.mark.skipif(CHROMIUM is None, reason="headless chromium is not installed (apt-get install -y chromium)")
def test_docs_render_in_headless_chromium(sepcnn_ckpt):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from page_screenshot import Chromium
    finally:
        sys.path.remove(str(REPO / "scripts"))
    from deepfake_cli.serve.local import LocalServer

    with LocalServer(["--log-level", "warning", "-m", str(sepcnn_ckpt)]) as url:
        browser = Chromium(CHROMIUM, 1280, 900)
        try:
            browser.open_page(f"{url}/docs", 1280, 900)
            # Swagger UI drew the API's operations from /openapi.json: its JS and CSS loaded.
            assert _poll(browser, "document.querySelectorAll('.opblock').length") >= 4
            title = browser.evaluate("document.querySelector('.swagger-ui .info .title').textContent")
            assert "dfdetect" in title
            assert browser.evaluate(
                "performance.getEntriesByType('resource').every(e => e.name.startsWith(location.origin))"
            )
            browser.open_page(f"{url}/redoc", 1280, 900)
            assert _poll(browser, "document.querySelectorAll('[data-section-id]').length") >= 4
        finally:
            browser.close()
