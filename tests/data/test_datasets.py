"""Datasets: image folders and metadata.csv, seeded val carve-out, subsets, crops, samplers, transforms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FFPP_FACES, need_shared
from deepfake_cli.data.datasets import (
    AugmentedBatches,
    EpochBatchSampler,
    FaceCrops,
    batch_seed,
    data_fingerprint,
    encode_targets,
    load_splits,
    read_crop,
    read_face_table,
    task_labels,
)
from deepfake_cli.errors import DatasetError, UsageError
from deepfake_cli.labels import BINARY_LABELS, MULTICLASS_LABELS
from deepfake_cli.models.preprocessing import AugmentSettings, TrainAugment, build_train_transform, normalize


def _image(path: Path, value: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 255, (size, size + 6, 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def ffpp_table():
    need_shared(FFPP_FACES)
    return read_face_table(FFPP_FACES, val_fraction=0.15, split_seed=0)


def test_image_folders_of_ffpp_faces(ffpp_table):
    frame = ffpp_table.frame
    assert ffpp_table.source == "folders" and ffpp_table.face is None
    assert len(frame) == 5428
    counts = frame["method"].value_counts().to_dict()
    assert counts["original"] == 1805
    assert set(counts) == {"original", "Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"}
    assert (frame.loc[frame["method"] == "original", "label"] == "real").all()
    assert (frame.loc[frame["method"] != "original", "label"] == "fake").all()
    # No video ids in ffpp_faces: every crop is its own group; the val carve-out is ~15 %.
    assert not ffpp_table.has_videos and ffpp_table.carved_val
    assert frame["group"].is_unique
    val = (frame["split"] == "val").mean()
    assert 0.14 < val < 0.16
    assert set(frame["split"]) == {"train", "val"}


def test_val_carve_out_is_seeded_and_repeatable(ffpp_table):
    again = read_face_table(FFPP_FACES, val_fraction=0.15, split_seed=0)
    other = read_face_table(FFPP_FACES, val_fraction=0.15, split_seed=1)
    val = set(ffpp_table.frame.loc[ffpp_table.frame["split"] == "val", "path"])
    assert val == set(again.frame.loc[again.frame["split"] == "val", "path"])
    assert val != set(other.frame.loc[other.frame["split"] == "val", "path"])


def test_val_carve_out_does_not_depend_on_where_the_data_lies(tmp_path, monkeypatch):
    # The same crops, read as an absolute path, as a relative one and from a copy
    # elsewhere, must give the same validation files (evaluate re-makes the carve-out).
    for cls in ("youtube", "Deepfakes"):
        for i in range(40):
            _image(tmp_path / "a" / "faces" / cls / f"roi_{i}.png", i)
    copy = tmp_path / "b" / "elsewhere"
    copy.mkdir(parents=True)
    (tmp_path / "a" / "faces").rename(copy / "faces")

    def val_names(root) -> set[str]:
        frame = read_face_table(root, val_fraction=0.25, split_seed=0).frame
        return {Path(p).relative_to(Path(root).resolve()).as_posix() if Path(p).is_absolute() else
                Path(p).relative_to(root).as_posix() for p in frame.loc[frame["split"] == "val", "path"]}

    absolute = val_names(copy / "faces")
    monkeypatch.chdir(tmp_path / "b")
    relative = val_names(Path("elsewhere/faces"))
    monkeypatch.chdir(copy)
    assert absolute == relative == val_names(Path("faces"))
    assert 0 < len(absolute) < 80


def test_fingerprint_names_the_crops_not_where_they_lie(tmp_path, monkeypatch):
    import shutil

    for cls in ("youtube", "Deepfakes"):
        for i in range(6):
            _image(tmp_path / "a" / cls / f"roi_{i}.png", i)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first = data_fingerprint(read_face_table(tmp_path / "a", val_fraction=0.0))
    assert data_fingerprint(read_face_table(tmp_path / "b", val_fraction=0.0)) == first
    monkeypatch.chdir(tmp_path)
    assert data_fingerprint(read_face_table(Path("b"), val_fraction=0.5)) == first  # relative, and carving changes nothing
    # Another file, a changed file or a crop under another class is other data.
    _image(tmp_path / "b" / "youtube" / "roi_9.png", 9)
    assert data_fingerprint(read_face_table(tmp_path / "b", val_fraction=0.0)) != first
    (tmp_path / "b" / "youtube" / "roi_9.png").unlink()
    _image(tmp_path / "b" / "youtube" / "roi_0.png", 0, size=41)
    assert data_fingerprint(read_face_table(tmp_path / "b", val_fraction=0.0)) != first
    shutil.rmtree(tmp_path / "b")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    (tmp_path / "b" / "youtube" / "roi_0.png").rename(tmp_path / "b" / "Deepfakes" / "roi_x.png")
    assert data_fingerprint(read_face_table(tmp_path / "b", val_fraction=0.0)) != first


def test_limit_per_class_is_balanced_and_keeps_val_apart():
    need_shared(FFPP_FACES)
    splits = load_splits(FFPP_FACES, task="binary", limit_per_class=40, split_seed=0)
    train, val = splits["train"], splits["val"]
    assert splits.labels == BINARY_LABELS
    assert train.class_counts(2).tolist() == [40, 40]
    # The 40 fakes are spread evenly over the four methods.
    assert sorted(train.frame.loc[train.frame["label"] == "fake", "method"].value_counts().tolist()) == [10, 10, 10, 10]
    assert 1 <= len(val) < len(train)
    assert not set(train.paths) & set(val.paths)
    # The subset's val crops are val crops of the full carve-out, whatever the limit.
    full = load_splits(FFPP_FACES, task="binary", split_seed=0)
    assert set(val.paths) <= set(full["val"].paths)


def test_methods_filter_keeps_reals_and_refuses_a_method_the_data_lacks():
    need_shared(FFPP_FACES)
    splits = load_splits(FFPP_FACES, methods=["deepfakes"], limit_per_class=20)  # case does not matter
    assert set(splits["train"].frame["method"]) == {"original", "Deepfakes"}
    # A typo would drop every fake and train on reals alone: refused, naming what is there.
    with pytest.raises(UsageError, match=r"no crops of method Deepfake \(found: .*Deepfakes.*\)"):
        load_splits(FFPP_FACES, methods=["Deepfake"])


def test_multiclass_labels_and_targets():
    need_shared(FFPP_FACES)
    splits = load_splits(FFPP_FACES, task="multiclass", limit_per_class=5)
    assert splits.labels == MULTICLASS_LABELS
    train = splits["train"]
    for method, target in zip(train.frame["method"], train.targets):
        assert MULTICLASS_LABELS[target] == method
    assert task_labels("multiclass", ["original", "Deepfakes", "MyGAN"]) == ("original", "Deepfakes", "MyGAN")
    with pytest.raises(DatasetError):
        task_labels("multiclass", ["original", "fake"])


def test_split_folders_and_nested_video_folders(tmp_path):
    for split in ("train", "val", "test"):
        for cls in ("real", "fake/Deepfakes", "fake/FaceSwap"):
            for video in ("v1", "v2"):
                for i in range(2):
                    _image(tmp_path / split / cls / video / f"{i}.png", hash((split, cls, video, i)) % 1000)
    table = read_face_table(tmp_path)
    frame = table.frame
    assert not table.carved_val and set(frame["split"]) == {"train", "val", "test"}
    assert set(frame["method"]) == {"original", "Deepfakes", "FaceSwap"}
    assert table.has_videos
    row = frame[frame["path"].str.endswith("train/fake/FaceSwap/v2/1.png")].iloc[0]
    assert (row["label"], row["video_id"], row["video_key"]) == ("fake", "v2", "FaceSwap/v2")
    (tmp_path / "extra").mkdir()
    with pytest.raises(DatasetError, match="mixes split folders"):
        read_face_table(tmp_path)


def test_a_test_only_folder_or_a_single_training_group_needs_no_val_carve_out(tmp_path):
    """Scoring a held-out test folder never needs a validation split: no carve-out, no error."""
    for cls in ("real", "fake/Deepfakes"):
        for video in ("v1", "v2"):
            _image(tmp_path / "held_out" / "test" / cls / video / "0.png", hash((cls, video)) % 1000)
    splits = load_splits(tmp_path / "held_out")
    assert not splits.table.carved_val and len(splits["test"]) == 4 and len(splits["val"]) == 0
    # One training group (one identity): nothing to carve, and no val split.
    one = tmp_path / "one"
    for cls in ("real", "fake"):
        _image(one / cls / "0.png", 7 if cls == "real" else 200)
    table = read_face_table(one)
    assert not table.carved_val and set(table.frame["split"]) == {"train"}


def _metadata(tmp_path: Path, rows: list[dict], face: dict | None = None) -> Path:
    import pandas as pd

    for r in rows:
        _image(tmp_path / r["path"], hash(r["path"]) % 1000)
    pd.DataFrame(rows).to_csv(tmp_path / "metadata.csv", index=False)
    if face is not None:
        (tmp_path / "dataset.json").write_text(json.dumps({"face": face}))
    return tmp_path / "metadata.csv"


def test_metadata_csv_groups_stay_together_in_the_carve_out(tmp_path):
    rows = []
    for g in range(30):
        for method, video in (("original", f"{g:03d}"), ("Deepfakes", f"{g:03d}_{(g + 1) % 30:03d}")):
            for frame in range(3):
                rows.append({
                    "path": f"crops/{method}/{video}/{frame}.jpg", "label": "real" if method == "original" else "fake",
                    "method": method, "split": "train", "video": f"{method}/{video}.mp4", "video_id": video,
                    "group": f"ff:{g:03d}", "frame": frame,
                })  # fmt: skip
    csv = _metadata(tmp_path, rows, face={"detector": "mtcnn", "margin": 0.2, "square": False})
    table = read_face_table(csv.parent, val_fraction=0.2, split_seed=3)
    assert table.source == "metadata" and table.face["margin"] == 0.2 and table.carved_val
    per_group = table.frame.groupby("group")["split"].nunique()
    assert (per_group == 1).all()
    assert 0 < (table.frame["split"] == "val").sum() < len(rows)
    assert table.frame["video_key"].str.endswith(".mp4").all()
    # The csv file itself works too, and paths resolve against its folder.
    assert Path(read_face_table(csv).frame["path"].iloc[0]).is_file()


def test_metadata_errors_name_the_problem(tmp_path):
    csv = _metadata(tmp_path, [{"path": "a.jpg", "label": "maybe", "method": "x", "split": "train"}])
    with pytest.raises(DatasetError, match="row 2: label must be real or fake"):
        read_face_table(csv)
    csv.write_text("path,label\nmissing.jpg,real\n")
    with pytest.raises(DatasetError, match="not found"):
        read_face_table(csv)
    with pytest.raises(DatasetError, match="dataset not found"):
        read_face_table(tmp_path / "nowhere")


def test_encode_targets_uses_the_model_labels():
    import pandas as pd

    frame = pd.DataFrame({"label": ["real", "fake", "fake"], "method": ["original", "Face2Face", "Unknown"]})
    assert encode_targets(frame, ("real", "fake")).tolist() == [0, 1, 1]
    assert encode_targets(frame, MULTICLASS_LABELS).tolist() == [0, 3, -1]


def test_eval_crops_equal_classifier_to_tensor(sepcnn_ckpt):
    """Validation during training sees exactly what inference feeds the model."""
    need_shared(FFPP_FACES)
    from deepfake_cli.inference.classifier import FaceClassifier
    from deepfake_cli.media.images import load_image

    clf = FaceClassifier.from_checkpoint(sepcnn_ckpt)
    paths = sorted(str(p) for p in (FFPP_FACES / "Face2Face").glob("*.jpg"))[:5]
    crops = FaceCrops(paths, clf.input_size)
    assert crops.cached
    ours = normalize(crops.get(range(5)), clf._mean, clf._std)
    theirs = clf.to_tensor([load_image(p) for p in paths])
    assert torch.equal(ours, theirs)
    # Uncached crops (over the memory budget) read the same pixels per batch.
    lazy = FaceCrops(paths, clf.input_size, cache_max_mb=0)
    assert not lazy.cached and torch.equal(lazy.get([1, 3]), crops.get([1, 3]))
    assert read_crop(paths[0], 64).shape == (64, 64, 3)


def test_sampler_is_seeded_and_shards_like_distributed_sampler():
    a = [idx for _, _, idx in EpochBatchSampler(10, 4, seed=1)]
    b = [idx for _, _, idx in EpochBatchSampler(10, 4, seed=1)]
    assert a == b and sorted(sum(a, [])) == list(range(10))
    s = EpochBatchSampler(10, 4, seed=1)
    s.set_epoch(1)
    assert [idx for _, _, idx in s] != a
    shards = [EpochBatchSampler(11, 3, seed=0, rank=r, world_size=2) for r in range(2)]
    seen = [sum((idx for _, _, idx in sh), []) for sh in shards]
    assert len(shards[0]) == len(shards[1]) == 2
    assert len(seen[0]) == len(seen[1]) == 6  # padded to a multiple of the world size
    assert set(seen[0]) | set(seen[1]) == set(range(11))
    assert len(EpochBatchSampler(100, 4, max_steps=3)) == 3


def test_batch_augmentation_is_seeded_and_sized():
    pre = {"input_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    x = torch.randint(0, 256, (6, 3, 37, 37), dtype=torch.uint8)
    strong = build_train_transform(pre, "strong")
    assert isinstance(strong, TrainAugment) and strong.cache_size == 37
    out1 = strong(x, torch.Generator().manual_seed(5))
    out2 = strong(x, torch.Generator().manual_seed(5))
    out3 = strong(x, torch.Generator().manual_seed(6))
    assert out1.shape == (6, 3, 32, 32) and out1.dtype == torch.uint8
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    # "none" is the evaluation transform: crops pass unchanged.
    none = build_train_transform(pre, "none")
    y = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert none.cache_size == 32 and torch.equal(none(y), y)
    # An identity affine reproduces the input exactly (the crop maths is centred).
    identity = TrainAugment(32, AugmentSettings(level="t", crop_scale=(1, 1), crop_ratio=(1, 1), flip=0, brightness=0, contrast=0))
    assert torch.equal(identity(y, torch.Generator()), y)
    flip = TrainAugment(32, AugmentSettings(level="t", crop_scale=(1, 1), crop_ratio=(1, 1), flip=1.0, brightness=0, contrast=0))
    assert torch.equal(flip(y, torch.Generator()), y.flip(-1))


# Augmentation tests: a 32 px model's preprocessing, settings that leave geometry and
# brightness alone, and a 1-px checkerboard (all detail, no mean change when blurred).
_PRE32 = {"input_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
_STILL = dict(level="t", crop_scale=(1, 1), crop_ratio=(1, 1), flip=0, brightness=0, contrast=0)
_CHECKER = ((torch.arange(32).view(1, 32) + torch.arange(32).view(32, 1)) % 2 * 255).to(torch.uint8)


def test_downscale_augment_loses_detail_but_keeps_size_and_seed():
    """--downscale-augment: a picked crop is shrunk and enlarged back (fine detail gone, size kept);
    the others pass unchanged, and the same seed picks the same crops."""
    pre, still, checker = _PRE32, _STILL, _CHECKER
    assert AugmentSettings.for_level("basic", downscale=True).downscale == 0.3
    assert AugmentSettings.for_level("basic").downscale == 0.0
    assert isinstance(build_train_transform(pre, "none", downscale=True), TrainAugment)
    x = checker.expand(4, 3, 32, 32).contiguous()
    always = TrainAugment(32, AugmentSettings(**still, downscale=1.0, downscale_side=(0.5, 0.5)))
    out = always(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.float().std() < 0.1 * x.float().std()  # a 1-px checkerboard averages out
    many = checker.expand(16, 3, 32, 32).contiguous()
    some = TrainAugment(32, AugmentSettings(**still, downscale=0.5))
    picks = [[not torch.equal(a, b) for a, b in zip(some(many, torch.Generator().manual_seed(seed)), many)] for seed in (3, 3, 4)]
    assert picks[0] == picks[1] != picks[2]
    assert 0 < sum(picks[0]) < 16


def test_blur_and_colour_augment_soften_and_shift_colour_on_both_classes_alike():
    """--blur-augment blurs 40% of crops (a 1-px checkerboard loses most of its contrast);
    --colour-augment shifts saturation and turns some crops grey. Neither looks at the label:
    the transform never sees it."""
    pre, still, checker = _PRE32, _STILL, _CHECKER
    blur = AugmentSettings.for_level("basic", blur=True)
    colour = AugmentSettings.for_level("basic", colour=True)
    assert (blur.blur, blur.saturation, blur.grayscale) == (0.4, 0.0, 0.0)
    assert (colour.blur, colour.saturation, colour.grayscale) == (0.0, 0.25, 0.05)
    assert AugmentSettings.for_level("strong", blur=True).blur == 0.4
    assert AugmentSettings.for_level("strong").blur == 0.25
    assert isinstance(build_train_transform(pre, "none", blur=True), TrainAugment)
    assert isinstance(build_train_transform(pre, "none", colour=True), TrainAugment)
    x = checker.expand(4, 3, 32, 32).contiguous()
    always = TrainAugment(32, AugmentSettings(**still, blur=1.0, blur_sigma=(1.0, 1.0)))
    out = always(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.float().std() < 0.3 * x.float().std()
    assert out.float().mean().sub(x.float().mean()).abs() < 2  # blur keeps the mean
    many = checker.expand(64, 3, 32, 32).contiguous()
    picked = [not torch.equal(a, b) for a, b in zip(build_train_transform(pre, "none", blur=True)(many, torch.Generator().manual_seed(1)), many)]
    assert 10 < sum(picked) < 45  # about 40% of 64
    red = torch.zeros(200, 3, 8, 8, dtype=torch.uint8)
    red[:, 0] = 200
    shifted = TrainAugment(8, AugmentSettings(**still, saturation=0.25, grayscale=0.05))(red, torch.Generator().manual_seed(2)).float()
    spread = shifted[:, 0].mean(dim=(1, 2)) - shifted[:, 1].mean(dim=(1, 2))  # how red each crop still is
    grey = spread.abs() < 1
    assert 1 <= int(grey.sum()) <= 30  # about 5% of 200 turned grey
    assert spread[~grey].min() < 165 and spread[~grey].max() > 220  # red - green = 200 x (0.75 to 1.25)


def test_augmented_batches_do_not_depend_on_the_worker():
    crops = FaceCrops([], 8)
    crops.images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    crops.paths = [f"p{i}" for i in range(5)]
    tf = TrainAugment(8, AugmentSettings.for_level("strong"))
    ds = AugmentedBatches(crops, np.arange(5) % 2, tf, seed=7)
    a, ta = ds[(2, 1, [0, 3, 4])]
    b, tb = ds[(2, 1, [0, 3, 4])]
    assert torch.equal(a, b) and ta.tolist() == [0, 1, 0]
    assert batch_seed(7, 2, 1) != batch_seed(7, 2, 2) != batch_seed(7, 3, 1)


# --------------------------------------------------------------------------- several datasets, DFDC sources


def _dfdc_like(root: Path, pairs: int = 12) -> Path:
    """real/<r>.jpg and fake/<f>.jpg with a sources.csv naming each fake's real video."""
    lines = ["videoname,original_width,original_height,label,original"]
    for i in range(pairs):
        _image(root / "real" / f"r{i:02d}.jpg", 1000 + i)
        lines.append(f"r{i:02d}.mp4,64,64,REAL,")
        for j in range(2):
            _image(root / "fake" / f"f{i:02d}{j}.jpg", 2000 + 10 * i + j)
            lines.append(f"f{i:02d}{j}.mp4,64,64,FAKE,r{i:02d}.mp4")
    (root / "sources.csv").write_text("\n".join(lines) + "\n")
    return root


