"""The face pipeline shared by extract, predict, video, gradcam and serve.

:class:`FaceDetector` runs facenet-pytorch's MTCNN networks and weights (they
ship in its wheel, so it works offline; :mod:`deepfake_cli.faces.mtcnn_nets` loads them
without importing the package): batched detection over same-sized frames, an
image pyramid capped at ``max_side`` but resampled from the full frame (so the
boxes are full-frame MTCNN's), searches near tracked faces, and filters on
detection probability and face size.
:func:`crop_face` cuts a face out with the framing (margin, square) a model
was trained on.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from deepfake_cli.config import FaceConfig
from deepfake_cli.faces.framing import (  # noqa: F401 (re-exported: the detector's crops)
    RESIZE_INTERPOLATION,
    FaceFraming,
    crop_box,
    crop_face,
    resize_square,
)
from deepfake_cli.faces.tracking import box_iou

# MTCNN's P-Net sees 12x12 windows: it cannot find smaller faces than that.
MTCNN_MIN_FACE = 12
# A search near a tracked face looks for faces from this share of its size up.
NEAR_MIN_FACE_SHARE = 0.5
# ... and keeps the faces that lie at least this share of the window's side from its edges.
NEAR_EDGE_SHARE = 0.1
# Changed regions (see deepfake_cli.faces.motion) are searched with this share of their longer
# side (at least the smallest face kept) around them, so that a face in them is clear of
# the window's edges.
CHANGED_MARGIN_SHARE = 0.25
# When the windows around changed regions cover more than this share of the frame (a cut,
# a camera pan), the frame is searched whole instead.
CHANGED_WHOLE_SHARE = 0.5
# facenet-pytorch MTCNN's default min_face_size: its image pyramid on a full-size frame.
MTCNN_DEFAULT_MIN_FACE = 20.0
# Summed-area tables held by one batched MTCNN call (5 frames of 720p, 2 of 1080p).
DETECT_TABLE_BYTES = 64 * 2**20
# Images more than this many times max_side (a 12 MP photo, 4K video) are first shrunk to
# that size: their tables (12 bytes a pixel) would hold hundreds of MB for no better box.
PRESHRINK_FACTOR = 2.0


def pyramid_min_face(min_size: float, scale: float, factor: float = 0.709) -> float:
    """MTCNN's ``min_face_size`` for faces of ``min_size`` px and up, in a frame shrunk by ``scale``.

    Skipping the pyramid levels that only find faces we would discard anyway
    is a big speed-up. The value is the one nearest to ``0.8 * min_size`` (in
    shrunk pixels, never above ``min_size``) among those whose pyramid, in
    full-frame terms, is a subset of MTCNN's default one: the levels kept are
    then full-frame MTCNN's own (:class:`FaceDetector` resamples them from the
    full frame), and so are the boxes, where an arbitrary value shifts every
    level and moves boxes by several pixels.
    """
    want = max(float(MTCNN_MIN_FACE), min_size * scale * 0.8)
    ceiling = max(float(MTCNN_MIN_FACE), min_size * scale)
    value = MTCNN_DEFAULT_MIN_FACE * scale
    while value < MTCNN_MIN_FACE:
        value /= factor
    while value * factor >= MTCNN_MIN_FACE:
        value *= factor
    best = value  # the smallest aligned value MTCNN can use
    while value / factor <= ceiling:
        value /= factor
        if abs(math.log(value / want)) < abs(math.log(best / want)):
            best = value
    return best


@dataclass
class Face:
    """One detected face in full-resolution pixel coordinates."""

    box: tuple[float, float, float, float]
    prob: float | None = None
    landmarks: list[list[float]] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def size(self) -> float:
        """The shorter side of the box, the measure ``min_size`` filters on."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "det_prob": None if self.prob is None else round(float(self.prob), 5),
        }


