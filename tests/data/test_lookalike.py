"""Look-alike grouping: crops of one person in one setting land in one group, and so in one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from conftest import FFPP_FACES, lookalike_person, make_lookalike_folders, need_shared
from deepfake_cli.data.datasets import load_splits, read_face_table
from deepfake_cli.data.lookalike import lookalike_groups, lookalike_links, thumbnail_signatures


def test_signatures_are_unit_norm_and_a_flat_image_links_to_nothing(tmp_path):
    make_lookalike_folders(tmp_path, people=1)
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "flat.png")
    sig = thumbnail_signatures([str(tmp_path / "youtube" / "roi_0.jpg"), str(tmp_path / "flat.png")])
    assert sig.shape == (2, 768)
    assert np.isclose(np.linalg.norm(sig[0]), 1.0) and not sig[1].any()
    assert lookalike_links(sig, ["x", "x"]) == []


def test_links_are_mutual_nearest_neighbours_above_the_threshold():
    # b is a's nearest, but b's nearest is c: a-b is not linked, b-c is; d is near nobody.
    a, b, c, d = np.array([1.0, 0.0, 0.0]), np.array([0.9, 0.43, 0.0]), np.array([0.8, 0.6, 0.0]), np.array([0.0, 0.0, 1.0])
    sig = np.stack([v / np.linalg.norm(v) for v in (a, b, c, d)])
    assert lookalike_links(sig, ["f"] * 4) == [(1, 2)]
    # Across folders: a (folder r) and b (folder f) are each other's nearest in the other's folder;
    # c's nearest in r is a, but a's nearest in f is b.
    assert lookalike_links(sig, ["r", "f", "f", "r"]) == [(0, 1), (1, 2)]
    assert lookalike_links(sig, ["f"] * 4, threshold=0.999) == []


def test_groups_join_eachlookalike_persons_crops_and_keep_people_apart(tmp_path):
    root = make_lookalike_folders(tmp_path / "faces")
    table = read_face_table(root, val_fraction=0.0)
    frame = table.frame
    assert frame["group"].is_unique  # without look-alikes: every crop alone
    groups = pd.Series(lookalike_groups(frame), index=frame.index)
    bylookalike_person = pd.DataFrame({"person": frame["path"].map(lookalike_person), "group": groups})
    # Every person's four crops are one group, and no group holds two people.
    assert (bylookalike_person.groupby("person")["group"].nunique() == 1).all()
    assert (bylookalike_person.groupby("group")["person"].nunique() == 1).all()


def test_carved_val_never_splits_a_lookalike_group(tmp_path):
    root = make_lookalike_folders(tmp_path / "faces", people=20)
    plain = load_splits(root, val_fraction=0.3, split_seed=0)
    grouped = load_splits(root, val_fraction=0.3, split_seed=0, group_lookalikes=True)
    assert grouped.table.lookalike_groups == {"faces": 20}
    assert grouped.settings["group_lookalikes"] and grouped.provenance()["lookalike_groups"] == {"faces": 20}
    assert not plain.table.lookalike_groups and "lookalike_groups" not in plain.provenance()
    frame = grouped.table.frame
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    sides = frame.groupby(frame["path"].map(lookalike_person))["split"].nunique()
    assert (sides == 1).all() and (frame["split"] == "val").any()  # whole people in val
    # The crop-by-crop carve-out puts people on both sides.
    p = plain.table.frame
    assert (p.groupby(p["path"].map(lookalike_person))["split"].nunique() > 1).any()


def test_shared_ffpp_crops_group_by_source_video():
    """On the real FF++ crops, fakes find the real crops of their target video."""
    need_shared(FFPP_FACES)
    table = read_face_table(FFPP_FACES, val_fraction=0.15, split_seed=0, group_lookalikes=True)
    frame = table.frame
    sizes = frame["group"].value_counts()
    # About one group per source video (FF++ has 1,000; these crops come from about 900).
    assert 700 < table.lookalike_groups["ffpp_faces"] < 1000 and sizes.max() < 150
    with_real = frame.groupby("group")["label"].agg(lambda labels: "real" in set(labels))
    fakes = frame[frame["label"] == "fake"]
    assert fakes["group"].map(with_real).mean() > 0.9
    # The most common group is one source video: two real crops and one crop of each method.
    composition = frame.groupby("group")["method"].agg(lambda m: tuple(sorted(m.value_counts().items())))
    expected = (("Deepfakes", 1), ("Face2Face", 1), ("FaceSwap", 1), ("NeuralTextures", 1), ("original", 2))
    assert composition.value_counts().index[0] == expected
    assert (frame.groupby("group")["split"].nunique() == 1).all()
