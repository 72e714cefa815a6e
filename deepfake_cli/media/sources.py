"""Expanding command-line sources into files: paths, folders, globs, lists, stdin."""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from deepfake_cli.media.images import MEDIA_EXTENSIONS, special_file_kind

LIST_EXTENSIONS = frozenset({".txt", ".lst", ".list"})
GLOB_CHARS = frozenset("*?[")


def _walk_sorted(
    folder: Path, extensions: frozenset[str], on_note: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Recursive, sorted, streaming: never holds more than one folder listing.

    Named pipes, devices and sockets are left out (``on_note`` says so): opening a pipe
    with no writer would block the scan forever.
    """
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in extensions and not name.startswith("."):
                path = Path(root) / name
                if _skipped_special(path, on_note):
                    continue
                yield path


def _skipped_special(path: Path, on_note: Callable[[str], None] | None) -> bool:
    kind = special_file_kind(path)
    if kind is not None and on_note is not None:
        on_note(f"skipped {path}: {kind}, not a regular file")
    return kind is not None


def expand_sources(
    sources: Iterable[str],
    extensions: frozenset[str] = MEDIA_EXTENSIONS,
    stdin: TextIO | None = None,
    on_no_match: Callable[[str], None] | None = None,
    on_note: Callable[[str], None] | None = None,
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
    there would otherwise drop inputs without a word); ``on_note`` with a line for each
    pipe or device skipped in a folder or glob, and for each folder with nothing to scan
    among other sources (a lone one is the caller's "nothing found" error).
    """
    sources = list(sources)
    if len(sources) == 1 and sources[0] != "-" and not Path(sources[0]).is_file():
        # One folder or glob cannot name a file twice: no set of every path seen (a folder
        # of millions of photos).
        yield from _expand(sources, extensions, stdin, on_no_match, on_note, note_empty=False)
        return
    seen: set[str] = set()
    for path in _expand(sources, extensions, stdin, on_no_match, on_note):
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            yield path


def _expand(
    sources: Iterable[str], extensions: frozenset[str], stdin: TextIO | None,
    on_no_match: Callable[[str], None] | None, on_note: Callable[[str], None] | None = None,
    note_empty: bool = True,
) -> Iterator[Path]:
    for source in sources:
        if source == "-":
            stream = stdin if stdin is not None else sys.stdin
            yield from _expand(_lines(stream), extensions, None, on_no_match, on_note)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            found = False
            for found_path in _walk_sorted(path, extensions, on_note):
                found = True
                yield found_path
            if not found and note_empty and on_note is not None:
                on_note(f"nothing to scan in folder {source}")
        elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
            # Relative paths in a list are relative to the current directory, as on stdin.
            with open(path, encoding="utf-8") as fh:
                lines = list(_lines(fh))
            yield from _expand(lines, extensions, None, on_no_match, on_note)
        elif not path.exists() and GLOB_CHARS & set(source):
            matched = False
            for match in sorted(glob.glob(os.path.expanduser(source), recursive=True)):
                m = Path(match)
                if m.suffix.lower() in extensions and _skipped_special(m, on_note):
                    continue
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
