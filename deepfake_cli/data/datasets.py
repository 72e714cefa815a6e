"""Face-crop datasets for ``dfdetect train`` and ``dfdetect evaluate``.

Two sources are read:

- the ``metadata.csv`` written by ``dfdetect extract`` (``path`` relative to
  its folder, ``label`` real|fake, ``method``, ``split``, ``video``,
  ``video_id``, ``group``, ...) with the face framing from ``dataset.json``;
- image folders, ``<root>/<split?>/<class>/**/*.jpg``: ``youtube``,
  ``original``, ``real``... mean real, any other class folder names a fake
  method (``fake/<Method>/`` also works); an image nested in a sub-folder of its
  class folder takes that sub-folder as its video id. A ``sources.csv`` beside
  the class folders (DFDC's ``videoname,...,label,original``) groups each fake
  with the real video it was made from, so no source person is on both sides
  of a carved split.

Several datasets can be read at once (``load_splits([A, B])``): each carves
its own validation split, and every row names its ``dataset``, so training and
evaluation report each dataset's metrics as well as the combined ones.

When the data has no ``val`` rows, a validation split is carved out of
``train`` by identity group (or video, or single crop) with the seeded hash
of :func:`deepfake_cli.data.splits.seeded_group_splits`, before any filter or
subset is applied, so the same data, fraction and seed always give the same
split (``evaluate --split val`` finds the crops a model was validated on).

Crops are decoded once (:class:`FaceCrops`) into a uint8 tensor when they fit
the memory budget; batches of indices (:class:`EpochBatchSampler`, sharded
across DDP ranks like ``DistributedSampler``) become augmented batches in
DataLoader workers (:class:`AugmentedBatches`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from deepfake_cli.errors import DatasetError, InputFileError, UsageError
from deepfake_cli.faces.framing import resize_square
from deepfake_cli.media.images import IMAGE_EXTENSIONS, load_image
from deepfake_cli.labels import BINARY_LABELS, FAKE_METHODS, MULTICLASS_LABELS, canonical_method, is_real_name, real_index
from deepfake_cli.data.splits import SPLITS, seeded_group_splits

METADATA_FILE = "metadata.csv"
DATASET_FILE = "dataset.json"
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
GENERIC_FAKE = "fake"
TABLE_COLUMNS = ("path", "label", "method", "split", "video_id", "video_key", "group", "dataset")
# DFDC-style per-video sources beside the class folders: a fake's ``original`` is its real video.
SOURCES_FILE = "sources.csv"


@dataclass
class FaceTable:
    """Every crop of a dataset: absolute ``path``, ``label`` (real|fake), canonical
    ``method``, ``split``, ``video_id``/``video_key`` (empty when unknown) and ``group``."""

    frame: pd.DataFrame
    root: Path
    source: str  # "metadata" or "folders"
    face: dict[str, Any] | None = None  # framing recorded by dfdetect extract
    carved_val: bool = False
    # Each dataset's number of train groups after look-alike grouping, when it ran.
    lookalike_groups: dict[str, int] = field(default_factory=dict)
    # Each dataset's name and folder (one for a single --data); rows name theirs in ``dataset``.
    roots: dict[str, Path] = field(default_factory=dict)

    def has_split(self, name: str) -> bool:
        return bool((self.frame["split"] == name).any())

    @property
    def has_videos(self) -> bool:
        return bool((self.frame["video_key"] != "").any())

    @property
    def dataset_names(self) -> list[str]:
        return list(self.roots)


def dataset_name(root: str | os.PathLike[str]) -> str:
    """A dataset's short name: its folder's, or the parent's when the folder is a split (``ffpp_faces/train``)."""
    path = Path(os.path.abspath(Path(root).expanduser()))
    if path.suffix.lower() == ".csv":
        path = path.parent
    if path.name.lower() in SPLIT_ALIASES and path.parent.name:
        return path.parent.name
    return path.name or str(path)


def as_roots(root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None) -> list[str]:
    """``data.root`` as a list: one dataset or several (``--data A --data B``)."""
    if root is None:
        return []
    if isinstance(root, (str, os.PathLike)):
        return [os.fspath(root)]
    return [os.fspath(r) for r in root]


