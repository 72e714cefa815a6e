"""Reading images robustly: EXIF orientation, any mode to RGB, bomb limit."""

from __future__ import annotations

import io
import os
import select
import stat
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from deepfake_cli.errors import InputFileError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
DEFAULT_MAX_PIXELS = 100_000_000


# Bytes read from a pipe or device given as an image path (no size to check beforehand).
PIPE_MAX_BYTES = 256 * 2**20
# Seconds a pipe or device may stay silent (no writer yet, nothing written) before it is given up.
PIPE_WAIT_SECONDS = 30.0
# Animated GIFs are short videos (scanned frame by frame, tracked); a still GIF is an image.
GIF_EXTENSION = ".gif"
# What a folder scan of 'predict' picks up.
MEDIA_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS | {GIF_EXTENSION}


def is_image_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def special_file_kind(path: str | os.PathLike[str]) -> str | None:
    """``"a named pipe"``, ``"a character device"``, ... when ``path`` (followed) is neither a
    regular file nor a folder; ``None`` otherwise, or when it cannot be looked at."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def missing_reason(path: str | os.PathLike[str]) -> str:
    """Why ``path`` does not exist, for an error message: a symlink loop or a broken symlink
    is not "no such file"."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (too many levels of symbolic links)"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"broken symbolic link (to {os.readlink(path)}, which does not exist)"
        if exc.errno not in (errno.ENOENT, None):
            return exc.strerror or str(exc)
    return "no such file"


def read_special(path: str | os.PathLike[str], limit: int | None = None, wait: float | None = None) -> bytes:
    """The bytes of a pipe or device, up to ``limit`` + 1 of them, never blocking for long.

    Opened without blocking (a named pipe with no writer would otherwise block the open
    forever); ``wait`` seconds without a byte (no writer yet, a stalled one, a terminal)
    is an :class:`InputFileError`. End of file is a writer closing its end.
    """
    limit = PIPE_MAX_BYTES if limit is None else limit
    wait = PIPE_WAIT_SECONDS if wait is None else wait
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputFileError(f"{name}: cannot open ({exc.strerror or exc})") from exc
    chunks: list[bytes] = []
    size = 0
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        deadline = time.monotonic() + wait
        while size <= limit:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise InputFileError(
                    f"{name}: nothing read from {special_file_kind(path) or 'the pipe'} for {wait:g} s "
                    "(no writer, or it stalled): not read further"
                )
            try:
                chunk = os.read(fd, min(2**20, limit + 1 - size))
            except BlockingIOError:
                continue
            except OSError as exc:
                raise InputFileError(f"{name}: cannot read ({exc.strerror or exc})") from exc
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            deadline = time.monotonic() + wait
    finally:
        os.close(fd)
    return b"".join(chunks)


# The first bytes of still-image files (GIF is left out: an animated one is a video).
_IMAGE_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)


def still_image_format(path: str | os.PathLike[str]) -> str | None:
    """``"JPEG"``, ``"PNG"``, ... when the file's content is a still image, whatever its name."""
    if special_file_kind(path) is not None:
        return None  # a pipe is read once, by load_image
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _IMAGE_SIGNATURES if head.startswith(magic)), None)


def is_video_path(path: str | os.PathLike[str]) -> bool:
    suffix = Path(path).suffix.lower()
    return suffix in VIDEO_EXTENSIONS or (suffix == GIF_EXTENSION and is_animated_gif(path))


def is_animated_gif(path: str | os.PathLike[str] | bytes) -> bool:
    """Whether ``path`` (or these bytes) is a readable GIF with more than one frame (reads its
    header and second frame)."""
    if isinstance(path, bytes):
        if not path.startswith(b"GIF8"):
            return False
        path = io.BytesIO(path)  # type: ignore[assignment]
    elif special_file_kind(path) is not None:
        return False  # opening a named pipe blocks; it is read once, as an image
    try:
        with Image.open(path) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:  # noqa: BLE001 - missing or broken: an image path, reported by load_image as an error row
        return False


def load_image(source: str | os.PathLike[str] | bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file (or bytes) to an RGB uint8 array of shape (H, W, 3).

    Raises :class:`InputFileError` with a one-line reason for anything that is
    not a readable image: missing, empty, not an image, truncated, too large.
    """
    name = "upload" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise InputFileError(f"{name}: empty file (0 bytes)")
        fh = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise InputFileError(f"{name}: {missing_reason(path)}")
        if path.is_dir():
            raise InputFileError(f"{name}: is a directory")
        regular = path.is_file()
        if regular and path.stat().st_size == 0:
            raise InputFileError(f"{name}: empty file (0 bytes)")
        try:
            if not regular:
                # A pipe (/dev/stdin, <(...), a named pipe): its size is unknown and it cannot seek;
                # read it whole, up to a bound (a device such as /dev/zero never ends), without
                # waiting forever for a writer.
                data = read_special(path, PIPE_MAX_BYTES)
                if not data:
                    raise InputFileError(f"{name}: empty (nothing was piped in)")
                if len(data) > PIPE_MAX_BYTES:
                    raise InputFileError(f"{name}: more than {PIPE_MAX_BYTES // 2**20} MB from a pipe or device: not an image")
                fh = io.BytesIO(data)
            else:
                fh = open(path, "rb")
        except OSError as exc:
            raise InputFileError(f"{name}: cannot open ({exc.strerror or exc})") from exc
    allow_pixels(max_pixels)
    try:
        with fh, warnings.catch_warnings():
            # The limit is checked below, with the size and the setting to raise; Pillow's own
            # (warning above its limit, error above twice it) must never refuse less.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(fh)
            except UnidentifiedImageError as exc:
                raise InputFileError(f"{name}: not a recognised image format") from exc
            width, height = img.size
            if width * height > max_pixels:
                raise InputFileError(
                    f"{name}: too many pixels ({width}x{height} > {max_pixels:,}); "
                    "raise predict.max_image_pixels if this is intended"
                )
            try:
                img.load()
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
            except OSError as exc:
                raise InputFileError(f"{name}: truncated or corrupt image ({exc})") from exc
            return np.asarray(img, dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputFileError(
            f"{name}: too many pixels (more than {max_pixels:,}: {exc}); "
            "raise predict.max_image_pixels if this is intended"
        ) from exc
    except InputFileError:
        raise
    except (ValueError, SyntaxError, OSError) as exc:  # odd encoders raise these
        raise InputFileError(f"{name}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def allow_pixels(max_pixels: int) -> None:
    """Make Pillow's process-wide decompression-bomb limit at least ``max_pixels``.

    Pillow refuses images above its own ``Image.MAX_IMAGE_PIXELS`` (89,478,485 by default),
    so a higher ``predict.max_image_pixels`` had no effect. The limit is only ever raised
    (threads loading at once never lower it under each other); :func:`load_image` checks
    its own ``max_pixels`` exactly.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = (arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    return img.convert("RGB")
