"""torchvision backbones with a new classification head.

torchvision is imported when one of these is built, not when the registry is: its
import takes about 2 s (it pulls in ``torch._dynamo``), which every ``dfdetect``
call with another architecture would pay.
"""

from __future__ import annotations

import torch.nn as nn

from deepfake_cli.errors import PretrainedWeightsUnavailable
from deepfake_cli.models._pretrained import cached_weights_path, ensure_weights_available
from deepfake_cli.models._registry import register_model


def _imagenet(weights, arch: str, pretrained: bool):
    if not pretrained:
        return None
    ensure_weights_available(weights, arch)
    return weights


def _build(builder, weights, arch: str) -> nn.Module:
    """``builder(weights=weights)``; a cached file torchvision cannot load is one clear error."""
    try:
        return builder(weights=weights)
    except Exception as exc:  # noqa: BLE001 - a partial download (unpickling errors) or another model's file (key errors)
        if weights is None:
            raise
        path = cached_weights_path(weights)
        raise PretrainedWeightsUnavailable(
            f"ImageNet weights for {arch} in {path} cannot be loaded ({type(exc).__name__}): a partial download or "
            f"another model's file? Delete it and put {weights.url} there"
        ) from None


@register_model(
    input_size=224,
    gradcam_layer="layer4.1",
    pretrained_source="torchvision ResNet18_Weights.IMAGENET1K_V1",
    imagenet=True,
    params=11_177_538,
)
def resnet18(num_classes: int = 2, pretrained: bool = False, **kwargs) -> nn.Module:
    """torchvision ResNet-18 with fc 512 -> num_classes (the first report's best model)."""
    import torchvision.models as tvm

    weights = _imagenet(tvm.ResNet18_Weights.IMAGENET1K_V1, "resnet18", pretrained)
    model = _build(tvm.resnet18, weights, "resnet18")
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


@register_model(
    input_size=224,
    gradcam_layer="features.8",
    pretrained_source="torchvision EfficientNet_B0_Weights.IMAGENET1K_V1",
    imagenet=True,
    params=4_010_110,
)
def efficientnet_b0(num_classes: int = 2, pretrained: bool = False, dropout: float = 0.2, **kwargs) -> nn.Module:
    """torchvision EfficientNet-B0 with a new 1280 -> num_classes head (the second report)."""
    import torchvision.models as tvm

    weights = _imagenet(tvm.EfficientNet_B0_Weights.IMAGENET1K_V1, "efficientnet_b0", pretrained)
    model = _build(tvm.efficientnet_b0, weights, "efficientnet_b0")
    model.classifier = nn.Sequential(nn.Dropout(dropout, inplace=True), nn.Linear(1280, num_classes))
    return model


@register_model(
    input_size=224,
    gradcam_layer="features.18",
    pretrained_source="torchvision MobileNet_V2_Weights.IMAGENET1K_V1",
    imagenet=True,
    params=2_226_434,
)
def mobilenet_v2(num_classes: int = 2, pretrained: bool = False, dropout: float = 0.2, **kwargs) -> nn.Module:
    """torchvision MobileNetV2 with a new 1280 -> num_classes head (the default detector's backbone)."""
    import torchvision.models as tvm

    weights = _imagenet(tvm.MobileNet_V2_Weights.IMAGENET1K_V1, "mobilenet_v2", pretrained)
    model = _build(tvm.mobilenet_v2, weights, "mobilenet_v2")
    model.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.last_channel, num_classes))
    return model
