from __future__ import annotations

import json
import random

import pytest

from deepfake_cli.errors import DatasetError
from deepfake_cli.data.layouts import ffpp_identities
from deepfake_cli.data.splits import UnionFind, assign_splits, identity_groups, load_official_splits, seeded_group_splits


def ffpp_like(n_people: int = 200, seed: int = 1) -> dict[str, tuple[str, ...]]:
    """Originals 000..N-1 and, like FF++, fakes target_source over random disjoint pairs."""
    ids = [f"{i:03d}" for i in range(n_people)]
    rng = random.Random(seed)
    shuffled = ids[:]
    rng.shuffle(shuffled)
    videos = {f"original/{i}.mp4": ffpp_identities(i) for i in ids}
    for a, b in zip(shuffled[::2], shuffled[1::2]):
        for method in ("Deepfakes", "FaceSwap"):
            videos[f"{method}/{a}_{b}.mp4"] = ffpp_identities(f"{a}_{b}")
            videos[f"{method}/{b}_{a}.mp4"] = ffpp_identities(f"{b}_{a}")
    return videos


def test_union_find_joins_fakes_with_both_originals():
    uf = UnionFind()
    uf.union("ff:519", "ff:515")
    uf.union("ff:515", "ff:700")
    uf.add("ff:004")
    assert uf.groups() == {"ff:004": ["ff:004"], "ff:515": ["ff:515", "ff:519", "ff:700"]}
    groups = identity_groups({"519.mp4": ("ff:519",), "515.mp4": ("ff:515",), "519_515.mp4": ("ff:519", "ff:515"), "004.mp4": ("ff:004",)})
    assert groups == {"519.mp4": "ff:515", "515.mp4": "ff:515", "519_515.mp4": "ff:515", "004.mp4": "ff:004"}


def test_no_identity_in_two_splits_and_fractions_hold():
    videos = ffpp_like()
    result = assign_splits(videos, val_fraction=0.15, test_fraction=0.15, seed=0)
    split_of_identity: dict[str, set[str]] = {}
    for video, ids in videos.items():
        for identity in ids:
            split_of_identity.setdefault(identity, set()).add(result.split_of[video])
    assert all(len(splits) == 1 for splits in split_of_identity.values())
    # 100 groups of 2 people (each with 2 originals + 4 fakes): 70/15/15 exactly.
    groups_per_split = {s: len({result.group_of[v] for v in videos if result.split_of[v] == s}) for s in ("train", "val", "test")}
    assert groups_per_split == {"train": 70, "val": 15, "test": 15}


def test_seeded_split_is_deterministic_and_stable():
    groups = [f"g{i}" for i in range(50)]
    a = seeded_group_splits(groups, 0.2, 0.2, seed=3)
    assert a == seeded_group_splits(list(reversed(groups)), 0.2, 0.2, seed=3)
    assert a != seeded_group_splits(groups, 0.2, 0.2, seed=4)
    # Adding groups moves only groups at the cut points.
    more = seeded_group_splits(groups + [f"h{i}" for i in range(5)], 0.2, 0.2, seed=3)
    assert sum(a[g] != more[g] for g in groups) <= 4
    with pytest.raises(DatasetError):
        seeded_group_splits(groups, 0.6, 0.5)


def test_official_split_files(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps([["519", "515"], ["100", "101"]]))
    (tmp_path / "val.json").write_text(json.dumps([["004", "982"]]))
    (tmp_path / "test.json").write_text(json.dumps([["200", "201"]]))
    official = load_official_splits(tmp_path)
    assert official["ff:982"] == "val" and official["ff:515"] == "train"
    videos = {
        "o/004": ("ff:004",),
        "nt/004_982": ("ff:004", "ff:982"),
        "o/519": ("ff:519",),
        "df/519_515": ("ff:519", "ff:515"),
        "o/200": ("ff:200",),
        "o/999": ("ff:999",),  # not listed: seeded
    }
    result = assign_splits(videos, 0.0, 0.0, official=official)
    assert result.source == "official" and result.unmatched_groups == 1
    assert [result.split_of[v] for v in videos] == ["val", "val", "train", "train", "test", "train"]
    # A group whose identities the files put in two splits is an error.
    with pytest.raises(DatasetError, match="spans splits"):
        assign_splits({"x/004_519": ("ff:004", "ff:519")}, official=official)


def test_bad_official_split_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_official_splits(tmp_path / "none")
    (tmp_path / "train.json").write_text(json.dumps([["1", "2"]]))
    with pytest.raises(DatasetError, match="val.json"):
        load_official_splits(tmp_path)
    (tmp_path / "val.json").write_text(json.dumps([["3", "4"]]))
    (tmp_path / "test.json").write_text("{")
    with pytest.raises(DatasetError, match="test.json"):
        load_official_splits(tmp_path)
    (tmp_path / "test.json").write_text("[]")
    assert load_official_splits(tmp_path) == {"ff:1": "train", "ff:2": "train", "ff:3": "val", "ff:4": "val"}
    (tmp_path / "val.json").write_text(json.dumps([["2", "3"]]))
    with pytest.raises(DatasetError, match="both train.json and val.json"):
        load_official_splits(tmp_path)
