"""The one checkpoint format, in the manner of nanoGPT: a single plain dict.

Everything ``predict``, ``evaluate``, ``gradcam`` and ``serve`` need is in the
file: architecture and its arguments, label names, preprocessing including the
face-crop framing the model was trained on, decision threshold, weights,
training config, metrics and data provenance.
"""

from __future__ import annotations

import io
import os
import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from deepfake_cli import __version__
from deepfake_cli.config import DEFAULT_FACE_MARGIN, DEFAULT_FACE_SQUARE
from deepfake_cli.errors import CheckpointError
from deepfake_cli.output import atomic_path

FORMAT = "dfdetect-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "model_args", "labels", "preprocessing", "state_dict")

# File names 'dfdetect train' gives every run's checkpoints: named by their run folder instead.
RUN_CHECKPOINT_STEMS = ("best", "last")


def checkpoint_label(path: str | os.PathLike[str]) -> str:
    """A model's name in outputs: the file's stem, or ``run/best`` for a training run's checkpoint."""
    p = Path(path)
    return f"{p.parent.name}/{p.stem}" if p.stem in RUN_CHECKPOINT_STEMS and p.parent.name else p.stem


# Framing of the face crops a model was trained on; inference crops the same way.
DEFAULT_FACE_FRAMING: dict[str, Any] = {"detector": "mtcnn", "margin": DEFAULT_FACE_MARGIN, "square": DEFAULT_FACE_SQUARE}


def build_checkpoint(
    model: nn.Module,
    *,
    arch: str,
    model_args: Mapping[str, Any],
    labels: list[str] | tuple[str, ...],
    preprocessing: Mapping[str, Any],
    face: Mapping[str, Any] | None = None,
    threshold: float = 0.5,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the checkpoint dict; weights are copied to CPU."""
    state = {k: v.detach().to("cpu").clone() for k, v in _unwrap(model).state_dict().items()}
    preprocessing = dict(preprocessing)
    preprocessing["face"] = dict(face or preprocessing.get("face") or DEFAULT_FACE_FRAMING)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dfdetect_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arch": arch,
        "model_args": dict(model_args),
        "labels": list(labels),
        "preprocessing": preprocessing,
        "threshold": float(threshold),
        "state_dict": state,
        "config": dict(config or {}),
        "metrics": dict(metrics or {}),
        "provenance": dict(provenance or {}),
        **dict(extra or {}),
    }


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel and torch.compile wrap the real module.
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write atomically: a temporary file in the same folder, then rename.

    The file gets the umask's mode like any other (not mkstemp's 0600). A full disk or any
    other failure to write is a :class:`CheckpointError` naming ``path``, and the file that
    was there (a run's previous ``best.pt``/``last.pt``) is left as it was.
    """
    path = Path(path)
    try:
        # Serialised in memory first: torch's own writer turns ENOSPC into a RuntimeError
        # (inline_container, "PytorchStreamWriter failed") with chained tracebacks. The
        # temporary file is a partial one (keep_suffix), which a later save sweeps if the
        # process writing it was killed.
        buffer = io.BytesIO()
        torch.save(dict(checkpoint), buffer)
        with atomic_path(path, keep_suffix=True) as tmp, open(tmp, "xb") as fh:
            fh.write(buffer.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, RuntimeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        reason = reason.split("] . ", 1)[-1] if reason.startswith("[enforce fail") else reason
        raise CheckpointError(f"{path}: cannot write the checkpoint ({reason}); nothing was replaced") from exc
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint with ``weights_only=True`` (never runs code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file, not a checkpoint")
    with open(path, "rb") as f:
        head = f.read(64)
    if path.suffix.lower() == ".onnx":
        raise CheckpointError(
            f"{path}: an ONNX export; dfdetect loads the .pt checkpoint it was exported from "
            "(run ONNX files with onnxruntime, see the README's export section)"
        )
    if head.startswith(b"PK\x03\x04") and _is_torchscript(path):
        raise CheckpointError(
            f"{path}: a TorchScript export; dfdetect loads the .pt checkpoint it was exported from "
            "(run TorchScript files with torch.jit.load)"
        )
    if head.startswith(b"version https://git-lfs"):
        raise CheckpointError(f"{path}: a Git LFS pointer, not the checkpoint itself (fetch it with 'git lfs pull')")
    # torch.save writes a zip archive (or, before torch 1.6, a pickle, which opens with its protocol byte).
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise CheckpointError(f"{path}: not a checkpoint (neither a torch.save zip archive nor a pickle)")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than plain data and tensors "
            f"(it could run code); only dfdetect checkpoints are accepted (convert other formats with "
            f"'dfdetect models import')"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a text file or a Git LFS pointer fails deep in the unpickler (KeyError, IndexError, ...)
        raise CheckpointError(
            f"{path}: not a checkpoint, or a truncated or corrupt one ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    return validate_checkpoint(ckpt, str(path))


def _is_torchscript(path: Path) -> bool:
    """Whether a zip archive is a TorchScript module (it carries code), not a torch.save dict."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""


def validate_checkpoint(ckpt: Any, source: str) -> dict[str, Any]:
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source}: not a dfdetect checkpoint (holds a {type(ckpt).__name__})")
    if ckpt.get("format") != FORMAT:
        hint = ""
        if "model_state_dict" in ckpt:
            hint = " (it looks like the first report's format: use 'dfdetect models import seed-resnet18')"
        raise CheckpointError(f"{source}: not a dfdetect checkpoint{hint}")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks {', '.join(missing)}")
    if int(ckpt["format_version"]) > FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format {ckpt['format_version']} is newer than this dfdetect understands "
            f"({FORMAT_VERSION}); upgrade dfdetect"
        )
    ckpt["preprocessing"].setdefault("face", dict(DEFAULT_FACE_FRAMING))
    ckpt.setdefault("threshold", 0.5)
    for key in ("config", "metrics", "provenance"):
        ckpt.setdefault(key, {})
    return ckpt
