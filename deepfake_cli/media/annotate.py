"""Drawing scan results onto video frames and writing them: H.264 (yuv420p, ``+faststart``)
through PyAV's FFmpeg and libx264 for .mp4/.m4v/.mov/.mkv, so browsers play the copy;
OpenCV's VideoWriter (MPEG-4 Part 2, XVID for .avi) where PyAV or libx264 is missing.

Frames are either BGR uint8 (what OpenCV decodes; the fallback) or, for H.264 copies,
:class:`~deepfake_cli.media.frames.YuvFrame` planes straight from PyAV's decoder: those are
drawn on in YUV (:func:`paint_yuv` converts only the small patches a drawing touches) and
encoded as they are, with no BGR round trip of the whole frame. Boxes are coloured from green (real) through yellow to red
(fake) by p_fake and labelled with the track id and score; a strip along the
bottom fills in, frame by frame, with the colour of each sampled frame's most
suspicious face, and the top-left corner shows the running video score.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from deepfake_cli.errors import InputFileError, UsageError
from deepfake_cli.media.frames import YuvFrame
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
# superfast with macroblock-tree rate control over a 10-frame lookahead (veryfast's own): on
# 309 frames of 720p YUV, one thread, 1.17-1.37 CPU s and 500 KB, against plain superfast's
# 1.29-1.38 s and 1096 KB and veryfast's 1.61-1.79 s and 462 KB (source: 181 KB; OpenCV's
# mp4v: about 2.2 MB). A second encoder thread bought nothing on 2 cores busy with the scan.
H264_PRESET = "superfast"
H264_X264_PARAMS = "mbtree=1:rc-lookahead=10"
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
            self._stream.options = {"preset": H264_PRESET, "crf": H264_CRF, "x264-params": H264_X264_PARAMS}
            self._stream.codec_context.thread_count = 1
        except BaseException:
            self._container.close()
            raise
        self._frames = 0
        self._open = self.width > 0 and self.height > 0

    def isOpened(self) -> bool:  # noqa: N802 (cv2.VideoWriter's name)
        return self._open

    def write(self, frame: np.ndarray | YuvFrame) -> None:
        """Encode a BGR frame (converted to yuv420p by FFmpeg), or a :class:`YuvFrame` as it is."""
        if isinstance(frame, YuvFrame):
            if (frame.width, frame.height) != (self.width, self.height):
                frame = frame.resized(self.width, self.height)
            video_frame = self._av.VideoFrame.from_ndarray(frame.i420, format="yuv420p")
        else:
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


# -- drawing on YUV frames ---------------------------------------------------------------------
Region = tuple[int, int, int, int]  # x1, y1, x2, y2 (exclusive ends), frame pixels


# BT.601 limited range from BGR (with the offset in the last column): the conversion FFmpeg's
# swscale applies to the BGR frames given to the encoder.
_Y_FROM_BGR = np.array([[0.097906, 0.504129, 0.256788, 16.0]], np.float32)
_UV_FROM_BGR = np.array([[0.439216, -0.290993, -0.148223, 128.0], [-0.071427, -0.367788, 0.439216, 128.0]],
                        np.float32)
_ANY_CHANNEL = np.full((1, 3), 255.0, np.float32)  # any channel differing: 255 (saturated)


def _bgr_to_yuv(canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y (full size) and U, V (from each 2 x 2 block's mean colour) of an even-sized BGR patch."""
    h, w = canvas.shape[:2]
    y = cv2.transform(canvas, _Y_FROM_BGR)
    uv = cv2.transform(cv2.resize(canvas, (w // 2, h // 2), interpolation=cv2.INTER_AREA), _UV_FROM_BGR)
    return y.reshape(h, w), uv[..., 0], uv[..., 1]


def _even_regions(regions: Sequence[Region], width: int, height: int) -> list[Region]:
    """The regions clipped to the frame, widened to even edges (whole 2 x 2 chroma blocks) and
    merged where they meet, so that no pixel is painted twice."""
    out: list[Region] = []
    for x1, y1, x2, y2 in regions:
        x1, y1 = max(0, x1) // 2 * 2, max(0, y1) // 2 * 2
        x2, y2 = min(width, -(-x2 // 2) * 2), min(height, -(-y2 // 2) * 2)
        if x2 > x1 and y2 > y1:
            out.append((x1, y1, x2, y2))
    merged = True
    while merged:
        merged = False
        for a in range(len(out)):
            for b in range(a + 1, len(out)):
                p, q = out[a], out[b]
                if p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]:
                    out[a] = (min(p[0], q[0]), min(p[1], q[1]), max(p[2], q[2]), max(p[3], q[3]))
                    del out[b]
                    merged = True
                    break
            if merged:
                break
    return out


def paint_yuv(frame: YuvFrame, regions: Sequence[Region], paint: Callable[[np.ndarray, int, int], None]) -> None:
    """Draw on a YUV frame with BGR drawing code, region by region.

    Each region becomes a small BGR patch; ``paint(patch, x0, y0)`` draws on it what it
    would draw on the whole BGR frame, shifted by ``(-x0, -y0)``; the pixels it changed (and
    the chroma of their 2 x 2 blocks) go back into the planes. The rest of the frame is never
    converted: it keeps the decoder's YUV values.
    """
    y_plane, u_plane, v_plane = frame.y, frame.u, frame.v
    for x1, y1, x2, y2 in _even_regions(regions, frame.width, frame.height):
        ph, pw = y2 - y1, x2 - x1
        y = y_plane[y1:y2, x1:x2]
        u = u_plane[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2]
        v = v_plane[y1 // 2 : y2 // 2, x1 // 2 : x2 // 2]
        i420 = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)]).reshape(ph * 3 // 2, pw)
        before = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
        canvas = before.copy()
        paint(canvas, x1, y1)
        # Pixels the drawing changed (255), and the 2 x 2 blocks holding any (their mean > 0).
        changed = cv2.transform(cv2.absdiff(canvas, before), _ANY_CHANNEL).reshape(ph, pw)
        if not cv2.countNonZero(changed):
            continue
        new_y, new_u, new_v = _bgr_to_yuv(canvas)
        np.copyto(y, new_y, where=changed > 0)
        blocks = cv2.resize(changed, (pw // 2, ph // 2), interpolation=cv2.INTER_AREA) > 0
        np.copyto(u, new_u, where=blocks)
        np.copyto(v, new_v, where=blocks)


# -- faces and the score strip ------------------------------------------------------------------
class _FaceDrawing:
    """Where one face's box and label go on a frame of a given size."""

    def __init__(self, face: DrawnFace, width: int, height: int):
        h, w = height, width
        self.thickness = max(2, round(min(h, w) / 360))
        self.font_scale = max(0.5, min(h, w) / 900)
        self.box = tuple(int(round(v)) for v in face.box)
        x1, y1, x2, y2 = self.box
        self.color = score_color(face.p_fake)
        self.text = f"{face.p_fake:.2f}" if face.track_id is None else f"#{face.track_id} {face.p_fake:.2f}"
        self.text_thickness = 1 + self.thickness // 2
        (tw, th), base = cv2.getTextSize(self.text, cv2.FONT_HERSHEY_SIMPLEX, self.font_scale, self.text_thickness)
        ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
        self.label = (x1, ty - th - base, x1 + tw + 4, ty + base // 2)
        self.origin = (x1 + 2, ty - base // 2)

    def draw(self, canvas: np.ndarray, x0: int = 0, y0: int = 0) -> None:
        x1, y1, x2, y2 = self.box
        cv2.rectangle(canvas, (x1 - x0, y1 - y0), (x2 - x0, y2 - y0), self.color, self.thickness, cv2.LINE_AA)
        lx1, ly1, lx2, ly2 = self.label
        cv2.rectangle(canvas, (lx1 - x0, ly1 - y0), (lx2 - x0, ly2 - y0), self.color, -1)
        cv2.putText(canvas, self.text, (self.origin[0] - x0, self.origin[1] - y0), cv2.FONT_HERSHEY_SIMPLEX,
                    self.font_scale, (0, 0, 0), self.text_thickness, cv2.LINE_AA)

    def regions(self) -> list[Region]:
        """The pixels the drawing can touch: the box's four sides (not its inside) and the
        label, on even edges; the sides fit between the top and bottom bands."""
        x1, y1, x2, y2 = self.box
        m = self.thickness // 2 + 3  # half the line, its anti-aliased edge, rounding

        def lo(v: int) -> int:
            return v // 2 * 2

        def hi(v: int) -> int:
            return -(-v // 2) * 2

        left, right = lo(x1 - m), hi(x2 + m + 1)
        top, top_end = lo(y1 - m), hi(y1 + m + 1)
        bottom, bottom_end = lo(y2 - m), hi(y2 + m + 1)
        bands = [(left, top, right, top_end), (left, bottom, right, bottom_end)]
        if bottom > top_end:  # a box taller than its lines: two sides between the bands
            bands += [(left, top_end, hi(x1 + m + 1), bottom), (lo(x2 - m), top_end, right, bottom)]
        lx1, ly1, lx2, ly2 = self.label
        return bands + [(lo(lx1 - 2), lo(ly1 - 2), hi(lx2 + 3), hi(ly2 + 3))]


def draw_faces(frame: np.ndarray | YuvFrame, faces: Sequence[DrawnFace]) -> None:
    """Boxes with ``#track p_fake`` labels, drawn in place on a BGR or YUV frame."""
    h, w = frame.shape[:2]
    for face in faces:
        drawing = _FaceDrawing(face, w, h)
        if isinstance(frame, YuvFrame):
            paint_yuv(frame, drawing.regions(), drawing.draw)
        else:
            drawing.draw(frame)


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

    def draw(self, frame: np.ndarray | YuvFrame, frame_index: int, running: float | None, label: str) -> None:
        """The strip along the bottom and ``label running`` with a score bar in the top-left
        corner, on a BGR or YUV frame."""
        h, w = frame.shape[:2]
        if w != self.width or h < 4 * self.bar_h:
            return  # a stream that changed size mid-way: no strip rather than a wrong one
        cursor = min(self.width - 1, self.x_of(frame_index))
        scale = max(0.5, h / 1000)
        text = f"{label} {running:.2f}" if running is not None else f"{label} -"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        pad = 6
        bar_w = max(tw, 120)
        box = (0, 0, bar_w + 2 * pad, th + base + 2 * pad + 8)

        def paint(canvas: np.ndarray, x0: int = 0, y0: int = 0) -> None:
            top = h - self.bar_h - y0
            if top < canvas.shape[0]:
                canvas[max(0, top) :] = self.strip[max(0, -top) :, x0 : x0 + canvas.shape[1]]
                canvas[max(0, top) :, max(0, cursor - x0) : max(0, cursor - x0 + 2)] = 255
            cv2.rectangle(canvas, (box[0] - x0, box[1] - y0), (box[2] - x0, box[3] - y0), (30, 30, 30), -1)
            cv2.putText(canvas, text, (pad - x0, pad + th - y0), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
            if running is not None:
                y = pad + th + base - y0
                cv2.rectangle(canvas, (pad - x0, y), (pad + int(bar_w * running) - x0, y + 6), score_color(running), -1)
                cv2.rectangle(canvas, (pad - x0, y), (pad + bar_w - x0, y + 6), (200, 200, 200), 1)

        if isinstance(frame, YuvFrame):
            paint_yuv(frame, [(0, h - self.bar_h, w, h), (0, 0, box[2] + 2, max(box[3], pad + th + base + 7) + 2)], paint)
        else:
            paint(frame)


def fourcc_for(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    try:
        return FOURCC_BY_SUFFIX[suffix]
    except KeyError:
        raise UsageError(
            f"cannot write an annotated video as '{suffix or path}': use one of {', '.join(FOURCC_BY_SUFFIX)}"
        ) from None


def annotated_codec(path: str | os.PathLike[str]) -> str:
    """What an annotated copy at ``path`` is written as: ``"h264"`` through PyAV where it can be
    written (and then frames may be given as :class:`YuvFrame`); OpenCV's mp4v/XVID otherwise."""
    fourcc = fourcc_for(path)
    return "h264" if Path(path).suffix.lower() in H264_SUFFIXES and h264_available() else fourcc


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
        self.codec = annotated_codec(self.path)
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

    def write(self, frame: np.ndarray | YuvFrame) -> None:
        """Append a BGR frame, or a :class:`YuvFrame` (H.264 only); without a size given, the
        first frame's decides (rotated videos)."""
        if self._writer is None:
            self._open((frame.shape[1], frame.shape[0]))
        if isinstance(frame, YuvFrame):
            if self.codec != "h264":
                raise TypeError(f"YUV frames are written as H.264 only, not {self.codec}")
        elif (frame.shape[1], frame.shape[0]) != self.size:
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
