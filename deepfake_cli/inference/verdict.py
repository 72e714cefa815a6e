"""The one verdict rule: a face, an image, a track or a video is fake when p_fake >= threshold.

Every caller uses :func:`verdict`: the classifier's face labels, image records, the video
scan's tracks and summaries, the web API and the evaluation report's predictions.

How sure a verdict is: :func:`margin` is the signed distance ``p_fake - threshold``
(positive on the fake side), and :func:`borderline` says whether the score is closer to
the threshold than the band (``predict.borderline_band``, default 0.1 in p_fake units):
``|p_fake - threshold| < band``. Both are computed on scores as they are reported
(rounded to 6 decimals), so a printed 0.6 against a threshold of 0.5 is not within 0.1.
A borderline verdict is still the verdict: exit codes and counts use :func:`verdict` alone.
"""

from __future__ import annotations

from typing import Any, overload

import numpy as np

FAKE = "fake"
REAL = "real"

# Scores are reported with this many decimals (records, JSON, CSV); margins too.
SCORE_DECIMALS = 6


@overload
def verdict(p_fake: float, threshold: float) -> str: ...
@overload
def verdict(p_fake: np.ndarray, threshold: float) -> np.ndarray: ...
def verdict(p_fake: Any, threshold: float) -> Any:
    """``"fake"`` if ``p_fake >= threshold`` else ``"real"``; element-wise for an array."""
    if isinstance(p_fake, np.ndarray):
        return np.where(p_fake >= threshold, FAKE, REAL)
    return FAKE if p_fake >= threshold else REAL


@overload
def margin(p_fake: None, threshold: float | None) -> None: ...
@overload
def margin(p_fake: float, threshold: float) -> float: ...
@overload
def margin(p_fake: np.ndarray, threshold: float) -> np.ndarray: ...
def margin(p_fake: Any, threshold: Any) -> Any:
    """``p_fake - threshold`` of the reported (rounded) score, rounded the same way; ``None``
    without a score. Positive: the fake side, negative: the real side."""
    if p_fake is None or threshold is None:
        return None
    if isinstance(p_fake, np.ndarray):
        return np.round(np.round(p_fake.astype(np.float64), SCORE_DECIMALS) - threshold, SCORE_DECIMALS)
    return round(round(float(p_fake), SCORE_DECIMALS) - float(threshold), SCORE_DECIMALS)


@overload
def borderline(p_fake: None, threshold: float | None, band: float) -> None: ...
@overload
def borderline(p_fake: float, threshold: float, band: float) -> bool: ...
@overload
def borderline(p_fake: np.ndarray, threshold: float, band: float) -> np.ndarray: ...
def borderline(p_fake: Any, threshold: Any, band: float) -> Any:
    """Whether a score is too close to the threshold to lean on: ``|p_fake - threshold| < band``
    (on the reported score, see :func:`margin`); ``None`` without a score; never with band 0."""
    m = margin(p_fake, threshold)
    if m is None:
        return None
    if isinstance(m, np.ndarray):
        return np.abs(m) < band
    return bool(abs(m) < band)

