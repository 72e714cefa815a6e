"""Scanning a video: sampled frames -> batched detection -> tracks -> batched scores -> verdict.

The scan streams. A background thread decodes (``grab()`` past the frames
that are not sampled, see :mod:`deepfake_cli.media.frames`) a bounded queue ahead;
batches of sampled frames are detected (MTCNN's pyramid capped by
``video.detect_max_side``) by worker threads
(one MTCNN and one torch thread each) and classified in batches across frames
through the shared :class:`~deepfake_cli.inference.pipeline.FacePipeline`, in order;
faces are linked into tracks (:mod:`deepfake_cli.faces.tracking`) and each track's
scores are aggregated (:mod:`deepfake_cli.inference.aggregate`). With an annotated
video every frame is decoded, held until the batch holding its sampled frame
is scored, then drawn and encoded by a background thread; for an H.264 copy the
frames are decoded by PyAV as YUV planes (:func:`~deepfake_cli.media.frames.iter_yuv_frames`),
only the sampled ones are converted to BGR, and the planes are drawn on and encoded
as they are (OpenCV's BGR frames otherwise). Memory is bounded
by the queues and :data:`IN_FLIGHT_MAX_BYTES`, whatever the video's length.

:func:`scan_video` is the library entry point behind ``dfdetect video``,
videos given to ``dfdetect predict`` and the API's video endpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator

import cv2
import numpy as np
import torch

from deepfake_cli.inference.aggregate import AGGREGATIONS, aggregate, aggregate_all
from deepfake_cli.media.annotate import AnnotatedVideoWriter, DrawnFace, annotated_codec
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.config import Config, VideoConfig
from deepfake_cli.errors import InputFileError, ScanCancelled, UsageError
from deepfake_cli.faces.detector import Face
from deepfake_cli.media.frames import YuvFrame, iter_frames, iter_yuv_frames, sample_indices, video_info
from deepfake_cli.media.images import is_image_path, is_video_path, still_image_format
from deepfake_cli.inference.pipeline import FacePipeline, FaceResult
from deepfake_cli.inference.predict import STATUS_ERROR, STATUS_NO_FACE, STATUS_OK, error_record, predict_images
from deepfake_cli.inference.records import ImageRecord, marked_verdict
from deepfake_cli.faces.tracking import IouTracker
from deepfake_cli.inference.verdict import borderline, margin
from deepfake_cli.inference.verdict import verdict as verdict_of
from deepfake_cli.inference.scan_threads import (  # noqa: F401 (the constants: re-exported)
    _PER_THREAD_TORCH_THREADS,
    CPU_DETECT_BATCH,
    GPU_DETECT_BATCH,
    MAX_AUTO_DETECT_WORKERS,
    QUEUE_FRAMES,
    _BackgroundAnnotator,
    _DetectionPool,
    _Prefetch,
    _Segment,
)

STAGES = ("decode", "detect", "classify", "encode")
# Per-frame rows (CSV): one per face of each sampled frame, or one saying "no_face".
FRAME_COLUMNS = (
    "video", "frame", "timestamp", "status", "track_id", "x1", "y1", "x2", "y2",
    "det_prob", "p_fake", "label", "margin", "borderline", "method", "error",
)
# Per-video summary rows (table; CSV adds borderline and margin); JSON keeps the whole summary.
SUMMARY_COLUMNS = (
    "video", "status", "verdict", "p_fake", "aggregate", "tracks", "face_count",
    "frames_sampled", "frames_with_face", "method", "seconds", "error",
)
SUMMARY_CSV_COLUMNS = (
    "video", "status", "verdict", "borderline", "p_fake", "margin", "aggregate", "tracks", "face_count",
    "frames_sampled", "frames_with_face", "method", "seconds", "error",
)
ROW_FACE = "face"
# Frames held by batches in flight (an annotated video holds every frame until
# its batch is scored); a batch is sent early rather than hold more. With the
# queues, torch, OpenCV and the models (~1.3 GB before any frame), a 1080p scan
# with an annotated video peaks around 1.55 GB RSS, however long the video.
IN_FLIGHT_MAX_BYTES = 64 * 2**20
# The scan runs its own threads (decoding, one detection worker per core, encoding):
# OpenCV's thread pool (colour conversions, crops) and FFmpeg's decoder threads on
# top of them mostly wait for each other (fewer CPU seconds per scan on 2 cores).
SCAN_OPENCV_THREADS = 1
SCAN_DECODE_THREADS = 1


@dataclass
class ScanProgress:
    """Where a running scan is, for progress bars."""

    video: str
    sampled_total: int
    sampled_done: int
    faces: int
    elapsed: float

    @property
    def fps(self) -> float:
        """Sampled frames scored per second."""
        return self.sampled_done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class VideoResult:
    """Per-frame rows (unless not kept) and the video's summary dict."""

    path: str
    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def verdict(self) -> str:
        return self.summary["verdict"]


