"""Linking faces across sampled frames into tracks by box overlap (IoU).

Greedy IoU matching, as in the classic IoU tracker (Bochinski et al., 2017):
each new box joins the free track whose box overlaps it most (IoU above
``iou_threshold``), taking the better of where the track's face was last and
where a constant-velocity guess puts it now (faces turn back and stop).
Sampled frames can be far apart (every 10th frame is 0.4 s at 25 fps), long
enough for a walking person's face to move by more than its own width, so
boxes left over are then matched by centre distance, relative to the face size,
plus the size change (at most ``max_distance``; similar sizes only). There the
tracks seen in the latest sampled frame choose first, then those missed once,
and so on (the matching cascade of DeepSORT): without it, a face that had just
moved went to a track of someone else last seen frames ago, nearer by a hair,
and one track held two people. A box matching nothing starts a new track; a
track not seen for more than ``max_missed`` sampled frames ends. The verdict
is then taken per person rather than per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from deepfake_cli.config import VideoConfig

Box = Sequence[float]


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    return float(iou_matrix([a], [b])[0, 0])


def iou_matrix(boxes_a: Sequence[Box], boxes_b: Sequence[Box]) -> np.ndarray:
    """Pairwise IoU, shape ``(len(boxes_a), len(boxes_b))``."""
    if len(boxes_a) == 0 or len(boxes_b) == 0:
        return np.zeros((len(boxes_a), len(boxes_b)))
    a = np.asarray(boxes_a, dtype=np.float64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.float64)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    velocity: np.ndarray  # box change per sampled frame
    seen: int = 1
    missed: int = 0

    def predicted(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)


class IouTracker:
    """Assigns a track id to every box of successive sampled frames."""

    def __init__(self, iou_threshold: float = VideoConfig.track_iou, max_missed: int = VideoConfig.track_max_missed,
                 max_distance: float = 1.5,
                 max_size_ratio: float = 1.6):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.max_distance = max_distance
        self.max_size_ratio = max_size_ratio
        self._active: list[_Track] = []
        self._next_id = 0

    @property
    def tracks_started(self) -> int:
        return self._next_id

    def update(self, boxes: Sequence[Box]) -> list[int]:
        """Track ids for ``boxes`` (one sampled frame), in the same order."""
        new = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        assigned: dict[int, int] = {}  # box index -> active track index
        if self._active and len(new):
            last = np.stack([t.box for t in self._active])
            predicted = np.stack([t.predicted() for t in self._active])
            ious = np.maximum(iou_matrix(predicted, new), iou_matrix(last, new))
            self._greedy(-ious, -self.iou_threshold, assigned)
            distances = np.minimum(self._distances(predicted, new), self._distances(last, new))
            missed = np.array([t.missed for t in self._active])
            for level in np.unique(missed):  # the most recently seen tracks first
                self._greedy(np.where((missed == level)[:, None], distances, np.inf), self.max_distance, assigned)
        ids: list[int] = []
        n_old = len(self._active)
        for bi in range(len(new)):
            ti = assigned.get(bi)
            if ti is None:
                track = _Track(self._next_id, new[bi], np.zeros(4))
                self._next_id += 1
                self._active.append(track)
            else:
                track = self._active[ti]
                gap = track.missed + 1
                track.velocity = (new[bi] - track.box) / gap
                track.box, track.seen, track.missed = new[bi], track.seen + 1, 0
            ids.append(track.track_id)
        matched = set(assigned.values())
        survivors = []
        for ti, track in enumerate(self._active):
            if ti < n_old and ti not in matched:
                track.missed += 1
                if track.missed > self.max_missed:
                    continue
            survivors.append(track)
        self._active = survivors
        return ids

    @staticmethod
    def _greedy(cost: np.ndarray, limit: float, assigned: dict[int, int]) -> None:
        """Pair tracks (rows) and boxes (columns), cheapest first, each once, cost <= limit."""
        taken = set(assigned.values())
        for flat in np.argsort(cost, axis=None, kind="stable"):
            ti, bi = divmod(int(flat), cost.shape[1])
            if cost[ti, bi] > limit:
                break
            if ti in taken or bi in assigned:
                continue
            assigned[bi] = ti
            taken.add(ti)

    def _distances(self, predicted: np.ndarray, new: np.ndarray) -> np.ndarray:
        """Centre distance in face sizes plus ln(size ratio); infinite for sizes too
        different to be the same face."""
        def centre_size(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
            size = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1e-6)
            return centre, size

        pc, ps = centre_size(predicted)
        nc, ns = centre_size(new)
        dist = np.linalg.norm(pc[:, None, :] - nc[None, :, :], axis=2) / ((ps[:, None] + ns[None, :]) / 2)
        ratio = np.maximum(ps[:, None] / ns[None, :], ns[None, :] / ps[:, None])
        # A face keeps its size from one sampled frame to the next better than its place:
        # two faces about as near tell apart by size.
        return np.where(ratio <= self.max_size_ratio, dist + np.log(ratio), np.inf)
