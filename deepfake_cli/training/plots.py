"""Figures of training and evaluation, drawn with matplotlib's Agg canvas.

``matplotlib.figure.Figure`` with ``FigureCanvasAgg`` never touches pyplot's
global state or a display, so plots are safe in servers, threads and tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    return [p[0] for p in points], [float(p[1]) for p in points]


def plot_training_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch, train vs validation (plus validation AUC)."""
    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, label, style in (("train_ce", "train", "o-"), ("val_loss", "validation", "s-")):
        x, y = _series(history, key)
        if x:
            ax_loss.plot(x, y, style, label=label)
    ax_loss.set(title="Loss (cross-entropy)", xlabel="epoch", ylabel="loss")
    for key, label, style in (("train_acc", "train accuracy", "o-"), ("val_acc", "validation accuracy", "s-"), ("val_auc", "validation AUC", "^--")):
        x, y = _series(history, key)
        if x:
            ax_acc.plot(x, y, style, label=label)
    # Several datasets: each one's validation AUC as well.
    names = dict.fromkeys(n for r in history for n in (r.get("val_datasets") or {}))
    for name in names:
        points = [(r["epoch"], r["val_datasets"][name]["auc"]) for r in history
                  if (r.get("val_datasets") or {}).get(name, {}).get("auc") is not None]
        if points:
            ax_acc.plot(*zip(*points), "x:", label=f"val AUC {name}")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy / AUC", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return _save(fig, path)


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | os.PathLike[str], title: str = "Confusion matrix") -> Path:
    """Heatmap of counts (rows: true class, columns: predicted), coloured by row share."""
    cm = np.asarray(matrix, dtype=np.int64)
    shares = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.9 * len(labels) + 2)
    fig = _figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    return _save(fig, path)


def plot_roc(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]],
    path: str | os.PathLike[str],
    eer_point: tuple[float, float] | None = None,
) -> Path:
    """ROC curves ``(name, fpr, tpr, auc)``; the first is drawn boldest, with its EER point."""
    fig = _figure(5.5, 5)
    ax = fig.subplots()
    for i, (name, fpr, tpr, auc) in enumerate(curves):
        label = name if auc is None else f"{name} (AUC {auc:.3f})"
        ax.plot(fpr, tpr, lw=2.2 if i == 0 else 1.0, label=label)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=1)
    if eer_point is not None:
        ax.plot([eer_point[0]], [eer_point[1]], "ko", ms=5, label=f"EER {eer_point[0]:.3f}")
    ax.set(xlabel="false positive rate (reals called fake)", ylabel="true positive rate (fakes caught)", title="ROC", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
