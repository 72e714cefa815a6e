"""The FastAPI app: routes (an ``APIRouter`` over a :class:`DetectorService` dependency),
upload checks and JSON errors.

``create_app(model, cfg)`` loads the model once and returns the app; uvicorn
runs it (``dfdetect serve``). With several worker processes uvicorn needs an
import string, so :func:`app_from_env` rebuilds the same app from the
checkpoint path and resolved config that ``dfdetect serve`` puts in the
environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
from importlib import resources
from typing import Any, Literal, Optional

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from deepfake_cli import __version__
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.config import Aggregation, CamMethod, Config
from deepfake_cli.errors import ConfigError, DfdetectError, InputFileError, ScanCancelled, UsageError
from deepfake_cli.output import dumps, write_csv_rows
from deepfake_cli.serve.annotated import ANNOTATED_MEDIA_TYPE, ANNOTATED_ROUTE
from deepfake_cli.serve.schemas import HealthOut, ModelsOut, PredictOut, VideoOut, error_responses
from deepfake_cli.serve.service import DetectorService
from deepfake_cli.serve.uploads import (
    IMAGE,
    VIDEO,
    BodyLimitMiddleware,
    UploadStorageFull,
    UnsupportedMediaType,
    body_limit,
    check_media,
    file_limit,
    too_large_message,
)

# What a Grad-CAM PNG shows, in response headers (the body is the picture).
GRADCAM_HEADERS = {
    "X-Face-Index": "face",
    "X-Face-Count": "face_count",
    "X-Target": "target",
    "X-Target-Prob": "target_prob",
    "X-P-Fake": "p_fake",
    "X-Label": "label",
}
# How often a running video scan checks that its client is still there.
DISCONNECT_POLL_S = 0.5
WORKER_CHECKPOINT_ENV = "DFDETECT_WORKER_CHECKPOINT"
WORKER_CONFIG_ENV = "DFDETECT_WORKER_CONFIG"
# The annotated-video folder that 'dfdetect serve --workers N' makes for all its workers.
WORKER_ANNOTATED_ENV = "DFDETECT_WORKER_ANNOTATED_DIR"

log = logging.getLogger("dfdetect.serve")

DESCRIPTION = (
    "Score faces in photos and videos as real or deepfake. Upload files as multipart/form-data "
    "field `file`. A statistical score from a model trained on one benchmark: an aid for triage, "
    "not forensic proof."
)


class JSONResult(JSONResponse):
    """JSON with NaN/inf as null and numpy scalars as numbers (dfdetect's own encoder)."""

    def render(self, content: Any) -> bytes:
        return dumps(content).encode("utf-8")


def error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResult:
    return JSONResult({"detail": detail}, status_code=status, headers=headers)


def load_service(classifier_or_checkpoint: FaceClassifier | str | os.PathLike[str] | dict, cfg: Config,
                 annotated_dir: str | os.PathLike[str] | None = None) -> DetectorService:
    """A ready service from a loaded classifier, a checkpoint path, a shipped model name or a checkpoint dict."""
    if isinstance(classifier_or_checkpoint, FaceClassifier):
        return DetectorService(classifier_or_checkpoint, cfg, annotated_dir)
    from deepfake_cli.models.store import resolve_model
    from deepfake_cli.runtime import configure_threads, resolve_device

    configure_threads(cfg.runtime.num_threads)
    device = resolve_device(cfg.runtime.device)
    source = classifier_or_checkpoint
    if not isinstance(source, dict):
        source = resolve_model(source)
    return DetectorService(FaceClassifier.from_checkpoint(source, device=device), cfg, annotated_dir)


def create_app(classifier_or_checkpoint: FaceClassifier | str | os.PathLike[str] | dict, cfg: Config | None = None,
               annotated_dir: str | os.PathLike[str] | None = None) -> FastAPI:
    """The dfdetect web app with its model loaded (once, here, not per request).

    ``annotated_dir``: a folder for annotated videos shared with other worker processes
    (default: one inside this server's upload folder)."""
    cfg = cfg or Config()
    service = load_service(classifier_or_checkpoint, cfg, annotated_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.open()  # the upload folder, now that the server runs
        try:
            yield
        finally:  # running scans stop; uploads left by them go with the server's upload folder
            service.close()

    app = _docs_offline_app(
        title="dfdetect",
        version=__version__,
        description=DESCRIPTION,
        form_limits={"max_files": 1, "max_fields": 16},
        lifespan=lifespan,
    )
    # What the routes depend on (get_service, get_limits): the one service, and the upload limits.
    app.state.service = service
    too_large = too_large_message(cfg.serve.max_upload_mb)
    app.state.limits = UploadLimits(file_limit(cfg.serve.max_upload_mb), too_large)
    app.add_middleware(BodyLimitMiddleware, max_body=body_limit(cfg.serve.max_upload_mb), message=too_large)
    if cfg.serve.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=[*GRADCAM_HEADERS, "X-Verdict"],
        )
    _install_error_handlers(app)
    app.include_router(router)
    return app


def _docs_offline_app(**kwargs: Any) -> FastAPI:
    """A FastAPI app whose /docs and /redoc load Swagger UI and ReDoc from the app itself
    (fastapi-offline's packaged assets under /static-offline-docs), so they work without
    the network; plain FastAPI (assets from a CDN) when fastapi-offline is not installed."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        logging.getLogger(__name__).warning("fastapi-offline is not installed: /docs and /redoc load their assets from a CDN")
        return FastAPI(**kwargs)
    return FastAPIOffline(**kwargs)


@dataclasses.dataclass(frozen=True)
class UploadLimits:
    """The largest upload file accepted, and what a client sending more is told."""

    max_file: int
    too_large: str


def get_service(request: Request) -> DetectorService:
    """The app's one :class:`DetectorService` (a dependency of every route)."""
    return request.app.state.service


def get_limits(request: Request) -> UploadLimits:
    return request.app.state.limits


def accept(upload: UploadFile, kind: str, limits: UploadLimits) -> str:
    """The allow-listed suffix for this upload, after the type and exact size checks."""
    suffix = check_media(kind, upload.content_type, upload.filename)
    if upload.size is not None and upload.size > limits.max_file:
        raise HTTPException(413, limits.too_large)
    return suffix


@functools.lru_cache(maxsize=1)
def _page() -> str:
    return resources.files("deepfake_cli.serve").joinpath("page.html").read_text(encoding="utf-8")


# The routes, over the service dependency; create_app includes them.
router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index() -> HTMLResponse:
    return HTMLResponse(_page())


@router.get("/health", response_model=HealthOut, summary="Liveness, model, device, version and load")
def health(service: DetectorService = Depends(get_service)) -> JSONResult:
    return JSONResult(service.health())


# HEAD too: uptime monitors and load balancers probe with it.
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


@router.get("/models", response_model=ModelsOut, summary="The loaded model and the installed ones")
def models(service: DetectorService = Depends(get_service)) -> JSONResult:
    return JSONResult(service.models())


@router.post(
    "/predict",
    response_model=PredictOut,
    responses=error_responses(413, 415, 422),
    summary="Score every face in an image",
    description="Per-face boxes and scores; the verdict (`verdict`, and as in the first report `prediction`, `confidence`, `probabilities`) "
    "is that of the most suspicious face. An image without a face gives status `no_face`.",
)
async def predict(
    file: UploadFile = File(..., description="jpeg, png, bmp, webp, tiff or a still gif"),
    service: DetectorService = Depends(get_service),
    limits: UploadLimits = Depends(get_limits),
) -> JSONResult:
    accept(file, IMAGE, limits)
    data = await file.read()
    return JSONResult(await run_in_threadpool(service.predict_image, data))

# The first report's clients posted to /predict/ (with the slash).
router.add_api_route("/predict/", predict, methods=["POST"], include_in_schema=False)

@router.post(
    "/predict/video",
    response_model=VideoOut,
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}, "description": "verdict JSON, or with format=csv the per-frame rows"},
        **error_responses(413, 415, 422, 503),
    },
    summary="Scan a video: verdict, tracks and per-frame rows",
    description="Samples frames (default: [video] of the server's config), detects and tracks faces, "
    "and aggregates each track's scores; the video is fake if any track is. No face at all gives status `no_face`.",
)
async def predict_video(
    request: Request,
    file: UploadFile = File(..., description="mp4, mov, mkv, webm, avi or an animated gif"),
    format: Literal["json", "csv"] = Query("json", description="csv: the per-frame rows as a download"),
    every: Optional[int] = Query(None, ge=1, description="score every N-th frame"),
    fps: Optional[float] = Query(None, gt=0, description="or sample this many frames per second"),
    frames: Optional[int] = Query(None, ge=1, description="or this many frames, evenly spaced"),
    start: Optional[float] = Query(None, ge=0, description="first second to scan"),
    end: Optional[float] = Query(None, gt=0, description="last second to scan"),
    aggregate: Optional[Aggregation] = Query(None, description="how a track's scores become its score"),
    annotate: bool = Query(False, description="also write an annotated H.264 copy (boxes, scores, the running "
                           "video score; slower: every frame is decoded and encoded): its URL is annotated_url"),
    service: DetectorService = Depends(get_service),
    limits: UploadLimits = Depends(get_limits),
) -> Response:
    suffix = accept(file, VIDEO, limits)
    sampling = {"every": every, "fps": fps, "frames": frames, "start": start, "end": end, "aggregate": aggregate}
    # A client that goes away (a timeout, a retry) stops its scan: the work is for nobody.
    gone = threading.Event()
    scan = asyncio.ensure_future(run_in_threadpool(service.predict_video, file.file, suffix, sampling, gone.is_set, annotate))
    try:
        while not scan.done():
            await asyncio.wait({scan}, timeout=DISCONNECT_POLL_S)
            if not scan.done() and await request.is_disconnected():
                gone.set()
        result = scan.result()
    except asyncio.CancelledError:  # the server cancels the request (shutdown): stop the scan too
        gone.set()
        raise
    if format == "csv":
        headers = {"Content-Disposition": 'attachment; filename="frames.csv"', "X-Verdict": str(result["prediction"] or result["status"])}
        if result["annotated_url"]:
            headers["X-Annotated-URL"] = result["annotated_url"]
        return Response(write_csv_rows(result["rows"], result["columns"]), media_type="text/csv; charset=utf-8", headers=headers)
    return JSONResult(result)


