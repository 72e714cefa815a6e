from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from conftest import FFPP_C23, ORIGINAL_004, need_shared, with_display_rotation
from deepfake_cli.errors import InputFileError, UsageError
from deepfake_cli.media.frames import VideoInfo, iter_frames, sample_indices, video_info

ORIGINAL_519 = FFPP_C23 / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"


def test_video_info_of_real_videos():
    need_shared(ORIGINAL_004, ORIGINAL_519)
    assert video_info(ORIGINAL_004) == VideoInfo(fps=25.0, frame_count=309, width=1280, height=720)
    info = video_info(ORIGINAL_519)
    assert (info.frame_count, info.width, info.height) == (751, 640, 480)
    assert info.duration == pytest.approx(30.04)


def test_sample_indices_modes():
    info = VideoInfo(fps=25.0, frame_count=100, width=64, height=64)
    assert sample_indices(info, every=30) == [0, 30, 60, 90]
    assert sample_indices(info) == list(range(100))
    # K frames at the centres of K equal parts; all frames when K exceeds them.
    assert sample_indices(info, frames=4) == [12, 37, 62, 87]
    assert sample_indices(info, frames=500) == list(range(100))
    assert sample_indices(info, fps=5) == list(range(0, 100, 5))
    # start/end in seconds, half-open: frames 25..49; adjacent windows share no frame.
    assert sample_indices(info, every=10, start=1.0, end=2.0) == [25, 35, 45]
    assert sample_indices(info, frames=2, start=1.0, end=2.0) == [31, 43]
    assert sample_indices(info, start=0.0, end=1.0) == list(range(0, 25))
    assert sample_indices(info, start=1.0, end=2.0) == list(range(25, 50))
    assert sample_indices(info, fps=5, start=0.0, end=1.0) == [0, 5, 10, 15, 20]
    assert sample_indices(info, start=1.0, end=1.01) == [25] and sample_indices(info, start=1.0, end=1.0) == []
    assert sample_indices(info, every=10, start=10.0) == []
    # Times far past the video clamp to it (no OverflowError); a rate above the video's is every frame.
    assert sample_indices(info, every=10, start=1e308) == []
    assert sample_indices(info, every=30, end=1e308) == [0, 30, 60, 90]
    assert sample_indices(info, fps=1e308, start=3.9) == [98, 99]
    assert sample_indices(info, fps=100) == list(range(100))
    with pytest.raises(UsageError, match="every and frames"):
        sample_indices(info, every=2, frames=3)
    with pytest.raises(UsageError):
        sample_indices(info, every=0)


def test_grab_skipping_gives_the_same_frames_as_seeking():
    need_shared(ORIGINAL_004)
    got = list(iter_frames(ORIGINAL_004, every=100))
    assert [i for i, _, _ in got] == [0, 100, 200, 300]
    assert [t for _, t, _ in got] == [0.0, 4.0, 8.0, 12.0]
    cap = cv2.VideoCapture(str(ORIGINAL_004))
    for index, _, rgb in got[1:3]:
        assert rgb.shape == (720, 1280, 3) and rgb.dtype == np.uint8
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
        assert ok and np.array_equal(rgb, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()


def test_single_threaded_decoder_gives_the_same_frames():
    # Video scans decode in one FFmpeg thread beside their own workers.
    need_shared(ORIGINAL_004)
    default = list(iter_frames(ORIGINAL_004, every=77, color="bgr"))
    single = list(iter_frames(ORIGINAL_004, every=77, color="bgr", decode_threads=1))
    assert [i for i, _, _ in single] == [i for i, _, _ in default] == [0, 77, 154, 231, 308]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(default, single))


def test_late_start_seeks_once_and_stays_frame_exact():
    need_shared(ORIGINAL_519)
    seeked = list(iter_frames(ORIGINAL_519, every=50, start=24.0))  # starts at frame 600: one seek
    decoded = {i: f for i, _, f in iter_frames(ORIGINAL_519, every=50)}  # from frame 0
    assert [i for i, _, _ in seeked] == [600, 650, 700, 750]
    assert all(np.array_equal(frame, decoded[i]) for i, _, frame in seeked)


