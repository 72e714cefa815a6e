"""Descriptions of registered architectures and trained models, for ``models list``."""

from __future__ import annotations

from typing import Any

import torch

from deepfake_cli.models.checkpoint import checkpoint_label, load_checkpoint
from deepfake_cli.errors import CheckpointError
from deepfake_cli.faces.framing import RESIZE_INTERPOLATION
from deepfake_cli.models.store import default_model_name, resolve_model, shipped_models
from deepfake_cli.models import create_model, get_model_spec, list_models


def architectures() -> list[dict[str, Any]]:
    rows = []
    for name in list_models():
        spec = get_model_spec(name)
        params = spec.params
        if params is None:
            with torch.device("meta"):  # shapes only: no weights allocated or initialised
                params = sum(p.numel() for p in create_model(name).parameters())
        rows.append(
            {
                "name": name,
                "params": params,
                "input_size": spec.input_size,
                "mean": list(spec.mean),
                "std": list(spec.std),
                "gradcam_layer": spec.gradcam_layer,
                "pretrained_source": spec.pretrained_source,
                "description": spec.description,
            }
        )
    return rows


def trained_models() -> list[dict[str, Any]]:
    default = default_model_name()
    rows = []
    for stored in shipped_models():
        try:
            ckpt = load_checkpoint(stored.path)
        except CheckpointError as exc:
            rows.append({"name": stored.name, "arch": "?", "labels": [], "threshold": float("nan"),
                         "default": False, "path": str(stored.path), "error": str(exc)})
            continue
        rows.append(
            {
                "name": stored.name,
                "arch": ckpt["arch"],
                "labels": ckpt["labels"],
                "threshold": ckpt["threshold"],
                "default": stored.name == default,
                "path": str(stored.path),
                "card": None if stored.card is None else str(stored.card),
                "metrics": ckpt.get("metrics", {}),
            }
        )
    return rows


def model_info(name: str | None) -> dict[str, Any]:
    """Everything known about one trained model: its checkpoint metadata and model card."""
    path = resolve_model(name)
    ckpt = load_checkpoint(path)
    card = path.with_suffix(".md")
    return {
        "name": checkpoint_label(path),
        "path": str(path),
        "default": path.stem == default_model_name(),
        "arch": ckpt["arch"],
        "model_args": ckpt["model_args"],
        "labels": ckpt["labels"],
        "threshold": ckpt["threshold"],
        "preprocessing": {**ckpt["preprocessing"], "interpolation": RESIZE_INTERPOLATION},
        "metrics": ckpt.get("metrics", {}),
        "provenance": ckpt.get("provenance", {}),
        "card": str(card) if card.is_file() else None,
        "card_text": card.read_text(encoding="utf-8") if card.is_file() else None,
    }
