"""Face framing: how a detected box becomes the crop a model sees (margin, square, resize).

The margin's default is :data:`deepfake_cli.config.DEFAULT_FACE_MARGIN`; a model's own framing
travels in its checkpoint, so inference crops faces as its training data was cropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from deepfake_cli.config import DEFAULT_FACE_MARGIN, DEFAULT_FACE_SQUARE


@dataclass(frozen=True)
class FaceFraming:
    """How a face box becomes a crop.

    ``margin`` is the fraction of the box size added in total (0.3: the crop is
    1.3 times the box, 15% on each side); ``square`` first makes the box square
    around its centre using its longer side.
    """

    margin: float = DEFAULT_FACE_MARGIN
    square: bool = DEFAULT_FACE_SQUARE

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "FaceFraming":
        data = data or {}
        return cls(margin=float(data.get("margin", DEFAULT_FACE_MARGIN)), square=bool(data.get("square", DEFAULT_FACE_SQUARE)))

    def to_dict(self) -> dict[str, Any]:
        return {"detector": "mtcnn", "margin": self.margin, "square": self.square}


def crop_box(
    box: Sequence[float], framing: FaceFraming, width: int, height: int
) -> tuple[int, int, int, int]:
    """The integer crop rectangle for ``box`` with ``framing``, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    w, h = x2 - x1, y2 - y1
    if framing.square:
        w = h = max(w, h)
    w *= 1.0 + framing.margin
    h *= 1.0 + framing.margin
    left = int(round(max(0.0, cx - w / 2.0)))
    top = int(round(max(0.0, cy - h / 2.0)))
    right = int(round(min(float(width), cx + w / 2.0)))
    bottom = int(round(min(float(height), cy + h / 2.0)))
    right = max(right, left + 1)
    bottom = max(bottom, top + 1)
    return left, top, right, bottom


def crop_face(
    image: np.ndarray, box: Sequence[float], framing: FaceFraming, size: int | None = None
) -> np.ndarray:
    """Cut the face out of an RGB frame; resize to ``size`` x ``size`` if given."""
    h, w = image.shape[:2]
    left, top, right, bottom = crop_box(box, framing, w, h)
    crop = image[top:bottom, left:right]
    if size is not None:
        crop = resize_square(crop, size)
    return np.ascontiguousarray(crop)


# How resize_square resizes, as checkpoints and exports state it for other runtimes.
RESIZE_INTERPOLATION = "area when shrinking, bilinear when enlarging (OpenCV INTER_AREA / INTER_LINEAR)"


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    # INTER_AREA avoids aliasing when shrinking; bilinear when enlarging.
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)
