"""Model registry: ``list_models``, ``create_model``, ``get_model_spec``."""

from deepfake_cli.models._factory import build_from_checkpoint, check_pretrained, create_model, load_state
from deepfake_cli.models._registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    get_model_spec,
    is_model,
    list_models,
    model_entrypoint,
    register_model,
)

# Importing the architecture modules registers them.
from deepfake_cli.models import cnn, mesonet, sepcnn, torchvision_models  # noqa: E402,F401

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ModelSpec",
    "check_pretrained",
    "create_model",
    "get_model_spec",
    "is_model",
    "list_models",
    "build_from_checkpoint",
    "load_state",
    "model_entrypoint",
    "register_model",
]
