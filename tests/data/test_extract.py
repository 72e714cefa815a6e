"""dfdetect extract on the real FF++ videos in ../shared (official and Kaggle layouts).

One frame per video (``sample_every`` 1000 keeps frame 0) and detection at 320 px
keep these runs to seconds; resume and kill -9 are in tests/cli/test_extract_cli.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import FFPP_C23, need_shared
from deepfake_cli.config import load_config
from deepfake_cli.errors import UsageError
from deepfake_cli.data.extract import METADATA_COLUMNS, run_extract
from test_layouts import make_kaggle_layout

FAST = {"data.sample_every": 1000, "data.detect_max_side": 320}


def fast_config(**overrides):
    return load_config(None, {**FAST, **overrides}, environ={})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    need_shared(FFPP_C23)
    out = tmp_path_factory.mktemp("extract_official")
    summary = run_extract(fast_config(), out, root=FFPP_C23)
    return out, summary


def test_official_layout_crops_and_metadata(official):
    out, summary = official
    assert (summary.layout, summary.videos, summary.processed, summary.errors, summary.crops) == ("ffpp", 4, 4, 0, 4)
    with open(out / "metadata.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    assert tuple(header[: len(METADATA_COLUMNS)]) == METADATA_COLUMNS
    rows = {r["video_id"]: r for r in read_csv(out / "metadata.csv")}
    assert sorted(rows) == ["004", "004_982", "519", "519_515"]
    assert [(rows[v]["label"], rows[v]["method"]) for v in ("004", "004_982", "519", "519_515")] == [
        ("real", "original"), ("fake", "NeuralTextures"), ("real", "original"), ("fake", "Deepfakes"),
    ]  # fmt: skip
    fake = rows["519_515"]
    assert fake["video"] == "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"
    assert fake["path"] == "crops/Deepfakes/519_515/519_515_f00000_0.jpg"
    assert (fake["frame"], fake["timestamp"], fake["compression"], fake["face_index"]) == ("0", "0.0", "c23", "0")
    # Identities: the fake joins both its originals' group.
    assert rows["519"]["group"] == rows["519_515"]["group"] != rows["004"]["group"] == rows["004_982"]["group"]
    for row in rows.values():
        x1, y1, x2, y2 = (float(row[k]) for k in ("x1", "y1", "x2", "y2"))
        assert 0 <= x1 < x2 and 0 <= y1 < y2 and float(row["face_size"]) >= 50 and float(row["det_prob"]) >= 0.95
        crop = cv2.imread(str(out / row["path"]))
        assert crop is not None and crop.shape == (224, 224, 3)
    assert read_csv(out / "errors.csv") == []


def test_dataset_json_and_config(official):
    out, _ = official
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["face"] == {"detector": "mtcnn", "margin": 0.3, "square": True}
    assert dataset["crop_size"] == 224 and dataset["sampling"] == {"every": 1000}
    assert dataset["crops"]["total"] == 4
    train = dataset["crops"]["by_split"]["train"]
    assert (train["real"], train["fake"]) == (2, 2)
    assert train["methods"] == {"original": 2, "Deepfakes": 1, "NeuralTextures": 1}
    assert dataset["videos"]["ok"] == 4 and dataset["splits"]["source"] == "seeded"
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["sample_every"] == 1000 and config["data"]["detect_max_side"] == 320


def test_rerun_resumes_and_changing_settings_needs_overwrite(official, tmp_path):
    out, _ = official
    before = (out / "metadata.csv").read_bytes()
    again = run_extract(fast_config(), out, root=FFPP_C23)
    assert (again.processed, again.resumed) == (0, 4)
    assert (out / "metadata.csv").read_bytes() == before
    # Only the split changes: no video is redone, the metadata follows.
    resplit = run_extract(fast_config(**{"data.val_fraction": 0.5, "data.test_fraction": 0.0}), out, root=FFPP_C23)
    assert resplit.processed == 0
    assert sorted({r["split"] for r in read_csv(out / "metadata.csv")}) == ["train", "val"]
    with pytest.raises(UsageError, match="crop_size"):
        run_extract(fast_config(**{"face.crop_size": 128}), out, root=FFPP_C23)
    # --overwrite in a copy: everything is redone at the new size.
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    redone = run_extract(fast_config(**{"face.crop_size": 128}), copy, root=FFPP_C23, overwrite=True)
    assert redone.processed == 4
    assert cv2.imread(str(copy / read_csv(copy / "metadata.csv")[0]["path"])).shape == (128, 128, 3)


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory, official):
    """Kaggle layout (symlinks) plus a truncated copy and a video without a face."""
    root = make_kaggle_layout(tmp_path_factory.mktemp("kaggle_src") / "ffpp")
    data = (FFPP_C23 / "original_sequences/youtube/c23/videos/004.mp4").read_bytes()
    (root / "original" / "777.mp4").write_bytes(data[: len(data) // 2])
    writer = cv2.VideoWriter(str(root / "Deepfakes" / "888_889.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (320, 240))
    for k in range(5):
        writer.write(np.full((240, 320, 3), 100 + k, np.uint8))
    writer.release()
    out = tmp_path_factory.mktemp("extract_kaggle")
    cfg = fast_config(**{"data.val_fraction": 0.5, "data.test_fraction": 0.0})
    return root, out, run_extract(cfg, out, root=root)


def test_kaggle_layout_gives_the_same_crops(kaggle, official):
    root, out, summary = kaggle
    assert (summary.layout, summary.videos, summary.crops, summary.errors, summary.no_face) == ("kaggle", 6, 4, 1, 1)
    rows = {r["video_id"]: r for r in read_csv(out / "metadata.csv")}
    assert rows["519_515"]["video"] == "Deepfakes/519_515.mp4" and rows["519_515"]["compression"] == ""
    reference = {r["video_id"]: r for r in read_csv(official[0] / "metadata.csv")}
    same = ("label", "method", "video_id", "frame", "x1", "y1", "x2", "y2", "det_prob", "path")
    for video_id, row in reference.items():
        assert {k: rows[video_id][k] for k in same} == {k: row[k] for k in same}
        assert (out / row["path"]).read_bytes() == (official[0] / row["path"]).read_bytes()


def test_bad_and_faceless_videos_land_in_errors_csv(kaggle):
    _, out, _ = kaggle
    errors = {r["video"]: r for r in read_csv(out / "errors.csv")}
    assert sorted(errors) == ["Deepfakes/888_889.mp4", "original/777.mp4"]
    assert errors["original/777.mp4"]["status"] == "error" and "cannot open video" in errors["original/777.mp4"]["reason"]
    assert errors["Deepfakes/888_889.mp4"]["status"] == "no_face"
    assert not (out / "crops" / "original" / "777").exists()
    dataset = json.loads((out / "dataset.json").read_text())
    assert (dataset["videos"]["ok"], dataset["videos"]["no_face"], dataset["videos"]["error"]) == (4, 1, 1)
    assert dataset["rejected"]["frames_without_face"] == 1


def test_identity_split_holds(kaggle):
    _, out, summary = kaggle
    rows = read_csv(out / "metadata.csv")
    split_of_identity: dict[str, set[str]] = {}
    for row in rows:
        for identity in row["video_id"].split("_"):
            split_of_identity.setdefault(identity, set()).add(row["split"])
    assert all(len(s) == 1 for s in split_of_identity.values()), split_of_identity
    # 4 groups ({004,982} {515,519} {777} {888,889}) at 50% val: two each side.
    groups = summary.dataset["splits"]["groups"]
    assert groups == {"train": 2, "val": 2}
    by_group: dict[str, set[str]] = {}
    for row in rows:
        by_group.setdefault(row["group"], set()).add(row["split"])
    assert all(len(s) == 1 for s in by_group.values())


def test_official_split_files_decide(official, tmp_path):
    out, _ = official
    splits = tmp_path / "splits"
    splits.mkdir()
    for name, pairs in {"train": [["519", "515"]], "val": [], "test": [["004", "982"]]}.items():
        (splits / f"{name}.json").write_text(json.dumps(pairs))
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    summary = run_extract(fast_config(**{"data.splits_dir": str(splits)}), copy, root=FFPP_C23)
    assert summary.processed == 0 and summary.dataset["splits"]["source"] == "official"
    assert {r["video_id"]: r["split"] for r in read_csv(copy / "metadata.csv")} == {
        "519_515": "train", "004_982": "test", "004": "test", "519": "train",
    }  # fmt: skip


def test_a_changed_video_is_redone(official, tmp_path):
    out, _ = official
    root = tmp_path / "ffpp"
    shutil.copytree(FFPP_C23, root)  # same sizes and times: the manifests still hold
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert run_extract(fast_config(), copy, root=root).processed == 0
    video = root / "original_sequences/youtube/c23/videos/004.mp4"
    os.chmod(video, 0o644)
    os.utime(video, ns=(1, 1))
    summary = run_extract(fast_config(), copy, root=root)
    assert (summary.processed, summary.resumed) == (1, 3)
