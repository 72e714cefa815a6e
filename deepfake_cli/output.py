"""Writing result records: a Rich table on a terminal, JSON/JSONL/CSV otherwise.

Records are plain dicts. JSON, JSONL and CSV are streamed one record at a
time so scans of huge folders run in constant memory; the table is drawn at
the end (it is for people, not for millions of rows).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TextIO

from deepfake_cli.errors import OutputError, UsageError

FILE_FORMATS = ("json", "jsonl", "csv")  # formats a file can hold (the table is for terminals)


def format_from_extension(path: str | Path) -> str | None:
    """``json``, ``jsonl`` or ``csv`` as a file name's extension says; ``None`` for any other."""
    suffix = Path(str(path)).suffix.lower().lstrip(".")
    return suffix if suffix in FILE_FORMATS else None


def choose_format(
    json_: bool = False, jsonl: bool = False, csv_: bool = False, out: str | None = None, stream: TextIO | None = None,
    fmt: str | None = None,
) -> str:
    """``--format`` (or its aliases ``--json``/``--jsonl``/``--csv``) wins; then the ``out``
    file's extension; then a table on a TTY and JSON Lines in pipes."""
    chosen = [name for name, on in (("json", json_), ("jsonl", jsonl), ("csv", csv_)) if on]
    if fmt is not None:
        if fmt not in WRITERS:
            raise UsageError(f"unknown output format '{fmt}' (choose {', '.join(WRITERS)})")
        if any(c != fmt for c in chosen):
            raise UsageError(f"choose one output format, not --format {fmt} and {' and '.join('--' + c for c in chosen)}")
        return fmt
    if len(chosen) > 1:
        raise UsageError(f"choose one output format, not {' and '.join('--' + c for c in chosen)}")
    if chosen:
        return chosen[0]
    if out is not None and str(out) != "-":
        return format_from_extension(out) or "jsonl"
    stream = stream or sys.stdout
    return "table" if stream.isatty() else "jsonl"


def partial_path(target: Path) -> Path:
    """A name beside ``target`` that no other writer uses (this process, a random tag), keeping
    its extension (OpenCV picks the container by it): written there, then moved into place.

    Partial files of ``target`` left by a killed run (SIGKILL, a power cut) are removed first.
    """
    target = Path(target)
    sweep_stale_partials(target)
    return target.with_name(f".{target.stem}.partial-{os.getpid()}-{secrets.token_hex(4)}{target.suffix}")


# A partial file touched this recently is left alone even if its process seems gone.
STALE_PARTIAL_SECONDS = 60.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process
    return True


def sweep_stale_partials(target: Path) -> list[Path]:
    """Remove ``.STEM.partial-PID-TAG.EXT`` files beside ``target`` whose process is not running
    and that were not modified for :data:`STALE_PARTIAL_SECONDS`; returns those removed."""
    import time

    removed = []
    prefix = f".{target.stem}.partial-"
    try:
        entries = list(os.scandir(target.parent if str(target.parent) else "."))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(target.suffix)):
            continue
        pid_text = name[len(prefix):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or pid_alive(int(pid_text)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or time.time() - entry.stat().st_mtime < STALE_PARTIAL_SECONDS:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], keep_suffix: bool = False) -> Iterator[Path]:
    """The one atomic-write helper: a temporary path beside ``target`` to write, moved onto
    ``target`` when the block ends, deleted when it raises; readers never see half a file.

    The temporary name is hidden and ends in ``.tmp`` (globs for the real files never match
    it), or with ``keep_suffix`` in ``target``'s extension (:func:`partial_path`, for writers
    that pick a container by it; stale partial files of ``target`` are swept first). The
    folder is made if need be.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if keep_suffix:
        tmp = partial_path(target)
    else:
        tmp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """``data`` into ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


class ReplacingTextFile(io.TextIOWrapper):
    """Text written to a file of its own beside ``target``, which replaces ``target`` on close.

    Two runs writing the same ``--out`` never interleave their lines: the one
    that finishes last wins, whole. A run that stops part-way (Ctrl-C, SIGTERM,
    an error) calls :meth:`discard`: ``target`` stays as it was. Created like
    any file (mode from the umask).
    """

    def __init__(self, target: Path):
        self.target = target
        self.temp = partial_path(target)
        super().__init__(io.FileIO(self.temp, "x"), encoding="utf-8", newline="")

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as exc:
            raise self._named(exc) from None

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            raise self._named(exc) from None

    def close(self) -> None:
        if self.closed:
            return
        try:
            super().close()
            os.replace(self.temp, self.target)
        except OSError as exc:
            self.temp.unlink(missing_ok=True)
            raise self._named(exc) from None

    def _named(self, exc: OSError) -> OSError:
        """A disk-full (or any) write error that names ``target``, not nothing or our partial file."""
        if exc.filename is None or str(exc.filename) == str(self.temp):
            return OSError(exc.errno, exc.strerror or str(exc), str(self.target))
        return exc

    def discard(self) -> None:
        """Close without replacing ``target``: what was written is deleted."""
        if not self.closed:
            try:
                io.TextIOWrapper.close(self)
            except OSError:
                pass  # a full disk: what was written goes anyway
        self.temp.unlink(missing_ok=True)


