"""Train/val/test splits by identity, never by frame or by video.

Videos that show a common person are joined into one *group* (union-find
over identities: FF++ fake ``519_515`` joins originals 519 and 515, and with
them every other fake that shows 519 or 515); a whole group goes to one split.
The split is either read from the official FF++ split files (``train.json``,
``val.json``, ``test.json``: lists of ``[target, source]`` id pairs) or drawn
from a seeded hash of each group's name, cut at the requested fractions.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from deepfake_cli.errors import DatasetError

SPLITS: tuple[str, ...] = ("train", "val", "test")


class UnionFind:
    """Disjoint sets of hashable keys, with path halving."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def add(self, key: str) -> None:
        self._parent.setdefault(key, key)

    def find(self, key: str) -> str:
        self.add(key)
        parent = self._parent
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller key becomes the root: group names do not depend on order.
            lo, hi = sorted((ra, rb))
            self._parent[hi] = lo

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key in sorted(self._parent):
            out.setdefault(self.find(key), []).append(key)
        return out


@dataclass(frozen=True)
class SplitAssignment:
    """Each video's identity group and split, plus how the split was made."""

    group_of: dict[str, str]  # video key -> group id
    split_of: dict[str, str]  # video key -> train/val/test
    source: str  # "seeded" or "official"
    val_fraction: float
    test_fraction: float
    seed: int
    unmatched_groups: int = 0  # official split: groups absent from the files (seeded instead)


def identity_groups(identities: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Map each video key to its group id (the smallest identity in the group)."""
    uf = UnionFind()
    for ids in identities.values():
        if not ids:
            raise ValueError("every video needs at least one identity")
        for other in ids[1:]:
            uf.union(ids[0], other)
        uf.add(ids[0])
    return {video: uf.find(ids[0]) for video, ids in identities.items()}


def seeded_group_splits(
    groups: Iterable[str], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict[str, str]:
    """Deterministic split of group ids: ranked by a seeded hash, cut at the fractions.

    A group's rank does not depend on which other groups exist, so adding
    videos moves at most the groups at the cut points.
    """
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"val fraction {val_fraction} + test fraction {test_fraction} must be >= 0 and below 1"
        )
    ranked = sorted(set(groups), key=lambda g: (hashlib.sha256(f"{seed}:{g}".encode()).hexdigest(), g))
    n = len(ranked)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    out = {}
    for i, group in enumerate(ranked):
        out[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def load_official_splits(splits_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Identity key (``ff:071``) -> split from FF++'s train/val/test.json pair lists."""
    folder = Path(splits_dir)
    if not folder.is_dir():
        raise DatasetError(f"splits folder not found: {folder}")
    split_of: dict[str, str] = {}
    for split in SPLITS:
        path = folder / f"{split}.json"
        if not path.is_file():
            raise DatasetError(f"{folder}: missing {split}.json (expected train.json, val.json, test.json)")
        try:
            pairs = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read split file ({exc})") from exc
        if not isinstance(pairs, list) or not all(isinstance(p, (list, tuple)) for p in pairs):
            raise DatasetError(f"{path}: expected a list of [target, source] id pairs")
        for pair in pairs:
            for video_id in pair:
                key = f"ff:{video_id}"
                previous = split_of.setdefault(key, split)
                if previous != split:
                    raise DatasetError(f"{folder}: id {video_id} is in both {previous}.json and {split}.json")
    return split_of


def assign_splits(
    identities: Mapping[str, Sequence[str]],
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    official: Mapping[str, str] | None = None,
) -> SplitAssignment:
    """Group videos by shared identity and give each group one split.

    ``identities`` maps a video key to its identity keys. With ``official``
    (from :func:`load_official_splits`) a group takes the split its identities
    are listed in; groups that are not listed get the seeded split.
    """
    group_of = identity_groups(identities)
    members: dict[str, set[str]] = {}
    for video, ids in identities.items():
        members.setdefault(group_of[video], set()).update(ids)
    seeded = seeded_group_splits(members, val_fraction, test_fraction, seed)
    group_split = dict(seeded)
    unmatched = 0
    if official is not None:
        for group, ids in members.items():
            listed = {official[i] for i in ids if i in official}
            if len(listed) > 1:
                raise DatasetError(
                    f"identity group {group} ({', '.join(sorted(ids))}) spans splits "
                    f"{', '.join(sorted(listed))} in the official split files"
                )
            if listed:
                group_split[group] = listed.pop()
            else:
                unmatched += 1
    return SplitAssignment(
        group_of=group_of,
        split_of={video: group_split[group_of[video]] for video in identities},
        source="seeded" if official is None else "official",
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        unmatched_groups=unmatched,
    )
