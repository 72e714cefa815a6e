from __future__ import annotations

import numpy as np
import pytest

from deepfake_cli.inference.aggregate import (
    AGGREGATIONS,
    aggregate,
    aggregate_all,
    aggregate_confident,
    aggregate_max,
    aggregate_mean,
)
from deepfake_cli.errors import UsageError


def dfdc_confident_strategy(pred, t=0.8):
    """The DFDC winner's function, verbatim (selimsef/dfdc_deepfake_challenge, kernel_utils.py)."""
    pred = np.array(pred)
    sz = len(pred)
    fakes = np.count_nonzero(pred > t)
    # 11 frames are detected as fakes with high probability
    if fakes > sz // 2.5 and fakes > 11:
        return np.mean(pred[pred > t])
    elif np.count_nonzero(pred < 0.2) > 0.9 * sz:
        return np.mean(pred[pred < 0.2])
    else:
        return np.mean(pred)


def test_mean_and_max_on_hand_made_scores():
    assert aggregate_mean([0.1, 0.2, 0.9]) == pytest.approx(0.4)
    assert aggregate_max([0.1, 0.2, 0.9]) == pytest.approx(0.9)
    assert aggregate([0.1, 0.2, 0.9], "mean") == pytest.approx(0.4)
    assert aggregate([0.5, 0.7], "max") == 0.7


def test_no_scores_gives_no_score_not_one_half():
    assert aggregate_all([]) == {"mean": None, "max": None, "confident": None}


@pytest.mark.parametrize(
    "scores, expected, rule",
    [
        # 15 of 30 above 0.8: 15 > 30 // 2.5 == 12 and 15 > 11 -> mean of the confident fakes.
        ([0.9] * 15 + [0.1] * 15, 0.9, "confident fakes"),
        # 12 confident fakes of 30: not more than 30 // 2.5 == 12 -> the plain mean.
        ([0.9] * 12 + [0.5] * 18, (0.9 * 12 + 0.5 * 18) / 30, "n // 2.5 is a floor"),
        # 11 confident fakes: the rule needs more than 11, whatever n.
        ([0.9] * 11 + [0.5], (0.9 * 11 + 0.5) / 12, "more than 11 fakes"),
        ([0.9] * 12 + [0.5], 0.9, "12 fakes of 13"),
        # 19 of 20 below 0.2 (> 90%): mean of the confident reals.
        ([0.1] * 19 + [0.5], 0.1, "confident reals"),
        # 18 of 20 below 0.2 is not more than 90%: the plain mean.
        ([0.1] * 18 + [0.5, 0.5], (0.1 * 18 + 1.0) / 20, "90% is not enough"),
        ([0.3, 0.5, 0.7], 0.5, "plain mean"),
        # Exactly 0.8 is not "above 0.8".
        ([0.8] * 20, 0.8, "threshold is strict"),
    ],
)
def test_confident_strategy_on_hand_made_scores(scores, expected, rule):
    assert aggregate_confident(scores) == pytest.approx(expected), rule
    assert aggregate_confident(scores) == pytest.approx(dfdc_confident_strategy(scores)), rule


def test_confident_strategy_matches_the_original_on_random_lists():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 80))
        kind = rng.integers(0, 3)
        if kind == 0:
            scores = rng.uniform(0, 1, n)
        elif kind == 1:
            scores = np.clip(rng.normal(0.9, 0.1, n), 0, 1)
        else:
            scores = np.clip(rng.normal(0.08, 0.08, n), 0, 1)
        assert aggregate_confident(list(scores)) == pytest.approx(float(dfdc_confident_strategy(scores)))


def test_unknown_aggregation_is_a_usage_error():
    assert set(AGGREGATIONS) == {"mean", "max", "confident"}
    with pytest.raises(UsageError, match="median"):
        aggregate([0.5], "median")
