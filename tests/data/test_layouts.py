from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import FFPP_C23, need_shared
from deepfake_cli.errors import DatasetError, UsageError
from deepfake_cli.data.layouts import detect_layout, discover_videos, ffpp_identities

FFPP_VIDEOS = {
    "original/004": FFPP_C23 / "original_sequences/youtube/c23/videos/004.mp4",
    "original/519": FFPP_C23 / "original_sequences/youtube/c23/videos/519.mp4",
    "NeuralTextures/004_982": FFPP_C23 / "manipulated_sequences/NeuralTextures/c23/videos/004_982.mp4",
    "Deepfakes/519_515": FFPP_C23 / "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4",
}


def make_kaggle_layout(root: Path) -> Path:
    """The Kaggle FF++ c23 layout (method folders + csv/) from the shared videos, as symlinks."""
    need_shared(*FFPP_VIDEOS.values())
    for key, src in FFPP_VIDEOS.items():
        dst = root / f"{key}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, dst)
    (root / "csv").mkdir()
    (root / "csv" / "Deepfakes.csv").write_text("File Path,Label\n", encoding="utf-8")
    return root


def test_ffpp_identities_from_names():
    assert ffpp_identities("519") == ("ff:519",)
    assert ffpp_identities("519_515") == ("ff:519", "ff:515")
    assert ffpp_identities("01__exit_phone_room") == ("actor:01",)
    assert ffpp_identities("01_02__exit_phone_room__YVGY8LOK") == ("actor:01", "actor:02")
    assert ffpp_identities("clip") == ()


def test_official_layout_of_shared_data():
    need_shared(FFPP_C23)
    layout, items = discover_videos(FFPP_C23)
    assert layout == "ffpp"
    got = {(it.method, it.video_id): it for it in items}
    assert sorted(got) == [("Deepfakes", "519_515"), ("NeuralTextures", "004_982"), ("original", "004"), ("original", "519")]
    fake = got[("Deepfakes", "519_515")]
    assert fake.label == "fake" and fake.compression == "c23"
    assert fake.rel == "manipulated_sequences/Deepfakes/c23/videos/519_515.mp4"
    assert fake.identities == ("ff:519", "ff:515")
    assert got[("original", "004")].label == "real" and got[("original", "004")].identities == ("ff:004",)
    # --methods keeps the originals and the chosen methods only.
    _, picked = discover_videos(FFPP_C23, methods=["deepfakes"])
    assert sorted(it.method for it in picked) == ["Deepfakes", "original", "original"]
    with pytest.raises(UsageError, match="no videos of method FaceSwap"):
        discover_videos(FFPP_C23, methods=["Deepfakes", "FaceSwap"])
    with pytest.raises(DatasetError, match="c40"):
        discover_videos(FFPP_C23, compression="c40")
    assert len(discover_videos(FFPP_C23, compression="c23")[1]) == 4


def test_several_compressions_need_a_choice(tmp_path):
    need_shared(*FFPP_VIDEOS.values())
    for comp in ("c23", "c40"):
        d = tmp_path / "original_sequences" / "youtube" / comp / "videos"
        d.mkdir(parents=True)
        os.symlink(FFPP_VIDEOS["original/004"], d / "004.mp4")
    with pytest.raises(UsageError, match="--compression"):
        discover_videos(tmp_path)
    _, items = discover_videos(tmp_path, compression="c40")
    assert [(it.rel, it.compression) for it in items] == [("original_sequences/youtube/c40/videos/004.mp4", "c40")]


def test_actors_originals_belong_to_deepfakedetection(tmp_path):
    need_shared(*FFPP_VIDEOS.values())
    files = {
        "original_sequences/actors/c23/videos/01__talking.mp4": "original/004",
        "original_sequences/youtube/c23/videos/004.mp4": "original/004",
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_02__talking__ABCD1234.mp4": "original/004",
        "manipulated_sequences/Deepfakes/c23/videos/004_982.mp4": "original/004",
    }
    for rel, key in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(FFPP_VIDEOS[key], tmp_path / rel)
    _, items = discover_videos(tmp_path)
    dfd = next(it for it in items if it.method == "DeepFakeDetection")
    assert dfd.identities == ("actor:01", "actor:02")
    _, without = discover_videos(tmp_path, methods=["Deepfakes"])
    assert sorted(it.video_id for it in without) == ["004", "004_982"]


