"""``dfdetect extract``: a dataset of videos -> face crops, metadata and identity splits.

Output folder::

    crops/<method>/<video_id>/<video_id>_f<frame>_<face>.jpg
    manifests/<method>/<video_id>.json   one per finished video (the resume state)
    metadata.csv (+ metadata.parquet)    one row per crop, METADATA_COLUMNS first
    dataset.json                         counts per split/class/method, framing, sampling
    errors.csv                           videos that failed or gave no usable face
    config.json                          the resolved configuration
    extract_state.json                   the settings the crops were made with

Each video is processed on its own (sampled frames -> batched detection ->
crops) and finished by writing its manifest atomically, so an interrupted run
(even ``kill -9``) resumes where it stopped and ends with the same metadata.
The split is computed at the end over all videos and is not part of the
manifests: changing only the split (``--splits-dir``, fractions, seed) reuses
every crop.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence

import cv2
import numpy as np

from deepfake_cli.output import atomic_path, atomic_write_bytes, atomic_write_text
from deepfake_cli.config import DEFAULT_FACE_MARGIN, DEFAULT_FACE_SQUARE, Config, save_resolved_config
from deepfake_cli.errors import DfdetectError, InputFileError, UsageError
from deepfake_cli.faces.detector import DetectionStats, FaceDetector
from deepfake_cli.faces.framing import FaceFraming, crop_face
from deepfake_cli.media.frames import iter_frames
from deepfake_cli.data.layouts import VideoItem, discover_videos
from deepfake_cli.labels import MULTICLASS_LABELS
from deepfake_cli.data.splits import SPLITS, SplitAssignment, assign_splits, load_official_splits

METADATA_COLUMNS: tuple[str, ...] = (
    "path", "label", "method", "split", "video", "video_id", "group", "frame", "timestamp",
    "x1", "y1", "x2", "y2", "det_prob", "face_size", "compression", "face_index",
)  # fmt: skip
ERROR_COLUMNS: tuple[str, ...] = ("video", "method", "status", "reason")
REJECT_REASONS: tuple[str, ...] = ("low_prob", "too_small", "not_largest", "frames_without_face")
MANIFEST_VERSION = 1
# Frames per MTCNN call: big enough to batch, small enough for 1080p in RAM.
DETECT_BATCH_FRAMES = 16


@dataclass(frozen=True)
class ExtractSettings:
    """Everything that decides the crops of one video (sent to worker processes)."""

    every: int | None
    frames_per_video: int | None
    margin: float
    square: bool
    crop_size: int | None
    min_prob: float
    min_size: int
    detect_max_side: int | None
    select: str
    jpeg_quality: int
    device: str = "cpu"

    @classmethod
    def from_config(cls, cfg: Config, device: str = "cpu") -> "ExtractSettings":
        fc, dc = cfg.face, cfg.data
        return cls(
            every=None if dc.frames_per_video else dc.sample_every,
            frames_per_video=dc.frames_per_video,
            margin=DEFAULT_FACE_MARGIN if fc.margin is None else fc.margin,
            square=DEFAULT_FACE_SQUARE if fc.square is None else fc.square,
            crop_size=fc.crop_size,
            min_prob=fc.min_prob,
            min_size=fc.min_size,
            detect_max_side=dc.detect_max_side,
            select="all" if dc.all_faces else "largest",
            jpeg_quality=dc.jpeg_quality,
            device=str(device),
        )

    @property
    def framing(self) -> FaceFraming:
        return FaceFraming(margin=self.margin, square=self.square)

    def signature(self) -> dict[str, Any]:
        """The settings a resumed run must share (the device does not change crops)."""
        sig = asdict(self)
        sig.pop("device")
        return sig

    def sampling(self) -> dict[str, int]:
        return {"frames_per_video": self.frames_per_video} if self.frames_per_video else {"every": self.every or 1}


@dataclass
class ExtractedVideo:
    """What happened to one video, as reported to progress displays."""

    video: str
    method: str
    status: str  # ok, no_face, error
    crops: int = 0
    frames: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    resumed: bool = False
    seconds: float = 0.0


class ExtractProgress(Protocol):
    def start(self, total: int, resumed: int) -> None: ...

    def video_done(self, result: ExtractedVideo) -> None: ...


class _NoProgress:
    def start(self, total: int, resumed: int) -> None:
        pass

    def video_done(self, result: ExtractedVideo) -> None:
        pass


@dataclass
class ExtractSummary:
    """The run's totals (``--json``) and the dataset summary."""

    out: str
    layout: str
    videos: int
    processed: int
    resumed: int
    errors: int
    no_face: int
    crops: int
    frames: int
    rejected: dict[str, int]
    seconds: float
    dataset: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- one video --------------------------------------------------------------------


