"""Annotated videos are H.264 (yuv420p, index first) through PyAV, which browsers play; OpenCV's
mp4v where PyAV or libx264 is missing."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from deepfake_cli.media import annotate
from deepfake_cli.media.annotate import AnnotatedVideoWriter

av = pytest.importorskip("av")
needs_h264 = pytest.mark.skipif(not annotate.h264_available(), reason="PyAV without libx264")


def _frames(n: int, width: int, height: int):
    for i in range(n):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, : (i * 7) % width] = (0, 180, 255)  # something that moves
        yield frame


def _write(path: Path, n: int = 30, size: tuple[int, int] = (160, 120), fps: float = 25.0) -> Path:
    with AnnotatedVideoWriter(path, fps) as writer:
        for frame in _frames(n, *size):
            writer.write(frame)
    return path


def _stream_info(path: Path) -> tuple[str, str, int, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height, frames


@needs_h264
def test_annotated_mp4_is_h264_yuv420p_with_its_index_first(tmp_path):
    path = _write(tmp_path / "clip.annotated.mp4")
    assert _stream_info(path) == ("h264", "yuv420p", 160, 120, 30)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while it downloads
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left


@needs_h264
def test_odd_sizes_and_ntsc_rates_are_written(tmp_path):
    path = _write(tmp_path / "odd.mkv", n=12, size=(65, 49), fps=30000 / 1001)
    codec, pix_fmt, width, height, frames = _stream_info(path)
    assert (codec, pix_fmt, width, height, frames) == ("h264", "yuv420p", 64, 48, 12)


def test_without_pyav_h264_opencv_writes_mp4v(tmp_path, monkeypatch):
    monkeypatch.setattr(annotate, "h264_available", lambda: False)
    path = _write(tmp_path / "fallback.mp4", n=10)
    assert _stream_info(path)[0] == "mpeg4" and _stream_info(path)[-1] == 10
    avi = _write(tmp_path / "clip.avi", n=5)  # .avi is XVID through OpenCV either way
    assert _stream_info(avi)[0] == "mpeg4"


PLAY = """(async () => {
  const v = document.getElementById("v");
  const deadline = Date.now() + 20000;
  while (v.readyState < 2 && !v.error && Date.now() < deadline) await new Promise(r => setTimeout(r, 100));
  let played = false;
  if (!v.error) { v.muted = true; try { await v.play(); played = true; } catch (e) {} }
  await new Promise(r => setTimeout(r, 300));
  return {ready: v.readyState, error: v.error ? v.error.code : null, width: v.videoWidth, played, time: v.currentTime};
})()"""


@needs_h264
@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless chromium is not installed")
def test_annotated_video_plays_in_headless_chromium(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from page_screenshot import Chromium
    finally:
        sys.path.remove(str(REPO / "scripts"))
    _write(tmp_path / "clip.annotated.mp4", n=50)
    page = tmp_path / "page.html"
    page.write_text('<video id="v" src="clip.annotated.mp4" preload="auto"></video>')
    browser = Chromium(shutil.which("chromium"), 640, 480)
    try:
        browser.open_page(page.as_uri(), 640, 480)
        state = browser.evaluate(PLAY)
    finally:
        browser.close()
    assert state["error"] is None and state["ready"] >= 2 and state["width"] == 160, state
    assert state["played"] and state["time"] > 0, state
