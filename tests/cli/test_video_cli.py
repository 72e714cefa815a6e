"""``dfdetect video`` (and videos given to ``dfdetect predict``) through Typer's CliRunner."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FFPP_C23, ORIGINAL_004, REPO, need_shared
from deepfake_cli.cli.app import app
from deepfake_cli.inference.video import FRAME_COLUMNS

runner = CliRunner()
ORIGINAL_519 = FFPP_C23 / "original_sequences" / "youtube" / "c23" / "videos" / "519.mp4"


@pytest.fixture
def batch(tmp_path):
    """Two real videos, a truncated copy and a text file named .mp4."""
    need_shared(ORIGINAL_004, ORIGINAL_519)
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a_004.mp4").symlink_to(ORIGINAL_004)
    (folder / "b_519.mp4").symlink_to(ORIGINAL_519)
    data = ORIGINAL_519.read_bytes()
    (folder / "c_truncated.mp4").write_bytes(data[: len(data) // 3])
    (folder / "d_text.mp4").write_text("this is not a video\n")
    return folder


def read_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def test_batch_with_broken_videos_goes_on(batch, sepcnn_ckpt, tmp_path):
    report = tmp_path / "report.csv"
    result = runner.invoke(app, ["video", str(batch), "-m", str(sepcnn_ckpt), "--every", "150",
                                 "--out", str(report), "--json"])
    assert result.exit_code == 4, result.output
    summaries = json.loads(result.stdout)
    by_name = {Path(s["video"]).name: s for s in summaries}
    assert [Path(s["video"]).name for s in summaries] == ["a_004.mp4", "b_519.mp4", "c_truncated.mp4", "d_text.mp4"]
    assert by_name["a_004.mp4"]["verdict"] in ("real", "fake") and by_name["b_519.mp4"]["status"] == "ok"
    assert by_name["c_truncated.mp4"]["status"] == "error" and "c_truncated.mp4" in by_name["c_truncated.mp4"]["error"]
    assert by_name["d_text.mp4"]["status"] == "error" and "cannot open video" in by_name["d_text.mp4"]["error"]
    assert "skipped" in result.stderr and "4 videos: " in result.stderr and "2 errors" in result.stderr

    columns, rows = read_csv(report.read_text())
    assert columns == list(FRAME_COLUMNS)
    frames = {}
    for r in rows:
        frames.setdefault(Path(r["video"]).name, set()).add(int(r["frame"]) if r["frame"] else None)
    # One or more rows per sampled frame: every 150th frame of 309 and 751 frames.
    assert frames["a_004.mp4"] == {0, 150, 300} and frames["b_519.mp4"] == {0, 150, 300, 450, 600, 750}
    errors = [r for r in rows if r["status"] == "error"]
    assert {Path(r["video"]).name for r in errors} == {"c_truncated.mp4", "d_text.mp4"}
    faces = [r for r in rows if r["status"] == "face"]
    assert all(r["track_id"] != "" and 0 <= float(r["p_fake"]) <= 1 for r in faces)


def test_rows_to_stdout_and_annotated_video(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_519)
    out = tmp_path / "annotated.avi"
    result = runner.invoke(app, ["video", str(ORIGINAL_519), "-m", str(sepcnn_ckpt), "--frames", "4",
                                 "--start", "5", "--end", "25", "--out", "-", "--annotate", str(out)])
    assert result.exit_code == 0, result.output
    columns, rows = read_csv(result.stdout)
    assert columns == list(FRAME_COLUMNS)
    # The centres of 4 equal parts of [5 s, 25 s) at 25 fps (frames 125..624, 500 frames).
    assert sorted({int(r["frame"]) for r in rows}) == [187, 312, 437, 562]
    assert "519.mp4: " in result.stderr and "annotated" in result.stderr
    cap = cv2.VideoCapture(str(out))
    assert (int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (751, 640, 480)
    cap.release()


def test_fail_on_fake_and_aggregate(sepcnn_ckpt):
    need_shared(ORIGINAL_004)
    args = ["video", str(ORIGINAL_004), "-m", str(sepcnn_ckpt), "--frames", "3", "--jsonl"]
    result = runner.invoke(app, args + ["--threshold", "0", "--fail-on-fake", "--aggregate", "max"])
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["verdict"] == "fake" and summary["aggregate"] == "max"
    assert summary["p_fake"] == summary["p_fake_by_aggregate"]["max"]
    result = runner.invoke(app, args + ["--threshold", "1", "--fail-on-fake"])
    assert result.exit_code == 0 and json.loads(result.stdout)["verdict"] == "real"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--every", "5", "--frames", "3"], "--every and --frames"),
        (["--out", "-", "--json"], "--out -"),
        (["--aggregate", "median"], "video.aggregate"),
        (["--annotate", "x.gif"], "video file name"),
        (["--end", "inf"], "'video.end' must be a finite number"),
        (["--start", "nan"], "'video.start' must be a finite number"),
        (["--fps", "inf"], "'video.fps' must be a finite number"),
        (["--out", "{tmp}"], "is a folder; give a file name"),
        (["--annotate", "{tmp}/file.txt/out.mp4"], "file.txt: is a file; give a folder"),
    ],
)
def test_usage_errors(sepcnn_ckpt, extra, message, tmp_path):
    need_shared(ORIGINAL_004)
    (tmp_path / "file.txt").write_text("x")
    extra = [e.format(tmp=tmp_path) for e in extra]
    result = runner.invoke(app, ["video", str(ORIGINAL_004), "-m", str(sepcnn_ckpt), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_one_annotated_file_for_two_videos_is_a_usage_error(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_004, ORIGINAL_519)
    result = runner.invoke(app, ["video", str(ORIGINAL_004), str(ORIGINAL_519), "-m", str(sepcnn_ckpt),
                                 "--annotate", str(tmp_path / "one.mp4")])
    assert result.exit_code == 2 and "pass a folder" in result.stderr


def test_no_videos_is_fatal(sepcnn_ckpt, tmp_path):
    result = runner.invoke(app, ["video", str(tmp_path), "-m", str(sepcnn_ckpt)])
    assert result.exit_code == 1 and "no video files" in result.stderr


def test_predict_routes_videos_to_the_scanner(batch, sepcnn_ckpt, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_blank.png"), np.zeros((80, 80, 3), np.uint8))
    (folder / "b_004.mp4").symlink_to(ORIGINAL_004)
    (folder / "c_text.mp4").write_text("not a video")
    result = runner.invoke(app, ["predict", str(folder), "-m", str(sepcnn_ckpt), "--jsonl"],
                           env={"DFDETECT_VIDEO_FRAMES": "2"})
    assert result.exit_code == 4, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(Path(r["path"]).name, r["status"]) for r in records] == [
        ("a_blank.png", "no_face"), ("b_004.mp4", "ok"), ("c_text.mp4", "error")]
    video = records[1]
    assert video["kind"] == "video" and video["verdict"] in ("real", "fake") and video["frames"]["sampled"] == 2
    assert records[2]["kind"] == "video"  # a video that failed is still one (filters on "kind")
    assert video["face_count"] >= 2 and video["tracks"]
    result = runner.invoke(app, ["predict", str(folder / "b_004.mp4"), "-m", str(sepcnn_ckpt), "--csv",
                                 "--threshold", "0", "--fail-on-fake"], env={"DFDETECT_VIDEO_FRAMES": "2"})
    assert result.exit_code == 3, result.output
    _, rows = read_csv(result.stdout)
    assert len(rows) == 1 and rows[0]["verdict"] == "fake"


def test_a_photo_named_as_a_video_source_is_an_error_row(sepcnn_ckpt, tmp_path):
    """OpenCV would open it as a 1-frame '25 fps video'; the scanner says what it is instead,
    by its name or, renamed .mp4, by its content."""
    from conftest import PHOTOS

    need_shared(PHOTOS, ORIGINAL_519)
    photo = PHOTOS / "kate_siegel.jpg"
    renamed = tmp_path / "clip.mp4"
    renamed.write_bytes(photo.read_bytes())
    result = runner.invoke(app, ["video", str(photo), str(renamed), str(ORIGINAL_519), "-m", str(sepcnn_ckpt),
                                 "--every", "250", "--json"])
    assert result.exit_code == 4, result.output
    first, second, third = json.loads(result.stdout)
    assert first["status"] == "error" and "an image, not a video" in first["error"] and "dfdetect predict" in first["error"]
    assert second["status"] == "error" and "a JPEG image named as a video" in second["error"]
    assert third["status"] == "ok"


def test_a_sampling_option_replaces_the_configured_way_of_sampling(sepcnn_ckpt, tmp_path):
    """Precedence: defaults < --config < environment < options, also across --every/--fps/--frames."""
    need_shared(ORIGINAL_004)
    cfg = tmp_path / "frames.toml"
    cfg.write_text("[video]\nframes = 3\n")
    for args, env, expected in (
        (["--every", "150"], {"DFDETECT_VIDEO_FPS": "1"}, {"every": 150}),
        (["--fps", "0.25"], {}, {"fps": 0.25}),
        (["--frames", "2"], {"DFDETECT_VIDEO_FPS": "1"}, {"frames": 2}),
        ([], {}, {"frames": 3}),
    ):
        result = runner.invoke(app, ["video", str(ORIGINAL_004), "-m", str(sepcnn_ckpt), "-c", str(cfg), "--json", *args],
                               env=env)
        assert result.exit_code in (0, 3), result.output
        assert json.loads(result.stdout)[0]["sampling"] == expected, (args, env)


def test_out_naming_an_input_is_refused_and_the_input_kept(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_004)
    video = tmp_path / "evidence.mp4"
    video.write_bytes(ORIGINAL_004.read_bytes())
    before = video.read_bytes()
    result = runner.invoke(app, ["video", str(tmp_path), "-m", str(sepcnn_ckpt), "--out", str(video), "--every", "100"])
    assert result.exit_code == 2 and "is one of the inputs" in " ".join(result.stderr.split())
    result = runner.invoke(app, ["predict", str(video), "-m", str(sepcnn_ckpt), "--out", str(video), "--csv"])
    assert result.exit_code == 2 and "is one of the inputs" in " ".join(result.stderr.split())
    assert video.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["evidence.mp4"]


def test_sigterm_mid_scan_keeps_the_previous_report_and_leaves_no_partial_file(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_519)
    report = tmp_path / "report.csv"
    report.write_text("previous report\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepfake_cli", "video", str(ORIGINAL_519), "-m", str(sepcnn_ckpt), "--every", "1",
         "--out", str(report), "--annotate", str(tmp_path / "annotated.mp4")],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # Wait until rows are being written (the partial file beside the report has grown).
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        partial = [p for p in tmp_path.glob(".report.partial-*") if p.stat().st_size > 200]
        if partial:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the scan ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err.decode()
    assert report.read_text() == "previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv"]  # no partial report or video



def test_a_borderline_video_is_marked_in_its_summary_tracks_rows_and_table(sepcnn_ckpt, tmp_path):
    need_shared(ORIGINAL_004)
    args = ["video", str(ORIGINAL_004), "-m", str(sepcnn_ckpt), "--frames", "3", "--aggregate", "max"]
    p_fake = json.loads(runner.invoke(app, [*args, "--jsonl"]).stdout)["p_fake"]
    near = [*args, "--threshold", f"{p_fake - 0.02:.6f}"]
    rows_csv = tmp_path / "rows.csv"
    result = runner.invoke(app, [*near, "--jsonl", "--fail-on-fake", "--out", str(rows_csv)])
    assert result.exit_code == 3, result.output  # fake is fake, borderline or not
    summary = json.loads(result.stdout)
    assert summary["verdict"] == "fake" and summary["borderline"] is True
    assert summary["margin"] == pytest.approx(0.02, abs=2e-6)
    top = max(summary["tracks"], key=lambda t: t["p_fake"])
    assert top["borderline"] is True and top["margin"] == pytest.approx(0.02, abs=2e-6)
    assert "borderline: margin +0.020" in result.stderr and "(1 borderline)" in result.stderr
    _, rows = read_csv(rows_csv.read_text())
    faces = [r for r in rows if r["status"] == "face"]
    assert faces and all(r["borderline"] in ("True", "False") and r["margin"] != "" for r in faces)
    assert all((r["borderline"] == "True") == (abs(float(r["margin"])) < 0.1) for r in faces)
    csv_summary = next(csv.DictReader(io.StringIO(runner.invoke(app, [*near, "--format", "csv"]).stdout)))
    assert csv_summary["verdict"] == "fake" and csv_summary["borderline"] == "True"
    table = runner.invoke(app, [*near, "--format", "table"], env={"COLUMNS": "80"}).stdout
    assert "fake?" in table and "?: borderline, p_fake within 0.1 of the threshold" in table, table
    far = runner.invoke(app, [*args, "--threshold", f"{max(0.0, p_fake - 0.3):.6f}", "--format", "table"],
                        env={"COLUMNS": "80"})
    assert "fake?" not in far.stdout and "borderline" not in far.stderr


def test_a_batch_of_videos_shows_which_video_and_the_running_counts_on_a_terminal(sepcnn_ckpt, monkeypatch, tmp_path):
    need_shared(ORIGINAL_004, ORIGINAL_519)
    from rich.console import Console

    from deepfake_cli.cli import video_cmd

    args = ["video", str(ORIGINAL_004), str(ORIGINAL_519), "-m", str(sepcnn_ckpt), "--frames", "2", "--jsonl",
            "--borderline-band", "1"]
    plain = runner.invoke(app, args)
    terminal = io.StringIO()
    monkeypatch.setattr(video_cmd, "stderr", Console(file=terminal, force_terminal=True, width=200))
    shown = runner.invoke(app, args)
    assert shown.exit_code == plain.exit_code == 0, shown.output
    drawn = terminal.getvalue()
    assert "video 1 of 2" in drawn and "video 2 of 2; so far " in drawn and "519.mp4" in drawn, drawn
    assert "(1 borderline)" in drawn.split("video 2 of 2")[-1], drawn  # the first video's verdict, counted

    def without_timings(text: str) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in ("timings", "sampled_fps")}
                for line in text.splitlines()]

    assert without_timings(shown.stdout) == without_timings(plain.stdout)  # stdout as in a pipe
    one = runner.invoke(app, args[:2] + args[3:])  # one video: no batch position
    assert one.exit_code == 0 and "video 1 of 1" not in terminal.getvalue()