def crop_relpath(item: VideoItem, frame: int, face_index: int) -> str:
    return f"crops/{item.method}/{item.video_id}/{item.video_id}_f{frame:05d}_{face_index}.jpg"


def manifest_path(out: Path, item: VideoItem) -> Path:
    return out / "manifests" / item.method / f"{item.video_id}.json"


class VideoExtractor:
    """Turns one video into crops + a manifest; owns one face detector."""

    def __init__(self, settings: ExtractSettings, out: str | os.PathLike[str]):
        self.settings = settings
        self.out = Path(out)
        self.detector = FaceDetector(
            device=settings.device,
            min_prob=settings.min_prob,
            min_size=settings.min_size,
            max_side=settings.detect_max_side,
            select=settings.select,
        )

    def __call__(self, item: VideoItem) -> ExtractedVideo:
        started = time.perf_counter()
        crop_dir = self.out / "crops" / item.method / item.video_id
        shutil.rmtree(crop_dir, ignore_errors=True)  # leftovers of an interrupted run
        self.detector.stats = DetectionStats()
        try:
            rows, frames, empty = self._extract(item, crop_dir)
        except (InputFileError, cv2.error) as exc:
            shutil.rmtree(crop_dir, ignore_errors=True)
            reason = str(exc) if isinstance(exc, InputFileError) else f"{item.path}: OpenCV error: {exc}"
            return ExtractedVideo(item.rel, item.method, "error", reason=reason, seconds=time.perf_counter() - started)
        stats = self.detector.stats
        rejected = {
            "low_prob": stats.low_prob,
            "too_small": stats.too_small,
            "not_largest": stats.not_largest,
            "frames_without_face": empty,
        }
        status = "ok" if rows else "no_face"
        reason = None if rows else f"no face passed the filters in {frames} sampled frames"
        manifest = {
            "version": MANIFEST_VERSION,
            "video": item.rel,
            "source": _source_stamp(item.path),
            "status": status,
            "reason": reason,
            "frames": frames,
            "rejected": rejected,
            "rows": rows,
        }
        atomic_write_text(manifest_path(self.out, item), json.dumps(manifest, indent=1) + "\n")
        return ExtractedVideo(
            item.rel, item.method, status, crops=len(rows), frames=frames, rejected=rejected,
            reason=reason, seconds=time.perf_counter() - started,
        )  # fmt: skip

    def _extract(self, item: VideoItem, crop_dir: Path) -> tuple[list[dict[str, Any]], int, int]:
        s = self.settings
        rows: list[dict[str, Any]] = []
        frames = empty = 0
        crop_dir.mkdir(parents=True, exist_ok=True)
        sampled = iter_frames(item.path, every=s.every, frames=s.frames_per_video)
        for batch in _batches(sampled, DETECT_BATCH_FRAMES):
            detections = self.detector.detect([rgb for _, _, rgb in batch])
            for (index, timestamp, rgb), faces in zip(batch, detections):
                frames += 1
                empty += not faces
                for face_index, face in enumerate(faces):
                    rel = crop_relpath(item, index, face_index)
                    crop = crop_face(rgb, face.box, s.framing, size=s.crop_size)
                    _write_jpeg(self.out / rel, crop, s.jpeg_quality)
                    x1, y1, x2, y2 = (round(float(v), 1) for v in face.box)
                    rows.append({
                        "path": rel, "frame": index, "timestamp": round(timestamp, 3),
                        "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                        "det_prob": round(float(face.prob or 0.0), 5),
                        "face_size": round(face.size, 1), "face_index": face_index,
                    })  # fmt: skip
        return rows, frames, empty


def _batches(frames: Iterable[tuple[int, float, np.ndarray]], size: int) -> Iterator[list[tuple[int, float, np.ndarray]]]:
    batch: list[tuple[int, float, np.ndarray]] = []
    for item in frames:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - encoding a valid uint8 image does not fail
        raise InputFileError(f"cannot encode crop {path.name}")
    atomic_write_bytes(path, data.tobytes())


def _source_stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_manifest(out: Path, item: VideoItem) -> dict[str, Any] | None:
    """The finished video's manifest, or None when it must be (re)done."""
    path = manifest_path(out, item)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("version") != MANIFEST_VERSION or manifest.get("video") != item.rel:
            return None
        if manifest.get("source") != _source_stamp(item.path):
            return None  # the video changed since
        return manifest
    except (OSError, ValueError):
        return None


