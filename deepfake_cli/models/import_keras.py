"""Import the published MesoNet Keras weights (DariusAf/MesoNet ``.h5``) without TensorFlow.

The files are ``Model.save_weights()`` HDF5 files (Keras 2.1.5): one group per
layer holding its arrays. Our ``mesonet4``/``mesoinception4`` mirror the Keras
models layer for layer (convolution, ReLU, BatchNorm with epsilon 1e-3, "same"
padding, channels-last flatten), so the import is a re-layout of arrays:

- Conv2D kernels HWIO -> OIHW;
- BatchNormalization gamma, beta, moving mean, moving variance -> weight, bias,
  running mean, running variance;
- Dense kernels (in, out) -> Linear weights (out, in);
- the single sigmoid output is P(real): Keras sorts the class folders ``df``,
  ``real``, so ``real`` is class 1. Our head has two logits over
  ``("real", "fake")``; with logits ``(z, 0)``, ``softmax = (sigmoid(z), 1 - sigmoid(z))``
  reproduces the published probability exactly.

Layers are matched by kind in creation order (Keras numbers layers as they are
made, ``conv2d_5`` before ``conv2d_6``), which is also the order in which our
modules are registered; every shape is checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from deepfake_cli.models.checkpoint import DEFAULT_FACE_FRAMING, build_checkpoint
from deepfake_cli.errors import CheckpointError, OptionalDependencyError, UsageError
from deepfake_cli.labels import BINARY_LABELS
from deepfake_cli.models import create_model, get_model_spec
from deepfake_cli.provenance import import_stamp

MESONET_ARCHS = ("mesonet4", "mesoinception4")
MESONET_LICENSE = "Apache-2.0, DariusAf/MesoNet"
# Conv2D layers in each published model: how the architecture is recognised.
_CONV_COUNT = {4: "mesonet4", 16: "mesoinception4"}
_KINDS = {"conv2d": nn.Conv2d, "batch_normalization": nn.BatchNorm2d, "dense": nn.Linear}


def read_keras_layers(path: str | Path) -> dict[str, list[tuple[str, dict[str, np.ndarray]]]]:
    """The weighted layers of a Keras HDF5 weights file, by kind, in creation order.

    Returns ``{"conv2d": [(name, {"kernel": ..., "bias": ...}), ...], "batch_normalization": [...], "dense": [...]}``.
    """
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is in the [convert] extra
        raise OptionalDependencyError("reading Keras .h5 weights needs h5py: pip install 'dfdetect[convert]'") from exc
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Keras weights file not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            root = h5["model_weights"] if "model_weights" in h5 else h5  # model.save() vs save_weights()
            if "layer_names" not in root.attrs:
                raise CheckpointError(f"{path}: not a Keras weights file (no layer_names)")
            layers: dict[str, list[tuple[str, dict[str, np.ndarray]]]] = {kind: [] for kind in _KINDS}
            unknown: list[str] = []
            for raw in root.attrs["layer_names"]:
                name = raw.decode() if isinstance(raw, bytes) else str(raw)
                group = root[name]
                weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in group.attrs.get("weight_names", [])]
                if not weight_names:
                    continue  # input, pooling, dropout, flatten, activations
                kind = _layer_kind(name)
                if kind is None:
                    unknown.append(name)
                    continue
                # 'conv2d_5/kernel:0' -> 'kernel'
                arrays = {w.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[w], dtype=np.float32) for w in weight_names}
                layers[kind].append((name, arrays))
    except OSError as exc:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({exc})") from exc
    if unknown:
        raise CheckpointError(f"{path}: layers MesoNet does not have: {', '.join(unknown)}")
    for kind in layers:
        layers[kind].sort(key=lambda item: _creation_index(item[0]))
    return layers


def _layer_kind(name: str) -> str | None:
    base = re.sub(r"_\d+$", "", name)
    return base if base in _KINDS else None


def _creation_index(name: str) -> int:
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def detect_mesonet_arch(layers: dict[str, list]) -> str | None:
    return _CONV_COUNT.get(len(layers["conv2d"]))


def mesonet_state_dict(model: nn.Module, layers: dict[str, list], source: str) -> dict[str, torch.Tensor]:
    """Map Keras arrays onto ``model``'s modules (same kinds, same creation order)."""
    state: dict[str, torch.Tensor] = {}
    for kind, module_type in _KINDS.items():
        modules = [(name, m) for name, m in model.named_modules() if isinstance(m, module_type)]
        keras = layers[kind]
        if len(modules) != len(keras):
            raise CheckpointError(
                f"{source}: has {len(keras)} {kind} layers, the architecture has {len(modules)}"
            )
        for i, ((name, module), (keras_name, arrays)) in enumerate(zip(modules, keras)):
            last_dense = kind == "dense" and i == len(modules) - 1
            for key, tensor in _convert_layer(kind, arrays, last_dense).items():
                target = getattr(module, key)
                if tuple(target.shape) != tuple(tensor.shape):
                    raise CheckpointError(
                        f"{source}: Keras layer {keras_name} gives {key} of shape {tuple(tensor.shape)}, "
                        f"{name}.{key} needs {tuple(target.shape)}"
                    )
                state[f"{name}.{key}"] = tensor
    # Keep what Keras has no counterpart for (BatchNorm's num_batches_tracked).
    for key, value in model.state_dict().items():
        state.setdefault(key, value.clone())
    return state


