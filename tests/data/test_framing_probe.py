"""Measuring an image folder's crop framing with MTCNN (``dfdetect train --margin auto``)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import FFPP_FACES, PHOTOS, need_shared
from deepfake_cli.cli.app import app
from deepfake_cli.data.framing_probe import crop_side_ratios, probe_crop_framing
from deepfake_cli.errors import DatasetError
from deepfake_cli.faces.detector import FaceDetector
from deepfake_cli.faces.framing import FaceFraming, crop_face
from deepfake_cli.models.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


class BoxDetector:
    """A stand-in that finds one face, ``share`` of the (padded) image wide, in its middle."""

    def __init__(self, share: float | None):
        self.share = share

    def detect_one(self, image):
        if self.share is None:
            return []
        h, w = image.shape[:2]
        s = self.share * w
        return [SimpleNamespace(box=(w / 2 - s / 2, h / 2 - s * 0.6, w / 2 + s / 2, h / 2 + s * 0.6))]


def _write_crops(folder, n, size=100):
    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        path = folder / f"{i}.jpg"
        cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))
        paths.append(str(path))
    return paths


def test_ratio_is_the_crop_side_over_the_boxes_longer_side(tmp_path):
    paths = _write_crops(tmp_path / "c", 3)
    # Crops are measured at 160 px, padded to 320: the box is 80 x 96, the crop 160.
    ratios, missed = crop_side_ratios(paths, BoxDetector(share=0.25))
    assert missed == 0 and ratios == pytest.approx([160 / 96] * 3)
    pooled, each = probe_crop_framing({"a": paths}, detector=BoxDetector(share=0.25))
    assert pooled.margin == pytest.approx(0.67) and pooled.square is True and each["a"].measured == 3


def test_too_few_faces_is_a_dataset_error(tmp_path):
    paths = _write_crops(tmp_path / "c", 5)
    with pytest.raises(DatasetError, match="only 0 of 5"):
        probe_crop_framing({"blank": paths}, detector=BoxDetector(share=None))


def test_measures_a_framing_we_cut_ourselves(tmp_path):
    """Crops cut from real portraits with margin 0.3 (square) measure back as about +0.3."""
    need_shared(PHOTOS)
    from deepfake_cli.media.images import load_image

    detector = FaceDetector()
    paths = []
    for photo in sorted(PHOTOS.glob("*.jpg")):
        image = load_image(photo)
        for k, face in enumerate(detector.detect_one(image)):
            crop = crop_face(image, face.box, FaceFraming(margin=0.3, square=True), size=160)
            path = tmp_path / f"{photo.stem}_{k}.png"
            cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            paths.append(str(path))
    assert len(paths) >= 8
    pooled, _ = probe_crop_framing({"ours": paths})
    assert pooled.margin == pytest.approx(0.3, abs=0.05)


def test_ffpp_haar_crops_are_tighter_than_mtcnn_boxes():
    """FF++'s Haar crops measure below MTCNN's own box (about -0.08 on the whole folder)."""
    need_shared(FFPP_FACES)
    paths = [str(p) for p in sorted((FFPP_FACES / "youtube").glob("*.jpg"))]
    pooled, _ = probe_crop_framing({"ffpp": paths}, sample=24)
    assert -0.2 <= pooled.margin <= 0.0 and pooled.measured >= 20


def test_train_margin_auto_records_the_measured_framing(tmp_path):
    need_shared(FFPP_FACES)
    runner = CliRunner()
    result = runner.invoke(app, [
        "train", "--data", str(FFPP_FACES), "--arch", "sepcnn", "--input-size", "64", "--epochs", "1",
        "--limit-per-class", "12", "-b", "16", "--workers", "0", "--threads", "1", "--augment", "none",
        "--margin", "auto", "--project", str(tmp_path / "runs"), "--json",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "measuring the crops' framing" in result.stderr
    summary = json.loads(result.stdout)
    face = load_checkpoint(summary["best"])["preprocessing"]["face"]
    measured = face["measured"]
    assert face["square"] is True and face["margin"] == measured["pooled"]["margin"]
    assert -0.2 <= face["margin"] <= 0.0 and measured["ffpp_faces"]["measured"] > 0


def test_train_margin_rejects_words_other_than_auto(tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--margin", "wide"])
    assert result.exit_code == 2 and "expected a number or 'auto'" in result.output