def read_face_table(
    root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    val_fraction: float = 0.15,
    split_seed: int = 0,
    group_lookalikes: bool = False,
) -> FaceTable:
    """Read a metadata.csv (file or its folder) or an image-folder dataset; or several, each split apart.

    ``group_lookalikes``: before carving val out of an image-folder dataset, join the groups of
    crops that look like the same person in the same setting (:mod:`deepfake_cli.data.lookalike`).
    """
    roots = as_roots(root)
    if not roots:
        raise DatasetError("no dataset given")
    tables = [_read_one_table(r, val_fraction, split_seed, group_lookalikes) for r in roots]
    return tables[0] if len(tables) == 1 else _combine_tables(tables)


def _combine_tables(tables: list[FaceTable]) -> FaceTable:
    """One table over several datasets; each keeps the validation split it carved itself."""
    names: dict[str, Path] = {}
    lookalikes: dict[str, int] = {}
    frames = []
    for table in tables:
        (name, root), = table.roots.items()
        unique, k = name, 2
        while unique in names:  # two folders of the same name
            unique, k = f"{name}_{k}", k + 1
        if any(table.root.resolve() == other.resolve() for other in names.values()):
            raise UsageError(f"--data {table.root} is given twice")
        names[unique] = root
        if table.lookalike_groups:
            lookalikes[unique] = next(iter(table.lookalike_groups.values()))
        frame = table.frame.copy()
        frame["dataset"] = unique
        # Groups are per dataset: two datasets' 'real/x.jpg' are different people.
        frame["group"] = unique + ":" + frame["group"].astype(str)
        frames.append(frame)
    framings = {json.dumps(t.face, sort_keys=True) for t in tables}
    if len(framings) > 1:
        described = "; ".join(f"{n}: {t.face or 'not recorded'}" for n, t in zip(names, tables))
        raise DatasetError(
            f"the datasets were cropped with different face framings ({described}): a model records one framing "
            "for inference, so train on data cropped the same way"
        )
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    frame = pd.concat([f.reindex(columns=columns, fill_value="") for f in frames], ignore_index=True)
    return FaceTable(
        frame=frame,
        root=tables[0].root,
        source="+".join(dict.fromkeys(t.source for t in tables)),
        face=tables[0].face,
        carved_val=any(t.carved_val for t in tables),
        lookalike_groups=lookalikes,
        roots=names,
    )


def _read_one_table(root: str | os.PathLike[str], val_fraction: float, split_seed: int, group_lookalikes: bool) -> FaceTable:
    given = root
    root = Path(root).expanduser()
    if root.is_file() and root.suffix.lower() == ".csv":
        table = _read_metadata(root)
    elif root.is_dir() and (root / METADATA_FILE).is_file():
        table = _read_metadata(root / METADATA_FILE)
    elif root.is_dir():
        table = _read_folders(root)
    else:
        raise DatasetError(f"dataset not found: {root} (expected a folder of class folders or a metadata.csv)")
    if table.frame.empty:
        raise DatasetError(f"{root}: no face crops found")
    lookalikes = None
    if not table.has_split("val") and val_fraction > 0:
        if group_lookalikes and table.source == "folders":
            from deepfake_cli.data.lookalike import lookalike_groups

            train = table.frame["split"] == "train"
            table.frame.loc[train, "group"] = lookalike_groups(table.frame[train])
            lookalikes = int(table.frame.loc[train, "group"].nunique())
        table.frame = carve_val(table.frame, val_fraction, split_seed)
        table.carved_val = table.has_split("val")
    name = dataset_name(given)
    if lookalikes is not None:
        table.lookalike_groups = {name: lookalikes}
    table.frame["dataset"] = name
    table.roots = {name: table.root}
    return table


def data_fingerprint(table: FaceTable) -> str:
    """SHA-256 of every crop's path relative to the dataset root, size, label and method.

    The same crops give the same fingerprint wherever they lie, so ``evaluate``
    recognises a model's training data on another machine or after a move and
    re-makes its validation split instead of scoring the training crops.
    """
    frame = table.frame
    several = len(table.roots) > 1
    datasets = frame["dataset"] if several else [""] * len(frame)
    lines = sorted(
        f"{name + ':' if several else ''}{Path(os.path.relpath(path, table.roots.get(name, table.root))).as_posix()}"
        f"\t{os.stat(path).st_size}\t{label}\t{method}\n"
        for path, label, method, name in zip(frame["path"], frame["label"], frame["method"], datasets)
    )
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