def test_dfdc_sources_group_each_fake_with_its_real_video(tmp_path):
    root = _dfdc_like(tmp_path / "dfdc_faces")
    table = read_face_table(root, val_fraction=0.3, split_seed=1)
    frame = table.frame
    assert len(frame) == 36 and frame["group"].nunique() == 12
    stem = frame["path"].map(lambda p: Path(p).stem)
    source = stem.str.slice(1, 3)  # r07 and f070/f071 share "07"
    assert (frame.groupby(source)["group"].nunique() == 1).all()
    # Identity-disjoint: no source video on both sides of the carved split.
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    assert set(frame["split"]) == {"train", "val"}


def test_dfdc_sources_missing_columns_is_a_dataset_error(tmp_path):
    root = tmp_path / "d"
    _image(root / "real" / "a.jpg", 1)
    _image(root / "fake" / "b.jpg", 2)
    (root / "sources.csv").write_text("name,label\na.mp4,REAL\n")
    with pytest.raises(DatasetError, match="videoname"):
        read_face_table(root)


def test_shared_dfdc_split_is_identity_disjoint():
    from conftest import DFDC_FACES

    need_shared(DFDC_FACES)
    table = read_face_table(DFDC_FACES, val_fraction=0.15, split_seed=0)
    frame = table.frame
    assert len(frame) == 23957 and table.dataset_names == ["dfdc_faces"]
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    val = frame[frame["split"] == "val"]
    assert 0.12 < len(val) / len(frame) < 0.18 and set(val["label"]) == {"real", "fake"}


