"""What the web app serves, without the web: the model loaded once and the work per upload.

Endpoints call these methods from worker threads. The classifier and the face
detector each hold a lock around their model, so concurrent requests are
safe; a semaphore bounds how many uploads are decoded and analysed at once so
that memory stays bounded under load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable

import cv2
import numpy as np

from deepfake_cli import __version__
from deepfake_cli.inference import gradcam, records, video
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.config import Config, validate
from deepfake_cli.errors import ConfigError, InputFileError, UsageError
from deepfake_cli.media.images import is_animated_gif, load_image
from deepfake_cli.inference.pipeline import FacePipeline
from deepfake_cli.inference.predict import STATUS_NO_FACE, STATUS_OK, image_record
from deepfake_cli.serve.annotated import AnnotatedStore
from deepfake_cli.serve.uploads import MB, UploadStorageFull, spooled_to_temp_file
from deepfake_cli.inference.verdict import verdict

GRADCAM_VIEWS = ("overlay", "sheet")
# Video summary keys passed on as they are (records.VIDEO_SUMMARY_KEYS, less these): "video" (the
# path) is a temp file of ours, "annotated" and "error" never apply; the rest are set below.
VIDEO_SUMMARY_KEYS = tuple(
    k for k in records.VIDEO_SUMMARY_KEYS
    if k not in ("video", "annotated", "error", "status", "verdict", "borderline", "p_fake", "margin", "method", "model",
                 "threshold", "face_count")
)


def seed_fields(p_fake: float | None, threshold: float) -> dict[str, Any]:
    """``verdict`` and the first report's contract: ``prediction``, ``confidence``, ``probabilities``.

    ``prediction`` is kept as an alias of ``verdict`` (the CLI's name) for seed-era clients.
    ``confidence`` is the probability of the predicted class, so it is never
    below 0.5 with the default threshold and reads the way the report used it.
    """
    if p_fake is None:
        return {"verdict": None, "prediction": None, "confidence": None, "probabilities": None}
    prediction = verdict(p_fake, threshold)
    confidence = p_fake if prediction == "fake" else 1.0 - p_fake
    return {
        "verdict": prediction,
        "prediction": prediction,
        "confidence": round(confidence, 6),
        "probabilities": {"real": round(1.0 - p_fake, 6), "fake": round(p_fake, 6)},
    }


class DetectorService:
    """One classifier and its face pipeline, shared by every request of a worker."""

    def __init__(self, classifier: FaceClassifier, cfg: Config, annotated_dir: str | os.PathLike[str] | None = None):
        self.classifier = classifier
        self.cfg = cfg
        self.pipeline = FacePipeline.from_config(classifier, cfg)
        # Videos are detected on smaller frames (video.detect_max_side); same classifier.
        self.video_pipeline = video.video_pipeline(classifier, cfg)
        self.frame_columns = [c for c in video.FRAME_COLUMNS if c != "video"]  # the path is our temp file
        self.started = time.time()
        self.capacity = max(2, os.cpu_count() or 1)
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._installed: list[dict[str, Any]] | None = None
        # Set when the server shuts down: running video scans stop at their next frame.
        self.stopping = threading.Event()
        # Made when the server starts (the app's lifespan) or at first use, not here: an app
        # whose lifespan never runs (tests, an app built and dropped) left an empty folder.
        check_upload_parent(cfg.serve.upload_dir)
        self._upload_dir: Path | None = None
        # Annotated videos: in this server's upload folder, or one shared by --workers processes.
        self._shared_annotated = None if annotated_dir is None else Path(annotated_dir)
        self.annotated = AnnotatedStore(self._annotated_dir, cfg.serve.annotated_ttl, int(cfg.serve.annotated_max_mb * MB))

    def _annotated_dir(self) -> Path:
        if self._shared_annotated is not None:
            return self._shared_annotated
        folder = self.upload_dir / "annotated"
        folder.mkdir(exist_ok=True)
        return folder

    @property
    def upload_dir(self) -> Path:
        if self._upload_dir is None:
            self._upload_dir = make_upload_dir(self.cfg.serve.upload_dir)
        return self._upload_dir

    def open(self) -> None:
        """At start-up: this server's upload folder."""
        self.upload_dir  # noqa: B018 - made now

    def close(self) -> None:
        """Stop running scans and remove this server's upload folder (and any upload left in it)."""
        self.stopping.set()
        if self._upload_dir is not None:
            shutil.rmtree(self._upload_dir, ignore_errors=True)
            self._upload_dir = None

    @contextlib.contextmanager
    def _slot(self):
        """One of the bounded places for decoding and analysing an upload, counted for /health."""
        with self._slots:
            with self._busy_lock:
                self._busy += 1
            try:
                yield
            finally:
                with self._busy_lock:
                    self._busy -= 1

    @property
    def model_name(self) -> str:
        return self.classifier.name

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "model": self.classifier.name,
            "arch": self.classifier.arch,
            "device": str(self.classifier.device),
            "version": __version__,
            "face_detection": self.pipeline.detector is not None,
            "threshold": self.classifier.threshold,
            "borderline_band": self.classifier.borderline_band,
            "uptime_s": round(time.time() - self.started, 1),
            "pid": os.getpid(),
            # Uploads being analysed, and how many can be at once (more wait their turn).
            "busy": self._busy,
            "capacity": self.capacity,
        }

    def models(self) -> dict[str, Any]:
        """The loaded model and the installed ones (read once, then cached)."""
        if self._installed is None:
            from deepfake_cli.models.catalog import trained_models

            # Server paths stay on the server.
            self._installed = [
                {k: v for k, v in row.items() if k not in ("path", "card")} for row in trained_models()
            ]
        from deepfake_cli.models import list_models

        loaded = {**without_paths(self.classifier.describe()), "device": str(self.classifier.device)}
        return {"loaded": loaded, "installed": self._installed, "architectures": list_models()}

    def predict_image(self, data: bytes) -> dict[str, Any]:
        """Every face of one uploaded image, and the verdict of the most suspicious one.

        Raises :class:`~deepfake_cli.errors.InputFileError` for bytes that are not
        a readable image.
        """
        start = time.perf_counter()
        if is_animated_gif(data):
            raise InputFileError("upload: an animated GIF is a short video: send it to POST /predict/video")
        with self._slot():
            image = load_image(data, max_pixels=self.cfg.predict.max_image_pixels)
            faces = self.pipeline.analyze([image])[0]
        threshold = self.classifier.threshold
        record = image_record("upload", faces, threshold, self.classifier.name, self.classifier.borderline_band)
        return {
            "status": record["status"],
            **seed_fields(record["p_fake"], threshold),
            "borderline": record["borderline"],
            "model": self.classifier.name,
            "p_fake": record["p_fake"],
            "margin": record["margin"],
            "method": record["method"],
            "threshold": threshold,
            "face_count": record["face_count"],
            "faces": record["faces"],
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "elapsed_ms": round((time.perf_counter() - start) * 1000.0, 1),
        }

    def predict_video(
        self, upload: BinaryIO, suffix: str, sampling: dict[str, Any] | None = None,
        should_stop: Callable[[], bool] | None = None, annotate: bool = False,
    ) -> dict[str, Any]:
        """Scan an uploaded video: the verdict, its tracks and one row per face of each sampled frame.

        The upload is copied to a temp file named by us (``suffix`` from the
        allow-list) in this server's upload folder, scanned by
        :func:`deepfake_cli.inference.video.scan_video` and removed, whatever happens.
        ``sampling`` overrides ``[video]`` keys (every, fps, frames, start, end,
        aggregate) for this request. The scan stops (:class:`ScanCancelled`) when
        ``should_stop`` says so (the client went away) or the server shuts down.
        With ``annotate``, an annotated H.264 copy is written under a random name of ours
        (:class:`~deepfake_cli.serve.annotated.AnnotatedStore`) and ``annotated_url`` says
        where to fetch it; no room for it is :class:`UploadStorageFull` (HTTP 507).
        """
        start = time.perf_counter()
        given = {k: v for k, v in (sampling or {}).items() if v is not None}
        # As the CLI: one way to sample, replacing the configured one, never one silently dropped.
        ways = {k: given.pop(k) for k in ("every", "fps", "frames") if k in given}
        video_cfg = dataclasses.replace(video.with_sampling(self.cfg.video, **ways), **given)
        validate(dataclasses.replace(self.cfg, video=video_cfg))  # ranges, finite times: 422, never a 500
        def stop() -> bool:
            return self.stopping.is_set() or (should_stop is not None and should_stop())

        name, target = self.annotated.new() if annotate else (None, None)
        with self._slot(), spooled_to_temp_file(upload, suffix, self.upload_dir) as path:
            try:
                result = video.scan_video(path, self.video_pipeline, video_cfg, annotate_path=target, should_stop=stop)
            except (InputFileError, OSError) as exc:
                if target is not None and _no_room(exc, target.parent):
                    raise UploadStorageFull(
                        errno.ENOSPC, "no room for the annotated video in the server's upload folder; try without "
                        "annotate, a shorter video or later, or ask the operator to free space in serve.upload_dir",
                    ) from None
                if not isinstance(exc, InputFileError):
                    raise
                # The scanner names the files: say "upload" and "annotated video", not our paths.
                message = str(exc).replace(str(path), "upload")
                if target is not None:
                    message = message.replace(str(target), "annotated video")
                raise InputFileError(message) from None
        if name is not None:
            self.annotated.sweep(keep=name)  # within serve.annotated_max_mb, this one kept
        summary = result.summary
        threshold = summary["threshold"]
        return {
            "status": summary["status"],
            **seed_fields(summary["p_fake"], threshold),
            "borderline": summary["borderline"],
            "model": summary["model"],
            "p_fake": summary["p_fake"],
            "margin": summary["margin"],
            "method": summary["method"],
            "threshold": threshold,
            "face_count": summary["face_count"],
            **{key: summary[key] for key in VIDEO_SUMMARY_KEYS},
            "columns": self.frame_columns,
            "rows": [{c: row.get(c) for c in self.frame_columns} for row in result.rows],
            "annotated_url": None if name is None else self.annotated.url(name),
            "elapsed_ms": round((time.perf_counter() - start) * 1000.0, 1),
        }

    def gradcam_image(
        self,
        data: bytes,
        face: int | None = None,
        target: str | None = None,
        view: str = "overlay",
        method: str | None = None,
    ) -> tuple[bytes | None, dict[str, Any]]:
        """A PNG explaining one face of an uploaded image, and what it shows.

        ``face`` defaults to the most suspicious face. ``view='overlay'``: the
        heatmap blended over the face crop; ``'sheet'``: face | heatmap | overlay
        with the verdict, one row per target (``target='all'``: predicted, real,
        fake). No face: ``(None, {"status": "no_face", ...})``.
        """
        gc = self.cfg.gradcam
        target = target or gc.target
        method = gradcam.check_method(method or gc.method)
        if view not in GRADCAM_VIEWS:
            raise UsageError(f"unknown view '{view}' (valid: {', '.join(GRADCAM_VIEWS)})")
        if view == "overlay" and target.strip().lower() == "all":
            raise UsageError("target 'all' makes three heatmaps: ask for view=sheet")
        with self._slot():
            image = load_image(data, max_pixels=self.cfg.predict.max_image_pixels)
            faces = self.pipeline.find_faces([image])[0]
            info: dict[str, Any] = {"status": STATUS_NO_FACE, "model": self.classifier.name, "face_count": len(faces)}
            if not faces:
                return None, info
            crops = self.pipeline.crops(image, faces)
            if face is None:
                scores = self.classifier.score(crops, self.pipeline.batch_size)
                face = max(range(len(faces)), key=lambda i: scores[i].p_fake)
            elif not 0 <= face < len(faces):
                raise UsageError(f"no face {face}: the image has {len(faces)} (0-{len(faces) - 1})")
            crop = crops[face]
            explanations = gradcam.explain_crops(self.classifier, [crop], target, method, gc.layer, 1)[0]
        first = explanations[0]
        if view == "overlay":
            picture = gradcam.overlay(crop, first.heatmap, gc.alpha)
        else:
            caption = f"face {face} | {self.classifier.name} | {method} on {first.layer}"
            picture = gradcam.comparison_sheet(crop, explanations, caption=caption, alpha=gc.alpha)
        info.update(
            status=STATUS_OK,
            face=face,
            box=faces[face].to_dict()["box"],
            target=first.target.name,
            target_prob=round(first.target_prob, 6),
            p_fake=round(first.score.p_fake, 6),
            label=first.score.label,
            cam_method=method,
            layer=first.layer,
        )
        return encode_png(picture), info


