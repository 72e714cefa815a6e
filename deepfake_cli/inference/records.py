"""The records dfdetect reports, with one set of field names for the CLI's JSON/CSV and the web API.

- ``face_count``: how many faces were scored (an image's, or a video's faces over all sampled frames);
- ``faces``: the list of scored faces (:class:`FaceResult` dicts, each with its ``index``);
- ``verdict``: ``fake`` / ``real`` (:func:`deepfake_cli.inference.verdict.verdict`), ``None`` without a face;
- ``borderline``: whether ``p_fake`` is within ``predict.borderline_band`` of the threshold, and
  ``margin``: ``p_fake - threshold`` (signed; :mod:`deepfake_cli.inference.verdict`), beside every
  verdict (a record's, each face's ``label``, a video's tracks); ``None`` without a score.

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
    "video", "status", "verdict", "borderline", "p_fake", "margin", "aggregate", "p_fake_by_aggregate", "threshold", "method", "model",
    "face_count", "tracks", "frames", "video_info", "sampling", "annotated", "timings", "sampled_fps", "error",
)


@dataclass
class ImageRecord:
    """One input of ``dfdetect predict`` (an image, or a video's summary) and the API's /predict."""

    path: str
    status: str
    verdict: str | None = None
    p_fake: float | None = None
    borderline: bool | None = None
    margin: float | None = None
    method: str | None = None
    face_count: int | None = None
    threshold: float | None = None
    model: str | None = None
    error: str | None = None
    faces: list[dict[str, Any]] = field(default_factory=list)
    # A video's detail in predict's records: kind, aggregate, frames, tracks.
    extra: dict[str, Any] = field(default_factory=dict)

    # Flat columns for CSV and the terminal table; JSON keeps every face.
    # The table shows a borderline verdict as "fake?"/"real?" (table_row); CSV and JSON have the fields.
    COLUMNS = ("path", "status", "verdict", "p_fake", "method", "face_count", "box", "det_prob", "error")

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": self.path, "status": self.status, "verdict": self.verdict, "borderline": self.borderline,
            "p_fake": self.p_fake, "margin": self.margin, "method": self.method, "face_count": self.face_count, "threshold": self.threshold,
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

    @staticmethod
    def table_row(record: dict[str, Any]) -> dict[str, Any]:
        """:meth:`flat_row` for the terminal table: a borderline verdict reads ``fake?``/``real?``."""
        return marked_verdict(ImageRecord.flat_row(record), record)

    # CSV columns: one row per face, its box as x1,y1,x2,y2 like the video CSV's, and the
    # file-level verdict on each row; a file without a face (or an error) gets one row.
    CSV_COLUMNS = (
        "path", "status", "verdict", "borderline", "p_fake", "margin", "method", "face_count",
        "face", "x1", "y1", "x2", "y2", "det_prob", "face_p_fake", "face_label", "face_borderline", "face_margin", "error",
    )

    @staticmethod
    def csv_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
        """A record (``to_dict()``) as CSV rows: one per face (``face`` its index), or one without a face."""
        base = {k: record.get(k) for k in ImageRecord.CSV_COLUMNS if k in ImageRecord.COLUMNS or k in ("borderline", "margin")}
        faces = record.get("faces") or []
        if not faces:
            return [base]
        rows = []
        for i, face in enumerate(faces):
            x1, y1, x2, y2 = (round(float(v), 1) for v in face["box"])
            rows.append({
                **base, "face": face.get("index", i), "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                "det_prob": face.get("det_prob"), "face_p_fake": face.get("p_fake"), "face_label": face.get("label"),
                "face_borderline": face.get("borderline"), "face_margin": face.get("margin"),
            })
        return rows


# How the terminal tables mark a borderline verdict, and say so under the table.
BORDERLINE_MARK = "?"


def marked_verdict(row: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its ``verdict`` as ``fake?``/``real?`` when ``record`` is borderline."""
    if record.get("borderline") and row.get("verdict") is not None:
        row = {**row, "verdict": f"{row['verdict']}{BORDERLINE_MARK}"}
    return row


def borderline_caption(band: float) -> str:
    """The note under a table with a marked verdict."""
    return f"{BORDERLINE_MARK}: borderline, p_fake within {band:g} of the threshold"