def crop_digests(paths: Sequence[str]) -> np.ndarray:
    """A 64-bit BLAKE2b digest of each file's bytes (int64).

    Checkpoints keep those of their training crops, so that ``evaluate`` knows a
    training crop by its content in any folder, under any name (a subset copied
    elsewhere, a symlinked sample).
    """
    out = np.empty(len(paths), dtype=np.int64)
    for i, path in enumerate(paths):
        with open(path, "rb") as fh:
            out[i] = int.from_bytes(hashlib.blake2b(fh.read(), digest_size=8).digest(), "little", signed=True)
    return out


def carve_val(frame: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Move a seeded ``val_fraction`` of the train groups to ``val`` (whole groups).

    With fewer than 2 training groups there is nothing to carve: the frame is
    returned as it is, without a ``val`` split (``train`` then says so; scoring a
    ``test`` split never needed one).
    """
    train = frame["split"] == "train"
    groups = frame.loc[train, "group"].unique().tolist()
    if len(groups) < 2:
        return frame
    assignment = seeded_group_splits(groups, val_fraction=val_fraction, test_fraction=0.0, seed=seed)
    frame = frame.copy()
    moved = train & frame["group"].map(assignment).eq("val")
    frame.loc[moved, "split"] = "val"
    return frame


def _read_csv(csv_path: Path, required: tuple[str, ...], what: str, hint: str = "") -> pd.DataFrame:
    """A CSV as strings, or one DatasetError saying why it cannot be read or which columns it lacks."""
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DatasetError(f"{csv_path}: cannot read {what}({exc})") from exc
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise DatasetError(f"{csv_path}: {what}lacks the column(s) {', '.join(missing)}{hint}")
    return raw


def _read_metadata(csv_path: Path) -> FaceTable:
    folder = csv_path.parent
    raw = _read_csv(csv_path, ("path", "label"), "metadata ")
    labels = raw["label"].str.strip().str.lower()
    bad = ~labels.isin(BINARY_LABELS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{csv_path}: row {row + 2}: label must be real or fake, got {raw['label'].iloc[row]!r}")
    frame = raw.copy()
    frame["label"] = labels
    frame["path"] = [str(p if os.path.isabs(p) else folder / p) for p in raw["path"]]
    if "method" in raw.columns:
        frame["method"] = [canonical_method(m) if m else ("original" if l == "real" else GENERIC_FAKE) for m, l in zip(raw["method"], labels)]
    else:
        frame["method"] = np.where(labels == "real", "original", GENERIC_FAKE)
    if "split" in raw.columns:
        splits = raw["split"].str.strip().str.lower().map(lambda s: SPLIT_ALIASES.get(s, s) if s else "train")
        bad = ~splits.isin(SPLITS)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{csv_path}: row {row + 2}: split must be train, val or test, got {raw['split'].iloc[row]!r}")
        frame["split"] = splits
    else:
        frame["split"] = "train"
    video_id = raw["video_id"] if "video_id" in raw.columns else pd.Series([""] * len(raw))
    frame["video_id"] = video_id.to_numpy()
    if "video" in raw.columns:
        frame["video_key"] = raw["video"].to_numpy()
    else:
        frame["video_key"] = [f"{m}/{v}" if v else "" for m, v in zip(frame["method"], frame["video_id"])]
    group = raw["group"] if "group" in raw.columns else pd.Series([""] * len(raw))
    # A crop without a group or video is its own group, named by its path as the CSV
    # writes it: seeded splits then do not depend on where the dataset lies.
    frame["group"] = [g or v or p for g, v, p in zip(group, frame["video_key"], raw["path"])]
    _check_files(frame["path"], csv_path)
    return FaceTable(frame=frame.reset_index(drop=True), root=folder, source="metadata", face=_dataset_framing(folder))


def _dataset_framing(folder: Path) -> dict[str, Any] | None:
    path = folder / DATASET_FILE
    if not path.is_file():
        return None
    try:
        face = json.loads(path.read_text(encoding="utf-8")).get("face")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc
    return dict(face) if isinstance(face, dict) else None


def _check_files(paths: pd.Series, source: Path) -> None:
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DatasetError(f"{source}: {len(missing)} crop file(s) not found, e.g. {missing[0]}")


def _subdirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _read_folders(root: Path) -> FaceTable:
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    if split_dirs:
        others = [d.name for d in subdirs if d not in split_dirs]
        if others:
            raise DatasetError(
                f"{root}: mixes split folders ({', '.join(d.name for d in split_dirs)}) with other folders "
                f"({', '.join(others)}); expected <root>/<split>/<class>/ or <root>/<class>/"
            )
        parts = [(SPLIT_ALIASES[d.name.lower()], d) for d in split_dirs]
    else:
        parts = [("train", root)]
    rows: list[dict[str, str]] = []
    for split, folder in parts:
        classes = _subdirs(folder)
        if not classes:
            raise DatasetError(f"{folder}: no class folders (expected e.g. real/ and fake/, or youtube/ and method folders)")
        for class_dir in classes:
            rows += _class_rows(class_dir, split, root)
    frame = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    sources = root / SOURCES_FILE
    if sources.is_file() and not frame.empty:
        frame["group"] = _source_groups(sources, frame)
    return FaceTable(frame=frame, root=root, source="folders", face=None)


def _source_groups(csv_path: Path, frame: pd.DataFrame) -> list[str]:
    """Each crop's identity group from DFDC's sources: a fake joins the real video it was made from.

    Crops are matched by file stem (``abc.jpg`` is video ``abc.mp4``); a crop the file does not
    name keeps its own group.
    """
    raw = _read_csv(csv_path, ("videoname", "original"), "", hint=" (DFDC's videoname,...,original)")
    stem = lambda name: Path(str(name).strip()).stem  # noqa: E731
    source_of = {stem(v): stem(o) if str(o).strip() else stem(v) for v, o in zip(raw["videoname"], raw["original"])}
    groups = []
    for path, group in zip(frame["path"], frame["group"]):
        source = source_of.get(Path(path).stem)
        groups.append(f"source/{source}" if source else group)
    return groups


def _class_rows(class_dir: Path, split: str, root: Path) -> list[dict[str, str]]:
    real = is_real_name(class_dir.name)
    generic_fake = class_dir.name.lower() == GENERIC_FAKE
    rows = []
    for path in sorted(class_dir.rglob("*")):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        nested = list(path.relative_to(class_dir).parts[:-1])
        method = "original" if real else canonical_method(class_dir.name)
        if generic_fake and nested:
            method = canonical_method(nested.pop(0))  # fake/<Method>/...
        video_id = "/".join(nested)
        video_key = f"{method}/{video_id}" if video_id else ""
        rows.append({
            "path": str(path), "label": "real" if real else "fake", "method": method, "split": split,
            "video_id": video_id, "video_key": video_key,
            # Named relative to the root, so seeded splits do not depend on how --data is spelled.
            "group": video_key or path.relative_to(root).as_posix(), "dataset": "",
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- labels and targets


def task_labels(task: str, methods: Sequence[str]) -> tuple[str, ...]:
    """Class names for ``binary`` (real, fake) or ``multiclass`` (original + each method)."""
    if task == "binary":
        return BINARY_LABELS
    if task != "multiclass":
        raise DatasetError(f"task must be binary or multiclass, got {task!r}")
    fakes = sorted({m for m in methods if m != "original"})
    if GENERIC_FAKE in fakes:
        raise DatasetError("multiclass training needs a method for every fake crop; some are only labelled 'fake'")
    if all(m in FAKE_METHODS for m in fakes):
        return MULTICLASS_LABELS
    return ("original", *fakes)


def encode_targets(frame: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    """Class index of each row in ``labels`` (-1 where a method is not among them)."""
    labels = list(labels)
    real = real_index(labels)
    if len(labels) == 2:
        fake = 1 - real
        return np.where(frame["label"].to_numpy() == "real", real, fake).astype(np.int64)
    index = {name: i for i, name in enumerate(labels)}
    return np.array(
        [real if lab == "real" else index.get(m, -1) for lab, m in zip(frame["label"], frame["method"])],
        dtype=np.int64,
    )


# --------------------------------------------------------------------------- subsets


def _rank(paths: Sequence[str], seed: int) -> list[int]:
    """Positions ordered by a seeded hash of each path: a stable pseudo-random order."""
    keys = [hashlib.sha256(f"{seed}:{p}".encode()).hexdigest() for p in paths]
    return sorted(range(len(paths)), key=keys.__getitem__)


def _spread(total: int, sizes: dict[str, int]) -> dict[str, int]:
    """Share ``total`` as evenly as the group sizes allow (small groups first)."""
    out: dict[str, int] = {}
    remaining, left = total, len(sizes)
    for name, size in sorted(sizes.items(), key=lambda kv: (kv[1], kv[0])):
        take = min(size, math.ceil(remaining / left)) if left else 0
        out[name] = take
        remaining -= take
        left -= 1
    return out


def balanced_subset(frame: pd.DataFrame, targets: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Row positions of at most ``per_class`` rows per target, spread evenly over methods."""
    keep: list[int] = []
    methods = frame["method"].to_numpy()
    paths = frame["path"].to_numpy()
    for target in sorted(set(targets.tolist())):
        rows = np.flatnonzero(targets == target)
        by_method: dict[str, list[int]] = {}
        for r in rows:
            by_method.setdefault(methods[r], []).append(int(r))
        quota = _spread(per_class, {m: len(v) for m, v in by_method.items()})
        for method, members in by_method.items():
            ranked = [members[i] for i in _rank([paths[m] for m in members], seed)]
            keep += ranked[: quota[method]]
    return np.array(sorted(keep), dtype=np.int64)


def balanced_per_dataset(
    frame: pd.DataFrame, targets: np.ndarray, per_class: int | Callable[[str, int], int], seed: int
) -> np.ndarray:
    """:func:`balanced_subset` of each dataset apart (several datasets: each keeps its own classes).

    ``per_class`` is a number or ``quota(dataset, rows)``.
    """
    datasets = frame["dataset"].to_numpy() if "dataset" in frame.columns else np.array([""] * len(frame))
    parts = []
    for dataset in dict.fromkeys(datasets.tolist()):
        rows = np.flatnonzero(datasets == dataset)
        n = per_class(dataset, len(rows)) if callable(per_class) else per_class
        part = frame.iloc[rows].reset_index(drop=True)
        parts.append(rows[balanced_subset(part, targets[rows], n, seed)])
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)


