"""Import the first report's checkpoints into dfdetect's format.

The first report saved ``{"model_state_dict", "best_val_acc", "epoch"}`` for a
torchvision ResNet-18 with fc 512 -> 2 and for its two custom CNNs (our
``cnn`` and ``cnn_small``), class 0 real and class 1 fake, trained on
ImageNet-normalised 224x224 face crops with a 30% margin. Those files come from
elsewhere, so they are read with ``weights_only=True`` (numpy scalars, which
training scripts often store as metrics, are allowed; nothing that runs code is).
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from deepfake_cli.models.checkpoint import DEFAULT_FACE_FRAMING, build_checkpoint
from deepfake_cli.errors import CheckpointError
from deepfake_cli.labels import BINARY_LABELS
from deepfake_cli.models import create_model, get_model_spec, load_state
from deepfake_cli.provenance import import_stamp

# `dfdetect models import <source>` -> registered architecture.
SEED_ARCHS: dict[str, str] = {"seed-resnet18": "resnet18", "seed-cnn": "cnn", "seed-cnn-small": "cnn_small"}
SEED_KEYS = ("model_state_dict", "best_val_acc", "epoch")
# Wrappers that prefix parameter names: DataParallel/DDP and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _numpy_scalar_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
    kinds = ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType")
    return [core.multiarray.scalar, np.dtype, *(getattr(dtypes, k) for k in kinds if hasattr(dtypes, k))]


def read_seed_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw seed-format dict, loaded safely."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects other than tensors, numbers and strings (it could run code)"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({type(exc).__name__})") from exc
    if not isinstance(raw, dict) or "model_state_dict" not in raw:
        what = sorted(raw)[:6] if isinstance(raw, dict) else type(raw).__name__
        raise CheckpointError(f"{path}: not in the first report's format (expected keys {', '.join(SEED_KEYS)}; found {what})")
    if not isinstance(raw["model_state_dict"], Mapping):
        raise CheckpointError(f"{path}: model_state_dict is a {type(raw['model_state_dict']).__name__}, not a state dict")
    return raw


def _strip_wrappers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def match_state_dict(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], source: str
) -> tuple[dict[str, torch.Tensor], str]:
    """``state`` under ``expected``'s names, and how they were matched ("names" or "order").

    Names are matched first. A script that named its layers differently still
    registers them in the same order, so when every tensor's shape agrees in
    order the tensors are taken positionally; anything else is an error.
    """
    state = _strip_wrappers(state)
    if set(state) == set(expected):
        return dict(state), "names"
    ours, theirs = list(expected.items()), list(state.items())
    if len(ours) == len(theirs) and all(a.shape == b.shape for (_, a), (_, b) in zip(ours, theirs)):
        return {name: tensor for (name, _), (_, tensor) in zip(ours, theirs)}, "order"
    missing = sorted(set(expected) - set(state))[:3]
    unexpected = sorted(set(state) - set(expected))[:3]
    raise CheckpointError(
        f"{source}: weights do not fit the architecture ({len(theirs)} tensors, it needs {len(ours)}; "
        f"missing e.g. {', '.join(missing) or '-'}; unexpected e.g. {', '.join(unexpected) or '-'})"
    )


def _plain(value: Any) -> Any:
    """Numbers as plain Python values, so the new checkpoint stays weights_only-loadable."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, (int, float, str, bool, type(None))) else str(value)


def import_seed(path: str | Path, source: str) -> dict[str, Any]:
    """A dfdetect checkpoint from a first-report checkpoint; ``source`` is a key of :data:`SEED_ARCHS`."""
    if source not in SEED_ARCHS:
        raise CheckpointError(f"unknown seed source '{source}' (valid: {', '.join(SEED_ARCHS)})")
    arch = SEED_ARCHS[source]
    path = Path(path)
    raw = read_seed_checkpoint(path)
    model = create_model(arch, num_classes=len(BINARY_LABELS))
    state, matched_by = match_state_dict(raw["model_state_dict"], model.state_dict(), str(path))
    load_state(model, state, str(path))
    spec = get_model_spec(arch)
    metrics = {k: _plain(raw[k]) for k in ("best_val_acc", "epoch") if k in raw}
    return build_checkpoint(
        model,
        arch=arch,
        model_args={"num_classes": len(BINARY_LABELS)},
        labels=BINARY_LABELS,
        preprocessing=spec.preprocessing(),
        face=DEFAULT_FACE_FRAMING,
        threshold=0.5,
        metrics=metrics,
        provenance={
            **import_stamp(source, path),
            "origin": "first report's training script ({model_state_dict, best_val_acc, epoch})",
            "label_mapping": "class 0 real, class 1 fake",
            "weights_matched_by": matched_by,
            "metrics_note": "best_val_acc and epoch as recorded by the first report's script (its own validation split)",
        },
    )
