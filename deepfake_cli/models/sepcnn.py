"""The second report's small depthwise-separable CNN (about 175k parameters, 128x128)."""

from __future__ import annotations

import torch
import torch.nn as nn

from deepfake_cli.models._registry import register_model


class SeparableBlock(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 convolution, each with BatchNorm, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, 3, stride=stride, padding=1, groups=in_ch, bias=False)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.depthwise(x)))
        return self.act(self.bn2(self.pointwise(x)))


class SepCNN(nn.Module):
    def __init__(self, num_classes: int = 2, widths=(32, 64, 128, 128, 256, 256), dropout: float = 0.3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        blocks = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            # Downsample whenever the width grows, so 128 px input ends at 8x8.
            blocks.append(SeparableBlock(a, b, stride=2 if b > a or i == 0 else 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(widths[-1], 160),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(160, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(self.stem(x))), 1))


@register_model(input_size=128, gradcam_layer="features.4", params=175_650)
def sepcnn(num_classes: int = 2, pretrained: bool = False, dropout: float = 0.3, **kwargs) -> nn.Module:
    """Depthwise-separable CNN of the second report (about 175k params, 128x128 input)."""
    return SepCNN(num_classes=num_classes, dropout=dropout)
