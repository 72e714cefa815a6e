"""Look-alike grouping: crops that show the same person in the same setting share a group.

Image-folder datasets often name their crops without a video or person id
(FF++'s ``roi_N.jpg``), so each crop would be its own group and a carved
validation split would hold the same people and backgrounds as training: a
Face2Face fake of video 004 in ``val`` while NeuralTextures' fake and the real
crops of 004 are in ``train``. DFDC's ``sources.csv`` links a fake to its real
video, but the same actor was filmed in many real videos.

Each crop's signature is a 16x16 RGB thumbnail, mean-centred and unit-normed
(lighting, hair, background and face layout; fine detail, where the
manipulation lies, is gone). Within each class folder (``method``) a crop is
linked to its most similar crop when both are each other's nearest there and
their cosine similarity is at least :data:`LOOKALIKE_SIMILARITY`; linked crops'
groups are joined (union-find), so whole look-alike groups go to one split.

Mutual nearest neighbours keep chains short: a plain similarity threshold
joins most of FF++ into one group. Measured on the shared crops at 0.85 (the
train split before carving): FF++'s 5,428 crops form 848 groups (most often one
crop of each method and two real crops: one source video; about 96% of the
fakes share a group with a real crop; fewer than 100 crops in the largest);
DFDC's 12,329 source groups become 8,389, and sampled real-real links across
source groups showed the same person. Extracted datasets (metadata.csv) keep
their own identity groups: this is for image folders. The swapped-in face of a
Deepfakes/FaceSwap fake belongs to another person, whose own video may still be
on the other side.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd

from deepfake_cli.data.splits import UnionFind
from deepfake_cli.errors import DatasetError

THUMBNAIL_SIDE = 16
# Cosine similarity of two thumbnails from which mutual nearest neighbours are one group (see above).
LOOKALIKE_SIMILARITY = 0.85
_CHUNK_ROWS = 2048


def thumbnail_signatures(paths: Sequence[str], threads: int = 4) -> np.ndarray:
    """(N, 768) float64: each image's 16x16 RGB thumbnail, mean-centred and L2-normed."""
    from PIL import Image, UnidentifiedImageError

    def one(path: str) -> np.ndarray:
        try:
            with Image.open(path) as im:
                im.draft("RGB", (THUMBNAIL_SIDE * 4, THUMBNAIL_SIDE * 4))  # JPEG: decode at reduced scale
                small = im.convert("RGB").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.BILINEAR)
        except (OSError, UnidentifiedImageError) as exc:
            raise DatasetError(f"cannot read crop {path}: {exc}") from exc
        return np.asarray(small, dtype=np.float64).ravel() / 255.0

    if not len(paths):
        return np.zeros((0, THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        signatures = np.stack(list(pool.map(one, paths)))
    signatures -= signatures.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(signatures, axis=1, keepdims=True)
    return signatures / np.where(norms > 0, norms, 1.0)  # a flat image stays all zeros: it links to nothing


def _nearest_in(signatures: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row: its most similar row among ``members`` (never itself) and that similarity."""
    candidates = signatures[members]
    best = np.empty(len(signatures), dtype=np.int64)
    similarity = np.empty(len(signatures))
    for start in range(0, len(signatures), _CHUNK_ROWS):
        rows = np.arange(start, min(start + _CHUNK_ROWS, len(signatures)))
        sims = signatures[rows] @ candidates.T
        # A row that is itself a member must not find itself.
        pos = np.searchsorted(members, rows)
        own = (pos < len(members)) & (members[np.minimum(pos, len(members) - 1)] == rows)
        sims[np.flatnonzero(own), pos[own]] = -np.inf
        arg = sims.argmax(axis=1)
        best[rows] = members[arg]
        similarity[rows] = sims[np.arange(len(rows)), arg]
    return best, similarity


def lookalike_links(signatures: np.ndarray, folders: Sequence[str], threshold: float = LOOKALIKE_SIMILARITY) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, that are mutual nearest neighbours within j's folder and i's, at ``threshold`` or more."""
    folders = np.asarray(folders)
    names = sorted(set(folders.tolist()))
    nearest = {name: _nearest_in(signatures, np.flatnonzero(folders == name)) for name in names}
    links = set()
    for name in names:
        best, similarity = nearest[name]
        for i in np.flatnonzero(similarity >= threshold):
            j = int(best[i])
            # Mutual: i is also j's nearest among i's own folder.
            if nearest[folders[i]][0][j] == i:
                links.add((min(int(i), j), max(int(i), j)))
    return sorted(links)


def lookalike_groups(frame: pd.DataFrame, threshold: float = LOOKALIKE_SIMILARITY) -> list[str]:
    """``frame``'s groups joined over look-alike links (folder = ``method``); named by their smallest member group."""
    groups = frame["group"].astype(str).tolist()
    if len(groups) < 2:
        return groups
    signatures = thumbnail_signatures(frame["path"].tolist())
    joined = UnionFind()
    for group in groups:
        joined.add(group)
    for i, j in lookalike_links(signatures, frame["method"].astype(str).tolist(), threshold):
        joined.union(groups[i], groups[j])
    return [joined.find(g) for g in groups]
