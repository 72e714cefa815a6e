"""Where a model came from: the stamp written into imported checkpoints."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deepfake_cli import __version__


def file_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_stamp(source_kind: str, path: str | Path) -> dict[str, Any]:
    """Provenance of a checkpoint converted from a foreign file: which file, which bytes, when, by what."""
    path = Path(path).resolve()
    return {
        "imported_from": source_kind,
        "source_file": path.name,
        "source_path": str(path),
        "sha256": file_sha256(path),
        "imported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "importer": f"dfdetect {__version__} models import {source_kind}",
    }
