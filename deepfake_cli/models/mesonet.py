"""MesoNet (Afchar et al., 2018): Meso4 and MesoInception4, layer for layer.

The layout mirrors the published Keras models (convolution, ReLU, then
BatchNorm with Keras' epsilon 1e-3; "same" padding) so their weights can be
imported exactly. Input: 256x256 RGB scaled to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from deepfake_cli.models._registry import register_model

KERAS_BN_EPS = 1e-3


def conv_relu_bn(in_ch: int, out_ch: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, padding=k // 2),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(out_ch, eps=KERAS_BN_EPS),
    )


class MesoHead(nn.Module):
    """Flatten, Dropout, Dense(16), LeakyReLU(0.1), Dropout, Dense(num_classes).

    Keras flattens channels-last; ``forward`` does the same so imported dense
    weights apply unchanged.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.5):
        super().__init__()
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(in_features, 16)
        self.act = nn.LeakyReLU(0.1)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x.permute(0, 2, 3, 1), 1)
        return self.fc2(self.drop2(self.act(self.fc1(self.drop1(x)))))


class Meso4(nn.Module):
    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.block1 = conv_relu_bn(3, 8, 3)
        self.block2 = conv_relu_bn(8, 8, 5)
        self.block3 = conv_relu_bn(8, 16, 5)
        self.block4 = conv_relu_bn(16, 16, 5)
        self.head = MesoHead(16 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.block1(x), 2)
        x = F.max_pool2d(self.block2(x), 2)
        x = F.max_pool2d(self.block3(x), 2)
        x = F.max_pool2d(self.block4(x), 4)
        return self.head(x)


class InceptionLayer(nn.Module):
    """1x1 | 1x1->3x3 | 1x1->3x3 dilated 2 | 1x1->3x3 dilated 3, concatenated."""

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int):
        super().__init__()
        self.branch1 = nn.Conv2d(in_ch, a, 1)
        self.branch2 = nn.Sequential(nn.Conv2d(in_ch, b, 1), nn.ReLU(inplace=True), nn.Conv2d(b, b, 3, padding=1))
        self.branch3 = nn.Sequential(
            nn.Conv2d(in_ch, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=2, dilation=2)
        )
        self.branch4 = nn.Sequential(
            nn.Conv2d(in_ch, d, 1), nn.ReLU(inplace=True), nn.Conv2d(d, d, 3, padding=3, dilation=3)
        )
        self.out_channels = a + b + c + d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1))


class MesoInception4(nn.Module):
    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.inception1 = InceptionLayer(3, 1, 4, 4, 2)
        self.bn1 = nn.BatchNorm2d(11, eps=KERAS_BN_EPS)
        self.inception2 = InceptionLayer(11, 2, 4, 4, 2)
        self.bn2 = nn.BatchNorm2d(12, eps=KERAS_BN_EPS)
        self.block3 = conv_relu_bn(12, 16, 5)
        self.block4 = conv_relu_bn(16, 16, 5)
        self.head = MesoHead(16 * 8 * 8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.bn1(self.inception1(x)), 2)
        x = F.max_pool2d(self.bn2(self.inception2(x)), 2)
        x = F.max_pool2d(self.block3(x), 2)
        x = F.max_pool2d(self.block4(x), 4)
        return self.head(x)


_MESO_PREPROCESS = dict(input_size=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


@register_model(gradcam_layer="block4", pretrained_source="dfdetect models import mesonet (DariusAf/MesoNet .h5)", params=27_994,
                **_MESO_PREPROCESS)
def mesonet4(num_classes: int = 2, pretrained: bool = False, **kwargs) -> nn.Module:
    """Meso4 (Afchar et al. 2018), 256x256 input scaled to [0, 1]."""
    return Meso4(num_classes)


@register_model(gradcam_layer="block4", pretrained_source="dfdetect models import mesonet (DariusAf/MesoNet .h5)", params=28_632,
                **_MESO_PREPROCESS)
def mesoinception4(num_classes: int = 2, pretrained: bool = False, **kwargs) -> nn.Module:
    """MesoInception4 (Afchar et al. 2018), 256x256 input scaled to [0, 1]."""
    return MesoInception4(num_classes)
