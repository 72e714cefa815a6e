"""One set of field names for the CLI's records and the web API's."""

from __future__ import annotations

from deepfake_cli.inference.predict import error_record
from deepfake_cli.inference.records import VIDEO_SUMMARY_KEYS, ImageRecord
from deepfake_cli.inference.video import error_summary, predict_record
from deepfake_cli.inference.verdict import verdict


def test_image_record_names_the_count_face_count_and_the_list_faces():
    face = {"index": 0, "box": [1.0, 2.0, 3.0, 4.0], "det_prob": 0.99, "p_fake": 0.7, "label": "fake", "method": None, "probs": {}}
    record = ImageRecord("a.jpg", "ok", verdict="fake", p_fake=0.7, face_count=1, threshold=0.5, model="m", faces=[face]).to_dict()
    assert list(record) == ["path", "status", "verdict", "borderline", "p_fake", "margin", "method", "face_count",
                            "threshold", "model", "error", "faces"]
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


def test_image_csv_rows_one_per_face_with_the_file_verdict():
    faces = [{"index": i, "box": [i, 2.04, 30.0, 40.0], "det_prob": 0.99, "p_fake": p, "label": "fake", "method": None, "probs": {}}
             for i, p in enumerate((0.7, 0.2))]
    record = ImageRecord("a.jpg", "ok", verdict="fake", p_fake=0.7, face_count=2, threshold=0.5, model="m", faces=faces).to_dict()
    rows = ImageRecord.csv_rows(record)
    assert [r["face"] for r in rows] == [0, 1] and [r["face_p_fake"] for r in rows] == [0.7, 0.2]
    assert all(r["verdict"] == "fake" and r["p_fake"] == 0.7 for r in rows) and rows[1]["x1"] == 1 and rows[0]["y1"] == 2.0
    assert set(rows[0]) <= set(ImageRecord.CSV_COLUMNS)
    assert ImageRecord.csv_rows(error_record("b.jpg", "broken"))[0]["status"] == "error"
    assert len(ImageRecord.csv_rows(error_record("b.jpg", "broken"))) == 1


def test_borderline_is_a_band_around_the_threshold_on_the_reported_score():
    import numpy as np

    from deepfake_cli.config import Config
    from deepfake_cli.inference.verdict import borderline, margin

    band = Config().predict.borderline_band
    assert band == 0.1  # the documented default
    # 0.52 against 0.51 is as much "fake" as 0.99, but not as sure.
    assert borderline(0.52, 0.51, band) is True and borderline(0.99, 0.51, band) is False
    assert borderline(0.45, 0.51, band) is True and borderline(0.40, 0.51, band) is False
    assert margin(0.52, 0.51) == 0.01 and margin(0.45, 0.51) == -0.06 and margin(0.99, 0.51) == 0.48
    # Strictly inside the band, on the score as printed: 0.6 against 0.5 is not within 0.1.
    assert borderline(0.6, 0.5, 0.1) is False and borderline(0.4000004, 0.5, 0.1) is False
    assert borderline(0.5, 0.5, 0.0) is False  # band 0: never borderline
    assert borderline(None, 0.5, band) is None and margin(None, 0.5) is None
    assert borderline(np.array([0.55, 0.7, 0.45]), 0.5, band).tolist() == [True, False, True]
    assert margin(np.array([0.55, 0.25]), 0.5).tolist() == [0.05, -0.25]


def test_the_band_is_a_validated_setting_with_an_environment_variable():
    import pytest

    from deepfake_cli.config import load_config
    from deepfake_cli.errors import ConfigError

    assert load_config(environ={"DFDETECT_PREDICT_BORDERLINE_BAND": "0.05"}).predict.borderline_band == 0.05
    assert load_config(environ={}, overrides={"predict.borderline_band": 0}).predict.borderline_band == 0.0
    with pytest.raises(ConfigError, match="predict.borderline_band"):
        load_config(environ={}, overrides={"predict.borderline_band": -0.1})


def test_image_records_faces_and_table_rows_carry_the_borderline_mark(sepcnn_ckpt):
    from deepfake_cli.faces.detector import Face
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.inference.pipeline import FaceResult
    from deepfake_cli.inference.predict import image_record
    import numpy as np

    classifier = FaceClassifier.from_checkpoint(sepcnn_ckpt)
    classifier.threshold = 0.51
    near, far = classifier.score_rows(np.array([[0.48, 0.52], [0.01, 0.99]]))
    assert (near.label, near.borderline, near.margin) == ("fake", True, 0.01)
    assert (far.label, far.borderline, far.margin) == ("fake", False, 0.48)
    faces = [FaceResult(Face((0, 0, 10, 10), 0.99), near)]
    record = image_record("a.jpg", faces, 0.51, "m", 0.1)
    assert record["verdict"] == "fake" and record["borderline"] is True and record["margin"] == 0.01
    assert record["faces"][0]["borderline"] is True and record["faces"][0]["margin"] == 0.01
    assert ImageRecord.table_row(record)["verdict"] == "fake?" and ImageRecord.flat_row(record)["verdict"] == "fake"
    row, = ImageRecord.csv_rows(record)
    assert (row["borderline"], row["margin"], row["face_borderline"], row["face_margin"]) == (True, 0.01, True, 0.01)
    sure = image_record("b.jpg", [FaceResult(Face((0, 0, 10, 10), 0.99), far)], 0.51, "m", 0.1)
    assert sure["borderline"] is False and ImageRecord.table_row(sure)["verdict"] == "fake"
    assert image_record("c.jpg", [], 0.51, "m", 0.1)["borderline"] is None
    assert ImageRecord.table_row(error_record("d.jpg", "broken"))["verdict"] is None


def test_video_summaries_tracks_and_predict_records_name_borderline_alike():
    from deepfake_cli.inference.video import SUMMARY_CSV_COLUMNS, flat_summary, table_summary

    summary = {**error_summary("v.mp4", "x"), "status": "ok", "verdict": "real", "borderline": True, "p_fake": 0.46,
               "margin": -0.05, "error": None, "frames": {}, "timings": {}}
    assert table_summary(summary)["verdict"] == "real?" and flat_summary(summary)["verdict"] == "real"
    assert {"borderline", "margin"} <= set(flat_summary(summary)) and {"borderline", "margin"} <= set(SUMMARY_CSV_COLUMNS)
    record = predict_record(summary)
    assert record["borderline"] is True and record["margin"] == -0.05 and ImageRecord.table_row(record)["verdict"] == "real?"