@dataclass
class DetectionStats:
    """Faces dropped by each filter, for progress reports."""

    low_prob: int = 0
    too_small: int = 0
    not_largest: int = 0

    def add(self, other: "DetectionStats") -> None:
        self.low_prob += other.low_prob
        self.too_small += other.too_small
        self.not_largest += other.not_largest


def near_window(box: Sequence[float], reach: float) -> tuple[float, float, float, float]:
    """The square searched around a tracked face's ``box``: ``reach`` times its longer side,
    on its centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1) * reach / 2.0
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - half, cy - half, cx + half, cy + half


def _changed_window(box: Sequence[float], min_size: float) -> tuple[float, float, float, float]:
    """The window searched around a changed region: a margin of :data:`CHANGED_MARGIN_SHARE`
    of its longer side, at least ``min_size``, on every side (not clipped to the image, so
    that faces at its border are not taken for faces at the window's edge)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    margin = max(float(min_size), CHANGED_MARGIN_SHARE * max(x2 - x1, y2 - y1))
    return x1 - margin, y1 - margin, x2 + margin, y2 + margin


def whole_image_face(image: np.ndarray) -> Face:
    """The face of an input that is already a face crop (``--no-detect``)."""
    h, w = image.shape[:2]
    return Face(box=(0.0, 0.0, float(w), float(h)), prob=None, landmarks=None)


@dataclass
class FaceDetector:
    """MTCNN face detection with batching, a capped image pyramid and quality filters.

    ``max_side`` caps the cost on large frames: one whose longer side exceeds
    it is searched as if shrunk to it (the pyramid's finest level is the one
    MTCNN would start from on the shrunk frame). Every level is still resampled
    from the frame itself, so the levels searched are those of MTCNN's default
    pyramid on the full frame, and so are the boxes. Images more than
    :data:`PRESHRINK_FACTOR` times ``max_side`` are shrunk to that first, to
    bound memory. ``select='largest'`` keeps only the biggest face.
    """

    device: str | torch.device = "cpu"
    min_prob: float = FaceConfig.min_prob
    min_size: int = FaceConfig.min_size
    max_side: int | None = FaceConfig.detect_max_side
    select: str = FaceConfig.select
    stats: DetectionStats = field(default_factory=DetectionStats)

    def __post_init__(self) -> None:
        from deepfake_cli.faces.mtcnn_nets import MTCNNNets  # facenet-pytorch's networks, without importing it

        self._mtcnn = MTCNNNets().to(torch.device(self.device))
        # Same results, but PyTorch's CPU max-pooling is 4-10x faster on channels-last
        # tensors: MTCNN detects about 1.7x faster.
        self._mtcnn.to(memory_format=torch.channels_last)
        self._mtcnn.eval()

    def scale_for(self, height: int, width: int) -> float:
        """How much smaller than ``height`` x ``width`` the finest pyramid level searched is
        allowed to be: as if the frame were shrunk to ``max_side`` (1.0 for small frames)."""
        if not self.max_side or max(height, width) <= self.max_side:
            return 1.0
        return self.max_side / float(max(height, width))

    def pyramid_min_face(self, height: int, width: int, min_size: float | None = None) -> float:
        """MTCNN's ``min_face_size``, in this frame's pixels, for faces of ``min_size`` (default
        the detector's) and up, searched as if the frame were shrunk to ``max_side``."""
        scale = self.scale_for(height, width)
        return pyramid_min_face(self.min_size if min_size is None else min_size, scale, self._mtcnn.factor) / scale

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Faces in each RGB uint8 image, largest first, after the filters."""
        results: list[list[Face]] = [[] for _ in images]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, img in enumerate(images):
            groups[img.shape[:2]].append(i)
        for (h, w), indices in groups.items():
            # MTCNN resamples from each frame's summed-area table (12 bytes a pixel): a
            # batch of full-size frames is cut so that its tables stay within budget.
            per_call = max(1, DETECT_TABLE_BYTES // ((h + 1) * (w + 1) * 12))
            for start in range(0, len(indices), per_call):
                chunk = indices[start : start + per_call]
                batch = images[chunk[0]][None] if len(chunk) == 1 else np.stack([images[i] for i in chunk])
                for i, (boxes, probs, points) in zip(chunk, self._run_mtcnn(*self._searched(batch))):
                    results[i] = self._filter(boxes, probs, points)
        return results

    def detect_one(self, image: np.ndarray) -> list[Face]:
        return self.detect([image])[0]

    def detect_near(self, image: np.ndarray, boxes: Sequence[Sequence[float]], reach: float) -> list[Face] | None:
        """Faces near ``boxes`` (where tracked faces were), or None when one of them is gone.

        MTCNN searches a square ``reach`` times each box's longer side around
        its centre, on the whole image's pyramid grid, so a face found there
        gets the box a whole-image detection gives it (see
        :mod:`deepfake_cli.faces.mtcnn`) at a fraction of the cost. None tells the
        caller to detect on the whole image: a face moved further, or left.
        """
        if not boxes:
            return None
        return self._near(*self._searched(image[None]), boxes, reach)

    def detect_tracked(
        self, image: np.ndarray, boxes: Sequence[Sequence[float]], reach: float,
        changed: Sequence[Sequence[float]] = (),
    ) -> tuple[list[Face], bool]:
        """:meth:`detect_near`, or the whole image when a tracked face is not found there (or
        none is tracked); the flag says whether the near search sufficed.

        ``changed``: boxes where the image changed since the frame before, away from
        the tracked faces (:class:`~deepfake_cli.faces.motion.ChangedRegions`). A face that
        came into view can only be there: they are searched too (with a margin, on the
        whole image's pyramid grid), or the whole image when their windows cover more
        than :data:`CHANGED_WHOLE_SHARE` of it.
        """
        searched, scale = self._searched(image[None])
        near = self._near(searched, scale, boxes, reach) if boxes else None
        if near is not None and changed:
            height, width = image.shape[:2]
            windows = [_changed_window(box, self.min_size) for box in changed]
            covered = sum(max(0.0, min(width, x2) - max(0.0, x1)) * max(0.0, min(height, y2) - max(0.0, y1))
                          for x1, y1, x2, y2 in windows)
            if covered > CHANGED_WHOLE_SHARE * height * width:
                near = None
            else:
                near = self._select(near + self._in_windows(searched, scale, windows))
        if near is not None:
            return near, True
        boxes_, probs, points = self._run_mtcnn(searched, scale)[0]
        return self._filter(boxes_, probs, points), False

    def _searched(self, batch: np.ndarray) -> tuple[np.ndarray, float]:
        """The images MTCNN searches and their scale: ``batch`` itself, or shrunk to
        :data:`PRESHRINK_FACTOR` times ``max_side`` when larger."""
        h, w = batch.shape[1:3]
        if not self.max_side or max(h, w) <= PRESHRINK_FACTOR * self.max_side:
            return batch, 1.0
        scale = PRESHRINK_FACTOR * self.max_side / float(max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        return np.stack([cv2.resize(img, size, interpolation=cv2.INTER_AREA) for img in batch]), scale

    def _near(self, batch: np.ndarray, scale: float, boxes: Sequence[Sequence[float]], reach: float) -> list[Face] | None:
        """Faces near ``boxes`` (full-image pixels) in ``batch``, a :meth:`_searched` image at ``scale``."""
        height, width = batch.shape[1:3]
        min_face = self.pyramid_min_face(height, width, self.min_size * scale)
        if min(height, width) < min_face:
            return None
        faces: list[Face] = []
        for box in boxes:
            x1, y1, x2, y2 = (float(v) * scale for v in box)
            # Skip the pyramid levels for faces much smaller than the tracked one (the
            # costliest levels); the kept levels are the whole-image pyramid's own.
            near_min = self.pyramid_min_face(
                height, width, max(self.min_size * scale, NEAR_MIN_FACE_SHARE * max(x2 - x1, y2 - y1))
            )
            near = self._window_faces(batch, scale, near_window((x1, y1, x2, y2), reach), max(min_face, near_min))
            if not near:
                return None
            faces.extend(near)
        return self._select(faces)

    def _in_windows(self, batch: np.ndarray, scale: float, windows: Sequence[Sequence[float]]) -> list[Face]:
        """Faces in ``windows`` (full-image pixels) of ``batch``, a :meth:`_searched` image at
        ``scale``, clear of the windows' edges, at every size the whole-image search finds."""
        height, width = batch.shape[1:3]
        min_face = self.pyramid_min_face(height, width, self.min_size * scale)
        if min(height, width) < min_face:
            return []
        faces: list[Face] = []
        for window in windows:
            faces += self._window_faces(batch, scale, tuple(float(v) * scale for v in window), min_face)
        return faces

    def _window_faces(self, batch: np.ndarray, scale: float, window: Sequence[float], min_face: float) -> list[Face]:
        """Faces MTCNN finds in ``window`` (``batch`` pixels) that lie clear of its edges, in
        full-image pixels: near an edge P-Net sees less than it does on the whole image, and
        the box could differ."""
        from deepfake_cli.faces.mtcnn import detect_faces

        x1, y1, x2, y2 = window
        with torch.inference_mode():
            found, points = detect_faces(self._mtcnn, batch, min_face, window=(x1, y1, x2, y2))
        clear_x, clear_y = NEAR_EDGE_SHARE * (x2 - x1), NEAR_EDGE_SHARE * (y2 - y1)
        inside = [i for i, b in enumerate(found[0])
                  if b[0] >= x1 + clear_x and b[1] >= y1 + clear_y and b[2] <= x2 - clear_x and b[3] <= y2 - clear_y]
        return self._filter(found[0][inside, :4] / scale, found[0][inside, 4], points[0][inside] / scale,
                            select_largest=False)

    def _select(self, faces: list[Face]) -> list[Face]:
        """One face per place (windows close together find the same face, with the same
        box), largest first; only the largest with ``select='largest'``."""
        unique: list[Face] = []
        for face in sorted(faces, key=lambda f: -(f.prob or 0.0)):
            if all(box_iou(face.box, kept.box) < 0.7 for kept in unique):
                unique.append(face)
        unique.sort(key=lambda f: f.area, reverse=True)
        if self.select == "largest":
            unique = unique[:1]
        return unique

    def _run_mtcnn(self, batch: np.ndarray, scale: float):
        """MTCNN on :meth:`_searched` images at ``scale``; boxes and landmarks in full-image pixels."""
        min_face = self.pyramid_min_face(*batch.shape[1:3], self.min_size * scale)
        if min(batch.shape[1:3]) < min_face:
            # No face that large fits; MTCNN's image pyramid would be empty and it raises.
            return [(None, None, None)] * len(batch)
        from deepfake_cli.faces.mtcnn import detect_faces  # loads torchvision's NMS op: only when detecting

        with torch.inference_mode():
            boxes, points = detect_faces(self._mtcnn, batch, min_face)
        return [(b[:, :4] / scale, b[:, 4], p / scale) for b, p in zip(boxes, points)]

    def _filter(self, boxes, probs, points, select_largest: bool = True) -> list[Face]:
        if boxes is None or len(boxes) == 0:
            return []
        faces: list[Face] = []
        for box, prob, pts in zip(boxes, probs, points):
            if box is None or prob is None:
                continue
            if float(prob) < self.min_prob:
                self.stats.low_prob += 1
                continue
            face = Face(
                box=tuple(float(v) for v in box),  # type: ignore[arg-type]
                prob=float(prob),
                landmarks=None if pts is None else np.asarray(pts, dtype=float).round(1).tolist(),
            )
            if face.size < self.min_size:
                self.stats.too_small += 1
                continue
            faces.append(face)
        faces.sort(key=lambda f: f.area, reverse=True)
        if select_largest and self.select == "largest" and len(faces) > 1:
            self.stats.not_largest += len(faces) - 1
            faces = faces[:1]
        return faces
