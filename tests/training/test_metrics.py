"""Metrics against numbers worked out by hand on a small probability table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepfake_cli.training.metrics import (
    binary_metrics,
    choose_threshold,
    class_report,
    cross_entropy,
    equal_error_rate,
    per_method,
    video_metrics,
    video_scores,
    youden_threshold,
)

# Four reals and four fakes. Sorted by score: 0.9 F, 0.8 F, 0.7 F, 0.6 R, 0.4 F, 0.3 R, 0.2 R, 0.1 R.
Y = [0, 0, 0, 0, 1, 1, 1, 1]
P = [0.1, 0.3, 0.6, 0.2, 0.8, 0.4, 0.9, 0.7]


def test_binary_metrics_by_hand():
    m = binary_metrics(Y, P, threshold=0.5)
    # AUC: of the 16 (fake, real) pairs only (0.4, 0.6) is ordered wrongly.
    assert m["auc"] == pytest.approx(15 / 16)
    # At 0.5: TP 0.9 0.8 0.7, FN 0.4, FP 0.6, TN 0.1 0.2 0.3.
    assert m["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(0.75)
    assert m["specificity"] == pytest.approx(0.75) and m["balanced_accuracy"] == pytest.approx(0.75)
    # AP = sum of precision at each fake, times 1/4: (1 + 1 + 1 + 4/5) / 4.
    assert m["average_precision"] == pytest.approx(0.95)
    # At threshold 0.6: FPR = 1/4 (0.6 itself) and FNR = 1/4 (0.4): the EER.
    assert m["eer"] == pytest.approx(0.25) and m["eer_threshold"] == pytest.approx(0.6)
    # Youden: at 0.7, TPR 3/4 and FPR 0, J = 0.75 (0.4 gives the same J at a lower threshold).
    assert m["youden_j"] == pytest.approx(0.75) and m["youden_threshold"] == pytest.approx(0.7)
    assert (m["n"], m["fakes"], m["reals"]) == (8, 4, 4)


def test_eer_interpolates_between_roc_points():
    # Reals 0.1 0.5, fakes 0.4 0.9: at 0.5 FPR 1/2 FNR 1/2 -> EER 0.5 exactly at a point.
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.5, 0.4, 0.9]) == pytest.approx((0.5, 0.5))
    # Perfect separation: EER 0 at the lowest fake score.
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.7, 0.9]) == pytest.approx((0.0, 0.7))
    # Three reals, one fake in the middle: at 0.5 FNR drops 1 -> 0 while FPR stays 1/3: EER 1/3.
    eer, thr = equal_error_rate([0, 1, 0, 0], [0.9, 0.5, 0.3, 0.1])
    assert eer == pytest.approx(1 / 3) and thr == pytest.approx(0.5)
    # A real and a fake tied: one ROC step from (0, FNR 1) to (1, FNR 0), crossing halfway.
    assert equal_error_rate([0, 1], [0.5, 0.5]) == pytest.approx((0.5, 0.5))


def test_threshold_choice():
    assert choose_threshold(Y, P, "eer") == pytest.approx(0.6)
    assert choose_threshold(Y, P, "youden") == pytest.approx(0.7)
    assert choose_threshold(Y, P, "fixed") == 0.5
    assert choose_threshold([1, 1], [0.2, 0.9], "eer") == 0.5  # one class: nothing to choose on
    assert youden_threshold(Y, P)[1] <= 1.0
    with pytest.raises(ValueError):
        choose_threshold(Y, P, "magic")


def test_one_class_gives_none_not_nan():
    m = binary_metrics([1, 1, 1], [0.2, 0.7, 0.9], 0.5)
    assert m["auc"] is None and m["eer"] is None and m["recall"] == pytest.approx(2 / 3)


def test_class_report_by_hand():
    pred = [int(p >= 0.5) for p in P]
    r = class_report(Y, pred, ["real", "fake"])
    real, fake = r["per_class"]
    # Called real: 0.1 0.3 0.2 (right) and 0.4 (a fake): precision 3/4, recall 3/4.
    assert (real["precision"], real["recall"], real["f1"], real["support"]) == pytest.approx((0.75, 0.75, 0.75, 4))
    assert fake["f1"] == pytest.approx(0.75)
    assert r["macro_avg"]["f1"] == pytest.approx(0.75) and r["weighted_avg"]["f1"] == pytest.approx(0.75)
    assert r["confusion"] == [[3, 1], [1, 3]]
    # Unbalanced three-class case: macro vs weighted differ as computed by hand.
    r3 = class_report([0, 0, 0, 1, 2], [0, 0, 1, 1, 1], ["a", "b", "c"])
    # a: P 1, R 2/3, F1 0.8; b: P 1/3, R 1, F1 0.5; c: 0.
    assert r3["macro_avg"]["f1"] == pytest.approx((0.8 + 0.5 + 0) / 3)
    assert r3["weighted_avg"]["f1"] == pytest.approx((0.8 * 3 + 0.5 * 1 + 0) / 5)
    assert r3["accuracy"] == pytest.approx(3 / 5)


def test_cross_entropy_by_hand():
    probs = np.array([[1 - p, p] for p in P])
    expected = -np.mean([math.log(p if y else 1 - p) for y, p in zip(Y, P)])
    assert cross_entropy(Y, probs) == pytest.approx(expected)


def test_per_method_auc_against_reals():
    methods = ["original"] * 4 + ["Deepfakes", "Deepfakes", "Face2Face", "Face2Face"]
    rows = {r["method"]: r for r in per_method(methods, Y, P, 0.5)}
    # Deepfakes 0.8 and 0.4 against reals 0.1 0.3 0.6 0.2: 4 + 3 of 8 pairs.
    assert rows["Deepfakes"]["auc"] == pytest.approx(7 / 8)
    assert rows["Face2Face"]["auc"] == pytest.approx(1.0)
    assert rows["Deepfakes"]["called_fake"] == pytest.approx(0.5)
    assert rows["original (real)"]["called_fake"] == pytest.approx(0.25)


def test_video_level_by_hand():
    keys = ["v1", "v1", "v2", "v2", "v3", "v3", "v4", "v4"]
    videos = video_scores(keys, Y, P)
    assert [v["p_mean"] for v in videos] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    m = video_metrics(videos, 0.5)
    assert m["videos"] == 4 and m["mean"]["auc"] == pytest.approx(1.0) and m["mean"]["accuracy"] == 1.0
    assert video_scores(["", ""], [0, 1], [0.1, 0.9]) == [] and video_metrics([], 0.5) is None


def test_video_level_uses_the_confident_rule():
    # A fake video: 12 of 20 frames above 0.8, so the confident score is their mean (0.9), not the plain mean.
    keys = ["fake"] * 20 + ["real"] * 20
    y = [1] * 20 + [0] * 20
    p = [0.9] * 12 + [0.1] * 8 + [0.05] * 19 + [0.5]
    videos = {v["video"]: v for v in video_scores(keys, y, p)}
    assert videos["fake"]["p_mean"] == pytest.approx(0.58) and videos["fake"]["p_confident"] == pytest.approx(0.9)
    # The real one: 19 of 20 below 0.2, so the mean of those.
    assert videos["real"]["p_confident"] == pytest.approx(0.05)