def finish_output(stream: TextIO, complete: bool) -> None:
    """Close an :func:`open_output_file` stream: into place when the run is ``complete``,
    else discarded (a device or pipe is just closed)."""
    if not complete and isinstance(stream, ReplacingTextFile):
        stream.discard()
    else:
        stream.close()


def check_not_an_input(out: Path, path: str | os.PathLike[str]) -> None:
    """:class:`UsageError` when ``out`` is the input file ``path``: the report would replace it."""
    try:
        same = os.path.samefile(out, path)
    except OSError:
        same = False
    if same:
        raise UsageError(f"--out {out} is one of the inputs ({path}); the report would replace it")


def open_output_file(path: str | Path) -> TextIO:
    """``path`` opened for writing text (its missing folders made; the file itself appears on
    close, see :class:`ReplacingTextFile`), or :class:`OutputError` saying why not."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    try:
        if p.exists() and not p.is_file():
            # /dev/null, /dev/stdout, a named pipe: written to as they are, never replaced.
            return open(p, "w", encoding="utf-8", newline="")
        p.parent.mkdir(parents=True, exist_ok=True)
        return ReplacingTextFile(p)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def ensure_output_dir(path: str | Path) -> Path:
    """The folder ``path``, made if missing, or :class:`OutputError` when it cannot be (a file is in the way)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{path}: is a file; give a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # A file higher up (bad/text.jpg/out) or no permission.
        raise OutputError(f"{path}: cannot make this folder: {exc.strerror or exc}") from None
    return p


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    return value


def dumps(record: Any, indent: int | None = None) -> str:
    return json.dumps(_clean(record), indent=indent, ensure_ascii=False)


class RecordWriter:
    """Write records to ``stream`` in one of :data:`OUTPUT_FORMATS` (a writer of :data:`WRITERS`).

    ``columns`` fixes the CSV header and table columns; ``flatten`` turns a
    record into one flat CSV/table row (nested detail stays in JSON only).
    ``csv_columns``/``csv_rows``, when given, make the CSV differ from the table:
    ``csv_rows`` turns a record into any number of rows (one per face). ``table_row``, when
    given, is the table's own flattening (a borderline verdict marked ``fake?``), and
    ``caption``, set any time before the writer closes, a line under the table.
    """

    def __init__(
        self,
        fmt: str,
        columns: Sequence[str],
        stream: TextIO | None = None,
        flatten: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        title: str | None = None,
        csv_columns: Sequence[str] | None = None,
        csv_rows: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None,
        table_row: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        caption: str | None = None,
    ):
        if fmt not in WRITERS:
            raise ValueError(f"unknown output format {fmt}")
        self.fmt = fmt
        self.columns = list(columns)
        self.stream = stream or sys.stdout
        self.flatten = flatten or (lambda r: r)
        self.title = title
        self.csv_columns = list(csv_columns) if csv_columns is not None else self.columns
        self.csv_rows = csv_rows or (lambda r: [self.flatten(r)])
        self.table_row = table_row or self.flatten
        self.caption = caption
        self.count = 0
        self._format = WRITERS[fmt](self)

    def __enter__(self) -> "RecordWriter":
        self._format.begin()
        return self

    def write(self, record: dict[str, Any]) -> None:
        self._format.write(record)
        self.count += 1
        if self._format.streamed:
            self.stream.flush()

    def __exit__(self, *exc: Any) -> None:
        self._format.end()
        self.stream.flush()


class _Format:
    """One output format: what goes before the records, each record, what goes after."""

    streamed = True  # flushed record by record (the table is drawn at the end)

    def __init__(self, writer: RecordWriter):
        self.w = writer

    def begin(self) -> None:
        pass

    def write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def end(self) -> None:
        pass


class _JsonFormat(_Format):
    """A JSON array, one record a line."""

    def begin(self) -> None:
        self.w.stream.write("[")

    def write(self, record: dict[str, Any]) -> None:
        self.w.stream.write(("," if self.w.count else "") + "\n" + dumps(record))

    def end(self) -> None:
        self.w.stream.write("\n]\n" if self.w.count else "]\n")


class _JsonlFormat(_Format):
    """JSON Lines: one record a line."""

    def write(self, record: dict[str, Any]) -> None:
        self.w.stream.write(dumps(record) + "\n")


class _CsvFormat(_Format):
    """CSV with a header of the writer's columns; records flattened."""

    def begin(self) -> None:
        self._csv = csv.DictWriter(self.w.stream, fieldnames=self.w.csv_columns, extrasaction="ignore", lineterminator="\n")
        self._csv.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        for row in self.w.csv_rows(record):
            self._csv.writerow({k: _csv_value(v) for k, v in row.items()})


