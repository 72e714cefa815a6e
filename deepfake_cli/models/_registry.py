"""Decorator registry of model architectures, in the manner of timm's.

Each architecture is a small typed factory function registered with its
:class:`ModelSpec`: input size, normalisation, Grad-CAM layer and where
pretrained weights come from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch.nn as nn

from deepfake_cli.errors import UnknownModelError
from deepfake_cli.faces.framing import RESIZE_INTERPOLATION

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """What inference and training need to know about an architecture."""

    name: str
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    gradcam_layer: str = ""
    pretrained_source: str | None = None
    # Whether --pretrained means something (ImageNet weights through torchvision); MesoNet's
    # published weights come in with 'dfdetect models import' and --init instead.
    imagenet: bool = False
    # Parameters with a 2-class head: ``models list`` shows it without building the model
    # (a torchvision one costs a 2 s import); a test checks it against the built model.
    params: int | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def preprocessing(self, input_size: int | None = None) -> dict[str, Any]:
        """The preprocessing dict stored in checkpoints."""
        return {
            "input_size": int(input_size or self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": RESIZE_INTERPOLATION,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ModelFactory = Callable[..., nn.Module]

_model_entrypoints: dict[str, ModelFactory] = {}
_model_specs: dict[str, ModelSpec] = {}


def register_model(**spec_kwargs: Any) -> Callable[[ModelFactory], ModelFactory]:
    """Register a factory under its function name with a :class:`ModelSpec`."""

    def decorator(fn: ModelFactory) -> ModelFactory:
        name = fn.__name__
        if name in _model_entrypoints:
            raise ValueError(f"model '{name}' registered twice")
        _model_entrypoints[name] = fn
        _model_specs[name] = ModelSpec(name=name, description=(fn.__doc__ or "").strip().split("\n")[0], **spec_kwargs)
        return fn

    return decorator


def list_models() -> list[str]:
    return sorted(_model_entrypoints)


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def _check(name: str) -> None:
    if name not in _model_entrypoints:
        raise UnknownModelError(
            f"unknown model architecture '{name}' (valid: {', '.join(list_models())})"
        )


def model_entrypoint(name: str) -> ModelFactory:
    _check(name)
    return _model_entrypoints[name]


def get_model_spec(name: str) -> ModelSpec:
    _check(name)
    return _model_specs[name]
