"""Finding the videos of a deepfake dataset, with their labels and identities.

Four layouts are understood (``detect_layout`` picks one):

- ``ffpp``: the official FaceForensics++ download,
  ``original_sequences/{youtube,actors}/<c23|c40|raw>/videos/*.mp4`` and
  ``manipulated_sequences/<Method>/<comp>/videos/*.mp4``;
- ``kaggle``: the Kaggle FF++ copy, one folder of videos per method
  (``original/``, ``Deepfakes/``, ...; other folders such as ``csv/`` ignored);
- ``dfdc``: DFDC parts, folders holding a ``metadata.json`` that gives each
  video's label and, for fakes, the original it was made from;
- ``real-fake``: ``real/`` and ``fake/`` folders (searched recursively; a
  sub-folder of ``fake/`` names the method).

Every video carries the *identities* (people) it shows, so that splits can
keep a person on one side: FF++ fake ``519_515`` shows identities 519 and 515.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from deepfake_cli.errors import DatasetError, UsageError
from deepfake_cli.media.images import VIDEO_EXTENSIONS
from deepfake_cli.labels import FAKE_METHODS, canonical_method

LAYOUTS: tuple[str, ...] = ("ffpp", "kaggle", "dfdc", "real-fake")
FFPP_REAL_SOURCES: tuple[str, ...] = ("youtube", "actors")
FFPP_COMPRESSIONS: tuple[str, ...] = ("raw", "c23", "c40")
DFDC_METHOD = "DFDC"
GENERIC_FAKE_METHOD = "fake"

# FF++ names: youtube originals "004", fakes "<target>_<source>"; actors
# (DeepFakeDetection) originals "01__scene", fakes "01_02__scene__CODE".
_YOUTUBE = re.compile(r"^(\d{3})(?:_(\d{3}))?$")
_ACTORS = re.compile(r"^(\d{2})(?:_(\d{2}))?__")


@dataclass(frozen=True)
class VideoItem:
    """One source video of a dataset."""

    path: Path
    rel: str  # relative to the dataset root, with forward slashes
    video_id: str  # unique within its method: names the crop folder
    label: str  # "real" or "fake"
    method: str  # "original" for reals, else the manipulation method
    compression: str | None
    identities: tuple[str, ...]  # identity keys, e.g. ("ff:519", "ff:515")


def _not_a_folder(root: Path) -> str:
    if root.is_file():
        return f"{root}: a file; extract reads a dataset folder (FF++ download layout, real/ + fake/, ...)"
    return f"dataset folder not found: {root}"


def detect_layout(root: str | os.PathLike[str]) -> str:
    """The layout of ``root``, or :class:`DatasetError` saying what was expected."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(_not_a_folder(root))
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return "ffpp"
    if (root / "metadata.json").is_file() or any((d / "metadata.json").is_file() for d in _subdirs(root)):
        return "dfdc"
    names = {d.name.lower() for d in _subdirs(root)}
    if "real" in names and "fake" in names:
        return "real-fake"
    if any(_kaggle_method(d.name) for d in _subdirs(root)):
        return "kaggle"
    raise DatasetError(
        f"{root}: unknown dataset layout; expected original_sequences/ + manipulated_sequences/ (FF++), "
        "original/ + method folders (Kaggle FF++), folders with metadata.json (DFDC) or real/ + fake/"
    )


def discover_videos(
    root: str | os.PathLike[str],
    layout: str = "auto",
    methods: Sequence[str] | None = None,
    compression: str | None = None,
) -> tuple[str, list[VideoItem]]:
    """The layout used and the videos found under ``root``, sorted by path.

    ``methods`` keeps only those manipulation methods (real videos are always
    kept, except the FF++ ``actors`` originals, which only DeepFakeDetection
    uses); ``compression`` picks one FF++ compression level.
    """
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in LAYOUTS:
        raise UsageError(f"unknown layout '{layout}' (valid: auto, {', '.join(LAYOUTS)})")
    elif not root.is_dir():
        raise DatasetError(_not_a_folder(root))
    wanted = _wanted_methods(methods)
    finder = {"ffpp": _ffpp, "kaggle": _kaggle, "dfdc": _dfdc, "real-fake": _real_fake}[layout]
    found = finder(root, compression)
    if wanted:
        present = {it.method for it in found}
        absent = sorted(wanted - present - {"original"})
        if absent:
            raise UsageError(
                f"{root}: no videos of method {', '.join(absent)} (found: {', '.join(sorted(present)) or 'none'})"
            )
    items = [it for it in found if _keep(it, wanted)]
    items = _unique_ids(sorted(items, key=lambda it: it.rel))
    if not items:
        detail = f" for methods {', '.join(sorted(wanted))}" if wanted else ""
        raise DatasetError(f"{root}: no videos found in the {layout} layout{detail}")
    return layout, items


def ffpp_identities(video_id: str) -> tuple[str, ...]:
    """Identity keys of an FF++-named video; ``()`` when the name is not FF++'s."""
    m = _YOUTUBE.match(video_id)
    if m:
        return tuple(f"ff:{g}" for g in m.groups() if g)
    m = _ACTORS.match(video_id)
    if m:
        return tuple(f"actor:{g}" for g in m.groups() if g)
    return ()


# --- the layouts ------------------------------------------------------------------


