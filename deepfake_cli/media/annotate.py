"""Drawing scan results onto video frames and writing them: H.264 (yuv420p, ``+faststart``)
through PyAV's FFmpeg and libx264 for .mp4/.m4v/.mov/.mkv, so browsers play the copy;
OpenCV's VideoWriter (MPEG-4 Part 2, XVID for .avi) where PyAV or libx264 is missing.

Frames are BGR uint8 here (what OpenCV decodes), so nothing is converted twice
before the encoder. Boxes are coloured from green (real) through yellow to red
(fake) by p_fake and labelled with the track id and score; a strip along the
bottom fills in, frame by frame, with the colour of each sampled frame's most
suspicious face, and the top-left corner shows the running video score.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from deepfake_cli.errors import InputFileError, UsageError
from deepfake_cli.output import partial_path

# The fallback: a codec OpenCV's bundled FFmpeg can encode for each container, no GPU or
# licence needed (H.264 is not in the opencv-python wheels). Browsers refuse mp4v.
FOURCC_BY_SUFFIX = {
    ".mp4": "mp4v",
    ".m4v": "mp4v",
    ".mov": "mp4v",
    ".mkv": "mp4v",
    ".avi": "XVID",
}

# Containers written as H.264 through PyAV when it is installed with libx264.
H264_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv"})
H264_PRESET = "veryfast"  # about 64 frames/s of 720p on one core; 5x smaller than mp4v at crf 23
H264_CRF = "23"


@functools.lru_cache(maxsize=None)
def h264_available() -> bool:
    """Whether PyAV is installed with an H.264 encoder (libx264)."""
    try:
        import av

        av.codec.Codec("libx264", "w")
    except Exception:  # ImportError, or av without libx264
        return False
    return True


class H264Writer:
    """The part of ``cv2.VideoWriter`` that :class:`AnnotatedVideoWriter` uses, writing H.264
    yuv420p through PyAV (``+faststart`` for MP4/MOV: the index first, so a browser plays
    the file while it downloads). One encoder thread: the scan runs its own threads beside it.
    An odd width or height loses its last pixel column or row (yuv420p needs even sizes)."""

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int]):
        from fractions import Fraction

        import av

        options = {"movflags": "+faststart"} if Path(path).suffix.lower() in (".mp4", ".m4v", ".mov") else {}
        self._av = av
        self._container = av.open(str(path), mode="w", options=options)
        try:
            self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001 * 1000))
            self.width, self.height = size[0] // 2 * 2, size[1] // 2 * 2
            self._stream.width, self._stream.height = self.width, self.height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": H264_PRESET, "crf": H264_CRF}
            self._stream.codec_context.thread_count = 1
        except BaseException:
            self._container.close()
            raise
        self._frames = 0
        self._open = self.width > 0 and self.height > 0

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoWriter's name)
        return self._open

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[1] != self.width or frame.shape[0] != self.height:
            frame = frame[: self.height, : self.width]
        video_frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")
        video_frame.pts = self._frames
        self._frames += 1
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)

    def release(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            for packet in self._stream.encode(None):  # flush the encoder's delayed frames
                self._container.mux(packet)
        finally:
            self._container.close()


_GREEN = np.array([0, 200, 0], dtype=np.float64)  # BGR
_YELLOW = np.array([0, 220, 255], dtype=np.float64)
_RED = np.array([0, 0, 255], dtype=np.float64)
_GREY = (160, 160, 160)


def score_color(p_fake: float | None) -> tuple[int, int, int]:
    """BGR colour for a score: green at 0, yellow at 0.5, red at 1; grey for none."""
    if p_fake is None:
        return _GREY
    p = float(min(1.0, max(0.0, p_fake)))
    if p < 0.5:
        c = _GREEN + (_YELLOW - _GREEN) * (p / 0.5)
    else:
        c = _YELLOW + (_RED - _YELLOW) * ((p - 0.5) / 0.5)
    return (int(c[0]), int(c[1]), int(c[2]))


@dataclass(frozen=True)
class DrawnFace:
    """What is drawn for one face: its box, score and track."""

    box: tuple[float, float, float, float]
    p_fake: float
    track_id: int | None = None


def draw_faces(frame: np.ndarray, faces: Sequence[DrawnFace]) -> None:
    """Boxes with ``#track p_fake`` labels, drawn in place on a BGR frame."""
    h, w = frame.shape[:2]
    thickness = max(2, round(min(h, w) / 360))
    font_scale = max(0.5, min(h, w) / 900)
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        color = score_color(face.p_fake)
        cv2.rectangle(frame, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{face.p_fake:.2f}" if face.track_id is None else f"#{face.track_id} {face.p_fake:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1 + thickness // 2)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
        cv2.rectangle(frame, (x1, ty - th - base), (x1 + tw + 4, ty + base // 2), color, -1)
        cv2.putText(frame, text, (x1 + 2, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), 1 + thickness // 2, cv2.LINE_AA)


class ScoreStrip:
    """The running score bar: a thin timeline along the bottom of the frame.

    As the video plays the strip fills, left to right over the whole video,
    with the colour of the last sampled frame's most suspicious face (grey
    where it had none); a white cursor marks the current frame.
    """

    def __init__(self, width: int, height: int, frame_count: int):
        self.width = width
        self.bar_h = max(6, height // 60)
        self.frame_count = max(1, frame_count)
        self.strip = np.full((self.bar_h, width, 3), 40, dtype=np.uint8)
        self._last_x: int | None = None
        self._last_color: tuple[int, int, int] | None = None

    def x_of(self, frame_index: int) -> int:
        return min(self.width, int(round(frame_index * self.width / self.frame_count)))

    def mark(self, frame_index: int, p_fake: float | None) -> None:
        """Record a sampled frame's score (``None``: no face) at its place in the video."""
        x = self.x_of(frame_index)
        self._last_x, self._last_color = x, score_color(p_fake) if p_fake is not None else (90, 90, 90)

    def advance(self, frame_index: int) -> None:
        """Fill the strip up to ``frame_index`` with the last sampled colour."""
        if self._last_x is None or self._last_color is None:
            return
        x = self.x_of(frame_index + 1)
        if x > self._last_x:
            self.strip[:, self._last_x : x] = self._last_color
            self._last_x = x

    def draw(self, frame: np.ndarray, frame_index: int, running: float | None, label: str) -> None:
        """The strip along the bottom and ``label running`` with a score bar in the top-left corner."""
        h, w = frame.shape[:2]
        if w != self.width or h < 4 * self.bar_h:
            return  # a stream that changed size mid-way: no strip rather than a wrong one
        frame[h - self.bar_h : h] = self.strip
        cursor = min(self.width - 1, self.x_of(frame_index))
        frame[h - self.bar_h : h, cursor : cursor + 2] = 255
        scale = max(0.5, h / 1000)
        text = f"{label} {running:.2f}" if running is not None else f"{label} -"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        pad = 6
        bar_w = max(tw, 120)
        cv2.rectangle(frame, (0, 0), (bar_w + 2 * pad, th + base + 2 * pad + 8), (30, 30, 30), -1)
        cv2.putText(frame, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        if running is not None:
            y = pad + th + base
            cv2.rectangle(frame, (pad, y), (pad + int(bar_w * running), y + 6), score_color(running), -1)
            cv2.rectangle(frame, (pad, y), (pad + bar_w, y + 6), (200, 200, 200), 1)


def fourcc_for(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    try:
        return FOURCC_BY_SUFFIX[suffix]
    except KeyError:
        raise UsageError(
            f"cannot write an annotated video as '{suffix or path}': use one of {', '.join(FOURCC_BY_SUFFIX)}"
        ) from None


class AnnotatedVideoWriter:
    """Writes BGR frames to ``path``; the file appears only when the video is complete.

    Frames go to a ``.partial`` file beside the target, renamed on a clean
    :meth:`close`; :meth:`abort` (or leaving the ``with`` block on an error)
    deletes it, so a failed scan never leaves a half video under the final name.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, size: tuple[int, int] | None = None):
        if fps <= 0:
            raise InputFileError(f"{path}: the input video has no frame rate; cannot write an annotated copy")
        self.path = Path(path)
        self.fourcc = fourcc_for(self.path)
        self.fps = float(fps)
        # A name of this writer's own: two scans annotating into one folder never share it.
        self.partial = partial_path(self.path)
        self.size: tuple[int, int] | None = None
        self._writer: cv2.VideoWriter | H264Writer | None = None
        # H.264 through PyAV where it can be written; OpenCV's mp4v/XVID otherwise.
        self.codec = "h264" if self.path.suffix.lower() in H264_SUFFIXES and h264_available() else self.fourcc
        self.frames = 0
        if size is not None:
            self._open((int(size[0]), int(size[1])))

    def _open(self, size: tuple[int, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.codec == "h264":
            try:
                self._writer = H264Writer(self.partial, self.fps, size)
            except Exception as exc:  # FFmpeg refused this size or rate: that video's error
                self.partial.unlink(missing_ok=True)
                raise InputFileError(
                    f"{self.path}: cannot write H.264 video at {self.fps:g} fps, {size[0]}x{size[1]}: {exc}"
                ) from None
        else:
            self._writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
        if not self._writer.isOpened():
            self.abort()
            # Depends on the video (OpenCV's mp4v cannot encode 1 frame in 1000 s, say): that
            # video's error, not the batch's.
            raise InputFileError(
                f"{self.path}: OpenCV cannot write {self.fourcc} video at {self.fps:g} fps, {size[0]}x{size[1]}"
            )
        self.size = size

    def write(self, frame: np.ndarray) -> None:
        """Append a BGR frame; without a size given, the first frame's decides (rotated videos)."""
        if self._writer is None:
            self._open((frame.shape[1], frame.shape[0]))
        if (frame.shape[1], frame.shape[0]) != self.size:
            # A stream that changes size mid-way (rare): keep the output's size.
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(frame)  # type: ignore[union-attr]
        self.frames += 1

    def close(self) -> Path:
        if self._writer is None:
            raise InputFileError(f"{self.path}: no frame to write")
        self._writer.release()
        self._writer = None
        problem = self._check_written()
        if problem is not None:
            # OpenCV's writer swallows write errors (ENOSPC): a full disk left a file without
            # its moov atom and exit 0. That video's error; the partial file goes.
            self.partial.unlink(missing_ok=True)
            raise InputFileError(f"{self.path}: the annotated copy was not written whole ({problem})")
        os.replace(self.partial, self.path)
        return self.path

    def _check_written(self) -> str | None:
        """Why the partial file is not the video written (a full disk), or ``None``: its frame
        count read back from the container's header must be the number of frames written."""
        import shutil

        def reason(what: str) -> str:
            try:
                full = shutil.disk_usage(self.partial.parent).free < 2**20
            except OSError:
                full = False
            return what + ("; no space left on the disk" if full else "")

        try:
            size = self.partial.stat().st_size
        except OSError as exc:
            return reason(f"cannot read it back: {exc.strerror or exc}")
        if size == 0:
            return reason("0 bytes written")
        cap = cv2.VideoCapture(str(self.partial))
        try:
            if not cap.isOpened():
                return reason(f"{size:,} bytes that do not open as a video")
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()
        if count != self.frames:
            return reason(f"{count} of {self.frames} frames read back")
        return None

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self.partial.unlink(missing_ok=True)

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