class _TableFormat(_Format):
    """A Rich table on a terminal, drawn once every record is in."""

    streamed = False

    def __init__(self, writer: RecordWriter):
        super().__init__(writer)
        self._rows: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append(self.w.table_row(record))

    def end(self) -> None:
        self._print_table()

    @property
    def columns(self) -> list[str]:
        return self.w.columns

    @property
    def stream(self) -> TextIO:
        return self.w.stream

    @property
    def title(self) -> str | None:
        return self.w.title

    def _print_table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        # The table is for people on a terminal: columns empty in every row (no method for
        # a binary model, no error) are left out; short columns never wrap ("ver/dic/t"),
        # while the first (the file), the error message and other long text (output paths)
        # fold to share the width left. On a narrow terminal detail columns go first, so
        # that those stay readable (the machine formats keep everything).
        shown = [c for c in self.columns if any(_clean(row.get(c)) is not None for row in self._rows)]
        shown = shown or list(self.columns)
        console = Console(file=self.stream)
        cells = [[_table_value(row.get(c)) for c in shown] for row in self._rows]

        def folding(i: int, column: str) -> bool:
            longest = max((len(r[i]) for r in cells), default=0)
            return i == 0 or column == "error" or longest > TABLE_MIN_FOLDED_WIDTH

        def width(i: int, column: str) -> int:
            return max([len(column), *(len(r[i]) for r in cells)])

        for detail in TABLE_DETAIL_COLUMNS:
            folded = [i for i, c in enumerate(shown) if folding(i, c)]
            fixed = sum(width(i, c) + 3 for i, c in enumerate(shown) if i not in folded)
            wanted = sum(min(TABLE_MIN_FOLDED_WIDTH, width(i, shown[i])) + 3 for i in folded)
            if console.width - fixed - 1 >= wanted:
                break
            if detail in shown[1:]:
                i = shown.index(detail)
                shown.pop(i)
                for r in cells:
                    r.pop(i)
        table = Table(title=self.title, caption=self.w.caption, show_lines=False)
        for i, col in enumerate(shown):
            if folding(i, col):
                table.add_column(col, overflow="fold", ratio=1)
            else:
                table.add_column(col, no_wrap=True)
        folded = {i for i, c in enumerate(shown) if folding(i, c)}
        for r in cells:
            table.add_row(*(breakable(v) if i in folded else v for i, v in enumerate(r)))
        console.print(table)


# The output formats: adding one is a class above and a line here (and --format's choices follow).
WRITERS: dict[str, type[_Format]] = {
    "table": _TableFormat,
    "json": _JsonFormat,
    "jsonl": _JsonlFormat,
    "csv": _CsvFormat,
}
OUTPUT_FORMATS = tuple(WRITERS)


# Columns a terminal table leaves out, in this order, while the folding ones (the file,
# the error) would get fewer than TABLE_MIN_FOLDED_WIDTH characters each.
TABLE_DETAIL_COLUMNS = (
    "box", "det_prob", "x1", "y1", "x2", "y2", "seconds", "frames_with_face", "frames_sampled", "aggregate",
    "target_prob", "mode", "blank", "heatmap", "sheet", "tracks", "face_count", "timestamp", "method",
)
TABLE_MIN_FOLDED_WIDTH = 24


# Where a path or identifier may break across lines: after a separator ("/", "_", "-", a
# space) or before a dot ("angelina_jolie.jpg" -> "angelina_" "jolie" ".jpg").
_BREAKS = re.compile(r"(?<=[/\\_\-\s,])|(?=\.)")


def breakable(text: str) -> Any:
    """``text`` as a Rich renderable for a table cell that wraps at word and path boundaries
    (:data:`_BREAKS`) instead of mid-word ("angelina_jolie.jp|g"); a piece wider than the
    cell is folded only then."""
    from rich.measure import Measurement
    from rich.text import Text

    pieces = [p for p in _BREAKS.split(text) if p]

    class _Breakable:
        def __rich_measure__(self, console: Any, options: Any) -> Measurement:
            longest = max((len(p.rstrip()) for p in pieces), default=0)
            return Measurement(min(longest, options.max_width), min(len(text), options.max_width))

        def __rich_console__(self, console: Any, options: Any) -> Any:
            width = max(1, options.max_width)
            lines, line = [], ""
            for piece in pieces:
                if line and len(line) + len(piece.rstrip()) > width:
                    lines.append(line.rstrip())
                    line = piece.lstrip()
                else:
                    line += piece
            lines.append(line.rstrip())
            yield Text("\n".join(lines), overflow="fold")

    return _Breakable()


def _csv_value(value: Any) -> Any:
    value = _clean(value)
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def _table_value(value: Any) -> str:
    value = _clean(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:.0f}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def write_csv_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV text for a small in-memory table (used by serve downloads and reports)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(v) for k, v in row.items()})
    return buf.getvalue()