# --------------------------------------------------------------------------- splits


@dataclass
class SplitData:
    """The rows of one split with their class targets."""

    name: str
    frame: pd.DataFrame
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def paths(self) -> list[str]:
        return self.frame["path"].tolist()

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.targets[self.targets >= 0], minlength=num_classes)

    def real_fake_counts(self) -> tuple[int, int]:
        """Real and fake crops (whatever the task: the binary label every row carries)."""
        fake = int((self.frame["label"] == "fake").sum())
        return len(self) - fake, fake

    def method_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.frame["method"].value_counts().sort_index().items()}

    def dataset_counts(self) -> dict[str, int]:
        """Crops per dataset, in the order the datasets were given."""
        names = self.frame["dataset"] if "dataset" in self.frame.columns else pd.Series([], dtype=str)
        return {str(k): int(v) for k, v in names.value_counts(sort=False).items()}


@dataclass
class DatasetSplits:
    """A dataset read, filtered and split, with the label set its targets refer to."""

    table: FaceTable
    labels: tuple[str, ...]
    splits: dict[str, SplitData] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> SplitData:
        return self.splits[name]

    def get(self, name: str) -> SplitData | None:
        split = self.splits.get(name)
        return split if split is not None and len(split) else None

    @cached_property
    def fingerprint(self) -> str:
        """:func:`data_fingerprint` of the table, computed once (checkpoints are saved every epoch)."""
        return data_fingerprint(self.table)

    @cached_property
    def train_digests(self) -> np.ndarray:
        """Sorted :func:`crop_digests` of the train split (empty without one)."""
        train = self.get("train")
        return np.unique(crop_digests(train.paths)) if train is not None else np.empty(0, np.int64)

    def provenance(self) -> dict[str, Any]:
        """What a checkpoint or report records about the data."""
        several = len(self.table.roots) > 1
        return {
            "data": str(self.table.root.resolve()),
            **({"datasets": {n: str(r.resolve()) for n, r in self.table.roots.items()}} if several else {}),
            "fingerprint": self.fingerprint,
            "source": self.table.source,
            "carved_val": self.table.carved_val,
            **self.settings,
            **({"lookalike_groups": dict(self.table.lookalike_groups)} if self.table.lookalike_groups else {}),
            "splits": {
                name: {"crops": len(s), "methods": s.method_counts(), **({"datasets": s.dataset_counts()} if several else {})}
                for name, s in self.splits.items() if len(s)
            },
        }


