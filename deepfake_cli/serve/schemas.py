"""Response shapes, for the OpenAPI document at /docs and /redoc."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field


class Probabilities(BaseModel):
    real: float
    fake: float


class FaceOut(BaseModel):
    index: int
    box: list[float] = Field(description="x1, y1, x2, y2 in pixels of the uploaded image")
    det_prob: Optional[float] = Field(description="face detector confidence; null without detection")
    p_fake: float
    label: Literal["real", "fake"]
    margin: float = Field(description="p_fake - threshold: > 0 on the fake side")
    borderline: bool = Field(description="p_fake within predict.borderline_band of the threshold")
    method: Optional[str] = Field(description="most likely manipulation method (7-class models)")
    probs: dict[str, float]


class ImageSize(BaseModel):
    width: int
    height: int


class PredictOut(BaseModel):
    status: Literal["ok", "no_face"]
    verdict: Optional[Literal["real", "fake"]] = Field(description="verdict of the most suspicious face (as the CLI's)")
    borderline: Optional[bool] = Field(description="p_fake within predict.borderline_band of the threshold: a verdict to check")
    prediction: Optional[Literal["real", "fake"]] = Field(description="alias of verdict, kept for seed-era clients")
    confidence: Optional[float] = Field(description="probability of the predicted class")
    probabilities: Optional[Probabilities]
    model: str
    p_fake: Optional[float]
    margin: Optional[float] = Field(description="p_fake - threshold: > 0 on the fake side")
    method: Optional[str]
    threshold: float
    face_count: int
    faces: list[FaceOut]
    image: ImageSize
    elapsed_ms: float


class TrackOut(BaseModel):
    track_id: int
    faces: int
    first_frame: int
    last_frame: int
    p_fake: float
    p_fake_by_aggregate: dict[str, float]
    verdict: Literal["real", "fake"]
    borderline: bool = Field(description="p_fake within predict.borderline_band of the threshold")
    margin: float = Field(description="p_fake - threshold")
    method: Optional[str]
    votes: bool = Field(description="long enough to count towards the video's verdict")


class VideoOut(BaseModel):
    status: Literal["ok", "no_face"]
    verdict: Optional[Literal["real", "fake"]] = Field(description="fake if any voting track is (as the CLI's)")
    borderline: Optional[bool] = Field(description="p_fake within predict.borderline_band of the threshold: a verdict to check")
    prediction: Optional[Literal["real", "fake"]] = Field(description="alias of verdict, kept for seed-era clients")
    confidence: Optional[float]
    probabilities: Optional[Probabilities]
    model: str
    p_fake: Optional[float] = Field(description="the most suspicious track's aggregated score")
    margin: Optional[float] = Field(description="p_fake - threshold: > 0 on the fake side")
    method: Optional[str]
    threshold: float
    face_count: int
    aggregate: str
    p_fake_by_aggregate: dict[str, Optional[float]]
    tracks: list[TrackOut]
    frames: dict[str, int] = Field(description="total, decoded, sampled, with_face")
    video_info: dict[str, float]
    sampling: dict[str, Any]
    timings: dict[str, float] = Field(description="seconds per stage: decode, detect, classify, encode, total")
    sampled_fps: Optional[float]
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="one per face of each sampled frame, or one saying no_face")
    annotated_url: Optional[str] = Field(
        description="with annotate=true: where to GET the annotated H.264 MP4 (kept serve.annotated_ttl seconds); else null")
    elapsed_ms: float


class HealthOut(BaseModel):
    status: Literal["ok"]
    model: str
    arch: str
    device: str
    version: str
    face_detection: bool
    threshold: float
    borderline_band: float = Field(description="verdicts whose p_fake is closer than this to the threshold are borderline")
    uptime_s: float
    pid: int
    busy: int = Field(description="uploads being analysed now")
    capacity: int = Field(description="uploads analysed at once; more wait their turn")


class ModelsOut(BaseModel):
    loaded: dict[str, Any] = Field(description="the model this server scores with")
    installed: list[dict[str, Any]] = Field(description="shipped and installed trained models")
    architectures: list[str]


class ErrorOut(BaseModel):
    detail: str = Field(description="one line saying what was wrong")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    described = {
        400: "malformed multipart body",
        413: "upload larger than the server's limit (serve.max_upload_mb)",
        415: "not multipart/form-data, or a file type this endpoint does not take",
        422: "missing 'file' field, a file that cannot be decoded, or an invalid parameter",
        503: "the scan was stopped because the server is shutting down (Retry-After)",
    }
    return {code: {"model": ErrorOut, "description": described[code]} for code in codes}
