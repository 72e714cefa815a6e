"""Sampling frames from a video: sequential decoding with ``grab()`` skipping.

Seeking to every sampled frame (``CAP_PROP_POS_FRAMES``) makes the decoder
restart from the previous keyframe each time; decoding straight through and
only converting the frames we keep (``grab()`` decodes, ``retrieve()``
converts) is several times faster and frame-exact. Used by ``dfdetect
extract`` and the video scanner.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Container, Iterator

import cv2
import numpy as np

from deepfake_cli.errors import InputFileError, UsageError
from deepfake_cli.media.images import missing_reason, special_file_kind

# libav prints its own lines ("moov atom not found") over progress bars; the
# InputFileError raised here says what failed. Read by OpenCV at its first capture;
# set OPENCV_FFMPEG_LOGLEVEL yourself to see them.
os.environ.setdefault("OPENCV_FFMPEG_DEBUG", "1")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

# Containers that estimate their frame count (from duration x fps) may end a
# few frames early; missing that many frames at the very end is not truncation.
FRAME_COUNT_SLACK = 3
# MP4/MOV (ISO base media) files list every frame in their header: a stream that ends
# before that count is truncated. Other containers (Matroska/WebM, AVI, MPEG-TS) give
# OpenCV no count, which it estimates from the duration and frame rate; variable frame
# rates and streams starting late make the estimate wrong, so there the stream ending is
# the end of the video. These boxes open an ISO base media file.
ISO_BMFF_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")
# With a late start, one seek is cheaper than decoding everything before it.
SEEK_MIN_FRAMES = 250


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (frame count checked > 0)."""

    fps: float
    frame_count: int
    width: int
    height: int
    # Whether frame_count is the container's own list of frames, not an estimate.
    count_exact: bool = True

    @property
    def duration(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {"fps": self.fps, "frame_count": self.frame_count, "width": self.width, "height": self.height}


def open_video(path: str | os.PathLike[str], threads: int | None = None) -> cv2.VideoCapture:
    """An opened capture, or :class:`InputFileError` saying why not.

    ``threads``: the decoder's own threads (FFmpeg's; default: its choice, one per core).
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"{path}: {missing_reason(p)}")
    if p.is_dir():
        raise InputFileError(f"{path}: is a directory")
    special = special_file_kind(p)
    if special is not None:
        # FFmpeg would block opening a named pipe with no writer, and needs to seek anyway.
        raise InputFileError(f"{path}: {special}, not a regular file: videos are read from files")
    if p.stat().st_size == 0:
        raise InputFileError(f"{path}: empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise InputFileError(f"{path}: permission denied")
    if threads is None:
        cap = cv2.VideoCapture(str(p))
    else:
        cap = cv2.VideoCapture(str(p), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, int(threads)])
    if not cap.isOpened():
        cap.release()
        raise InputFileError(f"{path}: cannot open video (corrupt, truncated or not a video)")
    # Phone videos store portrait frames sideways with a rotation in the container: scan
    # (and annotate) them upright, as players show them. OpenCV's FFmpeg backend does
    # this by default; said here so that sizes, boxes and annotated copies never depend on it.
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def video_info(path: str | os.PathLike[str]) -> VideoInfo:
    """FPS, frame count and size of a readable video with at least one frame."""
    cap = open_video(path)
    try:
        return _info(cap, path)[0]
    finally:
        cap.release()


def _info(cap: cv2.VideoCapture, path: str | os.PathLike[str]) -> tuple[VideoInfo, bool]:
    """The video's info, and whether finding it consumed frames of ``cap``."""
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 0.0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    consumed = count <= 0
    if consumed:
        # Some streams (webm, raw h264) carry no count: count by decoding.
        count = 0
        while cap.grab():
            count += 1
    if count <= 0 or width <= 0 or height <= 0:
        raise InputFileError(f"{path}: video has no decodable frames")
    exact = consumed or _lists_its_frames(path)
    return VideoInfo(fps=fps, frame_count=count, width=width, height=height, count_exact=exact), consumed


def _lists_its_frames(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an MP4/MOV file, whose header lists its frames."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return False
    return len(head) == 8 and head[4:8] in ISO_BMFF_FIRST_BOXES


def _frame_time(cap: cv2.VideoCapture, index: int, fps: float) -> float:
    """Seconds from the start at which a player shows the frame just grabbed.

    The container's presentation time, so that variable-frame-rate video (most phone
    footage) gets the times a player shows; ``index / fps`` only when the stream has
    no usable times. Rounded to the microsecond: the same value as ``index / fps`` for
    constant-rate video.
    """
    return _time_of(float(cap.get(cv2.CAP_PROP_POS_MSEC)), index, fps)


def _time_of(ms: float, index: int, fps: float) -> float:
    """A frame's time from its presentation time in milliseconds, as :func:`_frame_time` says."""
    if math.isfinite(ms) and (ms > 0 or (ms == 0 and index == 0)):
        return round(ms / 1000.0, 6)
    return index / fps if fps > 0 else 0.0


def _stream_end(path: str | os.PathLike[str], position: int, info: VideoInfo) -> None:
    """The stream ended before frame ``position``: the end of the video, or (raised) truncation."""
    if position >= info.frame_count - FRAME_COUNT_SLACK or not info.count_exact:
        return  # the end of the video (an estimated count can be far off)
    raise InputFileError(f"{path}: truncated or corrupt: stream ends at frame {position} of {info.frame_count}")


def sample_indices(
    info: VideoInfo,
    every: int | None = None,
    frames: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
) -> list[int]:
    """Sorted frame indices to keep; at most one of ``every``/``frames``/``fps``.

    ``every`` keeps frames start, start+N, ...; ``frames`` keeps K frames at the
    centres of K equal parts (so never the often-black first frame); ``fps``
    keeps the frame nearest to each 1/fps step. ``start``/``end`` are seconds, a
    half-open window: frames shown at ``start`` and after, before ``end`` (so the
    windows 0-60 s and 60-120 s never share a frame). Nothing given means every frame.
    """
    chosen = [name for name, v in (("every", every), ("frames", frames), ("fps", fps)) if v is not None]
    if len(chosen) > 1:
        raise UsageError(f"choose one way to sample frames, not {' and '.join(chosen)}")
    if every is not None and every < 1:
        raise UsageError(f"every must be >= 1, got {every}")
    if frames is not None and frames < 1:
        raise UsageError(f"frames must be >= 1, got {frames}")
    if fps is not None and fps <= 0:
        raise UsageError(f"fps must be > 0, got {fps}")
    if (start is not None or end is not None or fps is not None) and info.fps <= 0:
        raise InputFileError("video has no frame rate: cannot sample by time")
    # Times past the video (even 1e308 s) clamp to its frame count before rounding.
    first = 0 if start is None else max(0, int(math.ceil(min(start * info.fps, info.frame_count) - 1e-6)))
    stop = info.frame_count if end is None else max(0, int(math.ceil(min(end * info.fps, info.frame_count) - 1e-6)))
    span = stop - first
    if span <= 0:
        return []
    if frames is not None:
        if frames >= span:
            return list(range(first, stop))
        return [first + int((k + 0.5) * span / frames) for k in range(frames)]
    if fps is not None:
        step = max(1.0, info.fps / fps)  # more than the video's rate: every frame
        picked = {first + int(round(k * step)) for k in range(int(span / step) + 1)}
        return sorted(i for i in picked if i < stop)
    return list(range(first, stop, every or 1))


def iter_frames(
    path: str | os.PathLike[str],
    every: int | None = None,
    frames: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    color: str = "rgb",
    decode_threads: int | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, timestamp_s, rgb_frame)`` for the sampled frames.

    Frames are decoded in order and only the kept ones are converted to RGB
    (``color="bgr"`` yields OpenCV's BGR frames unconverted, for re-encoding).
    ``decode_threads`` is passed to :func:`open_video`.
    Raises :class:`InputFileError` when the video cannot be opened, has no
    frames, or its stream ends (or a frame fails to decode) before the
    frames its header promises.
    """
    cap = open_video(path, decode_threads)
    try:
        info, consumed = _info(cap, path)
        if consumed:
            cap.release()
            cap = open_video(path, decode_threads)
        wanted = sample_indices(info, every=every, frames=frames, fps=fps, start=start, end=end)
        if not wanted:
            return
        position = 0
        if wanted[0] >= SEEK_MIN_FRAMES:
            cap.set(cv2.CAP_PROP_POS_FRAMES, wanted[0])
            position = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if position != wanted[0]:  # the backend could not seek exactly: decode from the start
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                position = 0
        for index in wanted:
            while position <= index:
                if not cap.grab():
                    _stream_end(path, position, info)
                    return
                position += 1
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise InputFileError(f"{path}: frame {index} cannot be decoded")
            yield index, _frame_time(cap, index, info.fps), bgr if color == "bgr" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


# -- every frame as YUV planes, for annotated copies ------------------------------------------
# OpenCV's rotation of upright frames (CAP_PROP_ORIENTATION_META, clockwise degrees), applied
# the same way to YUV planes.
_ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, -270: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180,
              -180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE, -90: cv2.ROTATE_90_COUNTERCLOCKWISE}
# Pixel formats whose planes are used as they are (8-bit, limited range); chroma subsampled
# here for 4:4:4 and 4:2:2. Anything else goes through FFmpeg's swscale to yuv420p first.
_PLANAR_YUV = frozenset({"yuv420p", "yuv422p", "yuv444p"})


class YuvFrame:
    """A decoded frame as 8-bit yuv420p (I420: the Y plane, then U and V at half size, in one
    array of ``height * 3 // 2`` rows), what the H.264 encoder takes. Width and height are
    even: an odd-sized video loses its last pixel column or row, as yuv420p video must.

    ``bgr``: the whole frame in BGR, exactly as :func:`iter_frames` (``color="bgr"``)
    yields it, for the frames that are sampled (face detection); ``None`` for the others.
    ``shape`` is that of the BGR frame it stands for: ``(height, width, 3)``.
    """

    __slots__ = ("i420", "bgr")

    def __init__(self, i420: np.ndarray, bgr: np.ndarray | None = None):
        self.i420 = i420
        self.bgr = bgr

    @classmethod
    def from_planes(cls, y: np.ndarray, u: np.ndarray, v: np.ndarray, bgr: np.ndarray | None = None) -> "YuvFrame":
        """From Y (h x w) and U, V planes at the same, half or half-width size (4:4:4, 4:2:0,
        4:2:2); cropped to even sizes; 4:4:4 and 4:2:2 chroma averaged down to 4:2:0."""
        h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
        i420 = np.empty((h * 3 // 2, w), np.uint8)
        flat = i420.reshape(-1)
        n = h * w
        flat[:n].reshape(h, w)[:] = y[:h, :w]
        for plane, out in ((u, flat[n : n * 5 // 4]), (v, flat[n * 5 // 4 :])):
            out = out.reshape(h // 2, w // 2)
            ph, pw = plane.shape[0], plane.shape[1]
            full_h, full_w = ph >= y.shape[0], pw >= y.shape[1]
            crop = plane[: h if full_h else h // 2, : w if full_w else w // 2]
            if full_h or full_w:
                cv2.resize(crop, (w // 2, h // 2), dst=out, interpolation=cv2.INTER_AREA)
            else:
                out[:] = crop
        return cls(i420, bgr)

    @property
    def height(self) -> int:
        return self.i420.shape[0] * 2 // 3

    @property
    def width(self) -> int:
        return self.i420.shape[1]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, 3)

    @property
    def nbytes(self) -> int:
        return self.i420.nbytes + (0 if self.bgr is None else self.bgr.nbytes)

    def _plane(self, k: int) -> np.ndarray:
        h, w = self.height, self.width
        n = h * w
        flat = self.i420.reshape(-1)
        if k == 0:
            return flat[:n].reshape(h, w)
        start = n if k == 1 else n * 5 // 4
        return flat[start : start + n // 4].reshape(h // 2, w // 2)

    @property
    def y(self) -> np.ndarray:
        return self._plane(0)

    @property
    def u(self) -> np.ndarray:
        return self._plane(1)

    @property
    def v(self) -> np.ndarray:
        return self._plane(2)

    def to_bgr(self) -> np.ndarray:
        """The frame in BGR (OpenCV's I420 conversion; for tests and previews)."""
        return cv2.cvtColor(self.i420, cv2.COLOR_YUV2BGR_I420)

    def resized(self, width: int, height: int) -> "YuvFrame":
        """The frame scaled to an even ``width`` x ``height`` (a stream that changes size mid-way)."""
        planes = [cv2.resize(p, size, interpolation=cv2.INTER_AREA)
                  for p, size in ((self.y, (width, height)), (self.u, (width // 2, height // 2)),
                                  (self.v, (width // 2, height // 2)))]
        return YuvFrame.from_planes(*planes)


def _plane_arrays(frame) -> list[np.ndarray]:
    """Views of a PyAV frame's planes (without their line padding)."""
    out = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        out.append(rows[:, : plane.width])
    return out


def _yuv_of(frame, rotate: int | None) -> YuvFrame:
    """A PyAV frame as a :class:`YuvFrame`, turned upright as OpenCV turns it."""
    name = frame.format.name
    if name not in _PLANAR_YUV or frame.color_range == 2:  # 2: full ("JPEG") range
        # 10-bit, RGB, grey, full range...: FFmpeg converts (to the limited range the encoder writes).
        frame = frame.reformat(format="yuv420p", dst_color_range=1)
    planes = _plane_arrays(frame)
    if rotate is not None:
        planes = [cv2.rotate(p, rotate) for p in planes]
    return YuvFrame.from_planes(*planes)


def _decoded(container, stream) -> Iterator[Any]:
    """The stream's frames in order, as OpenCV's ``grab()`` gives them: a packet the decoder
    refuses (the cut-off last packet of a truncated file) or the demuxer failing ends the
    stream there, without the frames the decoder still holds; at a clean end the demuxer's
    last, empty packet flushes them."""
    import av

    codec = stream.codec_context
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = codec.decode(packet)
        except (StopIteration, av.FFmpegError):
            return
        yield from frames


def iter_yuv_frames(
    path: str | os.PathLike[str],
    convert: Container[int] = (),
    decode_threads: int | None = None,
) -> Iterator[tuple[int, float, YuvFrame]]:
    """Yield ``(frame_index, timestamp_s, YuvFrame)`` for every frame, decoded by PyAV in the
    stream's own pixel format (no BGR round trip: what an annotated copy re-encodes).

    The frames whose indices are in ``convert`` (the sampled ones, chosen by
    :func:`sample_indices`) also carry ``bgr``, identical to :func:`iter_frames`' BGR
    frame. Indices, timestamps, orientation (rotated phone videos upright), the frame
    count and the errors (:class:`InputFileError`, same messages) are those of
    :func:`iter_frames` decoding every frame: the container's information is read
    through OpenCV as there.
    """
    import av

    cap = open_video(path)
    try:
        info, _ = _info(cap, path)
        angle = int(round(float(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0.0)))
    finally:
        cap.release()
    rotate = _ROTATIONS.get(angle)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError):
        raise InputFileError(f"{path}: cannot open video (corrupt, truncated or not a video)") from None
    try:
        if not container.streams.video:
            raise InputFileError(f"{path}: cannot open video (corrupt, truncated or not a video)")
        stream = container.streams.video[0]
        if decode_threads is not None:
            stream.codec_context.thread_count = int(decode_threads)
        start = stream.start_time or 0
        time_base = float(stream.time_base) if stream.time_base else 0.0
        position = 0
        for frame in _decoded(container, stream):
            if position >= info.frame_count:
                return  # past the frames OpenCV counts (and iter_frames yields)
            pts = frame.pts if frame.pts is not None else frame.dts
            ms = (pts - start) * time_base * 1000.0 if pts is not None and time_base else math.nan
            yuv = _yuv_of(frame, rotate)
            if position in convert:
                bgr = frame.to_ndarray(format="bgr24")
                yuv.bgr = cv2.rotate(bgr, rotate) if rotate is not None else bgr
            yield position, _time_of(ms, position, info.fps), yuv
            position += 1
        _stream_end(path, position, info)
    finally:
        container.close()