def test_kaggle_layout_from_symlinks(tmp_path):
    root = make_kaggle_layout(tmp_path / "kaggle")
    assert detect_layout(root) == "kaggle"
    layout, items = discover_videos(root)
    assert layout == "kaggle"
    assert [(it.rel, it.label, it.method) for it in items] == [
        ("Deepfakes/519_515.mp4", "fake", "Deepfakes"),
        ("NeuralTextures/004_982.mp4", "fake", "NeuralTextures"),
        ("original/004.mp4", "real", "original"),
        ("original/519.mp4", "real", "original"),
    ]
    assert all(it.compression is None for it in items)
    assert discover_videos(root, compression="c23")[1][0].compression == "c23"
    assert [it.method for it in discover_videos(root, methods=["NeuralTextures"])[1]] == ["NeuralTextures", "original", "original"]


def test_real_fake_layout_recursive_with_unique_ids(tmp_path):
    need_shared(*FFPP_VIDEOS.values())
    src = FFPP_VIDEOS["original/004"]
    for rel in ("real/a/clip.mp4", "real/b/clip.mp4", "fake/Face2Face/x.mp4", "fake/y.mp4", "real/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(src, tmp_path / rel)
    layout, items = discover_videos(tmp_path)
    assert layout == "real-fake"
    by_rel = {it.rel: it for it in items}
    assert sorted(by_rel) == ["fake/Face2Face/x.mp4", "fake/y.mp4", "real/a/clip.mp4", "real/b/clip.mp4"]
    assert by_rel["fake/Face2Face/x.mp4"].method == "Face2Face" and by_rel["fake/y.mp4"].method == "fake"
    # Two real "clip" videos: distinct crop folders, distinct identities.
    a, b = by_rel["real/a/clip.mp4"], by_rel["real/b/clip.mp4"]
    assert a.video_id != b.video_id and a.video_id.startswith("clip__")
    assert a.identities == ("video:real/a/clip.mp4",) and a.identities != b.identities


def test_dfdc_parts(tmp_path):
    need_shared(*FFPP_VIDEOS.values())
    part = tmp_path / "dfdc_train_part_0"
    part.mkdir()
    for name in ("real1.mp4", "fake1.mp4"):
        os.symlink(FFPP_VIDEOS["original/004"], part / name)
    (part / "metadata.json").write_text(
        json.dumps({
            "real1.mp4": {"label": "REAL", "split": "train"},
            "fake1.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
            "gone.mp4": {"label": "FAKE", "split": "train", "original": "real1.mp4"},
        }),  # fmt: skip
        encoding="utf-8",
    )
    layout, items = discover_videos(tmp_path)
    assert layout == "dfdc"
    by_id = {it.video_id: it for it in items}
    assert by_id["real1"].label == "real" and by_id["real1"].method == "original"
    assert by_id["fake1"].label == "fake" and by_id["fake1"].method == "DFDC"
    # A fake shares its original's identity; a listed but missing file is kept (it becomes an error row).
    assert by_id["fake1"].identities == by_id["real1"].identities == ("dfdc:real1",)
    assert by_id["gone"].rel == "dfdc_train_part_0/gone.mp4" and not by_id["gone"].path.exists()


def test_unknown_or_missing_layouts(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        discover_videos(tmp_path / "nope")
    (tmp_path / "clip.mp4").write_bytes(b"x")  # a video given where a dataset folder goes
    with pytest.raises(DatasetError, match="clip.mp4: a file; extract reads a dataset folder"):
        discover_videos(tmp_path / "clip.mp4")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        discover_videos(tmp_path)
    with pytest.raises(UsageError, match="unknown layout"):
        discover_videos(tmp_path, layout="youtube")
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    with pytest.raises(DatasetError, match="no videos"):
        discover_videos(tmp_path)