# --- worker processes ----------------------------------------------------------------

_WORKER: VideoExtractor | None = None


def _init_worker(settings: ExtractSettings, out: str) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _exit_with_parent()
    _WORKER = VideoExtractor(settings, out)


def _work(item: VideoItem) -> ExtractedVideo:
    assert _WORKER is not None
    return _WORKER(item)


def _exit_with_parent() -> None:
    """A worker whose parent was killed (``kill -9``) must not run on as an orphan."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_videos(
    items: Sequence[VideoItem], settings: ExtractSettings, out: Path, workers: int
) -> Iterator[ExtractedVideo]:
    if not items:
        return
    if workers <= 1:
        extractor = VideoExtractor(settings, out)
        for item in items:
            yield extractor(item)
        return
    ctx = multiprocessing.get_context("spawn")  # fork + torch threads can deadlock
    with ProcessPoolExecutor(
        max_workers=min(workers, len(items)), mp_context=ctx, initializer=_init_worker, initargs=(settings, str(out))
    ) as pool:
        futures = {pool.submit(_work, item): item for item in items}
        try:
            for future in as_completed(futures):
                yield future.result()
        except BrokenProcessPool as exc:
            raise DfdetectError(
                f"a worker process died ({exc}); finished videos are kept: run the same command to resume"
            ) from exc
        finally:
            for future in futures:
                future.cancel()


# --- the run --------------------------------------------------------------------------


def run_extract(
    cfg: Config,
    out: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    progress: ExtractProgress | None = None,
    videos_runner: Any = None,
) -> ExtractSummary:
    """Extract face crops from every video of the dataset at ``root`` (or ``cfg.data.root``)."""
    started = time.perf_counter()
    progress = progress or _NoProgress()
    root = root if root is not None else cfg.data.root
    if root is None:
        raise UsageError("no dataset folder given (argument ROOT or data.root)")
    root, out = Path(root), Path(out)
    layout, items = discover_videos(root, cfg.data.layout, cfg.data.methods, cfg.data.compression)
    official = load_official_splits(cfg.data.splits_dir) if cfg.data.splits_dir else None
    settings = ExtractSettings.from_config(cfg, device)

    _prepare_out(out, settings, overwrite)
    save_resolved_config(cfg, out)

    pending = [it for it in items if read_manifest(out, it) is None]
    progress.start(len(items), len(items) - len(pending))
    errors: dict[str, ExtractedVideo] = {}
    # videos_runner: another way to run them with _run_videos' signature (--ray).
    for result in (videos_runner or _run_videos)(pending, settings, out, cfg.data.extract_workers):
        if result.status == "error":
            errors[result.video] = result
        progress.video_done(result)

    assignment = assign_splits(
        {it.rel: it.identities for it in items},
        cfg.data.val_fraction,
        cfg.data.test_fraction,
        cfg.data.split_seed,
        official,
    )
    dataset = write_dataset(out, root, layout, items, errors, assignment, settings)
    return ExtractSummary(
        out=str(out),
        layout=layout,
        videos=len(items),
        processed=len(pending),
        resumed=len(items) - len(pending),
        errors=len(errors),
        no_face=dataset["videos"]["no_face"],
        crops=dataset["crops"]["total"],
        frames=dataset["frames"],
        rejected=dataset["rejected"],
        seconds=round(time.perf_counter() - started, 2),
        dataset=dataset,
    )


def _prepare_out(out: Path, settings: ExtractSettings, overwrite: bool) -> None:
    """Check that resuming in ``out`` continues the same extraction (or start over)."""
    state_path = out / "extract_state.json"
    state = {"signature": settings.signature()}
    if state_path.is_file():
        try:
            previous = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
        if previous != state and not overwrite:
            old = (previous or {}).get("signature", {})
            changed = sorted(k for k in set(old) | set(state["signature"]) if old.get(k) != state["signature"].get(k))
            raise UsageError(
                f"{out} holds crops made with other settings ({', '.join(changed) or 'unreadable state'}); "
                "use another --out, or --overwrite to start over"
            )
    if overwrite:
        for name in ("crops", "manifests"):
            shutil.rmtree(out / name, ignore_errors=True)
    atomic_write_text(state_path, json.dumps(state, indent=2) + "\n")


def write_dataset(
    out: Path,
    root: Path,
    layout: str,
    items: Sequence[VideoItem],
    errors: dict[str, ExtractedVideo],
    assignment: SplitAssignment,
    settings: ExtractSettings,
) -> dict[str, Any]:
    """metadata.csv (+ .parquet), errors.csv and dataset.json from the manifests."""
    rows: list[dict[str, Any]] = []
    error_rows: list[dict[str, Any]] = []
    video_status: dict[str, str] = {}
    rejected = Counter({reason: 0 for reason in REJECT_REASONS})
    frames = 0
    for item in items:
        split, group = assignment.split_of[item.rel], assignment.group_of[item.rel]
        manifest = None if item.rel in errors else read_manifest(out, item)
        if manifest is None:
            reason = errors[item.rel].reason if item.rel in errors else "not processed"
            error_rows.append({"video": item.rel, "method": item.method, "status": "error", "reason": reason})
            video_status[item.rel] = "error"
            continue
        video_status[item.rel] = manifest["status"]
        frames += manifest["frames"]
        rejected.update(manifest["rejected"])
        if manifest["status"] == "no_face":
            error_rows.append({"video": item.rel, "method": item.method, "status": "no_face", "reason": manifest["reason"]})
        for r in manifest["rows"]:
            rows.append({
                **r, "label": item.label, "method": item.method, "split": split, "video": item.rel,
                "video_id": item.video_id, "group": group, "compression": item.compression or "",
            })  # fmt: skip

    _write_csv(out / "metadata.csv", rows, METADATA_COLUMNS)
    _write_csv(out / "errors.csv", error_rows, ERROR_COLUMNS)
    parquet = _write_parquet(out / "metadata.parquet", rows)
    dataset = {
        "root": str(root),
        "layout": layout,
        "metadata": "metadata.csv",
        "parquet": "metadata.parquet" if parquet else None,
        "face": settings.framing.to_dict(),
        "crop_size": settings.crop_size,
        "sampling": settings.sampling(),
        "detection": {
            "min_prob": settings.min_prob,
            "min_size": settings.min_size,
            "max_side": settings.detect_max_side,
            "select": settings.select,
        },
        "splits": {
            "source": assignment.source,
            "val_fraction": assignment.val_fraction,
            "test_fraction": assignment.test_fraction,
            "seed": assignment.seed,
            "groups": dict(Counter(assignment.split_of[it.rel] for it in _first_per_group(items, assignment))),
            "unmatched_groups": assignment.unmatched_groups,
        },
        "methods": sorted({it.method for it in items}, key=method_order),
        "frames": frames,
        "rejected": dict(rejected),
        "crops": _count_table(rows, lambda r: (r["split"], r["label"], r["method"])),
        "videos": {
            **_count_table(
                [{"split": assignment.split_of[it.rel], "label": it.label, "method": it.method} for it in items],
                lambda r: (r["split"], r["label"], r["method"]),
            ),
            **{status: sum(1 for s in video_status.values() if s == status) for status in ("ok", "no_face", "error")},
        },
    }
    atomic_write_text(out / "dataset.json", json.dumps(dataset, indent=2) + "\n")
    return dataset


def _first_per_group(items: Sequence[VideoItem], assignment: SplitAssignment) -> list[VideoItem]:
    seen: dict[str, VideoItem] = {}
    for it in items:
        seen.setdefault(assignment.group_of[it.rel], it)
    return list(seen.values())


def method_order(method: str) -> tuple[int, str]:
    order = {name: i for i, name in enumerate(MULTICLASS_LABELS)}
    return (order.get(method, len(order)), method)


def _count_table(rows: Sequence[dict[str, Any]], key) -> dict[str, Any]:
    """{"total", "by_split": {split: {"total", "real", "fake", "methods": {...}}}}."""
    by_split: dict[str, Any] = {}
    for split in SPLITS:
        by_split[split] = {"total": 0, "real": 0, "fake": 0, "methods": {}}
    for row in rows:
        split, label, method = key(row)
        cell = by_split[split]
        cell["total"] += 1
        cell[label] += 1
        cell["methods"][method] = cell["methods"].get(method, 0) + 1
    for cell in by_split.values():
        cell["methods"] = dict(sorted(cell["methods"].items(), key=lambda kv: method_order(kv[0])))
    return {"total": len(rows), "by_split": by_split}


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def _write_parquet(path: Path, rows: Sequence[dict[str, Any]]) -> bool:
    """Also write Parquet when a Parquet engine (pyarrow) is installed."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(list(rows), columns=list(METADATA_COLUMNS)).to_parquet(tmp, index=False)
    return True
