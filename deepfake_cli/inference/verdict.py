"""The one verdict rule: a face, an image, a track or a video is fake when p_fake >= threshold.

Every caller uses :func:`verdict`: the classifier's face labels, image records, the video
scan's tracks and summaries, the web API and the evaluation report's predictions.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np

FAKE = "fake"
REAL = "real"


@overload
def verdict(p_fake: float, threshold: float) -> str: ...
@overload
def verdict(p_fake: np.ndarray, threshold: float) -> np.ndarray: ...
def verdict(p_fake: Any, threshold: float) -> Any:
    """``"fake"`` if ``p_fake >= threshold`` else ``"real"``; element-wise for an array."""
    if isinstance(p_fake, np.ndarray):
        return np.where(p_fake >= threshold, FAKE, REAL)
    return FAKE if p_fake >= threshold else REAL


def apply_threshold(classifier: Any, threshold: float | None) -> None:
    """A configured threshold (``predict.threshold``) overrides the checkpoint's calibrated one."""
    if threshold is not None:
        classifier.threshold = threshold