def load_splits(
    root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    task: str = "binary",
    labels: Sequence[str] | None = None,
    val_fraction: float = 0.15,
    split_seed: int = 0,
    group_lookalikes: bool = False,
    methods: Sequence[str] | None = None,
    compression: str | None = None,
    limit_per_class: int | None = None,
) -> DatasetSplits:
    """Read ``root`` (one dataset or a list), keep the chosen methods/compression, encode targets, subset.

    ``labels`` (a model's) wins over ``task``. ``limit_per_class`` keeps at most
    that many crops per class in ``train`` and the same proportion in the others.
    """
    table = read_face_table(root, val_fraction, split_seed, group_lookalikes)
    frame = table.frame
    if methods:
        wanted = {canonical_method(m) for m in methods}
        present = set(frame["method"].unique().tolist())
        absent = sorted(wanted - present - {"original"})
        if absent:  # a typo would otherwise drop every fake crop, and the run would go on
            raise UsageError(f"{table.root}: no crops of method {', '.join(absent)} "
                             f"(found: {', '.join(sorted(present)) or 'none'})")
        frame = frame[(frame["label"] == "real") | frame["method"].isin(wanted)]
    if compression and "compression" in frame.columns:
        frame = frame[frame["compression"] == compression]
    if frame.empty:
        raise DatasetError(f"{table.root}: no crops left after the method/compression filters")
    labels = tuple(labels) if labels else task_labels(task, frame["method"].unique().tolist())
    targets = encode_targets(frame, labels)
    split_of = frame["split"].to_numpy()
    out = DatasetSplits(
        table=table,
        labels=labels,
        settings={
            "task": "binary" if len(labels) == 2 else "multiclass",
            "val_fraction": val_fraction,
            "split_seed": split_seed,
            "group_lookalikes": group_lookalikes,
            "methods": list(methods) if methods else None,
            "compression": compression,
            "limit_per_class": limit_per_class,
        },
    )
    for name in SPLITS:
        mask = split_of == name
        sub, sub_targets = frame[mask].reset_index(drop=True), targets[mask]
        if limit_per_class and len(sub):
            def quota(dataset: str, rows: int) -> int:
                trained = int(((split_of == "train") & (frame["dataset"] == dataset).to_numpy()).sum())
                if name != "train" and trained:
                    return max(1, math.ceil(limit_per_class * rows / trained))
                return limit_per_class

            keep = balanced_per_dataset(sub, sub_targets, quota, split_seed)
            sub, sub_targets = sub.iloc[keep].reset_index(drop=True), sub_targets[keep]
        out.splits[name] = SplitData(name, sub, sub_targets)
    return out


