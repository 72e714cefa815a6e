"""``dfdetect gradcam`` through Typer's CliRunner: real detection, files, index, bad inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import FFPP_FACES, PHOTOS, need_shared
from deepfake_cli.cli.app import app
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.faces.detector import crop_box

runner = CliRunner()


def read_png(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_portrait_with_real_detection_all_modes(tmp_path, sepcnn_ckpt):
    need_shared(PHOTOS)
    photo = PHOTOS / "kate_siegel.jpg"
    out = tmp_path / "cams"
    result = runner.invoke(app, ["gradcam", str(photo), "-m", str(sepcnn_ckpt), "-o", str(out), "--target", "all", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["mode"] for r in rows] == ["predicted", "real", "fake"]
    assert {r["status"] for r in rows} == {"ok"} and {r["face"] for r in rows} == {0}
    first = rows[0]
    assert first["det_prob"] > 0.95 and 0.0 <= first["p_fake"] <= 1.0 and first["target"] == first["label"]
    assert rows[2]["target_prob"] == pytest.approx(first["p_fake"], abs=1e-5)

    # Heatmaps are the size of the face crop the model's framing cuts out of the photo.
    with Image.open(photo) as im:
        width, height = im.size
    left, top, right, bottom = crop_box(first["box"], FaceClassifier.from_checkpoint(sepcnn_ckpt).framing, width, height)
    maps = {r["mode"]: np.load(r["heatmap"]) for r in rows}
    for r in rows:
        heatmap = maps[r["mode"]]
        # The JSON box is rounded to 0.1 px, so the rebuilt crop may differ by one pixel.
        assert heatmap.dtype == np.float32
        assert abs(heatmap.shape[0] - (bottom - top)) <= 1 and abs(heatmap.shape[1] - (right - left)) <= 1
        assert 0.0 <= heatmap.min() and heatmap.max() <= 1.0
        assert read_png(r["overlay"]).shape == (*heatmap.shape, 3)
        assert Path(r["heatmap"]).parent == out and Path(r["heatmap"]).name == f"kate_siegel_face0_{r['mode']}.npy"
    assert not np.allclose(maps["real"], maps["fake"])
    sheet = read_png(first["sheet"])
    assert {r["sheet"] for r in rows} == {str(out / "kate_siegel_face0_sheet.png")} and sheet.shape[0] > 3 * 224

    index = list(csv.DictReader(open(out / "gradcam.csv", encoding="utf-8")))
    assert [(r["mode"], r["heatmap"], r["status"]) for r in index] == [(r["mode"], r["heatmap"], "ok") for r in rows]
    saved = json.loads((out / "config.json").read_text())
    assert saved["gradcam"]["target"] == "all" and saved["model"]["name"] == str(sepcnn_ckpt)
    assert "gradcam on features.4" in result.stderr and "1 images: 1 faces explained" in result.stderr


@pytest.fixture
def mixed_crops(tmp_path):
    """Face crops in two subfolders with the same file name, plus unreadable files."""
    need_shared(FFPP_FACES)
    folder = tmp_path / "mixed"
    for sub, src in (("real", FFPP_FACES / "youtube" / "roi_0.jpg"), ("fake", FFPP_FACES / "Deepfakes" / "roi_0.jpg")):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "roi_0.jpg").write_bytes(src.read_bytes())
    (folder / "broken.jpg").write_text("this is not an image\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored: not an image extension\n")
    return folder


def test_mixed_folder_no_detect_error_rows_and_exit_4(tmp_path, mixed_crops, sepcnn_ckpt):
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["gradcam", str(mixed_crops), "-m", str(sepcnn_ckpt), "--no-detect", "-o", str(out), "--method", "gradcam++", "--jsonl"]
    )
    assert result.exit_code == 4, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_path = {str(Path(r["path"]).relative_to(mixed_crops)): r for r in rows}
    assert sorted(by_path) == ["broken.jpg", "empty.png", "fake/roi_0.jpg", "real/roi_0.jpg"]
    assert by_path["broken.jpg"]["status"] == "error" and "not a recognised" in by_path["broken.jpg"]["error"]
    assert by_path["empty.png"]["status"] == "error" and "empty" in by_path["empty.png"]["error"]
    for sub in ("real", "fake"):
        row = by_path[f"{sub}/roi_0.jpg"]
        assert row["status"] == "ok" and row["mode"] == "predicted" and row["det_prob"] is None
        assert row["box"] == [0.0, 0.0, 299.0, 299.0]  # --no-detect: the whole crop
        assert row["heatmap"] == str(out / sub / "roi_0_face0_predicted.npy")  # input folders mirrored: no clash
        assert np.load(row["heatmap"]).shape == (299, 299)
    index = list(csv.DictReader(open(out / "gradcam.csv", encoding="utf-8")))
    assert [r["status"] for r in index] == [r["status"] for r in rows]
    assert "2 errors" in result.stderr and "skipped:" in result.stderr


def test_multiclass_class_target_and_csv(tmp_path, multiclass_ckpt):
    crop = tmp_path / "crop.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (140, 110, 3), dtype=np.uint8)).save(crop)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["gradcam", str(crop), "-m", str(multiclass_ckpt), "--no-detect", "-o", str(out), "--target", "face2face", "--csv"]
    )
    assert result.exit_code == 0, result.output
    (row,) = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["mode"] == "Face2Face" and row["target"] == "Face2Face" and row["heatmap"].endswith("crop_face0_Face2Face.npy")
    assert np.load(row["heatmap"]).shape == (140, 110)


def test_image_without_a_face_is_a_no_face_row(tmp_path, sepcnn_ckpt):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (30, 90, 200)).save(blank)
    result = runner.invoke(app, ["gradcam", str(blank), "-m", str(sepcnn_ckpt), "-o", str(tmp_path / "out"), "--jsonl"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["status"] == "no_face" and row["heatmap"] is None


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["{missing}"], 1, "no such file"),
        (["{broken}"], 1, "not a recognised"),
        (["{empty_dir}"], 1, "no image files found"),
        (["{crop}", "--target", "bogus"], 2, "unknown Grad-CAM target 'bogus'"),
        (["{crop}", "--layer", "layer4.1"], 2, "no layer 'layer4.1'"),
        (["{crop}", "--layer", "classifier.4"], 2, "does not output a feature map"),
        (["{crop}", "--method", "scorecam"], 2, "gradcam.method"),
        (["{crop}", "--alpha", "1.5"], 2, "gradcam.alpha"),
        (["{crop}", "-o", "{crop}"], 2, "is a file; give a folder"),
        (["{crop}", "-o", "{crop}/sub"], 2, "cannot make this folder"),
    ],
)
def test_fatal_and_usage_errors(tmp_path, sepcnn_ckpt, args, code, needle):
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.jpg").write_text("not an image")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "crop.png")
    fill = {"missing": str(tmp_path / "missing.jpg"), "broken": str(tmp_path / "broken.jpg"),
            "empty_dir": str(tmp_path / "empty"), "crop": str(tmp_path / "crop.png")}
    base = ["gradcam", "-m", str(sepcnn_ckpt), "--no-detect", "-o", str(tmp_path / "out"), "--jsonl"]
    result = runner.invoke(app, base + [a.format(**fill) for a in args])
    assert result.exit_code == code, result.output
    assert needle in result.output


def test_help_lists_the_options():
    out = runner.invoke(app, ["gradcam", "-h"], env={"COLUMNS": "200"}).stdout
    for option in ("--target", "--method", "--layer", "--no-detect", "--out", "Exit codes"):
        assert option in out
    assert "--fail-on-fake" not in out  # gradcam has no verdict to fail on
