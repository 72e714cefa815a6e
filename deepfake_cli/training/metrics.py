"""Detection metrics on scikit-learn: ROC-AUC, AP, EER, Youden's J, per-class
precision/recall/F1, confusion matrices, per-method AUC and video-level scores.

Conventions: "fake" is the positive class; a crop is called fake when
``p_fake >= threshold`` (as :class:`deepfake_cli.inference.classifier.FaceClassifier` does).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm
from sklearn.utils.multiclass import unique_labels

from deepfake_cli.inference.aggregate import aggregate

THRESHOLD_METHODS: tuple[str, ...] = ("eer", "youden", "fixed")

# A decision threshold chosen on fewer validation crops of either class is mostly noise.
MIN_CALIBRATION_CROPS = 20


def _both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def roc_auc(y_fake: Sequence[int], p_fake: Sequence[float]) -> float | None:
    """Exact ROC-AUC from probabilities; None when only one class is present."""
    y = np.asarray(y_fake)
    return float(skm.roc_auc_score(y, p_fake)) if _both_classes(y) else None


def equal_error_rate(y_fake: Sequence[int], p_fake: Sequence[float]) -> tuple[float, float]:
    """(EER, threshold at the EER).

    On the ROC points (``drop_intermediate=False``, thresholds descending) the
    first point where FPR >= FNR is found; the EER is where the straight line
    from the previous point crosses FPR = FNR, and the threshold is that first
    point's score (crops with ``p_fake >=`` it are fake).
    """
    fpr, tpr, thr = skm.roc_curve(y_fake, p_fake, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # non-increasing; 1 at the first point, -1 at the last
    j = int(np.flatnonzero(diff <= 0)[0])
    d0, d1 = diff[j - 1], diff[j]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    eer = fpr[j - 1] + t * (fpr[j] - fpr[j - 1])
    return float(eer), float(min(thr[j], 1.0))


def youden_threshold(y_fake: Sequence[int], p_fake: Sequence[float]) -> tuple[float, float]:
    """(max of TPR - FPR, the highest threshold reaching it)."""
    fpr, tpr, thr = skm.roc_curve(y_fake, p_fake, drop_intermediate=False)
    j = tpr - fpr
    i = int(np.argmax(j))
    return float(j[i]), float(min(thr[i], 1.0))


def choose_threshold(y_fake: Sequence[int], p_fake: Sequence[float], method: str) -> float:
    """The decision threshold ``method`` picks on these scores (0.5 when it cannot)."""
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold method must be one of {', '.join(THRESHOLD_METHODS)}, got {method!r}")
    if method == "fixed" or not _both_classes(np.asarray(y_fake)):
        return 0.5
    if method == "eer":
        return equal_error_rate(y_fake, p_fake)[1]
    return youden_threshold(y_fake, p_fake)[1]


def binary_metrics(y_fake: Sequence[int], p_fake: Sequence[float], threshold: float = 0.5) -> dict[str, Any]:
    """Real-vs-fake numbers of one set of scores; threshold-free ones are None without both classes."""
    y = np.asarray(y_fake, dtype=np.int64)
    p = np.asarray(p_fake, dtype=np.float64)
    pred = (p >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    out: dict[str, Any] = {
        "n": int(len(y)),
        "fakes": int(y.sum()),
        "reals": int(len(y) - y.sum()),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else None,
        "balanced_accuracy": _ratio(tp, tp + fn, tn, tn + fp),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "specificity": tn / (tn + fp) if tn + fp else 0.0,
        "f1": float(skm.f1_score(y, pred, labels=[0, 1], pos_label=1, zero_division=0)),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "auc": None,
        "average_precision": None,
        "eer": None,
        "eer_threshold": None,
        "youden_j": None,
        "youden_threshold": None,
    }
    if _both_classes(y):
        eer, eer_thr = equal_error_rate(y, p)
        j, j_thr = youden_threshold(y, p)
        out.update(
            auc=float(skm.roc_auc_score(y, p)),
            average_precision=float(skm.average_precision_score(y, p)),
            eer=eer,
            eer_threshold=eer_thr,
            youden_j=j,
            youden_threshold=j_thr,
        )
    return out


def _ratio(tp: int, pos: int, tn: int, neg: int) -> float | None:
    if not pos or not neg:
        return None
    return 0.5 * (tp / pos + tn / neg)


def class_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    Averages run over the classes that occur in truth or prediction (as
    scikit-learn's ``classification_report`` does); every class keeps its row.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    all_idx = list(range(len(labels)))
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=all_idx, zero_division=0)
    present = list(unique_labels(y_true, y_pred)) if len(y_true) else []
    averages = {}
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=present, average=avg, zero_division=0)
        averages[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af), "support": int(len(y_true))}
    return {
        "labels": list(labels),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)) if len(y_true) else None,
        "per_class": [
            {"label": labels[i], "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i in all_idx
        ],
        "macro_avg": averages["macro"],
        "weighted_avg": averages["weighted"],
        "confusion": skm.confusion_matrix(y_true, y_pred, labels=all_idx).tolist(),
    }


def cross_entropy(targets: Sequence[int], probs: np.ndarray) -> float | None:
    """Mean negative log-likelihood of the true classes (the loss, unweighted)."""
    targets = np.asarray(targets)
    if not len(targets):
        return None
    return float(skm.log_loss(targets, probs, labels=list(range(probs.shape[1]))))


def video_scores(video_keys: Sequence[str], y_fake: Sequence[int], p_fake: Sequence[float]) -> list[dict[str, Any]]:
    """One row per video: its label (fake if any crop is), crop count, mean and confident
    (DFDC winner's rule, :mod:`deepfake_cli.inference.aggregate`) scores."""
    keys = np.asarray(video_keys, dtype=object)
    y = np.asarray(y_fake)
    p = np.asarray(p_fake, dtype=np.float64)
    rows = []
    for key in sorted(set(keys.tolist())):
        if not key:
            continue
        mask = keys == key
        rows.append({
            "video": key, "fake": int(y[mask].max()), "crops": int(mask.sum()),
            "p_mean": aggregate(p[mask], "mean"), "p_confident": aggregate(p[mask], "confident"),
        })  # fmt: skip
    return rows


def video_metrics(videos: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    """Video AUC and accuracy for the mean and the confident aggregation."""
    if not videos:
        return None
    y = np.array([v["fake"] for v in videos])
    out: dict[str, Any] = {"videos": len(videos), "fake_videos": int(y.sum()), "threshold": float(threshold)}
    for name, column in (("mean", "p_mean"), ("confident", "p_confident")):
        p = np.array([v[column] for v in videos])
        out[name] = {"auc": roc_auc(y, p), "accuracy": float(np.mean((p >= threshold) == y.astype(bool)))}
    return out


def per_method(methods: Sequence[str], y_fake: Sequence[int], p_fake: Sequence[float], threshold: float) -> list[dict[str, Any]]:
    """Each manipulation method's AUC against all reals, and its detection rate at the threshold.

    The reals' row gives their specificity (share called real) instead.
    """
    methods = np.asarray(methods, dtype=object)
    y = np.asarray(y_fake)
    p = np.asarray(p_fake, dtype=np.float64)
    reals = y == 0
    rows = []
    if reals.any():
        rows.append({
            "method": "original (real)", "n": int(reals.sum()), "auc": None,
            "called_fake": float(np.mean(p[reals] >= threshold)), "mean_p_fake": float(p[reals].mean()),
        })  # fmt: skip
    for method in sorted(set(methods[~reals].tolist())):
        mask = (methods == method) & ~reals
        both = mask | reals
        rows.append({
            "method": str(method), "n": int(mask.sum()), "auc": roc_auc(y[both], p[both]),
            "called_fake": float(np.mean(p[mask] >= threshold)), "mean_p_fake": float(p[mask].mean()),
        })  # fmt: skip
    return rows
