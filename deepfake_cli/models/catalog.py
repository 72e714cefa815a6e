"""Descriptions of registered architectures and trained models, for ``models list``."""

from __future__ import annotations

import re
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


def _card_section(card: str, title: str) -> str:
    """The body of the card's ``## title`` section ('' when it has none)."""
    lines = card.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("## ") and line[3:].strip().lower().startswith(title.lower()):
            body = []
            for rest in lines[i + 1 :]:
                if rest.startswith("## "):
                    break
                body.append(rest)
            return "\n".join(body).strip()
    return ""


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    i = text.find(". ")
    return text[: i + 1] if i > 0 else text


def card_summary(info: dict[str, Any]) -> str:
    """A short Markdown summary of :func:`model_info`'s model: what it is (the card's opening
    paragraph, else its architecture and labels), its validation figures (from the
    checkpoint's metrics) and limitations (the first sentence of each of the card's
    ``## Limitations`` bullets), to lead ``models info`` before the full card."""
    card = info.get("card_text") or ""
    lines = card.splitlines()
    body = lines[1:] if lines and lines[0].startswith("# ") else lines
    paragraphs = [p for p in "\n".join(body).split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "|", "```"))]
    what = " ".join(paragraphs[0].split()) if paragraphs else (
        f"A `{info['arch']}` checkpoint with labels {', '.join(info['labels'])}."
    )
    out = [f"# {info['name']}: summary", "", f"**What it is.** {what}", ""]
    m = info.get("metrics") or {}
    figures = []
    for key, label in (("val_auc", "ROC-AUC"), ("val_ap", "average precision"), ("val_eer", "EER")):
        if isinstance(m.get(key), (int, float)):
            figures.append(f"{label} {m[key]:.3f}")
    if isinstance(m.get("val_accuracy_at_threshold"), (int, float)):
        acc = f"accuracy {m['val_accuracy_at_threshold']:.3f}"
        if isinstance(m.get("val_balanced_accuracy_at_threshold"), (int, float)):
            acc += f" (balanced {m['val_balanced_accuracy_at_threshold']:.3f})"
        figures.append(acc)
    threshold = f"threshold {info['threshold']:.3f}" if isinstance(info.get("threshold"), (int, float)) else None
    if m.get("threshold_method") and threshold:
        threshold += f" ({m['threshold_method']})"
    if figures:
        epoch = f" at epoch {m['epoch']}" if m.get("epoch") is not None else ""
        out += [f"**Validation{epoch}.** " + ", ".join(figures) + (f"; {threshold}." if threshold else "."), ""]
    else:
        out += ["**Validation.** No validation figures recorded in the checkpoint" + (f"; {threshold}." if threshold else "."), ""]
    limits = _card_section(card, "Limitations")
    bullets = [b for b in re.split(r"\n(?=- )", limits) if b.startswith("- ")]
    if bullets:
        out += ["**Limitations.**", ""] + [f"- {_first_sentence(b[2:])}" for b in bullets] + [""]
    elif card:
        out += ["**Limitations.** The card has no Limitations section: read it in full below.", ""]
    return "\n".join(out).rstrip() + "\n"