def _no_room(exc: BaseException, folder: Path) -> bool:
    """Whether a failed annotated scan ran out of disk: ENOSPC/EDQUOT, or (OpenCV's writer
    swallows write errors, and the check afterwards only finds a short file) under 1 MB free."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < MB
    except OSError:
        return False


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("PNG encoding failed")
    return buffer.tobytes()


def check_upload_parent(parent: str | None) -> None:
    """:class:`ConfigError` unless ``parent`` (default: the system temp folder) is a folder
    where this server could make its upload folder."""
    where = parent or tempfile.gettempdir()
    if not os.path.isdir(where):
        raise ConfigError(f"serve.upload_dir: cannot make a folder in {where}: not a folder (or missing)")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ConfigError(f"serve.upload_dir: cannot make a folder in {where}: permission denied")


def make_upload_dir(parent: str | None) -> Path:
    """A folder of this server's own for uploads being scanned, in ``parent`` (default: the
    system temp folder); removed at shutdown, so no upload outlives the server."""
    sweep_stale_upload_dirs(parent)
    try:
        return Path(tempfile.mkdtemp(prefix=f"dfdetect-uploads-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise ConfigError(f"serve.upload_dir: cannot make a folder in {parent or tempfile.gettempdir()}: "
                          f"{exc.strerror or exc}") from None


def sweep_stale_upload_dirs(parent: str | None) -> list[Path]:
    """Remove ``dfdetect-uploads-PID-*`` folders (and the uploads in them) left in ``parent``
    by a server that was killed (SIGKILL): its process is gone and the folder is older than a
    minute. Folders without a process id (older versions) are left alone."""
    from deepfake_cli.output import STALE_PARTIAL_SECONDS, pid_alive

    removed = []
    try:
        entries = list(os.scandir(parent or tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("dfdetect-uploads-"):
            continue
        pid_text = entry.name[len("dfdetect-uploads-"):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or pid_alive(int(pid_text)):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or time.time() - entry.stat().st_mtime < STALE_PARTIAL_SECONDS:
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


def without_paths(value: Any) -> Any:
    """``value`` with every absolute file path cut to its file name: server paths stay on the server."""
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and not value.startswith("//"):
        return Path(value).name
    return value
