"""Expanding command-line sources into files: paths, folders, globs, lists, stdin."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from deepfake_cli.media.images import MEDIA_EXTENSIONS

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
    on_no_match: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Yield input files in a stable order, each once (``a.mp4 ./a.mp4`` or two
    overlapping globs would count one video twice in the batch).

    - a folder: its files with ``extensions``, recursively, sorted;
    - a glob (``'shots/**/*.jpg'``): its matches, sorted;
    - ``-``: one path per line on standard input (each expanded again);
    - a ``.txt``/``.lst`` file: one path per line (relative to the current directory);
    - anything else is yielded as given, even if missing, so the caller can
      report it as an error row.

    ``on_no_match`` is called with each glob that matches no such file (a typo
    there would otherwise drop inputs without a word).
    """
    sources = list(sources)
    if len(sources) == 1 and sources[0] != "-" and not Path(sources[0]).is_file():
        # One folder or glob cannot name a file twice: no set of every path seen (a folder
        # of millions of photos).
        yield from _expand(sources, extensions, stdin, on_no_match)
        return
    seen: set[str] = set()
    for path in _expand(sources, extensions, stdin, on_no_match):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            yield path


def _expand(
    sources: Iterable[str], extensions: frozenset[str], stdin: TextIO | None,
    on_no_match: Callable[[str], None] | None,
) -> Iterator[Path]:
    for source in sources:
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin
            yield from _expand(_lines(stream), extensions, None, on_no_match)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            yield from _walk_sorted(path, extensions)
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            # Relative paths in a list are relative to the current directory, as on stdin.
            with open(path, encoding="utf-8") as fh:
                lines = list(_lines(fh))
            yield from _expand(lines, extensions, None, on_no_match)
        elif not path.exists() and GLOB_CHARS & set(source):
            matched = False
            for match in sorted(glob.glob(os.path.expanduser(source), recursive=True)):
                m = Path(match)
                if m.is_file() and m.suffix.lower() in extensions:
                    matched = True
                    yield m
            if not matched and on_no_match is not None:
                on_no_match(source)
        else:
            yield path


def _lines(stream: Iterable[str]) -> Iterator[str]:
    for line in stream:
        line = line.strip()
        if line and not line.startswith("#"):
            yield line
