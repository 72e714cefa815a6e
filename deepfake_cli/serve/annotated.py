"""Annotated videos written for ``POST /predict/video?annotate=true`` and served at
``GET /annotated/<id>.mp4``.

Each one is named by a random id of ours (32 URL-safe characters from :mod:`secrets`;
the client's file name never reaches a path), in a folder of the server's own: inside
its upload folder (``dfdetect-uploads-PID-*``), or, with ``--workers N``, one that
``dfdetect serve`` makes for all its worker processes, since the request that fetches a
video may reach another worker than the one that wrote it. Either way the folder goes
when the server stops, and a killed server's is swept at the next start as its uploads
are. A video is kept for ``serve.annotated_ttl`` seconds after its scan ends; beyond
``serve.annotated_max_mb`` in all, the oldest go first. Only names of the id's exact
form are ever looked up, so no path outside the folder can be asked for.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Callable

ANNOTATED_SUFFIX = ".mp4"  # H.264 through PyAV, which browsers play (media/annotate.py)
ANNOTATED_MEDIA_TYPE = "video/mp4"
ANNOTATED_ROUTE = "/annotated"
_ID_BYTES = 24  # secrets.token_urlsafe(24): 32 characters
_NAME = re.compile(r"[A-Za-z0-9_-]{32}" + re.escape(ANNOTATED_SUFFIX))


def is_annotated_name(name: str) -> bool:
    """Whether ``name`` has the form of a name this server gives (``<32 characters>.mp4``)."""
    return _NAME.fullmatch(name) is not None


class AnnotatedStore:
    """The annotated videos of one server: where a new one goes, finding one by name, expiry."""

    def __init__(self, folder: Callable[[], Path], ttl: float, max_bytes: int):
        self._folder = folder
        self.ttl = float(ttl)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()

    @property
    def folder(self) -> Path:
        return self._folder()

    def new(self) -> tuple[str, Path]:
        """A fresh name and the path to write it at (expired videos are removed first)."""
        self.sweep()
        name = secrets.token_urlsafe(_ID_BYTES) + ANNOTATED_SUFFIX
        return name, self.folder / name

    @staticmethod
    def url(name: str) -> str:
        return f"{ANNOTATED_ROUTE}/{name}"

    def find(self, name: str) -> Path | None:
        """The video called ``name`` if it is one of ours and has not expired; else ``None``."""
        if not is_annotated_name(name):
            return None
        self.sweep()
        path = self.folder / name
        try:
            if path.is_symlink() or not path.is_file():
                return None
        except OSError:
            return None
        return path

    def sweep(self, keep: str | None = None) -> list[Path]:
        """Remove videos older than the time to keep them, then the oldest while all of them
        take more than the limit (never the newest, nor ``keep``, the one just written); returns
        those removed.
        Partial files of scans in progress (hidden names) are not ours to judge here."""
        removed: list[Path] = []
        with self._lock:
            try:
                entries = [e for e in os.scandir(self.folder) if is_annotated_name(e.name)]
            except OSError:
                return removed
            now = time.time()
            kept = []
            for entry in entries:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if now - stat.st_mtime > self.ttl and entry.name != keep:
                    removed.append(Path(entry.path))
                else:
                    kept.append((stat.st_mtime, stat.st_size, entry))
            total = sum(size for _, size, _ in kept)
            for _, size, entry in sorted(kept, key=lambda item: item[0])[:-1]:  # never the newest
                if total <= self.max_bytes:
                    break
                if entry.name == keep:
                    continue
                removed.append(Path(entry.path))
                total -= size
            for path in removed:
                try:
                    path.unlink()
                except OSError:
                    pass
        return removed
