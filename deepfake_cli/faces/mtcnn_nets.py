"""MTCNN's networks and box helpers, without importing facenet-pytorch or torchvision.

facenet-pytorch imports torchvision when it is imported, and torchvision imports
``torch._dynamo``: about 2 s of every ``dfdetect`` call that finds faces, longer than
detecting them in a photo. So this module builds P-Net, R-Net and O-Net with
facenet-pytorch's layer names and loads the weights its wheel ships
(``facenet_pytorch/data/{p,r,o}net.pt``, found without importing the package), and
gets torchvision's compiled NMS op by loading its extension library alone.

The box helpers repeat the arithmetic of facenet-pytorch's ``detect_face`` helpers
and of ``torchvision.ops.batched_nms`` operation for operation, so boxes stay those of
facenet-pytorch's MTCNN (the tests compare both).
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

# facenet-pytorch MTCNN's defaults: stage thresholds and pyramid factor.
THRESHOLDS = (0.6, 0.7, 0.7)
PYRAMID_FACTOR = 0.709


def _package_dir(name: str) -> Path:
    """Where an installed package lies, without running its ``__init__``."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _flatten_whc(x: torch.Tensor) -> torch.Tensor:
    """Flatten (N, C, H, W) as (W, H, C): the order facenet-pytorch's converted dense weights expect."""
    return x.permute(0, 3, 2, 1).contiguous().view(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal network: a 12x12 window classifier run fully convolutionally."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))  # box offsets, face probability


class RNet(nn.Module):
    """Refinement network on 24x24 candidate crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_whc(x)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output network on 48x48 crops: box, probability and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_whc(x)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


class MTCNNNets(nn.Module):
    """P-, R- and O-Net with facenet-pytorch's weights, thresholds and pyramid factor."""

    def __init__(self, weights_dir: str | Path | None = None) -> None:
        super().__init__()
        folder = Path(weights_dir) if weights_dir else _package_dir("facenet_pytorch") / "data"
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name in ("pnet", "rnet", "onet"):
            state = torch.load(folder / f"{name}.pt", map_location="cpu", weights_only=True)
            getattr(self, name).load_state_dict(state)
        self.thresholds = list(THRESHOLDS)
        self.factor = PYRAMID_FACTOR


# ----------------------------------------------------------------------------- NMS and boxes


@functools.cache
def _load_nms_op() -> None:
    """Make ``torch.ops.torchvision.nms`` available, once: torchvision's extension library
    alone (milliseconds) unless torchvision is imported already; the package as a fallback."""
    if "torchvision" in sys.modules:
        return
    try:
        folder = _package_dir("torchvision")
        names = ("_C_stable", "_C")  # torchvision >= 0.29 ships _C_stable
        for path in (folder / (n + s) for n in names for s in importlib.machinery.EXTENSION_SUFFIXES):
            if path.is_file():
                torch.ops.load_library(str(path))
                break
        torch.ops.torchvision.nms  # noqa: B018 (raises when the library did not register it)
    except (ImportError, OSError, AttributeError, RuntimeError):
        import torchvision  # noqa: F401 (registers its ops)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """torchvision's NMS op: kept indices in decreasing score order."""
    _load_nms_op()
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``torchvision.ops.batched_nms``: NMS within each ``idxs`` group, same strategy as torchvision's
    (a loop over groups for many boxes, else one NMS on boxes shifted apart per group)."""
    if boxes.numel() > (4000 if boxes.device.type == "cpu" else 100_000):
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for group in torch.unique(idxs):
            members = torch.where(idxs == group)[0]
            keep[members[nms(boxes[members], scores[members], iou_threshold)]] = True
        kept = torch.where(keep)[0]
        return kept[scores[kept].sort(descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    shift = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + shift[:, None], scores, iou_threshold)


def batched_nms_min(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, threshold: float) -> torch.Tensor:
    """facenet-pytorch's final NMS (``batched_nms_numpy`` with method "Min"): overlap over the
    smaller box's area, pixel-inclusive areas, in NumPy, groups shifted apart."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    shift = idxs.to(boxes) * (boxes.max() + 1)
    b = (boxes + shift[:, None]).cpu().numpy()
    s = scores.cpu().numpy()
    x1, y1, x2, y2 = b[:, 0].copy(), b[:, 1].copy(), b[:, 2].copy(), b[:, 3].copy()
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(s)
    picked: list[int] = []
    while order.size > 0:
        i, rest = order[-1], order[:-1]
        picked.append(int(i))
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        overlap = (w * h) / np.minimum(area[i], area[rest])
        order = rest[np.where(overlap <= threshold)]
    return torch.as_tensor(picked, dtype=torch.long, device=boxes.device)


def bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply the regressed offsets ``reg`` (n, 4), in pixel-inclusive box sizes, to ``boxes`` in place."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = torch.stack(
        [boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h, boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h]
    ).permute(1, 0)
    return boxes


def rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Make ``boxes`` square around their centres (side: the longer one), in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.max(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side.repeat(2, 1).permute(1, 0)
    return boxes


def pad(boxes: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, ...]:
    """Integer (truncated) box corners clipped to the image, 1-based as MTCNN crops them:
    ``y, ey, x, ex`` int64."""
    corners = boxes[:, :4].trunc().to(torch.int64)
    x, y = corners[:, 0].clamp(min=1), corners[:, 1].clamp(min=1)
    ex, ey = corners[:, 2].clamp(max=width), corners[:, 3].clamp(max=height)
    return y, ey, x, ex