def test_unreadable_videos_raise_input_file_error(tmp_path):
    need_shared(ORIGINAL_004)
    data = ORIGINAL_004.read_bytes()
    cases = {
        "missing.mp4": None,
        "empty.mp4": b"",
        "garbage.mp4": b"not a video at all" * 100,
        "cut.mp4": data[: len(data) // 2],  # the index (moov) is at the end: cannot open
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        with pytest.raises(InputFileError, match=name):
            video_info(tmp_path / name)
        with pytest.raises(InputFileError):
            list(iter_frames(tmp_path / name, every=50))


def test_stream_that_ends_early_is_reported_as_truncated(tmp_path):
    need_shared(ORIGINAL_519)
    # Index first, then half the frame data: opens fine, promises 751 frames.
    data = _faststart(ORIGINAL_519.read_bytes())
    whole, cut = tmp_path / "whole.mp4", tmp_path / "cut.mp4"
    whole.write_bytes(data)
    cut.write_bytes(data[: len(data) // 2])
    assert video_info(cut).frame_count == 751
    assert [i for i, _, _ in iter_frames(whole, every=250)] == [0, 250, 500, 750]
    with pytest.raises(InputFileError, match="truncated"):
        list(iter_frames(cut, every=250))


def test_a_stream_ending_before_an_estimated_count_is_the_end_of_the_video(tmp_path):
    # Matroska lists no frames: OpenCV estimates the count from the duration in its header
    # (so do VFR and late-starting WebM/MKV files, where the estimate is far off). A file
    # cut short, like those, is scanned to its end; before, it was "truncated or corrupt".
    whole, cut = tmp_path / "whole.mkv", tmp_path / "cut.mkv"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(100):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    info = video_info(cut)
    assert info.frame_count == 100 and not info.count_exact
    indices = [i for i, _, _ in iter_frames(cut, every=10)]
    assert 40 <= len(indices) * 10 <= 70 and indices == list(range(0, 10 * len(indices), 10))
    assert video_info(whole).count_exact is False and len(list(iter_frames(whole, every=10))) == 10


def test_stream_without_frame_count_is_counted_by_decoding(tmp_path):
    # A bare MJPEG stream (JPEGs back to back) has no header with a frame count.
    path = tmp_path / "gray.mjpeg"
    path.write_bytes(b"".join(cv2.imencode(".jpg", np.full((48, 64, 3), 10 * k, np.uint8))[1].tobytes() for k in range(12)))
    assert cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT) <= 0
    assert video_info(path).frame_count == 12
    frames = list(iter_frames(path, frames=3))
    assert [i for i, _, _ in frames] == [2, 6, 10]
    assert [round(float(f.mean()) / 10) for _, _, f in frames] == [2, 6, 10]


# An MP4 with its index (moov box) moved in front of the frame data ("faststart"),
# so that a truncated copy still opens: the chunk offsets move by the index size.
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"}


def _boxes(buf, start, end):
    i = start
    while i < end:
        size, kind = struct.unpack(">I4s", buf[i : i + 8])
        yield kind, i, size
        i += size


def _faststart(data: bytes) -> bytes:
    boxes = {kind: (i, size) for kind, i, size in _boxes(data, 0, len(data))}
    i, size = boxes[b"moov"]
    moov = bytearray(data[i : i + size])

    def shift(start, end):
        for kind, j, n in _boxes(moov, start, end):
            if kind in _CONTAINERS:
                shift(j + 8, j + n)
            elif kind == b"stco":
                count = struct.unpack(">I", moov[j + 12 : j + 16])[0]
                for k in range(count):
                    o = j + 16 + 4 * k
                    moov[o : o + 4] = struct.pack(">I", struct.unpack(">I", moov[o : o + 4])[0] + size)

    shift(8, len(moov))
    head = b"".join(data[j : j + n] for kind, (j, n) in boxes.items() if kind == b"ftyp")
    rest = b"".join(data[j : j + n] for kind, (j, n) in boxes.items() if kind not in (b"ftyp", b"moov"))
    return head + bytes(moov) + rest


def test_rotated_phone_video_is_read_upright(tmp_path):
    need_shared(ORIGINAL_519)
    rotated = tmp_path / "portrait.mp4"
    rotated.write_bytes(with_display_rotation(ORIGINAL_519.read_bytes(), 90))
    info = video_info(rotated)
    assert (info.width, info.height, info.frame_count) == (480, 640, 751)
    upright = {i: f for i, _, f in iter_frames(rotated, every=250, color="bgr")}
    stored = {i: f for i, _, f in iter_frames(ORIGINAL_519, every=250, color="bgr")}
    assert list(upright) == list(stored) == [0, 250, 500, 750]
    for i in stored:
        assert np.array_equal(upright[i], cv2.rotate(stored[i], cv2.ROTATE_90_CLOCKWISE))


def _with_frame_durations(data: bytes, runs: list[tuple[int, int]]) -> bytes:
    """The MP4 (index after the frame data) with its frames' durations replaced: (frames, ticks) runs."""
    stts = data.index(b"stts") - 4
    old_size = struct.unpack(">I", data[stts : stts + 4])[0]
    body = struct.pack(">I", len(runs)) + b"".join(struct.pack(">II", n, d) for n, d in runs)
    new = struct.pack(">I4s", 12 + len(body), b"stts") + data[stts + 8 : stts + 12] + body
    out = bytearray(data)

    def grow(start, end):  # every box around the table grows with it
        for kind, i, size in _boxes(data, start, end):
            if kind in _CONTAINERS and i < stts < i + size:
                out[i : i + 4] = struct.pack(">I", size + len(new) - old_size)
                grow(i + 8, i + size)

    grow(0, len(data))
    return bytes(out[:stts]) + new + bytes(out[stts + old_size :])


def test_timestamps_are_the_frames_presentation_times(tmp_path):
    """Variable frame rate (phones): a frame's time is when a player shows it, not index / fps."""
    cfr = tmp_path / "cfr.mp4"
    writer = cv2.VideoWriter(str(cfr), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 48))
    for k in range(60):
        writer.write(np.full((48, 64, 3), 4 * k, np.uint8))
    writer.release()
    data = cfr.read_bytes()
    ticks = struct.unpack(">2I", data[data.index(b"stts") + 8 : data.index(b"stts") + 16])
    assert ticks[0] == 1  # one run of equal durations, as written
    assert [(i, t) for i, t, _ in iter_frames(cfr, every=10)] == [(i, i / 25) for i in range(0, 60, 10)]
    # Same length, but the first 30 frames last half as long and the last 30 one and a half times.
    vfr = tmp_path / "vfr.mp4"
    step = struct.unpack(">I", data[data.index(b"stts") + 16 : data.index(b"stts") + 20])[0]
    vfr.write_bytes(_with_frame_durations(data, [(30, step // 2), (30, 3 * step // 2)]))
    frames = list(iter_frames(vfr, every=10))
    assert [i for i, _, _ in frames] == [0, 10, 20, 30, 40, 50]
    assert [t for _, t, _ in frames] == pytest.approx([0.0, 0.2, 0.4, 0.6, 1.2, 1.8])
    # The right frames (frame k is gray level 4k, give or take the codec's loss).
    assert all(abs(float(f.mean()) / 4 - i) < 1.5 for i, _, f in frames)


def test_an_unreadable_video_says_permission_denied(tmp_path, monkeypatch):
    # As root every file reads: the check is made to answer as for another user.
    import deepfake_cli.media.frames as frames

    video = tmp_path / "locked.mp4"
    video.write_bytes(b"\x00" * 64)
    monkeypatch.setattr(frames.os, "access", lambda path, mode: False)
    with pytest.raises(InputFileError, match="locked.mp4: permission denied"):
        video_info(video)