@router.get(
    ANNOTATED_ROUTE + "/{name}",
    response_class=FileResponse,
    responses={200: {"content": {ANNOTATED_MEDIA_TYPE: {}}, "description": "the annotated video (H.264 MP4; Range requests answered with 206)"},
               404: {"description": "no such video: never written, or expired (serve.annotated_ttl)"}},
    summary="An annotated video written by POST /predict/video?annotate=true",
)
def annotated(name: str, service: DetectorService = Depends(get_service)) -> FileResponse:
    path = service.annotated.find(name)
    if path is None:
        raise HTTPException(404, f"no such annotated video: they are kept {service.annotated.ttl:g} s after their scan "
                                 "(serve.annotated_ttl); scan the video again with annotate=true")
    # Starlette's FileResponse answers Range requests (206) and HEAD, so browsers can seek.
    return FileResponse(
        path, media_type=ANNOTATED_MEDIA_TYPE, filename="annotated.mp4", content_disposition_type="inline",
        headers={"Cache-Control": f"private, max-age={int(service.annotated.ttl)}", "X-Content-Type-Options": "nosniff"},
    )


# HEAD too: players and download tools ask for the size first.
router.add_api_route(ANNOTATED_ROUTE + "/{name}", annotated, methods=["HEAD"], include_in_schema=False)

