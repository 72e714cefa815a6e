"""The records dfdetect reports, with one set of field names for the CLI's JSON/CSV and the web API.

- ``face_count``: how many faces were scored (an image's, or a video's faces over all sampled frames);
- ``faces``: the list of scored faces (:class:`FaceResult` dicts, each with its ``index``);
- ``verdict``: ``fake`` / ``real`` (:func:`deepfake_cli.inference.verdict.verdict`), ``None`` without a face.

The web API adds the first report's fields ``prediction`` (= ``verdict``), ``confidence`` and
``probabilities`` as documented aliases (serve/service.py, ``seed_fields``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deepfake_cli.inference.pipeline import FaceResult

STATUS_OK = "ok"
STATUS_NO_FACE = "no_face"
STATUS_ERROR = "error"

__all__ = ["FaceResult", "ImageRecord", "VIDEO_SUMMARY_KEYS", "STATUS_OK", "STATUS_NO_FACE", "STATUS_ERROR"]

# A video summary's keys, in output order (inference/video.py builds it; serve passes most on).
VIDEO_SUMMARY_KEYS = (
    "video", "status", "verdict", "p_fake", "aggregate", "p_fake_by_aggregate", "threshold", "method", "model",
    "face_count", "tracks", "frames", "video_info", "sampling", "annotated", "timings", "sampled_fps", "error",
)


@dataclass
class ImageRecord:
    """One input of ``dfdetect predict`` (an image, or a video's summary) and the API's /predict."""

    path: str
    status: str
    verdict: str | None = None
    p_fake: float | None = None
    method: str | None = None
    face_count: int | None = None
    threshold: float | None = None
    model: str | None = None
    error: str | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)
    # A video's detail in predict's records: kind, aggregate, frames, tracks.
    extra: dict[str, Any] = field(default_factory=dict)

    # Flat columns for CSV and the terminal table; JSON keeps every face.
    COLUMNS = ("path", "status", "verdict", "p_fake", "method", "face_count", "box", "det_prob", "error")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path, "status": self.status, "verdict": self.verdict, "p_fake": self.p_fake,
            "method": self.method, "face_count": self.face_count, "threshold": self.threshold,
            "model": self.model, "error": self.error, "faces": self.faces,
        }
        out.update(self.extra)
        return out

    @staticmethod
    def flat_row(record: dict[str, Any]) -> dict[str, Any]:
        """A record (``to_dict()``) as a CSV/table row: the columns plus its most suspicious face's box."""
        row = {k: record.get(k) for k in ImageRecord.COLUMNS}
        faces = record.get("faces") or []
        if faces:
            top = max(faces, key=lambda f: f["p_fake"])
            row["box"], row["det_prob"] = top["box"], top["det_prob"]
        return row
