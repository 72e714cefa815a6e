"""Weight-space interpolation of two checkpoints of one model (WiSE-FT, Wortsman et al. 2022).

A model fine-tuned from another keeps its parent's basin, so the straight line between
their weights stays a good model, and points on it often beat both ends away from the
fine-tuning data. Both checkpoints must share architecture, labels and the data split
they were trained on: otherwise one's validation crops are the other's training crops,
and no figure measured on the merged model would mean anything.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from deepfake_cli import __version__
from deepfake_cli.errors import CheckpointError, UsageError
from deepfake_cli.models.checkpoint import load_checkpoint
from deepfake_cli.provenance import file_sha256

# What must be equal for the two ends to be one model on one split.
_SAME_KEYS = ("arch", "model_args", "labels")
_SAME_PROVENANCE = ("fingerprint", "splits", "val_fraction", "split_seed", "group_lookalikes", "task")


def interpolate_state(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """``(1 - weight) * base + weight * tuned`` for every floating tensor (BatchNorm's running
    statistics too); counters such as ``num_batches_tracked`` come from ``tuned``."""
    if base.keys() != tuned.keys():
        only = sorted(set(base) ^ set(tuned))[:3]
        raise CheckpointError(f"the two checkpoints hold different tensors ({', '.join(only)}, ...)")
    merged = {}
    for key, t in tuned.items():
        b = base[key]
        if b.shape != t.shape:
            raise CheckpointError(f"tensor {key} has shape {tuple(b.shape)} in one checkpoint, {tuple(t.shape)} in the other")
        if t.is_floating_point():
            merged[key] = torch.lerp(b.to(torch.float32), t.to(torch.float32), weight).to(t.dtype)
        else:
            merged[key] = t.clone()
    return merged


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    return a == b


def merge_checkpoints(
    base_path: str | os.PathLike[str],
    tuned_path: str | os.PathLike[str],
    weight: float,
    *,
    input_size: int | None = None,
) -> dict[str, Any]:
    """A checkpoint on the line from ``base`` (weight 0) to ``tuned`` (weight 1).

    Preprocessing, framing, config and provenance come from ``tuned`` (``input_size``
    overrides its size). The threshold is ``tuned``'s, marked uncalibrated: calibrate it on
    the shared validation split with ``dfdetect evaluate --threshold-from val``.
    """
    if not 0.0 <= weight <= 1.0:
        raise UsageError(f"--weight must lie in [0, 1], got {weight}")
    if input_size is not None and input_size < 32:
        raise UsageError(f"--input-size must be at least 32, got {input_size}")
    base, tuned = load_checkpoint(base_path), load_checkpoint(tuned_path)
    for key in _SAME_KEYS:
        if base[key] != tuned[key]:
            raise CheckpointError(f"cannot merge: their {key} differ ({base[key]} against {tuned[key]})")
    bp, tp = base.get("provenance") or {}, tuned.get("provenance") or {}
    for key in _SAME_PROVENANCE:
        if bp.get(key) != tp.get(key):
            raise CheckpointError(
                f"cannot merge: they were trained on different data or splits (provenance {key} differs), "
                "so one's validation crops may be the other's training crops"
            )
    if not _same_value(base.get("train_crop_digests"), tuned.get("train_crop_digests")):
        raise CheckpointError("cannot merge: their training crops differ, so the validation split is not shared")

    merged = {k: v for k, v in tuned.items() if k != "state_dict"}
    merged["state_dict"] = interpolate_state(base["state_dict"], tuned["state_dict"], weight)
    merged["dfdetect_version"] = __version__
    merged["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    merged["preprocessing"] = dict(tuned["preprocessing"])
    if input_size is not None:
        merged["preprocessing"]["input_size"] = int(input_size)
    merged["metrics"] = {"threshold": float(tuned.get("threshold", 0.5)), "threshold_method": "uncalibrated (merged)"}
    merged["provenance"] = {
        **tp,
        "merged_from": [
            {"path": str(Path(base_path)), "sha256": file_sha256(base_path), "weight": round(1.0 - weight, 6)},
            {"path": str(Path(tuned_path)), "sha256": file_sha256(tuned_path), "weight": round(weight, 6)},
        ],
    }
    return merged