@router.post(
    "/gradcam",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}, "application/json": {}},
            "description": "PNG of the explained face (headers X-Face-Index, X-Face-Count, X-Target, "
            "X-Target-Prob, X-P-Fake, X-Label); JSON with status `no_face` when the image has no face",
        },
        **error_responses(413, 415, 422),
    },
    summary="Grad-CAM picture of one face in an image",
)
async def gradcam(
    file: UploadFile = File(..., description="jpeg, png, bmp, webp, tiff or gif"),
    face: Optional[int] = Query(None, ge=0, description="face index as in /predict (default: the most suspicious face)"),
    target: Optional[str] = Query(None, description="predicted, real, fake, a class name or index; 'all' with view=sheet"),
    view: Literal["overlay", "sheet"] = Query("overlay", description="overlay: heatmap over the face crop; sheet: face | heatmap | overlay"),
    method: Optional[CamMethod] = Query(None, description="default: gradcam.method"),
    service: DetectorService = Depends(get_service),
    limits: UploadLimits = Depends(get_limits),
) -> Response:
    accept(file, IMAGE, limits)
    data = await file.read()
    png, info = await run_in_threadpool(service.gradcam_image, data, face, target, view, method)
    if png is None:
        return JSONResult(info)
    headers = {name: str(info[key]) for name, key in GRADCAM_HEADERS.items()}
    return Response(png, media_type="image/png", headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON ``{"detail": "one line"}`` with a fitting status code."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResult:
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResult:
        content_type = request.headers.get("content-type", "")
        if request.method == "POST" and not content_type.startswith("multipart/form-data"):
            return error(415, f"send the file as multipart/form-data field 'file', not '{content_type or 'no content type'}'")
        problems = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            message = str(item.get("msg", "invalid"))
            if where == "file" and (item.get("type") == "missing" or "UploadFile" in message):
                # A plain form field, a part without filename=, or a body cut short before the file.
                message = "no file: send the file as a multipart part named 'file' with a filename"
            problems.append(f"{where}: {message}" if where else message)
        return error(422, "; ".join(problems) or "invalid request")

    @app.exception_handler(UnsupportedMediaType)
    async def unsupported(request: Request, exc: UnsupportedMediaType) -> JSONResult:
        return error(415, str(exc))

    @app.exception_handler(UploadStorageFull)
    async def storage_full(request: Request, exc: UploadStorageFull) -> JSONResult:
        log.error("%s %s: %s", request.method, request.url.path, exc.strerror)
        return error(507, str(exc.strerror), {"Retry-After": "60"})

    @app.exception_handler(ScanCancelled)
    async def cancelled(request: Request, exc: ScanCancelled) -> JSONResult:
        # The client went away (it never sees this), or the server is shutting down.
        return error(503, "the scan was stopped: the server is shutting down or the client went away; try again",
                     {"Retry-After": "5"})

    @app.exception_handler(DfdetectError)
    async def library_error(request: Request, exc: DfdetectError) -> JSONResult:
        if isinstance(exc, (InputFileError, UsageError, ConfigError)):
            return error(422, str(exc))
        log.error("dfdetect error on %s %s: %s", request.method, request.url.path, exc)
        return error(500, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResult:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"internal error ({type(exc).__name__}); see the server log")


def app_from_env() -> FastAPI:
    """uvicorn's factory for ``--workers N``: each worker process loads the model once."""
    checkpoint = os.environ.get(WORKER_CHECKPOINT_ENV)
    if not checkpoint:
        raise ConfigError(f"{WORKER_CHECKPOINT_ENV} is not set; start workers with 'dfdetect serve --workers N'")
    raw = os.environ.get(WORKER_CONFIG_ENV)
    cfg = Config.from_dict(json.loads(raw), source=WORKER_CONFIG_ENV) if raw else Config()
    return create_app(checkpoint, cfg, os.environ.get(WORKER_ANNOTATED_ENV) or None)
