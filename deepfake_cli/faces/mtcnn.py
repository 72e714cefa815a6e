"""MTCNN's three stages with batched area resampling, on whole images or windows.

facenet-pytorch's ``detect_face`` resizes the image for each pyramid level
and every candidate box for R-Net (24 px) and O-Net (48 px) with its own
``interpolate(mode="area")`` call: about 200 calls per video frame, which
take a good part of detection time on the CPU. :func:`detect_faces` runs the
same stages with the same networks, thresholds and NMS (loaded by
:mod:`deepfake_cli.faces.mtcnn_nets` without importing facenet-pytorch), but
resamples every pyramid level, and all candidates of a stage at once, from
summed-area tables (:class:`AreaSampler`). Area
resampling is a mean over pixel bins (``adaptive_avg_pool2d``'s bins); the
tables make each bin sum exact, so the networks' inputs differ from
facenet's by float32 rounding only and boxes agree to a small fraction of a
pixel (tested on real frames).

``window=`` searches part of an image only: P-Net runs on that part of each
pyramid level, on the same pixel grid as for the whole image (windows start
on even level rows and columns, P-Net's stride), so a face inside the window
gets the candidates, and the box, that a whole-image detection gives it.
Video scans use this to follow tracked faces at a fraction of the cost.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from deepfake_cli.faces.mtcnn_nets import batched_nms, batched_nms_min, bbreg, pad, rerec

# P-Net, R-Net, O-Net inputs are scaled as in the original MTCNN.
_PIXEL_MEAN, _PIXEL_SCALE = 127.5, 0.0078125
# P-Net: 12 px windows at a stride of 2 level pixels.
_PNET_CELL, _PNET_STRIDE = 12, 2
# Candidates per R-Net/O-Net forward pass.
_NET_BATCH = 512
# Around a search window, the sampled region reaches this fraction of the
# window's size further on each side, for candidate boxes that stick out.
_REGION_MARGIN = 0.5

Box = tuple[float, float, float, float]


def _bins(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """adaptive_avg_pool2d's bins: [start + floor(i*L/n), start + ceil((i+1)*L/n)) for i < n."""
    i = torch.arange(size, dtype=torch.int64, device=start.device)
    length = length[:, None]
    lo = (i * length) // size
    hi = -((-(i + 1) * length) // size)
    return start[:, None] + lo, start[:, None] + hi


class AreaSampler:
    """Area resampling of a region of a batch of same-sized uint8 images, from summed-area tables.

    Coordinates are whole-image pixels; the tables cover rows ``top..bottom``
    and columns ``left..right`` only (bins are clipped to them). They hold
    int32 sums, which wrap past 8.4 million pixels, but a bin's sum is a
    difference of them and exact while the bin itself holds fewer pixels than
    that, so each output pixel, a bin mean, is exact up to the final float32
    rounding (tested on a 24-megapixel image).
    """

    def __init__(self, images: torch.Tensor, region: tuple[int, int, int, int] | None = None, opencv: bool | None = None):
        """``images``: (B, H, W, C) uint8; ``region``: (left, top, right, bottom), default all;
        ``opencv``: build the tables with OpenCV (default on the CPU) or torch (on a GPU)."""
        _, h, w, _ = images.shape
        self.height, self.width = h, w
        left, top, right, bottom = region or (0, 0, w, h)
        self.left, self.top, self.right, self.bottom = left, top, right, bottom
        part = images[:, top:bottom, left:right]
        self.device = images.device
        if self.device.type == "cpu" if opencv is None else opencv:
            # OpenCV's integral image is the same table (leading zero row and column)
            # about ten times faster than two torch cumsums on the CPU. It reads the
            # region in place; one image is not copied into a stack (milliseconds a frame).
            tables = [cv2.integral(image, sdepth=cv2.CV_32S) for image in part.numpy()]
            self.table = torch.from_numpy(tables[0][None] if len(tables) == 1 else np.stack(tables))
        else:
            b, rh, rw, c = part.shape
            rows = torch.zeros((b, rh + 1, rw, c), dtype=torch.int32, device=self.device)
            torch.cumsum(part, dim=1, dtype=torch.int32, out=rows[:, 1:])
            self.table = torch.zeros((b, rh + 1, rw + 1, c), dtype=torch.int32, device=self.device)
            torch.cumsum(rows, dim=2, dtype=torch.int32, out=self.table[:, :, 1:])

    def _rows(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.top).clamp(0, self.bottom - self.top)

    def _cols(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.left).clamp(0, self.right - self.left)

    def level(self, height: int, width: int, rows: slice, cols: slice) -> torch.Tensor:
        """Rows and columns ``rows``, ``cols`` of the whole images resized to ``height`` x
        ``width``: (B, C, len(rows), len(cols)) float32, channels-last. Separable: rows first."""
        zero = torch.zeros(1, dtype=torch.int64, device=self.device)
        r0, r1 = (self._rows(v[0, rows]) for v in _bins(zero, zero + self.height, height))
        c0, c1 = (self._cols(v[0, cols]) for v in _bins(zero, zero + self.width, width))
        row_sums = self.table.index_select(1, r1) - self.table.index_select(1, r0)
        sums = row_sums.index_select(2, c1) - row_sums.index_select(2, c0)
        area = ((r1 - r0)[:, None] * (c1 - c0)[None, :]).clamp(min=1).to(torch.float64)[None, :, :, None]
        return (sums / area).to(torch.float32).permute(0, 3, 1, 2)

    def crops(
        self,
        image_index: torch.Tensor,
        top: torch.Tensor,
        bottom: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
        size: int,
    ) -> torch.Tensor:
        """Crops ``[top:bottom, left:right]`` of the given images at ``size`` x ``size``:
        (N, C, size, size) float32, channels-last."""
        r0, r1 = (self._rows(v) for v in _bins(top, bottom - top, size))
        c0, c1 = (self._cols(v) for v in _bins(left, right - left, size))
        # Flat row indices into the table viewed as (B * rows * cols, C).
        t_rows, t_cols = self.table.shape[1:3]
        base = (image_index * t_rows)[:, None, None]
        r0, r1 = (base + r0[:, :, None]) * t_cols, (base + r1[:, :, None]) * t_cols
        c0, c1 = c0[:, None, :], c1[:, None, :]
        flat = self.table.view(-1, self.table.shape[-1])

        def at(index: torch.Tensor) -> torch.Tensor:
            return flat.index_select(0, index.reshape(-1))

        sums = at(r1 + c1) - at(r0 + c1) - at(r1 + c0) + at(r0 + c0)
        area = ((r1 - r0) // t_cols * (c1 - c0)).clamp(min=1).reshape(-1, 1).to(torch.float64)
        crops = (sums / area).to(torch.float32).view(len(image_index), size, size, -1)
        # Contiguous NCHW: R-Net and O-Net run about 20% slower on channels-last input.
        return crops.permute(0, 3, 1, 2).contiguous()


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - _PIXEL_MEAN) * _PIXEL_SCALE


def _run_net(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outs = [net(x[i : i + _NET_BATCH]) for i in range(0, max(len(x), 1), _NET_BATCH)]
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """The scales of facenet-pytorch's MTCNN pyramid (12 / min_face, times factor, while >= 12 px)."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def _pnet_candidates(
    reg: torch.Tensor, probs: torch.Tensor, scale: float, threshold: float, row0: int, col0: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net output cells above ``threshold`` as (n, 9) boxes [x1, y1, x2, y2, score, reg x4]
    in image pixels, with their image indices; ``row0``/``col0``: the output's first cell
    on the whole level's grid."""
    mask = probs >= threshold
    where = mask.nonzero()
    score = probs[mask]
    offsets = reg.permute(0, 2, 3, 1)[mask]
    cells = torch.stack((where[:, 2] + col0, where[:, 1] + row0), dim=1).to(reg.dtype)
    top_left = ((_PNET_STRIDE * cells + 1) / scale).floor()
    bottom_right = ((_PNET_STRIDE * cells + _PNET_CELL) / scale).floor()
    return torch.cat((top_left, bottom_right, score[:, None], offsets), dim=1), where[:, 0]


def _level_window(window: Box | None, height: int, width: int, level_h: int, level_w: int) -> tuple[slice, slice]:
    """The level rows and columns covering ``window``, starting on even ones (P-Net's grid)."""
    if window is None:
        return slice(0, level_h), slice(0, level_w)
    x0, y0, x1, y1 = window
    r0 = max(0, int(y0 * level_h / height))
    c0 = max(0, int(x0 * level_w / width))
    r0, c0 = r0 - r0 % 2, c0 - c0 % 2
    r1 = min(level_h, math.ceil(y1 * level_h / height) + 1)
    c1 = min(level_w, math.ceil(x1 * level_w / width) + 1)
    return slice(r0, r1), slice(c0, c1)


def _region(window: Box | None, height: int, width: int) -> tuple[int, int, int, int] | None:
    if window is None:
        return None
    x0, y0, x1, y1 = window
    mx, my = (x1 - x0) * _REGION_MARGIN, (y1 - y0) * _REGION_MARGIN
    return (max(0, int(x0 - mx)), max(0, int(y0 - my)), min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my)))


