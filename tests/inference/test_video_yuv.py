"""Annotated scans decode, draw and encode YUV planes when the copy is H.264 (PyAV with libx264);
OpenCV's BGR frames otherwise. Both give the source's frames and the same rows."""

from __future__ import annotations

import pytest

from conftest import ORIGINAL_004, need_shared
from deepfake_cli.config import load_config
from deepfake_cli.inference import video as video_mod
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.inference.video import scan_video, video_pipeline
from deepfake_cli.media import annotate

av = pytest.importorskip("av")
needs_h264 = pytest.mark.skipif(not annotate.h264_available(), reason="PyAV without libx264")


@pytest.fixture(scope="module")
def scanner(sepcnn_ckpt):
    cfg = load_config(overrides={"video.every": 60}, environ={})
    return video_pipeline(FaceClassifier.from_checkpoint(sepcnn_ckpt), cfg), cfg


def _spy(monkeypatch) -> list[str]:
    used: list[str] = []
    for name in ("iter_frames", "iter_yuv_frames"):
        real = getattr(video_mod, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            used.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(video_mod, name, spy)
    return used


def _stream(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return (stream.codec_context.name, stream.codec_context.pix_fmt, stream.width, stream.height,
                sum(1 for _ in container.decode(stream)))


def _faces(rows):
    return [(r["frame"], r["timestamp"], r["status"], r["x1"], r["y1"], r["x2"], r["y2"], r["p_fake"]) for r in rows]


@needs_h264
def test_h264_copy_is_written_from_yuv_planes_with_the_sources_frames(scanner, tmp_path, monkeypatch):
    need_shared(ORIGINAL_004)
    pipeline, cfg = scanner
    used = _spy(monkeypatch)
    out = tmp_path / "004.annotated.mp4"
    annotated = scan_video(ORIGINAL_004, pipeline, cfg.video, annotate_path=out)
    assert used == ["iter_yuv_frames"]
    assert _stream(out) == ("h264", "yuv420p", 1280, 720, 309)
    assert annotated.summary["frames"]["decoded"] == 309 and annotated.summary["frames"]["sampled"] == 6
    # The sampled frames reach detection exactly as on the CSV-only path (OpenCV's grab()).
    csv_only = scan_video(ORIGINAL_004, pipeline, cfg.video)
    assert used == ["iter_yuv_frames", "iter_frames"]
    assert _faces(annotated.rows) == _faces(csv_only.rows)


def test_without_pyav_h264_the_opencv_bgr_path_annotates(scanner, tmp_path, monkeypatch):
    need_shared(ORIGINAL_004)
    pipeline, cfg = scanner
    monkeypatch.setattr(annotate, "h264_available", lambda: False)
    used = _spy(monkeypatch)
    out = tmp_path / "004.annotated.mp4"
    result = scan_video(ORIGINAL_004, pipeline, cfg.video, annotate_path=out)
    assert used == ["iter_frames"]
    assert _stream(out)[0] == "mpeg4" and _stream(out)[-1] == 309
    assert result.summary["annotated"] == str(out)
