"""``create_model``: build a registered architecture, optionally from a checkpoint."""

from __future__ import annotations

import os
from typing import Any

import torch.nn as nn

from deepfake_cli.models._registry import get_model_spec, model_entrypoint


def create_model(
    name: str,
    num_classes: int = 2,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    **model_args: Any,
) -> nn.Module:
    """Build ``name``; with ``checkpoint``, load its weights (architecture must match).

    The checkpoint is read apart from the architecture with
    ``torch.load(weights_only=True)``; its stored ``num_classes``/model args win.
    """
    if checkpoint is not None:
        from deepfake_cli.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        if ckpt["arch"] != name:
            from deepfake_cli.errors import CheckpointError

            raise CheckpointError(f"{checkpoint}: holds a '{ckpt['arch']}' model, not '{name}'")
        return build_from_checkpoint(ckpt, str(checkpoint))
    entrypoint = model_entrypoint(name)
    if pretrained:
        check_pretrained(name)
    return entrypoint(num_classes=num_classes, pretrained=pretrained, **model_args)


def check_pretrained(name: str) -> None:
    """:class:`UsageError` unless ``name`` has ImageNet weights for ``pretrained=True`` to load."""
    spec = get_model_spec(name)
    if spec.imagenet:
        return
    from deepfake_cli.errors import UsageError

    source = spec.pretrained_source
    raise UsageError(
        f"'{name}' has no ImageNet weights, so --pretrained would change nothing"
        + (f"; its published weights: {source}, then --init FILE" if source else "; train it from scratch")
    )


def build_from_checkpoint(ckpt: dict[str, Any], source: str) -> nn.Module:
    """The checkpoint's architecture with its weights.

    Built normally, random initialisation included (about 0.03 s for mobilenet_v2): built on
    the meta device instead, the initialisers run through torch's Python references, which
    import torch._dynamo, about 1.8 s of every cold start.
    """
    model = model_entrypoint(ckpt["arch"])(**ckpt["model_args"])
    load_state(model, ckpt["state_dict"], source)
    return model


def load_state(model: nn.Module, state_dict: dict, source: str) -> None:
    from deepfake_cli.errors import CheckpointError

    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"{source}: weights do not fit the architecture: {' '.join(first[:3])}") from exc
