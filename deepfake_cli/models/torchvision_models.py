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
    """MobileNetV2 with a new 1280 -> num_classes head (the default detector's backbone).

    The network is :class:`MobileNetV2`, torchvision's layout module for module, so
    scoring with a trained checkpoint never imports torchvision (2 s of every
    ``dfdetect predict``); ImageNet weights still come through torchvision's weights API.
    """
    model = MobileNetV2(num_classes=num_classes, dropout=dropout)
    if pretrained:
        import torchvision.models as tvm

        weights = _imagenet(tvm.MobileNet_V2_Weights.IMAGENET1K_V1, "mobilenet_v2", pretrained)
        model.features.load_state_dict(_build(tvm.mobilenet_v2, weights, "mobilenet_v2").features.state_dict())
    return model


class _ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [_ConvBNReLU6(cin, hidden, 1)] if expand != 1 else []
        layers += [_ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (Sandler et al. 2018), width 1.0, with torchvision's module names and init."""

    # expansion t, channels c, repeats n, first stride s
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    last_channel = 1280

    def __init__(self, num_classes: int = 2, dropout: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = [_ConvBNReLU6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_ConvBNReLU6(cin, self.last_channel, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(x.flatten(1))
