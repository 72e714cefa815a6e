"""Expanding command-line sources into files: paths, folders, globs, lists, stdin."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from deepfake_cli.images import MEDIA_EXTENSIONS

LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
GLOB_CHARS = frozenset("*?[")


def _walk_sorted(folder: Path, extensions: frozenset[str]) -> Iterator[Path]:
    """Recursive, sorted, streaming: never holds more than one folder listing."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in extensions and not name.startswith("."):
                yield Path(root) / name


def expand_sources(
    sources: Iterable[str],
    extensions: frozenset[str] = MEDIA_EXTENSIONS,
    stdin: TextIO | None = None,
) -> Iterator[Path]:
    """Yield input files in a stable order.

    - a folder: its files with ``extensions``, recursively, sorted;
    - a glob (``'shots/**/*.jpg'``): its matches, sorted;
    - ``-``: one path per line on standard input (each expanded again);
    - a ``.txt``/``.lst`` file: one path per line (relative to the current directory);
    - anything else is yielded as given, even if missing, so the caller can
      report it as an error row.
    """
    for source in sources:
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin
            yield from expand_sources(_lines(stream), extensions, stdin=None)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            yield from _walk_sorted(path, extensions)
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            # Relative paths in a list are relative to the current directory, as on stdin.
            with open(path, encoding="utf-8") as fh:
                lines = list(_lines(fh))
            yield from expand_sources(lines, extensions, stdin=None)
        elif not path.exists() and GLOB_CHARS & set(source):
            for match in sorted(glob.glob(os.path.expanduser(source), recursive=True)):
                m = Path(match)
                if m.is_file() and m.suffix.lower() in extensions:
                    yield m
        else:
            yield path


def _lines(stream: Iterable[str]) -> Iterator[str]:
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line