class StageTimer:
    """Seconds spent per stage, summed over the threads that run it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {stage: 0.0 for stage in STAGES}
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    @contextlib.contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)


def sampling_options(video_cfg: VideoConfig) -> dict[str, Any]:
    """The ``iter_frames`` keywords of a config: ``--fps``/``--frames`` replace the default ``every``."""
    every = None if (video_cfg.fps is not None or video_cfg.frames is not None) else video_cfg.every
    return {"every": every, "frames": video_cfg.frames, "fps": video_cfg.fps,
            "start": video_cfg.start, "end": video_cfg.end}


def with_sampling(video_cfg: VideoConfig, every: int | None = None, fps: float | None = None,
                  frames: int | None = None) -> VideoConfig:
    """``video_cfg`` with the one way of sampling given here (a command-line option, a
    request's query) replacing the configured one, whichever that was; unchanged when none
    is given. Raises :class:`UsageError` when more than one is given."""
    given = {k: v for k, v in (("every", every), ("fps", fps), ("frames", frames)) if v is not None}
    if len(given) > 1:
        raise UsageError(f"choose one way to sample frames, not {' and '.join(given)}")
    if not given:
        return video_cfg
    return dataclasses.replace(video_cfg, **{"fps": None, "frames": None, **given})


def video_pipeline(classifier: FaceClassifier, cfg: Config) -> FacePipeline:
    """The face pipeline for videos: detection capped at ``video.detect_max_side`` (see :class:`~deepfake_cli.faces.detector.FaceDetector`)."""
    return FacePipeline.from_config(classifier, cfg, max_side=cfg.video.detect_max_side)


@dataclass
class _Pending:
    index: int
    timestamp: float
    frame: np.ndarray
    sampled: bool


@dataclass
class _Batch:
    """Frames in order (sampled or only to be drawn) and the detection of each sampled one."""

    pending: list[_Pending]
    detections: "list[Future[tuple[np.ndarray, list[Face]]]]"
    nbytes: int = 0


@contextlib.contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count for this thread only (OpenMP keeps it per thread)."""
    before = torch.get_num_threads()
    if n == before or not _PER_THREAD_TORCH_THREADS:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _TrackStats:
    scores: list[float] = field(default_factory=list)
    first_frame: int = -1
    last_frame: int = -1
    prob_sums: np.ndarray | None = None

    def add(self, frame: int, result: FaceResult) -> None:
        if not self.scores:
            self.first_frame = frame
        self.last_frame = frame
        self.scores.append(result.score.p_fake)
        probs = np.fromiter(result.score.probs.values(), dtype=np.float64)
        self.prob_sums = probs if self.prob_sums is None else self.prob_sums + probs


def scan_video(
    path: str | os.PathLike[str],
    pipeline: FacePipeline,
    video_cfg: VideoConfig,
    annotate_path: str | os.PathLike[str] | None = None,
    progress: Callable[[ScanProgress], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
    keep_rows: bool = True,
    should_stop: Callable[[], bool] | None = None,
) -> VideoResult:
    """Scan one video; see the module docstring.

    ``on_row`` receives each per-frame row as soon as its batch is scored
    (write a CSV while the scan runs); ``keep_rows=False`` keeps them out of
    the result, so memory stays flat however long the video. Raises
    :class:`InputFileError` when the video cannot be read (missing, not a
    video, truncated, no frames, nothing to sample in ``start..end``) and
    :class:`UsageError` for contradictory sampling options.
    ``should_stop`` is asked at every decoded frame; when it returns true the
    scan stops and raises :class:`ScanCancelled`.
    """
    with _opencv_threads(SCAN_OPENCV_THREADS):
        return _VideoScan(path, pipeline, video_cfg, annotate_path, progress, on_row, keep_rows, should_stop).run()


@contextlib.contextmanager
def _opencv_threads(n: int) -> Iterator[None]:
    """OpenCV's thread count (process-wide) for the duration of a scan."""
    before = cv2.getNumThreads()
    if n == before:
        yield
        return
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class _VideoScan:
    """The state of one :func:`scan_video` call."""

    def __init__(self, path, pipeline, video_cfg, annotate_path, progress, on_row, keep_rows, should_stop=None):
        self.path = str(path)
        self.should_stop = should_stop
        self.pipeline = pipeline
        self.cfg = video_cfg
        self.annotate_path = None if annotate_path is None else Path(annotate_path)
        self.progress = progress
        self.on_row = on_row
        self.keep_rows = keep_rows
        self.classifier = pipeline.classifier
        self.threshold = pipeline.classifier.threshold
        self.band = pipeline.classifier.borderline_band
        self.timer = StageTimer()
        self.tracker = IouTracker(video_cfg.track_iou, video_cfg.track_max_missed)
        self.tracks: dict[int, _TrackStats] = defaultdict(_TrackStats)
        self.rows: list[dict[str, Any]] = []
        self.sampled_done = 0
        self.with_face = 0
        self.faces = 0
        self.decoded = 0
        self.frame_scores: list[float] = []  # each sampled frame's top p_fake, for the running score
        self._running_value: tuple[int, float | None] = (0, None)
        self.started = time.perf_counter()

    # -- the scan ---------------------------------------------------------------------------
    def run(self) -> VideoResult:
        if is_image_path(self.path):
            # OpenCV opens a still image as a one-frame "video" at 25 fps: say what it is instead.
            raise InputFileError(f"{self.path}: an image, not a video (score it with 'dfdetect predict')")
        info = video_info(self.path)
        still = still_image_format(self.path) if info.frame_count == 1 else None
        if still is not None:  # a photo renamed .mp4 (a bare MJPEG stream of many JPEGs is a video)
            raise InputFileError(f"{self.path}: a {still} image named as a video; give it its image extension "
                                 f"to score it as a photo")
        options = sampling_options(self.cfg)
        try:
            wanted = sample_indices(info, **options)
        except InputFileError as exc:  # e.g. no frame rate to sample by time: name the video
            raise InputFileError(f"{self.path}: {exc}") from None
        if not wanted:
            raise InputFileError(
                f"{self.path}: no frame to sample between start {self.cfg.start or 0:g} s and end "
                f"{f'{self.cfg.end:g}' if self.cfg.end is not None else f'{info.duration:.2f}'} s "
                f"(the video lasts {info.duration:.2f} s)"
            )
        self.info, self.wanted = info, wanted
        self.annotator = None
        if self.annotate_path is not None:
            # Every frame is decoded and re-encoded; only the sampled ones are scored.
            sampled: set[int] | None = set(wanted)
            if annotated_codec(self.annotate_path) == "h264":
                # Decoded by PyAV as YUV planes, drawn on and encoded as they are; only the
                # sampled frames are converted to BGR (for detection).
                make_frames = partial(iter_yuv_frames, self.path, convert=sampled, decode_threads=SCAN_DECODE_THREADS)
            else:
                make_frames = partial(iter_frames, self.path, color="bgr", decode_threads=SCAN_DECODE_THREADS)
        else:
            sampled = None
            make_frames = partial(iter_frames, self.path, color="bgr", decode_threads=SCAN_DECODE_THREADS, **options)
        # Boxes stay drawn until the next sampled frame, and one sampling step past the last.
        step = wanted[-1] - wanted[-2] if len(wanted) > 1 else 1
        self.hold_until = wanted[-1] + step
        self.held: list[DrawnFace] = []
        pool = _DetectionPool(self.pipeline, self.cfg.detect_workers, self.timer, self.cfg.track_reach)
        # Detection workers keep the cores busy; classification takes what is left.
        self.classify_threads = max(1, torch.get_num_threads() - pool.workers)
        # Spread short videos over every worker; at most detect_batch frames per batch.
        batch_size = max(1, min(pool.batch_size(self.cfg.detect_batch), -(-len(wanted) // pool.workers)))
        max_bytes = IN_FLIGHT_MAX_BYTES // (pool.workers + 1)
        self.inflight: deque[_Batch] = deque()
        self.inflight_bytes = 0
        source = _Prefetch(make_frames, self.timer)
        segment: _Segment | None = None
        segment_start = 0.0
        redetect = self.cfg.redetect_every
        try:
            if self.annotate_path is not None:
                # Sized by the first decoded frame: OpenCV turns rotated videos upright.
                self.annotator = _BackgroundAnnotator(
                    AnnotatedVideoWriter(self.annotate_path, info.fps), info.frame_count, self.timer,
                    label=f"video p_fake ({self.cfg.aggregate})",
                )
            pending: list[_Pending] = []
            detections: list[Future] = []
            n_bytes = 0
            for index, timestamp, frame in source:
                if self.should_stop is not None and self.should_stop():
                    raise ScanCancelled(f"{self.path}: scan stopped at frame {index}")
                is_sampled = sampled is None or index in sampled
                item = _Pending(index, timestamp, frame, is_sampled)
                pending.append(item)
                if is_sampled:
                    if segment is None or not redetect or timestamp - segment_start >= redetect:
                        if segment is not None:
                            segment.close()
                        segment, segment_start = pool.start_segment(), timestamp
                    detections.append(segment.add(frame.bgr if isinstance(frame, YuvFrame) else frame))
                n_bytes += frame.nbytes
                self.decoded += 1
                if len(detections) >= batch_size or n_bytes >= max_bytes:
                    self._submit(pool, pending, detections, n_bytes)
                    pending, detections, n_bytes = [], [], 0
            if segment is not None:
                segment.close()
            self._submit(pool, pending, detections, n_bytes)
            while self.inflight:
                self._complete(self.inflight.popleft())
            annotated = self.annotator.finish() if self.annotator is not None else None
        except BaseException:
            if self.annotator is not None:
                self.annotator.abort()
            raise
        finally:
            source.close()
            pool.close()
            self.searched = dict(pool.searched)
        if self.sampled_done == 0:
            raise InputFileError(f"{self.path}: no frame could be decoded")
        summary = self._summary(options, annotated)
        return VideoResult(self.path, summary, self.rows if self.keep_rows else [])

    def _submit(self, pool: "_DetectionPool", pending: list[_Pending], detections: list[Future], nbytes: int) -> None:
        """Queue a batch; score the oldest batches while too many frames are held."""
        if not pending:
            return
        self.inflight.append(_Batch(pending, detections, nbytes))
        self.inflight_bytes += nbytes
        while len(self.inflight) > 1 and self.inflight_bytes > IN_FLIGHT_MAX_BYTES:
            self._complete(self.inflight.popleft())

    def _complete(self, batch: "_Batch") -> None:
        """Classify a detected batch, track, emit rows, and pass its frames to the encoder (in order)."""
        self.inflight_bytes -= batch.nbytes
        todo = [p for p in batch.pending if p.sampled]
        drawn: dict[int, list[DrawnFace]] = {}
        if batch.detections:
            detected = [future.result() for future in batch.detections]
            images = [image for image, _ in detected]
            faces = [found for _, found in detected]
            with self.timer.time("classify"), _intra_op_threads(self.classify_threads):
                results = self.pipeline.classify_faces(images, faces)
            del images, detected
            for item, frame_results in zip(todo, results):
                drawn[item.index] = self._record_frame(item, frame_results)
                if isinstance(item.frame, YuvFrame):
                    item.frame.bgr = None  # detected: only the YUV planes are drawn and encoded
        if self.annotator is not None:
            for item in batch.pending:
                if item.sampled:
                    self.held = drawn[item.index]
                    top = max((f.p_fake for f in self.held), default=None)
                    self.annotator.put(item.index, item.frame, self.held, mark=(True, top), running=self._running())
                else:
                    faces_shown = self.held if item.index < self.hold_until else []
                    self.annotator.put(item.index, item.frame, faces_shown, mark=(False, None), running=self._running())
        batch.pending.clear()
        if self.progress is not None:
            self.progress(ScanProgress(self.path, len(self.wanted), self.sampled_done, self.faces,
                                       time.perf_counter() - self.started))

    def _record_frame(self, item: _Pending, results: list[FaceResult]) -> list[DrawnFace]:
        self.sampled_done += 1
        ids = self.tracker.update([r.face.box for r in results])
        drawn = []
        base = {"video": self.path, "frame": item.index, "timestamp": round(item.timestamp, 3)}
        if not results:
            self._emit({**base, "status": STATUS_NO_FACE, **{c: None for c in FRAME_COLUMNS[4:]}})
            return drawn
        self.with_face += 1
        self.faces += len(results)
        self.frame_scores.append(max(r.score.p_fake for r in results))
        for track_id, result in zip(ids, results):
            self.tracks[track_id].add(item.index, result)
            x1, y1, x2, y2 = (round(float(v), 1) for v in result.face.box)
            self._emit({
                **base, "status": ROW_FACE, "track_id": track_id, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                "det_prob": None if result.face.prob is None else round(float(result.face.prob), 5),
                "p_fake": round(result.score.p_fake, 6), "label": result.score.label,
                "margin": result.score.margin, "borderline": result.score.borderline,
                "method": result.score.method, "error": None,
            })
            drawn.append(DrawnFace(tuple(result.face.box), result.score.p_fake, track_id))  # type: ignore[arg-type]
        return drawn

    def _emit(self, row: dict[str, Any]) -> None:
        if self.on_row is not None:
            self.on_row(row)
        if self.keep_rows:
            self.rows.append(row)

    def _running(self) -> float | None:
        """The running score drawn on annotated frames: the chosen aggregation of the frame scores so far."""
        n, value = self._running_value
        if n != len(self.frame_scores):
            value = aggregate(self.frame_scores, self.cfg.aggregate)
            self._running_value = (len(self.frame_scores), value)
        return value

    # -- the verdict ------------------------------------------------------------------------
    def _summary(self, options: dict[str, Any], annotated: Path | None) -> dict[str, Any]:
        method_name = self.cfg.aggregate
        tracks = [self._track_summary(tid, st) for tid, st in sorted(self.tracks.items())]
        _fix_voters(tracks)
        voters = [t for t in tracks if t["votes"]]
        by_aggregate: dict[str, float | None] = {}
        for name in AGGREGATIONS:
            values = [t["p_fake_by_aggregate"][name] for t in voters]
            by_aggregate[name] = round(max(values), 6) if values else None
        p_fake = by_aggregate[method_name]
        if p_fake is None:
            status, verdict, method = STATUS_NO_FACE, "no_face", None
        else:
            status = STATUS_OK
            verdict = verdict_of(p_fake, self.threshold)
            method = max(voters, key=lambda t: t["p_fake"])["method"]
        elapsed = time.perf_counter() - self.started
        timings = {stage: round(self.timer.seconds.get(stage, 0.0), 4) for stage in STAGES}
        timings["total"] = round(elapsed, 4)
        return {
            "video": self.path,
            "status": status,
            "verdict": verdict,
            "borderline": borderline(p_fake, self.threshold, self.band),
            "p_fake": p_fake,
            "margin": margin(p_fake, self.threshold),
            "aggregate": method_name,
            "p_fake_by_aggregate": by_aggregate,
            "threshold": self.threshold,
            "method": method,
            "model": self.classifier.name,
            "face_count": self.faces,
            "tracks": tracks,
            "frames": {
                "total": self.info.frame_count,
                "decoded": self.decoded,
                "sampled": self.sampled_done,
                "with_face": self.with_face,
                "searched_whole": self.searched["whole"],
                "searched_near": self.searched["near"],
                "searched_changed": self.searched["changed"],
            },
            "video_info": self.info.to_dict(),
            "sampling": {k: v for k, v in options.items() if v is not None},
            "annotated": None if annotated is None else str(annotated),
            "timings": timings,
            "sampled_fps": round(self.sampled_done / elapsed, 2) if elapsed > 0 else None,
            "error": None,
        }

    def _track_summary(self, track_id: int, st: _TrackStats) -> dict[str, Any]:
        by_aggregate = {k: round(v, 6) for k, v in aggregate_all(st.scores).items() if v is not None}
        p_fake = by_aggregate[self.cfg.aggregate]
        # 7-class models: the manipulation method most likely on average over the track.
        method = self.classifier.score_rows((st.prob_sums / len(st.scores))[None])[0].method
        seconds = self._seen_seconds(st)
        return {
            "track_id": track_id,
            "faces": len(st.scores),
            "first_frame": st.first_frame,
            "last_frame": st.last_frame,
            "p_fake": p_fake,
            "p_fake_by_aggregate": by_aggregate,
            "verdict": verdict_of(p_fake, self.threshold),
            "borderline": borderline(p_fake, self.threshold, self.band),
            "margin": margin(p_fake, self.threshold),
            "method": method,
            "seconds": seconds,
            "votes": len(st.scores) >= self.cfg.min_track_faces
            and (seconds is None or seconds >= self.cfg.min_track_seconds),
        }

    def _seen_seconds(self, st: _TrackStats) -> float | None:
        """How long a track was in view: first to last face, plus one sampling step (one
        face seen at every 10th frame of 25 fps video stands for 0.4 s); None without a
        frame rate."""
        if self.info.fps <= 0:
            return None
        wanted = self.wanted
        step = (wanted[-1] - wanted[0]) / (len(wanted) - 1) if len(wanted) > 1 else 1.0
        return round((st.last_frame - st.first_frame + step) / self.info.fps, 3)


def _fix_voters(tracks: list[dict[str, Any]]) -> None:
    """Short tracks vote only when no track is long enough (a clip shorter than the minimum)."""
    if tracks and not any(t["votes"] for t in tracks):
        for t in tracks:
            t["votes"] = True


def error_summary(path: str | os.PathLike[str], message: str, model: str | None = None) -> dict[str, Any]:
    """The summary of a video that could not be scanned."""
    return {
        "video": str(path), "status": STATUS_ERROR, "verdict": None, "borderline": None, "p_fake": None, "margin": None,
        "aggregate": None,
        "p_fake_by_aggregate": {}, "threshold": None, "method": None, "model": model, "face_count": None,
        "tracks": [], "frames": None, "video_info": None, "sampling": None, "annotated": None,
        "timings": None, "sampled_fps": None, "error": message,
    }


def error_row(path: str | os.PathLike[str], message: str) -> dict[str, Any]:
    """The per-frame CSV row that says a video could not be scanned."""
    row: dict[str, Any] = {c: None for c in FRAME_COLUMNS}
    row.update(video=str(path), status=STATUS_ERROR, error=message)
    return row


def flat_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary as one flat table/CSV row."""
    frames = summary.get("frames") or {}
    timings = summary.get("timings") or {}
    return {
        "video": summary["video"], "status": summary["status"], "verdict": summary["verdict"],
        "borderline": summary.get("borderline"), "p_fake": summary["p_fake"], "margin": summary.get("margin"),
        "aggregate": summary["aggregate"],
        "tracks": None if summary["status"] == STATUS_ERROR else len(summary["tracks"]),
        "face_count": summary["face_count"], "frames_sampled": frames.get("sampled"),
        "frames_with_face": frames.get("with_face"), "method": summary["method"],
        "seconds": timings.get("total"), "error": summary["error"],
    }


def table_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """:func:`flat_summary` for the terminal table: a borderline verdict reads ``fake?``/``real?``."""
    return marked_verdict(flat_summary(summary), summary)


def predict_record(summary: dict[str, Any]) -> dict[str, Any]:
    """A video's summary as a ``dfdetect predict`` record (the image record's keys, plus video detail)."""
    ok = summary["status"] == STATUS_OK
    return ImageRecord(
        summary["video"],
        summary["status"],
        verdict=summary["verdict"] if ok else None,
        p_fake=summary["p_fake"],
        borderline=summary.get("borderline") if ok else None,
        margin=summary.get("margin") if ok else None,
        method=summary["method"],
        face_count=summary["face_count"],
        threshold=summary["threshold"],
        model=summary["model"],
        error=summary["error"],
        extra={"kind": "video", "aggregate": summary["aggregate"], "frames": summary["frames"], "tracks": summary["tracks"]},
    ).to_dict()


def predict_paths(
    paths: Iterable[Path | str],
    pipeline: FacePipeline,
    cfg: Config,
    video_progress: Callable[[str], ContextManager[Callable[[ScanProgress], None] | None]] | None = None,
) -> Iterator[dict[str, Any]]:
    """``dfdetect predict`` records for images and videos, in input order.

    Runs of images go through :func:`~deepfake_cli.inference.predict.predict_images` in
    batches; each video is scanned with :func:`scan_video` and gives one record
    with its video-level verdict (or an error record). ``video_progress(path)``
    may supply a progress callback per video.
    """
    videos: FacePipeline | None = None
    model = pipeline.classifier.name
    for is_video, group in groupby(paths, key=is_video_path):
        if not is_video:
            yield from predict_images(group, pipeline, cfg.predict.max_image_pixels)
            continue
        if videos is None:
            videos = video_pipeline(pipeline.classifier, cfg)
        for path in group:
            with video_progress(str(path)) if video_progress else contextlib.nullcontext() as progress:
                try:
                    record = predict_record(scan_video(path, videos, cfg.video, progress=progress, keep_rows=False).summary)
                except InputFileError as exc:
                    record = {**error_record(str(path), str(exc), model), "kind": "video"}
            yield record
