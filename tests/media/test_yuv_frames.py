"""Decoding every frame as YUV planes (media/frames.py ``iter_yuv_frames``), for H.264 annotated
copies: the same frames, times, orientation, sampled BGR frames and errors as ``iter_frames``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import FFPP_C23, MULTIFACE_VIDEO, need_shared, with_display_rotation
from deepfake_cli.errors import InputFileError
from deepfake_cli.media.frames import YuvFrame, iter_frames, iter_yuv_frames, sample_indices, video_info

av = pytest.importorskip("av")
ORIGINAL_519 = FFPP_C23 / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"


def _same_as_opencv(path, every: int = 50) -> list[tuple[int, float, YuvFrame]]:
    """Both decoders on every frame of ``path``; asserts they agree; the YUV frames."""
    info = video_info(path)
    sampled = set(sample_indices(info, every=every))
    bgr = list(iter_frames(path, color="bgr"))
    yuv = list(iter_yuv_frames(path, convert=sampled))
    assert [(i, t) for i, t, _ in yuv] == [(i, t) for i, t, _ in bgr]
    assert len(yuv) == info.frame_count
    for (i, _, frame), (_, _, reference) in zip(yuv, bgr):
        assert frame.shape == (reference.shape[0] // 2 * 2, reference.shape[1] // 2 * 2, 3)
        if i in sampled:
            assert np.array_equal(frame.bgr, reference), i  # detection sees the very same pixels
        else:
            assert frame.bgr is None
    for i in sorted(sampled):  # the planes are the frame OpenCV shows (up to chroma resampling)
        h, w = yuv[i][2].height, yuv[i][2].width
        assert np.abs(yuv[i][2].to_bgr().astype(int) - bgr[i][2][:h, :w]).mean() < 3
    return yuv


def test_yuv444_and_yuv420_videos_decode_as_opencv_does():
    need_shared(ORIGINAL_519, MULTIFACE_VIDEO)
    assert av.open(str(ORIGINAL_519)).streams.video[0].codec_context.pix_fmt == "yuv444p"  # FF++ c23
    assert av.open(str(MULTIFACE_VIDEO)).streams.video[0].codec_context.pix_fmt == "yuv420p"
    _same_as_opencv(ORIGINAL_519, every=150)
    _same_as_opencv(MULTIFACE_VIDEO, every=25)


def test_rotated_video_is_upright_as_opencv_turns_it(tmp_path):
    need_shared(ORIGINAL_519)
    rotated = tmp_path / "portrait.mp4"
    rotated.write_bytes(with_display_rotation(ORIGINAL_519.read_bytes(), 90))
    frames = _same_as_opencv(rotated, every=250)
    assert frames[0][2].shape == (640, 480, 3)


def test_odd_sized_mjpeg_full_range_source(tmp_path):
    # MJPEG decodes as full-range 4:2:2 (yuvj422p): converted by FFmpeg to limited-range yuv420p;
    # odd sizes lose their last column and row.
    path = tmp_path / "odd.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (65, 49))
    rng = np.random.default_rng(0)
    for k in range(8):
        frame = np.full((49, 65, 3), 20 * k, np.uint8)
        frame[10:30, 10:40] = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
        writer.write(frame)
    writer.release()
    frames = _same_as_opencv(path, every=3)
    assert [i for i, _, _ in frames] == list(range(8)) and frames[0][2].shape == (48, 64, 3)


def test_truncated_stream_gives_the_same_error_as_iter_frames(tmp_path):
    need_shared(ORIGINAL_519)
    from media.test_frames import _faststart  # the index first: a cut copy still opens

    cut = tmp_path / "cut.mp4"
    data = _faststart(ORIGINAL_519.read_bytes())
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as opencv:
        list(iter_frames(cut))
    with pytest.raises(InputFileError) as pyav:
        for _ in iter_yuv_frames(cut, convert={0, 100}):
            pass
    assert "truncated or corrupt: stream ends at frame" in str(pyav.value)
    assert str(pyav.value) == str(opencv.value)
    for bad, message in [(tmp_path / "missing.mp4", "no such file"), (tmp_path / "text.mp4", "cannot open")]:
        if bad.name == "text.mp4":
            bad.write_text("not a video\n")
        with pytest.raises(InputFileError, match=message):
            list(iter_yuv_frames(bad))