def _crop_candidates(sampler: AreaSampler, boxes: torch.Tensor, image_inds: torch.Tensor, size: int):
    """Resample each candidate box (clipped to the image, as facenet-pytorch does) to ``size``;
    candidates whose clipped box is empty are dropped."""
    y, ey, x, ex = pad(boxes, sampler.width, sampler.height)
    keep = (ey > y - 1) & (ex > x - 1)
    if not bool(keep.all()):
        boxes, image_inds = boxes[keep], image_inds[keep]
        y, ey, x, ex = y[keep], ey[keep], x[keep], ex[keep]
    crops = sampler.crops(image_inds, y - 1, ey, x - 1, ex, size)
    return _normalise(crops), boxes, image_inds


def detect_faces(
    mtcnn: Any, images: np.ndarray, min_face: float, window: Sequence[float] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """MTCNN on a batch of same-sized RGB uint8 images (B, H, W, 3).

    Returns, per image, an (n, 5) array of boxes with their probability and an
    (n, 5, 2) array of landmarks, like facenet-pytorch's ``detect_face``.
    ``mtcnn`` holds the networks, thresholds and pyramid factor: a
    :class:`~deepfake_cli.faces.mtcnn_nets.MTCNNNets` or a facenet-pytorch ``MTCNN``.
    ``window`` (x1, y1, x2, y2): search only there (see the module docstring).
    """
    pnet, rnet, onet = mtcnn.pnet, mtcnn.rnet, mtcnn.onet
    thresholds, factor = mtcnn.thresholds, mtcnn.factor
    device = next(pnet.parameters()).device
    frames = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    batch, h, w = frames.shape[:3]
    win: Box | None = None if window is None else tuple(float(v) for v in window)  # type: ignore[assignment]
    sampler = AreaSampler(frames, _region(win, h, w))

    # Stage 1: P-Net over the pyramid (or the window's part of it), NMS per level and image, then per image.
    boxes_all, inds_all, picks, offset = [], [], [], 0
    for s in pyramid_scales(h, w, min_face, factor):
        level_h, level_w = int(h * s + 1), int(w * s + 1)
        rows, cols = _level_window(win, h, w, level_h, level_w)
        if rows.stop - rows.start < _PNET_CELL or cols.stop - cols.start < _PNET_CELL:
            continue  # a face this large does not fit in the window
        reg, probs = pnet(_normalise(sampler.level(level_h, level_w, rows, cols)))
        found, found_inds = _pnet_candidates(reg, probs[:, 1], s, thresholds[0], rows.start // _PNET_STRIDE, cols.start // _PNET_STRIDE)
        boxes_all.append(found)
        inds_all.append(found_inds)
        picks.append(batched_nms(found[:, :4], found[:, 4], found_inds, 0.5) + offset)
        offset += found.shape[0]
    if boxes_all:
        pick = torch.cat(picks)
        boxes, image_inds = torch.cat(boxes_all)[pick], torch.cat(inds_all)[pick]
    else:
        boxes, image_inds = torch.zeros((0, 9), device=device), torch.zeros((0,), dtype=torch.int64, device=device)
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw, regh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([
        boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
        boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4],
    ], dim=1)  # fmt: skip
    boxes = rerec(boxes)

    # Stage 2: R-Net on 24 px crops of the candidates.
    if len(boxes):
        crops, boxes, image_inds = _crop_candidates(sampler, boxes, image_inds, 24)
        reg, probs = _run_net(rnet, crops)
        score = probs[:, 1]
        passed = score > thresholds[1]
        boxes = torch.cat((boxes[passed, :4], score[passed].unsqueeze(1)), dim=1)
        image_inds, reg = image_inds[passed], reg[passed]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, reg = boxes[pick], image_inds[pick], reg[pick]
        boxes = rerec(bbreg(boxes, reg))

    # Stage 3: O-Net on 48 px crops: final boxes, probabilities and landmarks.
    points = torch.zeros((0, 5, 2), device=device)
    if len(boxes):
        crops, boxes, image_inds = _crop_candidates(sampler, boxes, image_inds, 48)
        reg, marks, probs = _run_net(onet, crops)
        score = probs[:, 1]
        passed = score > thresholds[2]
        boxes = torch.cat((boxes[passed, :4], score[passed].unsqueeze(1)), dim=1)
        image_inds, reg, marks = image_inds[passed], reg[passed], marks[passed]
        box_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        box_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack(
            (box_w * marks[:, :5] + boxes[:, 0:1] - 1, box_h * marks[:, 5:10] + boxes[:, 1:2] - 1), dim=2
        )
        boxes = bbreg(boxes, reg)
        pick = batched_nms_min(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

    boxes_np, points_np, inds_np = boxes.cpu().numpy(), points.cpu().numpy(), image_inds.cpu().numpy()
    return (
        [boxes_np[inds_np == i].copy() for i in range(batch)],
        [points_np[inds_np == i].copy() for i in range(batch)],
    )
