"""The video scan's worker threads: decoding ahead (:class:`_Prefetch`), face detection by
segment (:class:`_DetectionPool`) and encoding the annotated copy (:class:`_BackgroundAnnotator`).

:mod:`deepfake_cli.inference.video` (the scan engine) runs them; memory stays bounded by
their queues.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import cv2
import numpy as np
import torch

from deepfake_cli.faces.detector import Face, near_window
from deepfake_cli.faces.motion import ChangedRegions
from deepfake_cli.inference.pipeline import FacePipeline
from deepfake_cli.media.annotate import AnnotatedVideoWriter, DrawnFace, ScoreStrip, draw_faces
from deepfake_cli.media.frames import YuvFrame

if TYPE_CHECKING:
    from deepfake_cli.inference.video import StageTimer

# Detection threads when video.detect_workers is unset (capped by torch's thread count).
MAX_AUTO_DETECT_WORKERS = 4
# Sampled frames per batch (detected in order by the segment workers, then classified
# together) when video.detect_batch is unset.
CPU_DETECT_BATCH = 2
GPU_DETECT_BATCH = 8
# Frames decoded ahead of, and waiting to be encoded behind, the scoring thread.
QUEUE_FRAMES = 4
# With OpenMP (Linux and Windows wheels) torch's thread count is per thread, so each
# detection worker can run single-threaded; elsewhere it is global and left alone.
_PER_THREAD_TORCH_THREADS = "parallel backend: OpenMP" in torch.__config__.parallel_info()


# -- background decoding, detection and encoding ----------------------------------------------
class _Segment:
    """Sampled frames from one whole-frame detection to the next, detected in order by one worker."""

    def __init__(self) -> None:
        self.frames: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False

    def add(self, frame_bgr: np.ndarray) -> "Future[tuple[np.ndarray, list[Face]]]":
        future: Future = Future()
        self.frames.put((frame_bgr, future))
        return future

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.frames.put(None)


class _DetectionPool:
    """Face detection in worker threads, each with one torch thread, one segment at a time.

    MTCNN is hundreds of tiny tensor ops per frame: split across threads inside
    each op, the threads mostly wait for each other (and stall badly when the
    machine is busy), so segments of frames go to separate single-threaded
    workers instead. In a segment, each frame after the first is searched only
    around the faces found in the frame before, and whole when a face is not
    found there (:meth:`~deepfake_cli.faces.detector.FaceDetector.detect_tracked`). Results come back as futures,
    one per frame; the scan consumes them in order.
    """

    def __init__(self, pipeline: FacePipeline, workers: int | None, timer: StageTimer, reach: float):
        self.pipeline = pipeline
        self.timer = timer
        self.reach = reach
        detector = pipeline.detector
        on_gpu = detector is not None and torch.device(detector.device).type != "cpu"
        if workers is None:
            single = detector is None or on_gpu or not _PER_THREAD_TORCH_THREADS
            workers = 1 if single else max(1, min(MAX_AUTO_DETECT_WORKERS, torch.get_num_threads()))
        self.workers = workers
        self.on_gpu = on_gpu
        self._segments: list[_Segment] = []
        # Sampled frames searched whole, and around tracked faces only (of which, also
        # where the frame changed).
        self.searched = {"whole": 0, "near": 0, "changed": 0}
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="dfdetect-detect", initializer=self._start_worker)

    def batch_size(self, configured: int | None) -> int:
        return configured or (GPU_DETECT_BATCH if self.on_gpu else CPU_DETECT_BATCH)

    def _start_worker(self) -> None:
        if _PER_THREAD_TORCH_THREADS:
            torch.set_num_threads(1)

    def start_segment(self) -> _Segment:
        segment = _Segment()
        self._segments = [s for s in self._segments if not s.closed] + [segment]
        self._executor.submit(self._run_segment, segment)
        return segment

    def _run_segment(self, segment: _Segment) -> None:
        detector = self.pipeline.detector
        previous: list[Face] = []
        changes = ChangedRegions(detector.min_size) if detector is not None else None
        while True:
            item = segment.frames.get()
            if item is None:
                return
            frame_bgr, future = item
            if not future.set_running_or_notify_cancel():
                continue
            start = time.perf_counter()
            try:
                image = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
                if detector is None:
                    faces = self.pipeline.find_faces([image])[0]
                else:
                    tracked = [f.box for f in previous]
                    # Where the frame changed, away from the tracked faces: a face may have come into view.
                    changed = changes.update(frame_bgr, [near_window(box, self.reach) for box in tracked])
                    faces, was_near = detector.detect_tracked(image, tracked, self.reach, changed)
                    self.searched["near" if was_near else "whole"] += 1
                    self.searched["changed"] += bool(was_near and changed)
                previous = faces
                future.set_result((image, faces))
            except BaseException as exc:  # handed to the scan with this frame
                future.set_exception(exc)
            finally:
                self.timer.add("detect", time.perf_counter() - start)

    def close(self) -> None:
        for segment in self._segments:
            segment.close()
        self._executor.shutdown(wait=True, cancel_futures=True)


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class _Prefetch:
    """Runs a frame iterator in a thread, at most :data:`QUEUE_FRAMES` frames ahead.

    OpenCV releases the GIL while decoding, so decoding overlaps detection.
    The iterator is created and consumed in that thread; its errors are
    raised in the reader's.
    """

    def __init__(self, make_frames: Callable[[], Iterator[Any]], timer: StageTimer):
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._stop = threading.Event()
        self._timer = timer
        self._thread = threading.Thread(target=self._run, args=(make_frames,), name="dfdetect-decode", daemon=True)
        self._thread.start()

    def _run(self, make_frames: Callable[[], Iterator[Any]]) -> None:
        frames = None
        try:
            frames = make_frames()
            while not self._stop.is_set():
                start = time.perf_counter()
                item = next(frames, _END)
                self._timer.add("decode", time.perf_counter() - start)
                if not self._put(item) or item is _END:
                    break
        except BaseException as exc:  # handed to the reader
            self._put(_Failure(exc))
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _BackgroundAnnotator:
    """Draws and encodes annotated frames in a thread, in the order they are put."""

    def __init__(self, writer: AnnotatedVideoWriter, frame_count: int, timer: StageTimer, label: str):
        self.writer = writer
        self.label = label
        self.frame_count = frame_count
        self.strip: ScoreStrip | None = None
        self.timer = timer
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dfdetect-encode", daemon=True)
        self._thread.start()

    def put(self, index: int, frame: "np.ndarray | YuvFrame", faces: list[DrawnFace], mark: tuple[bool, float | None],
            running: float | None) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put((index, frame, faces, mark, running), timeout=0.1)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain: the scan stops at its next put()
            index, frame, faces, (is_sampled, top), running = item
            start = time.perf_counter()
            try:
                if self.strip is None:
                    self.strip = ScoreStrip(frame.shape[1], frame.shape[0], self.frame_count)
                if is_sampled:
                    self.strip.mark(index, top)
                self.strip.advance(index)
                draw_faces(frame, faces)
                self.strip.draw(frame, index, running, self.label)
                self.writer.write(frame)
            except BaseException as exc:
                self._error = exc
            self.timer.add("encode", time.perf_counter() - start)

    def _stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def finish(self) -> Path:
        self._stop()
        if self._error is not None:
            self.writer.abort()
            raise self._error
        with self.timer.time("encode"):
            return self.writer.close()

    def abort(self) -> None:
        if self._thread.is_alive():
            self._stop()
        self.writer.abort()
