"""Scoring images: one record per input file, streamed in input order."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from deepfake_cli.errors import InputFileError
from deepfake_cli.media.images import load_image
from deepfake_cli.inference.pipeline import FacePipeline, FaceResult
from deepfake_cli.inference.records import STATUS_ERROR, STATUS_NO_FACE, STATUS_OK, ImageRecord
from deepfake_cli.inference.verdict import borderline, margin, verdict

# Flat columns for CSV and the terminal table; JSON keeps every face.
IMAGE_COLUMNS = ImageRecord.COLUMNS
flat_image_row = ImageRecord.flat_row
table_image_row = ImageRecord.table_row
IMAGE_CSV_COLUMNS = ImageRecord.CSV_COLUMNS  # one row per face
image_csv_rows = ImageRecord.csv_rows


def image_record(path: str, faces: list[FaceResult], threshold: float, model: str, band: float) -> dict[str, Any]:
    """The per-image verdict: the most suspicious face decides (max p_fake); borderline when
    that face's score is within ``band`` of the threshold."""
    if not faces:
        return ImageRecord(path, STATUS_NO_FACE, face_count=0, threshold=threshold, model=model).to_dict()
    top = max(faces, key=lambda r: r.score.p_fake)
    return ImageRecord(
        path,
        STATUS_OK,
        verdict=verdict(top.score.p_fake, threshold),
        p_fake=round(top.score.p_fake, 6),
        borderline=borderline(top.score.p_fake, threshold, band),
        margin=margin(top.score.p_fake, threshold),
        method=top.score.method,
        face_count=len(faces),
        threshold=threshold,
        model=model,
        faces=[dict(index=i, **r.to_dict()) for i, r in enumerate(faces)],
    ).to_dict()


def error_record(path: str, message: str, model: str | None = None) -> dict[str, Any]:
    return ImageRecord(path, STATUS_ERROR, model=model, error=message).to_dict()


@dataclass
class PredictSummary:
    total: int = 0
    fake: int = 0
    real: int = 0
    no_face: int = 0
    errors: int = 0
    # Of the fake and real ones, how many are borderline (counted in fake/real too).
    borderline: int = 0
    error_messages: list[str] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        self.total += 1
        status = record["status"]
        if status == STATUS_ERROR:
            self.errors += 1
            if len(self.error_messages) < 20:
                self.error_messages.append(record["error"])
        elif status == STATUS_NO_FACE:
            self.no_face += 1
        else:
            if record["verdict"] == "fake":
                self.fake += 1
            else:
                self.real += 1
            if record.get("borderline"):
                self.borderline += 1

    @property
    def processed(self) -> int:
        return self.total - self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "fake": self.fake, "real": self.real, "no_face": self.no_face, "errors": self.errors,
                "borderline": self.borderline}


def predict_images(
    paths: Iterable[Path | str],
    pipeline: FacePipeline,
    max_pixels: int,
    chunk: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Records for ``paths`` in order; images are decoded and scored chunk by chunk."""
    chunk = chunk or max(1, pipeline.batch_size)
    model = pipeline.classifier.name
    threshold = pipeline.classifier.threshold
    band = pipeline.classifier.borderline_band
    pending: list[tuple[str, np.ndarray | str]] = []

    def flush() -> Iterator[dict[str, Any]]:
        loaded = [(p, img) for p, img in pending if not isinstance(img, str)]
        results = pipeline.analyze([img for _, img in loaded]) if loaded else []
        by_path = iter(results)
        for p, img in pending:
            if isinstance(img, str):
                yield error_record(p, img, model)
            else:
                yield image_record(p, next(by_path), threshold, model, band)
        pending.clear()

    for path in paths:
        name = str(path)
        try:
            pending.append((name, load_image(path, max_pixels=max_pixels)))
        except InputFileError as exc:
            pending.append((name, str(exc)))
        if len(pending) >= chunk:
            yield from flush()
    if pending:
        yield from flush()
