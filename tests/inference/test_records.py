"""One set of field names for the CLI's records and the web API's."""

from __future__ import annotations

from deepfake_cli.inference.predict import error_record
from deepfake_cli.inference.records import VIDEO_SUMMARY_KEYS, ImageRecord
from deepfake_cli.inference.video import error_summary, predict_record
from deepfake_cli.inference.verdict import verdict


def test_image_record_names_the_count_face_count_and_the_list_faces():
    face = {"index": 0, "box": [1.0, 2.0, 3.0, 4.0], "det_prob": 0.99, "p_fake": 0.7, "label": "fake", "method": None, "probs": {}}
    record = ImageRecord("a.jpg", "ok", verdict="fake", p_fake=0.7, face_count=1, threshold=0.5, model="m", faces=[face]).to_dict()
    assert list(record) == ["path", "status", "verdict", "p_fake", "method", "face_count", "threshold", "model", "error", "faces"]
    row = ImageRecord.flat_row(record)
    assert list(row) == list(ImageRecord.COLUMNS) and row["box"] == face["box"] and row["face_count"] == 1
    assert list(error_record("b.jpg", "broken")) == list(record)


def test_video_summary_keys_are_written_once():
    assert tuple(error_summary("v.mp4", "broken")) == VIDEO_SUMMARY_KEYS
    as_record = predict_record(error_summary("v.mp4", "broken"))
    assert as_record["kind"] == "video" and as_record["face_count"] is None and as_record["faces"] == []


def test_one_verdict_rule():
    import numpy as np

    assert verdict(0.5, 0.5) == "fake" and verdict(0.49, 0.5) == "real"
    assert verdict(np.array([0.2, 0.5, 0.9]), 0.5).tolist() == ["real", "fake", "fake"]


def test_the_api_uses_the_cli_names():
    import pytest

    pytest.importorskip("fastapi")
    from deepfake_cli.serve.schemas import PredictOut, VideoOut

    for model in (PredictOut, VideoOut):
        assert {"verdict", "face_count", "prediction"} <= set(model.model_fields)
    assert "faces" in PredictOut.model_fields
