"""``dfdetect predict`` through Typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import MESONET_PHOTOS, PHOTOS, make_checkpoint, need_shared
from deepfake_cli.cli.app import app

runner = CliRunner()


@pytest.fixture
def mixed_folder(tmp_path):
    """Good images, a zero-byte file, a text file named .jpg and a truncated JPEG."""
    need_shared(PHOTOS)
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a_face.jpg").write_bytes((PHOTOS / "kate_siegel.jpg").read_bytes())
    Image.new("RGB", (320, 240), (30, 90, 200)).save(folder / "b_noface.png")
    (folder / "c_zero.jpg").write_bytes(b"")
    (folder / "d_text.jpg").write_text("this is not an image\n")
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(buf, "JPEG")
    (folder / "e_truncated.jpg").write_bytes(buf.getvalue()[:3000])
    return folder


EXPECTED_STATUS = {"a_face.jpg": "ok", "b_noface.png": "no_face", "c_zero.jpg": "error",
                   "d_text.jpg": "error", "e_truncated.jpg": "error"}


def test_mixed_folder_jsonl_rows_and_exit_code(mixed_folder, sepcnn_ckpt):
    result = runner.invoke(app, ["predict", str(mixed_folder), "-m", str(sepcnn_ckpt), "--jsonl"])
    assert result.exit_code == 4, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {Path(r["path"]).name: r["status"] for r in rows} == EXPECTED_STATUS
    ok = next(r for r in rows if r["status"] == "ok")
    assert ok["face_count"] == 1 and 0.0 <= ok["p_fake"] <= 1.0 and ok["verdict"] in ("real", "fake")
    face = ok["faces"][0]
    assert len(face["box"]) == 4 and face["det_prob"] > 0.95 and set(face["probs"]) == {"real", "fake"}
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["status"] == "error"}
    assert "empty" in errors["c_zero.jpg"] and "not a recognised" in errors["d_text.jpg"]
    assert "truncated" in errors["e_truncated.jpg"]
    assert "3 errors" in result.stderr


def test_csv_and_json_outputs_parse(mixed_folder, sepcnn_ckpt):
    result = runner.invoke(app, ["predict", str(mixed_folder), "-m", str(sepcnn_ckpt), "--csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [Path(r["path"]).name for r in rows] == sorted(EXPECTED_STATUS)
    assert {Path(r["path"]).name: r["status"] for r in rows} == EXPECTED_STATUS
    result = runner.invoke(app, ["predict", str(mixed_folder / "a_face.jpg"), "-m", str(sepcnn_ckpt), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert isinstance(data, list) and data[0]["status"] == "ok"


def test_format_option_writes_what_its_alias_writes(mixed_folder, sepcnn_ckpt):
    for fmt in ("csv", "json", "jsonl"):
        alias = runner.invoke(app, ["predict", str(mixed_folder), "-m", str(sepcnn_ckpt), f"--{fmt}"])
        option = runner.invoke(app, ["predict", str(mixed_folder), "-m", str(sepcnn_ckpt), "-f", fmt])
        assert option.exit_code == alias.exit_code and option.stdout == alias.stdout
    result = runner.invoke(app, ["predict", str(mixed_folder), "-m", str(sepcnn_ckpt), "--format", "xml"])
    assert result.exit_code == 2 and "unknown output format" in result.output


def test_fail_on_fake_wins_over_partial(mixed_folder, tmp_path):
    always_fake = make_checkpoint(tmp_path / "zero_threshold.pt", threshold=0.0)
    result = runner.invoke(app, ["predict", str(mixed_folder), "-m", str(always_fake), "--jsonl", "--fail-on-fake"])
    assert result.exit_code == 3
    result = runner.invoke(app, ["predict", str(mixed_folder / "a_face.jpg"), "-m", str(always_fake), "--jsonl", "--threshold", "1.0", "--fail-on-fake"])
    assert result.exit_code == 0 and json.loads(result.stdout)["verdict"] == "real"


def test_no_detect_multiclass_reports_method(tmp_path, multiclass_ckpt):
    crop = tmp_path / "crop.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(crop)
    result = runner.invoke(app, ["predict", str(crop), "-m", str(multiclass_ckpt), "--no-detect", "--jsonl"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["face_count"] == 1 and row["faces"][0]["det_prob"] is None
    assert row["method"] in ("DeepFakeDetection", "Deepfakes", "Face2Face", "FaceShifter", "FaceSwap", "NeuralTextures")
    assert len(row["faces"][0]["probs"]) == 7


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["predict", "{missing}", "-m", "{missing_model}"], 1, "model file not found"),
        (["predict", "{missing}", "-m", "resnet18"], 1, "architecture, not a trained model"),
        (["predict", "{missing}", "-m", "{ckpt}", "--json", "--csv"], 2, "choose one output format"),
        (["predict", "{empty_dir}", "-m", "{ckpt}"], 1, "no image or video files found"),
        (["predict", "{missing}", "-m", "{ckpt}", "--jsonl"], 1, "no such file"),
        (["predict", "{missing}", "-m", "{ckpt}", "--threshold", "2"], 2, "predict.threshold"),
    ],
)
def test_fatal_and_usage_errors(tmp_path, sepcnn_ckpt, args, code, needle, monkeypatch):
    monkeypatch.setenv("DFDETECT_MODELS_DIR", str(tmp_path / "no_models"))
    (tmp_path / "empty").mkdir()
    fill = {"missing": str(tmp_path / "missing.jpg"), "ckpt": str(sepcnn_ckpt), "empty_dir": str(tmp_path / "empty"),
            "missing_model": str(tmp_path / "missing.pt")}
    result = runner.invoke(app, [a.format(**fill) for a in args])
    assert result.exit_code == code, result.output
    assert needle in result.output


def test_version_and_help():
    assert runner.invoke(app, ["--version"]).stdout.startswith("dfdetect ")
    out = runner.invoke(app, ["predict", "-h"], env={"COLUMNS": "200"}).stdout
    assert "--fail-on-fake" in out and "Exit codes" in out


def test_subprocess_stdin_paths_and_module_entry(mixed_folder, sepcnn_ckpt):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    paths = f"{mixed_folder / 'a_face.jpg'}\n{mixed_folder / 'c_zero.jpg'}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "deepfake_cli", "predict", "-", "-m", str(sepcnn_ckpt), "--csv"],
        input=paths, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 4, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["status"] for r in rows] == ["ok", "error"]
    # Not a TTY and no flag: JSON Lines.
    proc = subprocess.run(
        ["dfdetect", "predict", str(mixed_folder / "a_face.jpg"), "-m", str(sepcnn_ckpt)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "ok"


def test_output_paths_never_end_in_a_traceback(mixed_folder, sepcnn_ckpt, tmp_path, monkeypatch):
    """--out: a folder or a path under a file is a one-line usage error; missing folders are made; '-' is stdout."""
    face = str(mixed_folder / "a_face.jpg")
    (tmp_path / "file.txt").write_text("x")
    for out, needle in ((tmp_path, "is a folder"), (tmp_path / "file.txt" / "x.json", "cannot write")):
        result = runner.invoke(app, ["predict", face, "-m", str(sepcnn_ckpt), "--out", str(out)])
        assert result.exit_code == 2 and needle in result.stderr, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    nested = tmp_path / "new" / "deeper" / "scores.csv"
    result = runner.invoke(app, ["predict", face, "-m", str(sepcnn_ckpt), "--out", str(nested)])
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in csv.DictReader(nested.open())] == ["ok"]
    # An explicit format flag wins over the extension, and says so.
    odd = tmp_path / "scores.csv"
    result = runner.invoke(app, ["predict", face, "-m", str(sepcnn_ckpt), "--out", str(odd), "--json"])
    assert result.exit_code == 0 and "writing JSON into" in result.stderr
    assert json.loads(odd.read_text())[0]["status"] == "ok"
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    result = runner.invoke(app, ["predict", face, "-m", str(sepcnn_ckpt), "--out", "-", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["status"] == "ok"
    assert not (tmp_path / "cwd" / "-").exists()


def test_closed_stdout_stops_quietly(tmp_path, sepcnn_ckpt):
    """``dfdetect predict big/ | head -1``: exit 141, no BrokenPipeError traceback."""
    need_shared(PHOTOS)
    folder = tmp_path / "many"
    folder.mkdir()
    for k in range(300):
        (folder / f"{k:03d}.jpg").write_bytes((PHOTOS / "kate_siegel.jpg").read_bytes())
    proc = subprocess.Popen(["dfdetect", "predict", str(folder), "-m", str(sepcnn_ckpt), "--no-detect", "--jsonl", "-b", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert json.loads(proc.stdout.readline())["status"] == "ok"
    proc.stdout.close()  # the reader goes away, as head does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_animated_gif_is_scanned_as_a_video_and_a_still_gif_as_an_image(tmp_path, sepcnn_ckpt):
    """Folder scans pick GIFs up: an animated one is tracked frame by frame, a still one is a photo."""
    need_shared(PHOTOS)
    face = Image.open(PHOTOS / "kate_siegel.jpg").convert("RGB")
    face.thumbnail((420, 420))  # the face itself about 60 px wide
    frames = []
    for k in range(12):  # the portrait drifts right on a grey canvas
        canvas = Image.new("RGB", (640, 480), (128, 128, 128))
        canvas.paste(face, (10 + 8 * k, 10))
        frames.append(canvas)
    folder = tmp_path / "gifs"
    folder.mkdir()
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(folder / "still.gif")
    (folder / "broken.gif").write_bytes(b"GIF89a not really")
    result = runner.invoke(app, ["predict", str(folder), "-m", str(sepcnn_ckpt), "--jsonl"])
    assert result.exit_code == 4, result.output  # broken.gif is an error row, the others go on
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"anim.gif", "still.gif", "broken.gif"}
    anim, still = records["anim.gif"], records["still.gif"]
    assert anim["kind"] == "video" and anim["status"] == "ok"
    assert anim["frames"]["total"] == 12 and anim["frames"]["sampled"] == 2 == anim["frames"]["with_face"]  # 0 and 10
    assert "kind" not in still and still["status"] == "ok" and still["face_count"] == 1
    assert records["broken.gif"]["status"] == "error"


def test_quiet_leaves_only_errors_on_stderr(sepcnn_ckpt, tmp_path):
    need_shared(PHOTOS)
    photo = str(PHOTOS / "kate_siegel.jpg")
    loud = runner.invoke(app, ["predict", photo, "-m", str(sepcnn_ckpt), "--jsonl"])
    assert loud.exit_code == 0 and "1 input:" in loud.stderr and "0 errors" in loud.stderr
    for args, after, env in ((["-q"], [], {}), ([], ["-q"], {}), ([], ["--quiet"], {}), ([], [], {"DFDETECT_RUNTIME_LOG_LEVEL": "error"})):
        # -q before or after the subcommand.
        quiet = runner.invoke(app, [*args, "predict", photo, *after, "-m", str(sepcnn_ckpt), "--jsonl"], env=env)
        assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == loud.stdout
        fatal = runner.invoke(app, [*args, "predict", str(tmp_path / "empty_dir_glob_*.jpg"), "-m", str(sepcnn_ckpt), *after], env=env)
        assert fatal.exit_code == 1 and fatal.stderr.startswith("error: no image or video files found")
    # The next command without -q talks again (one process, as in these tests).
    assert "1 input:" in runner.invoke(app, ["predict", photo, "-m", str(sepcnn_ckpt), "--jsonl"]).stderr


def test_out_says_where_it_wrote(sepcnn_ckpt, tmp_path):
    need_shared(PHOTOS)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["predict", str(PHOTOS / "kate_siegel.jpg"), "-m", str(sepcnn_ckpt), "-o", str(out)])
    assert result.exit_code == 0 and out.is_file()
    assert f"wrote {out}" in " ".join(result.stderr.split())


def test_hoist_quiet_moves_only_quiet_and_leaves_what_follows_double_dash():
    from deepfake_cli.cli.app import hoist_quiet

    assert hoist_quiet(["predict", "x", "-q"]) == ["--quiet", "predict", "x"]
    assert hoist_quiet(["models", "list", "--quiet", "--json"]) == ["--quiet", "models", "list", "--json"]
    assert hoist_quiet(["predict", "--", "-q"]) == ["predict", "--", "-q"]
    assert hoist_quiet(["predict", "x"]) == ["predict", "x"]


def test_csv_has_one_row_per_face_with_box_columns(mixed_folder, sepcnn_ckpt):
    need_shared(PHOTOS / "multiface.jpg")
    result = runner.invoke(app, ["predict", str(PHOTOS / "multiface.jpg"), str(mixed_folder), "-m", str(sepcnn_ckpt), "--csv"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"x1", "y1", "x2", "y2", "face", "det_prob", "face_p_fake"} <= set(rows[0]) and "box" not in rows[0]
    multi = [r for r in rows if Path(r["path"]).name == "multiface.jpg"]
    assert len(multi) == 6 and [int(r["face"]) for r in multi] == list(range(6))
    # The file-level verdict on every row; the file's p_fake is its most suspicious face's.
    assert len({(r["verdict"], r["p_fake"], r["face_count"]) for r in multi}) == 1 and multi[0]["face_count"] == "6"
    assert float(multi[0]["p_fake"]) == max(float(r["face_p_fake"]) for r in multi)
    assert all(float(r["x2"]) > float(r["x1"]) and float(r["y2"]) > float(r["y1"]) for r in multi)
    # A file without a face, or one that cannot be read, still gets exactly one row.
    others = [r for r in rows if Path(r["path"]).name != "multiface.jpg"]
    assert {Path(r["path"]).name: r["status"] for r in others} == EXPECTED_STATUS and len(others) == len(EXPECTED_STATUS)
    assert all(r["x1"] == "" and r["face"] == "" for r in others if r["status"] != "ok")


def test_image_batches_show_a_progress_bar_on_a_terminal_only(sepcnn_ckpt, monkeypatch):
    from conftest import ORIGINAL_004

    need_shared(MESONET_PHOTOS, ORIGINAL_004)
    args = ["predict", str(MESONET_PHOTOS), str(ORIGINAL_004), "-m", str(sepcnn_ckpt), "--no-detect", "--jsonl"]
    env = {"DFDETECT_VIDEO_FRAMES": "2", "TERM": "xterm"}
    plain = runner.invoke(app, args, env=env)
    assert plain.exit_code == 0 and "files/s" not in plain.stderr
    from rich.console import Console

    from deepfake_cli.cli import predict_cmd

    terminal = io.StringIO()
    monkeypatch.setattr(predict_cmd, "stderr", Console(file=terminal, force_terminal=True, width=120))
    shown = runner.invoke(app, args, env=env)
    assert shown.exit_code == 0, shown.output
    drawn = terminal.getvalue()
    assert "scoring" in drawn and "5/5" in drawn and "files/s" in drawn, drawn
    assert "real" in drawn.split("files/s")[-1] or "fake" in drawn.split("files/s")[-1]  # the running counts
    assert "004.mp4" in drawn  # the video's own line in the same display
    assert shown.stdout == plain.stdout
    monkeypatch.undo()
    quiet = runner.invoke(app, [*args, "-q"], env=env)
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_a_borderline_verdict_is_marked_in_every_format_and_leaves_exit_codes_alone(sepcnn_ckpt, tmp_path):
    """0.01 over the threshold is still 'fake' (counts, --fail-on-fake's 3), but every output says it is close."""
    need_shared(PHOTOS)
    photo = tmp_path / "kate_siegel.jpg"
    photo.write_bytes((PHOTOS / "kate_siegel.jpg").read_bytes())
    base = ["predict", str(photo), "-m", str(sepcnn_ckpt)]
    p_fake = json.loads(runner.invoke(app, [*base, "--jsonl"]).stdout)["p_fake"]
    near = [*base, "--threshold", f"{p_fake - 0.01:.6f}"]
    result = runner.invoke(app, [*near, "--jsonl"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["verdict"] == "fake" and record["borderline"] is True and record["margin"] == pytest.approx(0.01, abs=2e-6)
    assert record["faces"][0]["borderline"] is True and record["faces"][0]["label"] == "fake"
    assert "1 fake, 0 real" in result.stderr and "(1 borderline)" in result.stderr
    assert runner.invoke(app, [*near, "--jsonl", "--fail-on-fake"]).exit_code == 3  # still fake for the exit code
    row = next(csv.DictReader(io.StringIO(runner.invoke(app, [*near, "--csv"]).stdout)))
    assert (row["verdict"], row["borderline"], row["face_borderline"]) == ("fake", "True", "True")
    assert float(row["margin"]) == pytest.approx(0.01, abs=2e-6)
    table = runner.invoke(app, [*near, "--format", "table"], env={"COLUMNS": "80"})
    assert table.exit_code == 0 and "fake?" in table.stdout, table.stdout
    assert "?: borderline, p_fake within 0.1 of the threshold" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    # A narrower band (flag or environment), or a score far from the threshold: a plain verdict.
    for args, env in (([*near, "--borderline-band", "0.005"], {}), (near, {"DFDETECT_PREDICT_BORDERLINE_BAND": "0"}),
                      ([*base, "--threshold", f"{max(0.0, p_fake - 0.3):.6f}"], {})):
        plain = runner.invoke(app, [*args, "--format", "table"], env={"COLUMNS": "80", **env})
        assert plain.exit_code == 0 and "fake?" not in plain.stdout and "?: borderline" not in plain.stdout
        assert "borderline)" not in plain.stderr
        assert json.loads(runner.invoke(app, [*args, "--jsonl"], env=env).stdout)["borderline"] is False
    below = runner.invoke(app, [*base, "--threshold", f"{p_fake + 0.01:.6f}", "--jsonl", "--fail-on-fake"])
    assert below.exit_code == 0 and json.loads(below.stdout)["verdict"] == "real"  # borderline real: exit 0
    assert json.loads(below.stdout)["borderline"] is True
    assert runner.invoke(app, [*base, "--borderline-band", "2"]).exit_code == 2


def test_the_progress_display_counts_borderline_verdicts_and_stdout_stays_the_same(sepcnn_ckpt, monkeypatch):
    need_shared(MESONET_PHOTOS)
    from rich.console import Console

    from deepfake_cli.cli import predict_cmd

    # Band 1: every verdict is borderline; band 0: none is.
    for band, counted in (("1", True), ("0", False)):
        args = ["predict", str(MESONET_PHOTOS), "-m", str(sepcnn_ckpt), "--no-detect", "--borderline-band", band]
        for fmt in ("--jsonl", "--csv", "--json"):
            plain = runner.invoke(app, [*args, fmt], env={"TERM": "xterm"})
            terminal = io.StringIO()
            with monkeypatch.context() as mp:
                mp.setattr(predict_cmd, "stderr", Console(file=terminal, force_terminal=True, width=160))
                shown = runner.invoke(app, [*args, fmt], env={"TERM": "xterm"})
            assert shown.exit_code == plain.exit_code == 0, shown.output
            assert shown.stdout == plain.stdout  # machine-readable output byte for byte as without a terminal
            drawn = terminal.getvalue()
            assert "4/4" in drawn and "files/s" in drawn, drawn
            assert "so far: " in drawn and ("(4 borderline)" in drawn) is counted, drawn