# --------------------------------------------------------------------------- decoded crops


def read_crop(path: str, size: int) -> np.ndarray:
    """One crop file -> RGB uint8 (size, size, 3), resized whole as inference does."""
    try:
        return resize_square(load_image(path), size)
    except InputFileError as exc:
        raise DatasetError(f"cannot read training crop: {exc}") from exc


def load_crops(
    paths: Sequence[str], size: int, threads: int | None = None, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Decode and resize many crops with a thread pool (PIL and OpenCV release the GIL)."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    threads = threads or min(8, os.cpu_count() or 1)
    chunk = 64
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for start in range(0, len(paths), chunk):
            part = paths[start : start + chunk]
            for i, img in enumerate(pool.map(read_crop, part, [size] * len(part))):
                out[start + i] = img
            if progress is not None:
                progress(len(part))
    return out


class FaceCrops:
    """The crops of one split at one size, as uint8 (N, 3, size, size) batches.

    Decoded once into memory when ``N * 3 * size * size`` bytes fit in
    ``cache_max_mb``; otherwise every batch is read from disk (in the DataLoader
    workers, so it overlaps with training).
    """

    def __init__(
        self,
        paths: Sequence[str],
        size: int,
        cache_max_mb: float = 4096,
        threads: int | None = None,
        progress: Callable[[int], None] | None = None,
    ):
        self.paths = list(paths)
        self.size = int(size)
        self.nbytes = len(self.paths) * 3 * self.size * self.size
        self.cached = self.nbytes <= cache_max_mb * 1024 * 1024
        self.images: torch.Tensor | None = None
        if self.cached and self.paths:
            hwc = load_crops(self.paths, self.size, threads, progress)
            self.images = torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        if self.images is not None:
            return self.images[torch.as_tensor(indices, dtype=torch.long)]
        hwc = np.stack([read_crop(self.paths[i], self.size) for i in indices])
        return torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()


def batch_seed(seed: int, epoch: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """The seed of one batch's augmentation (stream 0) or one epoch's order (stream 1),
    independent of worker count and scheduling."""
    entropy = [int(seed) & 0xFFFFFFFF, epoch, step, rank, stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochBatchSampler:
    """Batches of indices for one epoch, seeded by (seed, epoch).

    Shuffled like ``DistributedSampler``: the permutation is padded to a
    multiple of ``world_size`` and rank ``r`` takes every ``world_size``-th
    index from ``r``, so all ranks run the same number of steps. Items are
    ``(epoch, step, indices)`` for :class:`AugmentedBatches`.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        max_steps: int | None = None,
        strata: np.ndarray | None = None,
        shares: Sequence[float] | None = None,
    ):
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world_size, self.max_steps = rank, world_size, max_steps
        self.epoch = 0
        # Datasets mixed in fixed shares: stratum k gives round(shares[k] * size) draws an epoch,
        # cycling through its own permutations (a small dataset is seen more than once).
        self.strata = None
        if strata is not None and shares is not None:
            strata = np.asarray(strata)
            total = float(sum(shares))
            self.strata = [np.flatnonzero(strata == k) for k in range(len(shares))]
            counts = [int(round(size * w / total)) if len(m) else 0 for w, m in zip(shares, self.strata)]
            self.draws = counts
            self.size = sum(counts)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _stratified(self, g: torch.Generator) -> list[int]:
        picked = []
        for members, draws in zip(self.strata, self.draws):
            cycles = math.ceil(draws / len(members)) if draws else 0
            cycle = [members[torch.randperm(len(members), generator=g).numpy()] for _ in range(cycles)]
            picked.append(np.concatenate(cycle)[:draws] if cycle else np.empty(0, np.int64))
        everything = np.concatenate(picked)
        return everything[torch.randperm(len(everything), generator=g).numpy()].tolist()

    def _indices(self) -> list[int]:
        if self.strata is not None:
            g = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, 0, stream=1))
            order = self._stratified(g)
        elif self.shuffle:
            g = torch.Generator().manual_seed(batch_seed(self.seed, self.epoch, 0, stream=1))
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        if self.world_size > 1:
            per_rank = math.ceil(self.size / self.world_size)
            order = (order * self.world_size)[: per_rank * self.world_size] if order else order
            order = order[self.rank :: self.world_size]
        return order

    def __len__(self) -> int:
        per_rank = math.ceil(self.size / self.world_size)
        steps = math.ceil(per_rank / self.batch_size)
        return min(steps, self.max_steps) if self.max_steps else steps

    def __iter__(self) -> Iterator[tuple[int, int, list[int]]]:
        order = self._indices()
        for step in range(len(self)):
            yield self.epoch, step, order[step * self.batch_size : (step + 1) * self.batch_size]


class AugmentedBatches(torch.utils.data.Dataset):
    """Whole batches as dataset items: ``(epoch, step, indices)`` -> (uint8 images, targets).

    Each batch's augmentation draws from its own generator seeded by
    :func:`batch_seed`, so a run is reproducible with any number of workers
    and a resumed run continues exactly.
    """

    def __init__(self, crops: FaceCrops, targets: np.ndarray, transform, seed: int = 0, rank: int = 0):
        self.crops, self.transform, self.seed, self.rank = crops, transform, seed, rank
        self.targets = torch.as_tensor(targets, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key: tuple[int, int, list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, step, indices = key
        images = self.crops.get(indices)
        generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, step, self.rank))
        images = self.transform(images, generator)
        return images, self.targets[torch.as_tensor(indices, dtype=torch.long)]
