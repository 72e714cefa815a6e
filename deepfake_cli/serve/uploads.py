"""Uploaded files: media-type allow-lists, size checks and temporary files we name ourselves.

:class:`BodyLimitMiddleware` enforces the request size while the body streams
in: a too-large ``Content-Length`` is refused before anything is read, and a
chunked body is cut off as soon as it passes the limit, so an oversized upload
is never spooled whole. The endpoints then check the file part against the
exact limit and its declared type against an allow-list.
A client's file name is never used as a path: at most its extension picks a
suffix from our allow-list.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepfake_cli.media.images import GIF_EXTENSION, IMAGE_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS

MB = 1024 * 1024
# Boundaries and part headers around the file in a multipart body.
MULTIPART_OVERHEAD = 64 * 1024
COPY_CHUNK = 1024 * 1024
TEMP_PREFIX = "dfdetect-upload-"

IMAGE_MEDIA_TYPES = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/bmp": ".bmp",
    "image/x-ms-bmp": ".bmp",
    "image/webp": ".webp",
    "image/tiff": ".tif",
    "image/gif": ".gif",
}
VIDEO_MEDIA_TYPES = {
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/x-matroska": ".mkv",
    "video/webm": ".webm",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/msvideo": ".avi",
    "image/gif": ".gif",  # an animated GIF is a short video
}
# Types that say nothing about the content (curl without ;type=, some browsers).
UNDECLARED_MEDIA_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

IMAGE = "image"
VIDEO = "video"
_KINDS = {
    IMAGE: (IMAGE_MEDIA_TYPES, IMAGE_EXTENSIONS | {GIF_EXTENSION}, "jpeg, png, bmp, webp, tiff, gif"),
    VIDEO: (VIDEO_MEDIA_TYPES, VIDEO_EXTENSIONS | {GIF_EXTENSION}, "mp4, mov, mkv, webm, avi, animated gif"),
}


class UnsupportedMediaType(ValueError):
    """The upload declares a type (or extension) this endpoint does not take."""


def media_type(declared: str | None) -> str:
    return (declared or "").split(";", 1)[0].strip().lower()


def client_extension(filename: str | None) -> str:
    """The lower-case extension of the client's file name, used only for lookups."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return os.path.splitext(name)[1].lower()


def check_media(kind: str, declared: str | None, filename: str | None) -> str:
    """The temp-file suffix for an acceptable upload of ``kind``; raise otherwise.

    A declared type from the allow-list wins; an undeclared one falls back to the
    file name's extension; anything else is refused. Content that does not decode
    is a separate error (422), found by the decoder.
    """
    types, extensions, names = _KINDS[kind]
    declared_type = media_type(declared)
    extension = client_extension(filename)
    if declared_type in types:
        return types[declared_type]
    if declared_type in UNDECLARED_MEDIA_TYPES:
        if extension in extensions:
            return extension
        if not extension:
            return next(iter(types.values()))
    other = VIDEO if kind == IMAGE else IMAGE
    hint = " (videos go to POST /predict/video)" if other == VIDEO else " (images go to POST /predict)"
    got = declared_type if declared_type not in UNDECLARED_MEDIA_TYPES else f"a '{extension}' file"
    article = "an" if kind == IMAGE else "a"
    raise UnsupportedMediaType(
        f"expected {article} {kind} ({names}), got {got}{hint if _looks_like(other, declared_type, extension) else ''}"
    )


def _looks_like(kind: str, declared_type: str, extension: str) -> bool:
    types, extensions, _ = _KINDS[kind]
    return declared_type in types or declared_type.startswith(kind + "/") or extension in extensions


def too_large_message(max_upload_mb: float) -> str:
    return f"upload too large: this server takes files up to {max_upload_mb:g} MB (serve.max_upload_mb)"


class BodyLimitMiddleware:
    """413 for request bodies over ``max_body`` bytes, decided while they stream in.

    Reading past the limit raises an ``HTTPException(413)`` inside the endpoint's
    body parsing, which the app's error handlers turn into the usual JSON error.
    """

    def __init__(self, app: ASGIApp, max_body: int, message: str):
        self.app = app
        self.max_body = max_body
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await JSONResponse({"detail": self.message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, receive_within_limit, send)


def body_limit(max_upload_mb: float) -> int:
    """Bytes a whole request body may have: the file limit plus multipart framing."""
    return int(max_upload_mb * MB) + MULTIPART_OVERHEAD


def file_limit(max_upload_mb: float) -> int:
    return int(max_upload_mb * MB)


@contextlib.contextmanager
def spooled_to_temp_file(source: BinaryIO, suffix: str, directory: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """Copy an uploaded stream to a temp file named by us; always removed on exit.

    ``suffix`` must come from :func:`check_media` (an allow-listed extension).
    """
    if suffix not in MEDIA_EXTENSIONS:
        raise ValueError(f"suffix {suffix!r} is not an allow-listed media extension")
    try:
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=directory)
    except OSError as exc:
        raise _storage_error(exc) from exc
    path = Path(name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                source.seek(0)
                shutil.copyfileobj(source, out, COPY_CHUNK)
        except OSError as exc:
            raise _storage_error(exc) from exc
        yield path
    finally:
        path.unlink(missing_ok=True)


class UploadStorageFull(OSError):
    """The server's upload folder has no room for an upload (HTTP 507)."""


def _storage_error(exc: OSError) -> OSError:
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UploadStorageFull(
            exc.errno, f"no room for the upload in the server's upload folder ({exc.strerror}); "
            "try a smaller file or later, or ask the operator to free space in serve.upload_dir"
        )
    return exc
