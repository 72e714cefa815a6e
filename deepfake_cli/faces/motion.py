"""Where a video frame changed since the sampled frame before: where a new face can appear.

Between whole-frame face searches, a video scan searches each sampled frame
only around the faces it tracks (:meth:`~deepfake_cli.faces.detector.FaceDetector.detect_tracked`).
A face that comes into view in between (a cut inside a picture-in-picture
inset, a person walking in) would otherwise wait for the next whole search,
up to ``video.redetect_every`` seconds later, and a face shown for less than
that would never be scored. Comparing each sampled frame with the one before
on a coarse grid (the mean grey level of 16 x 16-pixel cells, which averages
compression noise away) finds the regions that changed; those that could hold
a face and lie outside the tracked faces' search windows are searched too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

Box = Sequence[float]

# Side of a grid cell, in frame pixels.
CELL = 16
# A cell changed when its mean grey level moved by more than this (of 255): far above
# what compression noise does to a cell's mean, below a cut or a moving face.
CHANGE_LEVEL = 25


@dataclass
class ChangedRegions:
    """Regions of each frame that changed since the frame given before it.

    ``min_size``: regions narrower or lower than this (frame pixels) are
    ignored, as they cannot hold a face the detector would keep.
    """

    min_size: float
    _previous: np.ndarray | None = field(default=None, repr=False)

    def update(self, frame_bgr: np.ndarray, exclude: Sequence[Box] = ()) -> list[tuple[float, float, float, float]]:
        """Boxes ``(x1, y1, x2, y2)`` around the regions of ``frame_bgr`` that changed since the
        frame before, leaving out changes inside ``exclude`` boxes (frame pixels); none for
        the first frame or after a change of frame size."""
        height, width = frame_bgr.shape[:2]
        grid = _grey_grid(frame_bgr)
        previous, self._previous = self._previous, grid
        if previous is None or previous.shape != grid.shape:
            return []
        changed = (cv2.absdiff(grid, previous) > CHANGE_LEVEL).astype(np.uint8)
        if not changed.any():
            return []
        cell_w, cell_h = width / grid.shape[1], height / grid.shape[0]
        excluded = np.zeros_like(changed)
        for x1, y1, x2, y2 in exclude:
            c0, r0 = int(max(0.0, x1) // cell_w), int(max(0.0, y1) // cell_h)
            c1, r1 = int(np.ceil(min(width, x2) / cell_w)), int(np.ceil(min(height, y2) / cell_h))
            excluded[r0:r1, c0:c1] = 1
        # One moving object often leaves gaps of a cell: joined, it is one region.
        count, labels = cv2.connectedComponents(cv2.dilate(changed, np.ones((3, 3), np.uint8)), connectivity=8)
        # Changes that reach a tracked face's window are that person moving (a turn of the
        # head, gestures, the shoulders): the search around the face covers them.
        touching = set(np.unique(labels[excluded.astype(bool)]).tolist())
        labels[changed == 0] = 0  # each region's box: around its changed cells only
        regions = []
        for label in range(1, count):
            if label in touching:
                continue
            rows, cols = np.nonzero(labels == label)
            box = (cols.min() * cell_w, rows.min() * cell_h,
                   min(width, (cols.max() + 1) * cell_w), min(height, (rows.max() + 1) * cell_h))
            if box[2] - box[0] >= self.min_size and box[3] - box[1] >= self.min_size:
                regions.append(tuple(float(v) for v in box))
        return regions  # type: ignore[return-value]


def _grey_grid(frame_bgr: np.ndarray) -> np.ndarray:
    """The frame's mean grey level per :data:`CELL`-pixel cell (uint8)."""
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY) if frame_bgr.ndim == 3 else frame_bgr
    height, width = grey.shape
    size = (max(1, width // CELL), max(1, height // CELL))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
