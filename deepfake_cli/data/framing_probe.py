"""Measuring how an image folder's face crops are framed, so that inference cuts faces the same way.

Image folders (FF++'s Haar-cascade crops, DFDC's crops) do not say how their faces were cut,
yet a model is sensitive to it: the crop it sees at inference should match the crops it was
trained on. MTCNN, the detector inference uses, is run on a sample of crops, each padded so
that the face is clear of the edges (MTCNN misses faces that fill the whole image); the crop's
side over the MTCNN box's longer side, less one, is the ``margin`` that reproduces the crop
from an MTCNN box at inference (``square`` boxes, as the crops are square).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from deepfake_cli.errors import DatasetError
from deepfake_cli.media.images import load_image

# Crops measured per dataset: the median settles within about 0.01 by then.
PROBE_SAMPLE = 200
# Each side is padded by this share of the crop, so MTCNN sees the whole face with room around it.
PROBE_PAD_SHARE = 0.5
# Crops are measured at this longer side (the ratio does not depend on scale): MTCNN is
# then quick, and faces well above its smallest size.
PROBE_SIDE = 160
# ... and MTCNN looks for faces from this size up (a measured face is at least ~130 px).
PROBE_MIN_FACE = 64
# Fewer measured crops than this is too few to trust.
PROBE_MIN_FACES = 20
# Margins are recorded to this many decimals: finer is below the measurement's spread.
PROBE_DECIMALS = 2


@dataclass(frozen=True)
class FramingProbe:
    """The measured framing: ``margin`` (median, rounded) and how the crops spread around it."""

    margin: float
    square: bool
    measured: int
    missed: int
    margin_p10: float
    margin_p90: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "margin": self.margin, "square": self.square, "measured": self.measured, "missed": self.missed,
            "margin_p10": self.margin_p10, "margin_p90": self.margin_p90,
        }  # fmt: skip

    def describe(self) -> str:
        return (
            f"margin {self.margin:+.2f} (10-90%: {self.margin_p10:+.2f} to {self.margin_p90:+.2f}; "
            f"{self.measured} crops measured, {self.missed} without an MTCNN face)"
        )


def crop_side_ratios(paths: Sequence[str], detector: Any) -> tuple[list[float], int]:
    """Each crop's side over the longer side of the MTCNN box found in it; and how many had none."""
    ratios: list[float] = []
    missed = 0
    for path in paths:
        image = load_image(path)
        h, w = image.shape[:2]
        scale = PROBE_SIDE / float(max(h, w))
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        side = max(image.shape[:2])
        pad = int(round(side * PROBE_PAD_SHARE))
        padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        faces = detector.detect_one(padded)
        if not faces:
            missed += 1
            continue
        x1, y1, x2, y2 = faces[0].box
        ratios.append(side / max(x2 - x1, y2 - y1))
    return ratios, missed


def summarise_ratios(ratios: Sequence[float], missed: int) -> FramingProbe:
    """A :class:`FramingProbe` from measured crop-side ratios."""
    margins = np.asarray(ratios, dtype=np.float64) - 1.0
    return FramingProbe(
        margin=round(float(np.median(margins)), PROBE_DECIMALS),
        square=True,
        measured=len(ratios),
        missed=missed,
        margin_p10=round(float(np.percentile(margins, 10)), PROBE_DECIMALS),
        margin_p90=round(float(np.percentile(margins, 90)), PROBE_DECIMALS),
    )


def probe_crop_framing(
    datasets: dict[str, Sequence[str]], detector: Any | None = None, sample: int = PROBE_SAMPLE, seed: int = 0
) -> tuple[FramingProbe, dict[str, FramingProbe]]:
    """The framing of each dataset's crops (a seeded sample of ``sample`` of each) and of all pooled.

    A model records one framing: the pooled median is it; each dataset's is reported beside it.
    """
    if detector is None:
        from deepfake_cli.faces.detector import FaceDetector  # torch: only when measuring

        # The padded crops are small and hold one large face: the largest one is the crop's.
        detector = FaceDetector(min_size=PROBE_MIN_FACE, max_side=None, select="largest")
    pooled: list[float] = []
    pooled_missed = 0
    each: dict[str, FramingProbe] = {}
    for name, paths in datasets.items():
        paths = list(paths)
        if not paths:
            raise DatasetError(f"{name}: no crops to measure the framing of")
        chosen = random.Random(seed).sample(paths, min(sample, len(paths)))
        ratios, missed = crop_side_ratios(chosen, detector)
        if len(ratios) < min(PROBE_MIN_FACES, len(chosen)):
            raise DatasetError(
                f"{name}: MTCNN found a face in only {len(ratios)} of {len(chosen)} sampled crops, "
                "too few to measure their framing (give --margin and --square instead)"
            )
        each[name] = summarise_ratios(ratios, missed)
        pooled += ratios
        pooled_missed += missed
    return summarise_ratios(pooled, pooled_missed), each
