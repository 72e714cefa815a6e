"""Turning many per-face scores into one: mean, max and the DFDC winner's "confident" rule.

Every function takes the p_fake scores of one track (or one video) and returns
one score, or ``None`` for an empty list: a video without faces has no score,
never a made-up 0.5.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from deepfake_cli.config import AGGREGATION_NAMES
from deepfake_cli.errors import UsageError

# The DFDC winner (selimsef/dfdc_deepfake_challenge, predict_on_video): a face
# is "confidently fake" above 0.8 and "confidently real" below 0.2.
CONFIDENT_FAKE = 0.8
CONFIDENT_REAL = 0.2
CONFIDENT_MIN_FAKES = 11


def aggregate_mean(scores: Sequence[float]) -> float | None:
    if len(scores) == 0:
        return None
    return float(np.mean(np.asarray(scores, dtype=np.float64)))


def aggregate_max(scores: Sequence[float]) -> float | None:
    if len(scores) == 0:
        return None
    return float(np.max(np.asarray(scores, dtype=np.float64)))


def aggregate_confident(scores: Sequence[float], threshold: float = CONFIDENT_FAKE) -> float | None:
    """The DFDC winner's ``confident_strategy``, rule for rule.

    If more than ``n // 2.5`` and more than 11 faces score above ``threshold``,
    the mean of those; else if more than 90% of the faces score below 0.2, the
    mean of those; else the plain mean. (``n // 2.5`` is Python's float floor
    division, as in the original.)
    """
    if len(scores) == 0:
        return None
    pred = np.asarray(scores, dtype=np.float64)
    n = len(pred)
    fakes = int(np.count_nonzero(pred > threshold))
    if fakes > n // 2.5 and fakes > CONFIDENT_MIN_FAKES:
        return float(np.mean(pred[pred > threshold]))
    if np.count_nonzero(pred < CONFIDENT_REAL) > 0.9 * n:
        return float(np.mean(pred[pred < CONFIDENT_REAL]))
    return float(np.mean(pred))


# The names are config.AGGREGATION_NAMES (the one list, which options and the API accept);
# each is implemented above as aggregate_<name>.
AGGREGATIONS: dict[str, Callable[[Sequence[float]], float | None]] = {
    name: globals()[f"aggregate_{name}"] for name in AGGREGATION_NAMES
}


def aggregate(scores: Sequence[float], method: str = "confident") -> float | None:
    """One score for ``scores`` with the named method (see :data:`AGGREGATIONS`)."""
    try:
        fn = AGGREGATIONS[method]
    except KeyError:
        raise UsageError(f"unknown aggregation '{method}' (choose {', '.join(AGGREGATIONS)})") from None
    return fn(scores)


def aggregate_all(scores: Sequence[float]) -> dict[str, float | None]:
    """The score under every method, for reports that show them side by side."""
    return {name: fn(scores) for name, fn in AGGREGATIONS.items()}