def test_several_datasets_keep_their_own_splits_and_names(tmp_path):
    a = tmp_path / "ffpp_like" / "train"
    for i in range(20):
        _image(a / "youtube" / f"{i}.jpg", i)
        _image(a / "Deepfakes" / f"{i}.jpg", 100 + i)
    b = _dfdc_like(tmp_path / "dfdc_like")
    alone_a = read_face_table(a, 0.2, 0)
    alone_b = read_face_table(b, 0.2, 0)
    both = read_face_table([a, b], 0.2, 0)
    assert both.dataset_names == ["ffpp_like", "dfdc_like"]
    assert len(both.frame) == len(alone_a.frame) + len(alone_b.frame)
    for name, alone in (("ffpp_like", alone_a), ("dfdc_like", alone_b)):
        part = both.frame[both.frame["dataset"] == name]
        # Each dataset is split exactly as it would be alone.
        assert part["split"].tolist() == alone.frame["split"].tolist()
        assert part["path"].tolist() == alone.frame["path"].tolist()
    splits = load_splits([a, b], val_fraction=0.2)
    assert set(splits["val"].dataset_counts()) == {"ffpp_like", "dfdc_like"}
    prov = splits.provenance()
    assert set(prov["datasets"]) == {"ffpp_like", "dfdc_like"}
    assert set(prov["splits"]["train"]["datasets"]) == {"ffpp_like", "dfdc_like"}
    assert data_fingerprint(both) != data_fingerprint(alone_a)
    with pytest.raises(UsageError, match="twice"):
        read_face_table([a, a])


