"""The two custom CNNs of the first report (``cnn`` and ``cnn_small``)."""

from __future__ import annotations

import torch
import torch.nn as nn

from deepfake_cli.models._registry import register_model


def double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


def mlp_head(widths: list[int], dropout: float) -> nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with ReLU+Dropout between."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class PlainCNN(nn.Module):
    """Double-conv blocks with max-pooling between them, global pooling and an MLP."""

    def __init__(self, channels: list[int], head: list[int], num_classes: int, dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        in_ch = 3
        for i, ch in enumerate(channels):
            blocks.append(double_conv(in_ch, ch))
            if i < len(channels) - 1:
                blocks.append(nn.MaxPool2d(2))
            in_ch = ch
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = mlp_head([channels[-1], *head, num_classes], dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


@register_model(input_size=224, gradcam_layer="features.6", params=8_494_658)
def cnn(num_classes: int = 2, pretrained: bool = False, **kwargs) -> nn.Module:
    """Custom CNN of the first report: 4 double-conv blocks 64-512, deep MLP head (8.5M params)."""
    return PlainCNN([64, 128, 256, 512], [2048, 1024, 512, 256], num_classes, dropout=0.5)


@register_model(input_size=224, gradcam_layer="features.4", params=1_109_282)
def cnn_small(num_classes: int = 2, pretrained: bool = False, **kwargs) -> nn.Module:
    """Small custom CNN of the first report: 3 double-conv blocks 32-128 (1.1M params)."""
    return PlainCNN([32, 64, 128], [1024, 512, 256, 128], num_classes, dropout=0.3)