def _ffpp(root: Path, compression: str | None) -> list[VideoItem]:
    folders: list[tuple[Path, str, str | None]] = []  # (videos dir, method, compression)
    for source in FFPP_REAL_SOURCES:
        for comp_dir in _subdirs(root / "original_sequences" / source):
            folders.append((comp_dir / "videos", "original", comp_dir.name))
    for method_dir in _subdirs(root / "manipulated_sequences"):
        for comp_dir in _subdirs(method_dir):
            folders.append((comp_dir / "videos", canonical_method(method_dir.name), comp_dir.name))
    folders = [f for f in folders if f[0].is_dir()]
    found = sorted({comp for _, _, comp in folders})
    if compression is None:
        if len(found) > 1:
            raise UsageError(
                f"{root} holds several compression levels ({', '.join(found)}): choose one with --compression"
            )
    else:
        if compression not in found:
            raise DatasetError(
                f"{root}: no videos at compression '{compression}' (found: {', '.join(found) or 'none'})"
            )
        folders = [f for f in folders if f[2] == compression]
    return _items_in(root, folders)


def _kaggle(root: Path, compression: str | None) -> list[VideoItem]:
    methods = [(folder, _kaggle_method(folder.name)) for folder in _subdirs(root)]
    return _items_in(root, [(folder, method, compression) for folder, method in methods if method])


def _items_in(root: Path, folders: Sequence[tuple[Path, str, str | None]]) -> list[VideoItem]:
    """The videos directly inside each (folder, method, compression)."""
    return [_item(root, path, method, comp) for folder, method, comp in folders for path in _videos_in(folder, recursive=False)]


def _real_fake(root: Path, compression: str | None) -> list[VideoItem]:
    items = []
    for folder in _subdirs(root):
        kind = folder.name.lower()
        if kind not in ("real", "fake"):
            continue
        for path in _videos_in(folder, recursive=True):
            if kind == "real":
                method = "original"
            else:
                inner = path.relative_to(folder).parts
                method = canonical_method(inner[0]) if len(inner) > 1 else GENERIC_FAKE_METHOD
                if method == "original":  # fake/youtube/...: still fake
                    method = GENERIC_FAKE_METHOD
            items.append(_item(root, path, method, compression, label=kind))
    return items


def _dfdc(root: Path, compression: str | None) -> list[VideoItem]:
    parts = [root] if (root / "metadata.json").is_file() else [d for d in _subdirs(root) if (d / "metadata.json").is_file()]
    items = []
    for part in parts:
        meta = _read_dfdc_metadata(part / "metadata.json")
        for name, entry in sorted(meta.items()):
            label = str(entry.get("label", "")).lower()
            if label not in ("real", "fake"):
                raise DatasetError(f"{part / 'metadata.json'}: video {name} has label {entry.get('label')!r}, not REAL/FAKE")
            path = part / name
            original = entry.get("original") if label == "fake" else None
            # A fake shows the people of its original: both share one identity.
            person = Path(original).stem if original else path.stem
            items.append(
                VideoItem(
                    path=path,
                    rel=_rel(root, path),
                    video_id=path.stem,
                    label=label,
                    method="original" if label == "real" else DFDC_METHOD,
                    compression=compression,
                    identities=(f"dfdc:{person}",),
                )
            )
    return items


def _read_dfdc_metadata(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read DFDC metadata ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DatasetError(f"{path}: expected {{video name: {{label, original, ...}}}}")
    return data


# --- helpers ----------------------------------------------------------------------


def _item(root: Path, path: Path, method: str, compression: str | None, label: str | None = None) -> VideoItem:
    rel = _rel(root, path)
    ids = ffpp_identities(path.stem)
    if not ids:
        # Unknown naming: the video is its own identity (nothing to link it to).
        ids = (f"video:{rel}",)
    return VideoItem(
        path=path,
        rel=rel,
        video_id=path.stem,
        label=label or ("real" if method == "original" else "fake"),
        method=method,
        compression=compression,
        identities=ids,
    )


def _kaggle_method(folder_name: str) -> str | None:
    method = canonical_method(folder_name)
    if method == "original" or method in FAKE_METHODS:
        return method
    return None


def _wanted_methods(methods: Sequence[str] | None) -> set[str] | None:
    if not methods:
        return None
    return {canonical_method(m) for m in methods}


def _keep(item: VideoItem, wanted: set[str] | None) -> bool:
    if wanted is None:
        return True
    if item.label == "real":
        # FF++ actors originals are the real half of DeepFakeDetection only.
        return not item.identities[0].startswith("actor:") or "DeepFakeDetection" in wanted or "original" in wanted
    return item.method in wanted


def _unique_ids(items: list[VideoItem]) -> list[VideoItem]:
    """Give videos that share a name within a method distinct crop folder names."""
    seen: dict[tuple[str, str], int] = {}
    for it in items:
        seen[(it.method, it.video_id)] = seen.get((it.method, it.video_id), 0) + 1
    out = []
    for it in items:
        if seen[(it.method, it.video_id)] > 1:
            digest = hashlib.sha1(it.rel.encode("utf-8")).hexdigest()[:8]
            it = VideoItem(**{**it.__dict__, "video_id": f"{it.video_id}__{digest}"})
        out.append(it)
    return out


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _videos_in(folder: Path, recursive: bool) -> Iterable[Path]:
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in VIDEO_EXTENSIONS and not f.startswith("."))
    return sorted(found)


def _rel(root: Path, path: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()
