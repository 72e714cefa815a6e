"""MTCNN's networks and box helpers loaded without facenet-pytorch, against facenet-pytorch's own."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils import detect_face as facenet
from torchvision.ops import batched_nms as tv_batched_nms

from conftest import PHOTOS, REPO, need_shared
from deepfake_cli.faces.mtcnn_nets import MTCNNNets, batched_nms, batched_nms_min, bbreg, pad, rerec


def _boxes(n: int, seed: int, span: float = 300.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * span
    wh = torch.rand(n, 2, generator=g) * 60 + 8
    return torch.cat([xy, xy + wh], dim=1)


def test_networks_and_settings_equal_facenets():
    ours, theirs = MTCNNNets().eval(), MTCNN(device="cpu").eval()
    assert ours.thresholds == list(theirs.thresholds) and ours.factor == theirs.factor
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for name, size in (("pnet", 37), ("rnet", 24), ("onet", 48)):
            x = torch.rand(3, 3, size, size, generator=g) * 2 - 1
            for a, b in zip(getattr(ours, name)(x), getattr(theirs, name)(x)):
                assert torch.equal(a, b), name


@pytest.mark.parametrize("n", [300, 1500])  # torchvision shifts groups apart below 1000 boxes, loops above
def test_batched_nms_equals_torchvisions(n):
    boxes = _boxes(n, n)
    scores = torch.rand(n, generator=torch.Generator().manual_seed(n + 1))
    groups = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(n + 2))
    for iou in (0.5, 0.7):
        assert torch.equal(batched_nms(boxes, scores, groups, iou), tv_batched_nms(boxes, scores, groups, iou))
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


def test_box_helpers_equal_facenets():
    boxes = torch.cat([_boxes(200, 7, span=500.0) - 40, torch.rand(200, 1)], dim=1)
    scores, groups = boxes[:, 4].clone(), torch.randint(0, 2, (200,), generator=torch.Generator().manual_seed(8))
    reg = torch.rand(200, 4, generator=torch.Generator().manual_seed(9)) * 0.4 - 0.2
    assert torch.equal(batched_nms_min(boxes[:, :4], scores, groups, 0.7),
                       facenet.batched_nms_numpy(boxes[:, :4], scores, groups, 0.7, "Min"))
    assert torch.equal(bbreg(boxes.clone(), reg), facenet.bbreg(boxes.clone(), reg))
    assert torch.equal(rerec(boxes.clone()), facenet.rerec(boxes.clone()))
    for ours, theirs in zip(pad(boxes, 400, 300), facenet.pad(boxes, 400, 300)):
        assert np.array_equal(ours.numpy(), theirs.astype(np.int64))


def test_detection_imports_neither_facenet_nor_torchvision(one_thread):
    """Start-up: torchvision's import (about 2 s, torch._dynamo) is skipped, and the faces are the same."""
    need_shared(PHOTOS)
    photo = str(sorted(PHOTOS.glob("*.jpg"))[0])
    code = (
        "import json, sys, torch\n"
        "torch.set_num_threads(1)\n"
        "from deepfake_cli.faces.detector import FaceDetector\n"
        "from deepfake_cli.media.images import load_image\n"
        f"faces = FaceDetector().detect([load_image({photo!r})])[0]\n"
        "loaded = sorted(m for m in ('torchvision', 'facenet_pytorch') if m in sys.modules)\n"
        "import torchvision  # after the op library was loaded on its own: must still work\n"
        "b = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])\n"
        "kept = torchvision.ops.nms(b, torch.tensor([0.9, 0.8, 0.7]), 0.5).tolist()\n"
        "print(json.dumps({'boxes': [list(f.box) for f in faces], 'probs': [f.prob for f in faces],\n"
        "                  'loaded': loaded, 'kept': kept}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = json.loads(out.stdout)
    assert fresh["loaded"] == [] and fresh["kept"] == [0, 2]

    from deepfake_cli.faces.detector import FaceDetector
    from deepfake_cli.media.images import load_image

    here = FaceDetector().detect([load_image(photo)])[0]  # in this process torchvision is imported
    assert fresh["boxes"] and fresh["boxes"] == [list(f.box) for f in here]
    assert fresh["probs"] == [f.prob for f in here]