def test_datasets_with_different_framings_are_refused(tmp_path):
    a = tmp_path / "a"
    for i in range(3):
        _image(a / "real" / f"{i}.jpg", i)
        _image(a / "fake" / f"{i}.jpg", 10 + i)
    b = tmp_path / "b"
    rows = ["path,label"]
    for i in range(3):
        _image(b / f"{i}.jpg", 20 + i)
        rows.append(f"{i}.jpg,{'real' if i % 2 else 'fake'}")
    (b / "metadata.csv").write_text("\n".join(rows) + "\n")
    (b / "dataset.json").write_text(json.dumps({"face": {"margin": 0.3, "square": True}}))
    with pytest.raises(DatasetError, match="framings"):
        read_face_table([a, b])


def test_sampler_draws_each_stratum_its_share():
    strata = np.array([0] * 10 + [1] * 90)
    sampler = EpochBatchSampler(100, 10, seed=3, strata=strata, shares=[1, 1])
    assert sampler.draws == [50, 50] and len(sampler) == 10
    drawn = [i for _, _, batch in sampler for i in batch]
    assert len(drawn) == 100
    small = [i for i in drawn if i < 10]
    assert len(small) == 50 and set(small) == set(range(10))
    # Each cycle through the small stratum is a permutation: every crop 5 times.
    assert all(small.count(i) == 5 for i in range(10))
    big = [i for i in drawn if i >= 10]
    assert len(big) == len(set(big)) == 50
    again = [i for _, _, batch in EpochBatchSampler(100, 10, seed=3, strata=strata, shares=[1, 1]) for i in batch]
    assert again == drawn
    sampler.set_epoch(1)
    assert [i for _, _, batch in sampler for i in batch] != drawn
