"""dfdetect extract through the CLI, including kill -9 in the middle of a run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
from typer.testing import CliRunner

from conftest import FFPP_C23, MULTIFACE_VIDEO, REPO, need_shared
from deepfake_cli.cli.app import app

runner = CliRunner()
FAST = ["--every", "1000", "--detect-max-side", "320"]
# Kill test: several frames per video so that videos take a while each. One torch
# thread everywhere, as in worker processes, so --workers cannot change the numbers.
KILL_RUN = ["--every", "100", "--detect-max-side", "320", "--threads", "1"]


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_extract_json_summary_and_table(tmp_path):
    need_shared(FFPP_C23)
    out = tmp_path / "out"
    result = runner.invoke(app, ["extract", str(FFPP_C23), "--out", str(out), "--json", *FAST])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["layout"], summary["videos"], summary["crops"], summary["errors"]) == ("ffpp", 4, 4, 0)
    assert summary["dataset"]["face"] == {"detector": "mtcnn", "margin": 0.3, "square": True}
    assert "crops (videos) per split" in result.stderr and "NeuralTextures" in result.stderr
    assert len(read_csv(out / "metadata.csv")) == 4
    # Without --json the table goes to stdout; a second run resumes everything.
    again = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(out), *FAST])
    assert again.exit_code == 0
    assert "Deepfakes" in again.stdout and "4 videos (4 done earlier)" in again.stderr


def test_methods_compression_and_usage_errors(tmp_path):
    need_shared(FFPP_C23)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["extract", str(FFPP_C23), "-o", str(out), "--methods", "Deepfakes", "--compression", "c23", "--json", *FAST]
    )
    assert result.exit_code == 0, result.stderr
    assert sorted({r["method"] for r in read_csv(out / "metadata.csv")}) == ["Deepfakes", "original"]
    both = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(out), "--every", "5", "--frames-per-video", "2"])
    assert both.exit_code == 2 and "not both" in both.stderr
    changed = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(out), "--every", "1000", "--size", "64"])
    assert changed.exit_code == 2 and "--overwrite" in changed.stderr
    missing = runner.invoke(app, ["extract", str(tmp_path / "nope"), "-o", str(out)])
    assert missing.exit_code == 1 and "not found" in missing.stderr
    no_c40 = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(tmp_path / "o2"), "--compression", "c40"])
    assert no_c40.exit_code == 1 and "c40" in no_c40.stderr


def test_all_faces_without_resize_in_real_fake_layout(tmp_path):
    need_shared(MULTIFACE_VIDEO)
    root = tmp_path / "data"
    (root / "real").mkdir(parents=True)
    (root / "fake").mkdir()
    os.symlink(MULTIFACE_VIDEO, root / "real" / "people.mp4")
    out = tmp_path / "out"
    args = ["extract", str(root), "-o", str(out), "--frames-per-video", "1", "--all-faces", "--no-resize", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    rows = read_csv(out / "metadata.csv")
    assert len(rows) >= 2 and [r["face_index"] for r in rows] == [str(i) for i in range(len(rows))]
    assert {r["frame"] for r in rows} == {"52"} and {r["label"] for r in rows} == {"real"}
    sizes = [float(r["face_size"]) for r in rows]
    assert sizes == sorted(sizes, reverse=True) or len(set(sizes)) > 1  # largest first by area
    first = cv2.imread(str(out / rows[0]["path"]))
    assert first.shape[0] == first.shape[1] and first.shape[0] > 1.2 * sizes[0]  # square, with the 30% margin
    assert json.loads((out / "dataset.json").read_text())["crop_size"] is None


def test_truncated_video_gives_exit_4_and_an_errors_row(tmp_path):
    need_shared(FFPP_C23)
    root = tmp_path / "data"
    (root / "original").mkdir(parents=True)
    os.symlink(FFPP_C23 / "original_sequences/youtube/c23/videos/004.mp4", root / "original" / "004.mp4")
    data = (FFPP_C23 / "original_sequences/youtube/c23/videos/519.mp4").read_bytes()
    (root / "original" / "519.mp4").write_bytes(data[: len(data) // 3])
    result = runner.invoke(app, ["extract", str(root), "-o", str(tmp_path / "out"), "--json", *FAST])
    assert result.exit_code == 4, result.stderr
    assert "skipped:" in result.stderr and "cannot open video" in " ".join(result.stderr.split())
    assert [r["video"] for r in read_csv(tmp_path / "out" / "errors.csv")] == ["original/519.mp4"]


def _extract_subprocess(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "deepfake_cli", "extract", str(FFPP_C23), "-o", str(out), *KILL_RUN, "--workers", "2"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_kill_9_in_the_middle_then_rerun_gives_the_same_metadata(tmp_path):
    """Killed while running 2 worker processes, resumed in one: same metadata as one clean run."""
    need_shared(FFPP_C23)
    reference = tmp_path / "reference"
    result = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(reference), *KILL_RUN])
    assert result.exit_code == 0, result.stderr

    out = tmp_path / "killed"
    proc = _extract_subprocess(out)
    manifests = out / "manifests"
    deadline = time.monotonic() + 120
    while not any(manifests.rglob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(manifests.rglob("*.json")))
    assert 1 <= done < 4, f"the kill came too late or too early ({done} videos done)"
    assert not (out / "metadata.csv").exists()
    # The worker processes notice their parent is gone and exit too.
    deadline = time.monotonic() + 30
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid), "worker processes outlived the killed parent"

    resumed = runner.invoke(app, ["extract", str(FFPP_C23), "-o", str(out), "--json", *KILL_RUN])
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == done
    assert (out / "metadata.csv").read_bytes() == (reference / "metadata.csv").read_bytes()
    assert json.loads((out / "dataset.json").read_text()) == json.loads((reference / "dataset.json").read_text())
    # No half-written crop is left behind: the crop folders hold exactly the listed crops.
    on_disk = sorted(p.relative_to(out).as_posix() for p in (out / "crops").rglob("*") if p.is_file())
    assert on_disk == sorted(r["path"] for r in read_csv(out / "metadata.csv"))
