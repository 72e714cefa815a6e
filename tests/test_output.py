"""Result records as JSON, JSON Lines, CSV or a terminal table, and output paths."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from deepfake_cli.errors import OutputError, UsageError
from deepfake_cli.output import RecordWriter, choose_format, ensure_output_dir, format_from_extension, open_output_file

COLUMNS = ("path", "status", "verdict", "p_fake", "method", "box", "error")
RECORDS = [
    {"path": "/data/scans/2026-11-22/incoming/witness_statement_video_frame_0001.jpg", "status": "ok",
     "verdict": "fake", "p_fake": 0.912345678, "method": None, "box": [1.04, 2.5, 30.0, 40.0], "error": None},
    {"path": "b.png", "status": "error", "verdict": None, "p_fake": math.nan, "method": None, "box": None,
     "error": "b.png: truncated or corrupt image (cannot identify image file 'b.png')"},
]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_format_flag_then_extension_then_terminal():
    assert choose_format(csv_=True, out="x.json") == "csv"
    assert choose_format(out="x.JSON") == "json" and choose_format(out="x.txt") == "jsonl"
    assert choose_format(stream=_Tty()) == "table" and choose_format(stream=io.StringIO()) == "jsonl"
    assert choose_format(out="-", stream=io.StringIO()) == "jsonl"
    assert [format_from_extension(p) for p in ("a.CSV", "b.jsonl", "run.v2.json", "c.txt", "dir.json/out")] == [
        "csv", "jsonl", "json", None, None]
    with pytest.raises(UsageError, match="not --json and --csv"):
        choose_format(json_=True, csv_=True)


def test_one_format_option_with_the_old_flags_as_aliases():
    from deepfake_cli.output import OUTPUT_FORMATS, WRITERS

    assert OUTPUT_FORMATS == tuple(WRITERS) == ("table", "json", "jsonl", "csv")
    assert choose_format(fmt="csv", out="x.json") == "csv" and choose_format(fmt="table") == "table"
    assert choose_format(json_=True, fmt="json") == "json"  # the alias agrees
    with pytest.raises(UsageError, match="--format csv and --json"):
        choose_format(json_=True, fmt="csv")
    with pytest.raises(UsageError, match="unknown output format 'xml'"):
        choose_format(fmt="xml")


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_machine_formats_parse_back(fmt):
    stream = io.StringIO()
    with RecordWriter(fmt, COLUMNS, stream) as writer:
        for record in RECORDS:
            writer.write(record)
    text = stream.getvalue()
    if fmt == "json":
        rows = json.loads(text)
    elif fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["path"] for r in rows] == [r["path"] for r in RECORDS]
    if fmt == "csv":
        assert rows[1]["p_fake"] == "" and json.loads(rows[0]["box"]) == [1.04, 2.5, 30.0, 40.0]
    else:
        assert rows[1]["p_fake"] is None  # NaN is not JSON: null
        assert rows[0]["p_fake"] == pytest.approx(0.912345678)


def test_empty_json_is_an_empty_array():
    stream = io.StringIO()
    with RecordWriter("json", COLUMNS, stream):
        pass
    assert json.loads(stream.getvalue()) == []


def test_table_fits_a_terminal_without_splitting_short_columns():
    stream = io.StringIO()  # Rich draws it 80 columns wide, as on a small terminal
    with RecordWriter("table", COLUMNS, stream, title="dfdetect predict") as writer:
        for record in RECORDS:
            writer.write(record)
    lines = stream.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if "status" in line)
    # Short headers and values stay whole; the long path folds over lines instead.
    for word in ("status", "verdict", "p_fake", "error"):
        assert word in header
    assert "0.9123" in stream.getvalue() and "…" not in stream.getvalue()  # folded, never cut
    assert "method" not in header  # empty in every row: left out of the table
    assert sum("witness" in line or "frame_0001" in line for line in lines) >= 1


def test_a_narrow_terminal_leaves_detail_columns_out_before_the_file_name_gets_unreadable(monkeypatch):
    from deepfake_cli.inference.predict import IMAGE_COLUMNS

    record = {"path": "/work/newsroom/incoming/2026-11-22/paul_rudd.jpg", "status": "ok", "verdict": "real",
              "p_fake": 0.0485, "face_count": 1, "box": [120.3, 88.1, 400.2, 500.9], "det_prob": 0.99998,
              "error": "x.jpg: not a recognised image format"}

    def table(width: int) -> str:
        monkeypatch.setenv("COLUMNS", str(width))
        stream = io.StringIO()
        with RecordWriter("table", IMAGE_COLUMNS, stream) as writer:
            writer.write(record)
        return stream.getvalue()

    narrow = table(80)
    header = next(line for line in narrow.splitlines() if "status" in line)
    assert "box" not in header and "det_prob" not in header and "p_fake" in header
    assert "/work/newsroom/" in narrow  # the file name in readable pieces (not 3 letters a line)
    wide = table(200)
    assert "box" in wide and "det_prob" in wide and record["path"] in wide
    # Long output paths (gradcam's heatmap/overlay/sheet files) fold too, instead of taking
    # every character from the input's name, even on a wide terminal.
    from deepfake_cli.inference.gradcam import GRADCAM_COLUMNS

    monkeypatch.setenv("COLUMNS", "120")
    stream = io.StringIO()
    out = "/home/analyst/cases/2026-11-22/gradcam_output/paul_rudd_face0_predicted"
    with RecordWriter("table", GRADCAM_COLUMNS, stream) as writer:
        writer.write({"path": "shots/paul_rudd.jpg", "status": "ok", "face": 0, "mode": "overlay", "target": "real",
                      "target_prob": 0.95, "p_fake": 0.05, "label": "real", "heatmap": out + ".npy",
                      "overlay": out + ".png", "sheet": out + "_sheet.png", "box": [1.0, 2.0, 3.0, 4.0],
                      "det_prob": 0.99, "blank": False})
    text = stream.getvalue()
    assert "shots/paul_rudd.jpg" in text and "/home/analyst/cases/" in text and "p_fake" in text


def test_a_table_without_rows_is_its_header(monkeypatch):
    """An interrupted scan on a terminal (Ctrl-C before the first result) still closes its table."""
    monkeypatch.setenv("COLUMNS", "80")
    stream = io.StringIO()
    with RecordWriter("table", COLUMNS, stream, title="dfdetect predict"):
        pass
    assert "path" in stream.getvalue() and "status" in stream.getvalue()


def test_output_paths(tmp_path):
    with open_output_file(tmp_path / "new" / "deeper" / "rows.csv") as fh:
        fh.write("x\n")
    assert (tmp_path / "new" / "deeper" / "rows.csv").read_text() == "x\n"
    with pytest.raises(OutputError, match="is a folder; give a file name"):
        open_output_file(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(OutputError, match="cannot write"):
        open_output_file(tmp_path / "file.txt" / "rows.csv")
    assert ensure_output_dir(tmp_path / "a" / "b").is_dir()
    with pytest.raises(OutputError, match="is a file; give a folder"):
        ensure_output_dir(tmp_path / "file.txt")
    with pytest.raises(OutputError, match="cannot make this folder"):
        ensure_output_dir(tmp_path / "file.txt" / "sub")


def test_two_writers_of_one_output_file_never_interleave(tmp_path):
    """Two runs with the same --out (overlapping cron jobs): the last to finish wins, whole."""
    import os

    target = tmp_path / "same.csv"
    target.write_text("old\n")
    first, second = open_output_file(target), open_output_file(target)
    first.write("a,1\n" * 1000)
    second.write("b,2\n")
    first.write("a,1\n")
    assert target.read_text() == "old\n"  # nothing replaced while they write
    second.close()
    assert target.read_text() == "b,2\n"
    first.close()
    assert target.read_text() == "a,1\n" * 1001
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.csv"]  # no partial left
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    # Devices and pipes are written to as they are (scripts send rows to /dev/null).
    with open_output_file("/dev/null") as fh:
        fh.write("dropped\n")
    assert Path("/dev/null").exists() and not Path("/dev/null").is_file()


def test_partial_files_left_by_a_killed_run_are_swept_at_the_next_start(tmp_path):
    import os
    import subprocess
    import time

    from deepfake_cli.output import partial_path

    dead = subprocess.Popen(["true"])
    dead.wait()
    target = tmp_path / "report.csv"
    stale = tmp_path / f".report.partial-{dead.pid}-0a1b2c3d.csv"
    recent = tmp_path / f".report.partial-{dead.pid}-11111111.csv"
    live = tmp_path / f".report.partial-{os.getppid()}-22222222.csv"
    other = tmp_path / f".other.partial-{dead.pid}-33333333.csv"
    for p in (stale, recent, live, other):
        p.write_text("half")
    old = time.time() - 3600
    for p in (stale, live, other):
        os.utime(p, (old, old))
    partial_path(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (recent, live, other))


@pytest.mark.parametrize("text", ["a,b\n", "x" * 2**20])
def test_a_full_disk_while_writing_out_names_the_file(tmp_path, text):
    """The file's descriptor is made /dev/full's: every write to it is ENOSPC, as on a full disk."""
    import errno
    import os

    from deepfake_cli.output import finish_output, open_output_file

    target = tmp_path / "out.csv"
    stream = open_output_file(target)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, stream.buffer.fileno())
    os.close(full)
    with pytest.raises(OSError) as info:
        stream.write(text)
        stream.flush()
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    finish_output(stream, False)
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_the_target_whole_or_leaves_it_as_it_was(tmp_path):
    from deepfake_cli.output import atomic_path, atomic_write_text

    target = tmp_path / "sub" / "report.json"
    atomic_write_text(target, "first\n")
    assert target.read_text() == "first\n"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stopped")
    assert target.read_text() == "first\n" and sorted(p.name for p in target.parent.iterdir()) == ["report.json"]
    with atomic_path(target, keep_suffix=True) as tmp:
        assert tmp.suffix == ".json" and tmp.parent == target.parent
        tmp.write_text("second\n")
    assert target.read_text() == "second\n"


def test_table_cells_break_at_path_and_word_boundaries_at_80_columns():
    from rich.console import Console

    from deepfake_cli.output import breakable

    buf = io.StringIO()
    path = "../shared/data/photos/faces/angelina_jolie.jpg"
    table_columns = ("path", "status", "verdict", "p_fake", "face_count", "error")
    record = {"path": path, "status": "ok", "verdict": "real", "p_fake": 0.25, "face_count": 1, "error": None}
    with RecordWriter("table", table_columns, buf) as writer:
        for _ in range(2):
            writer.write(record)
    # Rebuild at a width where the path must wrap.
    narrow = io.StringIO()
    console = Console(file=narrow, width=30)
    from rich.table import Table

    table = Table()
    table.add_column("path", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_row(breakable(path), "ok")
    console.print(table)
    cells = "".join(line.split("│")[1].strip() for line in narrow.getvalue().splitlines() if line.startswith("│"))
    assert cells.replace(" ", "") == path
    lines = [line.split("│")[1].strip() for line in narrow.getvalue().splitlines() if line.startswith("│")]
    assert all(a.endswith(("/", "_")) or b.startswith(".") for a, b in zip(lines, lines[1:])), narrow.getvalue()
    assert ".jpg" in lines
    wide = buf.getvalue()
    assert path in wide or "angelina_jolie.jpg" in wide