def _convert_layer(kind: str, arrays: dict[str, np.ndarray], last_dense: bool) -> dict[str, torch.Tensor]:
    t = torch.from_numpy
    if kind == "conv2d":
        return {"weight": t(np.ascontiguousarray(arrays["kernel"].transpose(3, 2, 0, 1))), "bias": t(arrays["bias"])}
    if kind == "batch_normalization":
        return {
            "weight": t(arrays["gamma"]),
            "bias": t(arrays["beta"]),
            "running_mean": t(arrays["moving_mean"]),
            "running_var": t(arrays["moving_variance"]),
        }
    weight = np.ascontiguousarray(arrays["kernel"].T)
    bias = arrays["bias"]
    if last_dense:
        if weight.shape[0] != 1:
            raise CheckpointError(f"expected one sigmoid output, the last Dense layer has {weight.shape[0]}")
        # Logits (real, fake) = (z, 0): softmax gives (sigmoid(z), 1 - sigmoid(z)).
        weight = np.concatenate([weight, np.zeros_like(weight)])
        bias = np.concatenate([bias, np.zeros_like(bias)])
    return {"weight": t(weight), "bias": t(np.ascontiguousarray(bias))}


def import_mesonet(path: str | Path, arch: str | None = None) -> dict[str, Any]:
    """A dfdetect checkpoint from a published MesoNet ``.h5`` file (``arch`` detected if None)."""
    path = Path(path)
    layers = read_keras_layers(path)
    detected = detect_mesonet_arch(layers)
    if detected is None:
        raise CheckpointError(
            f"{path}: {len(layers['conv2d'])} Conv2D layers; not a MesoNet Meso4 (4) or MesoInception4 (16) weights file"
        )
    if arch is None:
        arch = detected
    elif arch not in MESONET_ARCHS:
        raise UsageError(f"--arch must be one of {', '.join(MESONET_ARCHS)}, not '{arch}'")
    elif arch != detected:
        raise UsageError(f"{path}: holds {detected} weights, not {arch} (use --arch {detected})")
    model = create_model(arch, num_classes=2)
    state = mesonet_state_dict(model, layers, str(path))
    model.load_state_dict(state, strict=True)
    spec = get_model_spec(arch)
    framing = dict(DEFAULT_FACE_FRAMING)
    return build_checkpoint(
        model,
        arch=arch,
        model_args={"num_classes": 2},
        labels=BINARY_LABELS,
        preprocessing=spec.preprocessing(),
        face=framing,
        threshold=0.5,
        provenance={
            **import_stamp("mesonet", path),
            "origin": "MesoNet (Afchar et al. 2018), published Keras weights",
            "license": MESONET_LICENSE,
            "label_mapping": "Keras sigmoid output = P(real) (class folders df, real); logits (real, fake) = (z, 0)",
            "face_framing": (
                "MesoNet was trained on face crops at 256x256 in [0, 1]; the crop framing of its training data "
                f"is not published, so detection uses MTCNN margin {framing['margin']} square as a default; "
                "pass --no-detect for inputs that are already face crops"
            ),
        },
    )
