from __future__ import annotations

import numpy as np
import pytest

from conftest import MULTIFACE_VIDEO, ORIGINAL_004, PHOTOS, need_shared
from deepfake_cli.faces.detector import FaceDetector, FaceFraming, crop_box, crop_face
from deepfake_cli.media.frames import iter_frames
from deepfake_cli.media.images import load_image


def test_crop_box_margin_square_and_clipping():
    # A 100x50 box, squared to 100x100, plus 30% margin -> 130x130 around (150, 125).
    assert crop_box((100, 100, 200, 150), FaceFraming(0.3, True), 1000, 1000) == (85, 60, 215, 190)
    assert crop_box((100, 100, 200, 150), FaceFraming(0.0, False), 1000, 1000) == (100, 100, 200, 150)
    # Clipped to the image.
    assert crop_box((-10, -10, 50, 50), FaceFraming(0.3, True), 40, 30) == (0, 0, 40, 30)
    img = np.zeros((30, 40, 3), np.uint8)
    assert crop_face(img, (5, 5, 15, 15), FaceFraming(0.0, True), size=64).shape == (64, 64, 3)


@pytest.fixture(scope="module")
def detector():
    return FaceDetector(min_prob=0.95, min_size=50)


@pytest.mark.parametrize("name", ["angelina_jolie.jpg", "kate_siegel.jpg", "paul_rudd.jpg"])
def test_one_face_in_each_portrait(detector, name):
    need_shared(PHOTOS / name)
    faces = detector.detect_one(load_image(PHOTOS / name))
    assert len(faces) == 1
    assert faces[0].prob > 0.95 and faces[0].size >= 50 and len(faces[0].landmarks) == 5


def test_six_faces_in_multiface(detector):
    need_shared(PHOTOS / "multiface.jpg")
    img = load_image(PHOTOS / "multiface.jpg")
    faces = detector.detect_one(img)
    assert len(faces) == 6
    h, w = img.shape[:2]
    for f in faces:
        assert 0 <= f.box[0] < f.box[2] <= w + 5 and 0 <= f.box[1] < f.box[3] <= h + 5


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_downscaled_detection_maps_boxes_back(detector):
    need_shared(PHOTOS / "paul_rudd.jpg")
    img = load_image(PHOTOS / "paul_rudd.jpg")
    full = FaceDetector(max_side=None).detect_one(img)[0]
    small = FaceDetector(max_side=512).detect_one(img)[0]
    assert iou(full.box, small.box) > 0.9


@pytest.mark.parametrize("video, every, tolerance", [(ORIGINAL_004, 60, 1e-2), (MULTIFACE_VIDEO, 30, 1.0)])
def test_capped_pyramid_gives_full_frame_mtcnn_boxes(video, every, tolerance):
    # max_side caps the pyramid, not the pixels: the faces we keep get the boxes of
    # facenet-pytorch's default MTCNN on the full frame (the reports' pipeline).
    need_shared(video)
    import torch
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True)
    detector = FaceDetector(max_side=960)
    checked = 0
    for _, _, rgb in iter_frames(video, every=every):
        with torch.inference_mode():
            boxes, probs = mtcnn.detect(rgb)
        expected = [b for b, p in zip(boxes, probs) if p >= detector.min_prob and min(b[2] - b[0], b[3] - b[1]) >= detector.min_size]
        ours = np.array([f.box for f in detector.detect_one(rgb)])
        assert len(ours) == len(expected)
        for box in expected:
            assert np.abs(ours - box).max(axis=1).min() < tolerance
            checked += 1
    assert checked >= 5


def test_batches_are_cut_to_the_table_budget(detector, monkeypatch):
    need_shared(PHOTOS / "multiface.jpg")
    import deepfake_cli.faces.detector as faces_module

    img = load_image(PHOTOS / "multiface.jpg")
    images = [img, img[:, ::-1].copy(), img]
    whole = detector.detect(images)
    calls = []
    run = detector._run_mtcnn
    monkeypatch.setattr(detector, "_run_mtcnn", lambda batch, scale: calls.append(len(batch)) or run(batch, scale))
    monkeypatch.setattr(faces_module, "DETECT_TABLE_BYTES", 2 * (img.shape[0] + 1) * (img.shape[1] + 1) * 12)
    cut = detector.detect(images)
    assert calls == [2, 1]
    assert [len(faces) for faces in cut] == [len(faces) for faces in whole] == [6, 6, 6]
    for a, b in zip(cut, whole):
        assert np.allclose([f.box for f in a], [f.box for f in b], atol=1e-2)


def test_huge_images_are_shrunk_before_their_tables_are_built(monkeypatch):
    need_shared(PHOTOS / "paul_rudd.jpg")
    import cv2

    import deepfake_cli.faces.mtcnn as mtcnn_module

    img = load_image(PHOTOS / "paul_rudd.jpg")
    detector = FaceDetector(max_side=256)
    factor = 3 * 2 * 256 / max(img.shape[:2])  # three times past the pre-shrink limit
    big = cv2.resize(img, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    sides = []
    init = mtcnn_module.AreaSampler.__init__
    monkeypatch.setattr(mtcnn_module.AreaSampler, "__init__",
                        lambda self, images, region=None: sides.append(max(images.shape[1:3])) or init(self, images, region))
    small, large = detector.detect_one(img)[0], detector.detect_one(big)[0]
    assert max(sides) <= 2 * 256 + 1
    assert iou([v * factor for v in small.box], large.box) > 0.9
    assert np.allclose(np.array(large.landmarks) / factor, small.landmarks, atol=0.05 * small.size)
    # A video frame searched near a lost face, then whole, is shrunk once.
    shrinks = []
    searched = detector._searched
    monkeypatch.setattr(detector, "_searched", lambda batch: shrinks.append(1) or searched(batch))
    faces, near = detector.detect_tracked(big, [(0.0, 0.0, 120.0, 120.0)], reach=2.0)
    assert not near and len(faces) == 1 and len(shrinks) == 1


def test_batched_equals_single_and_filters(detector):
    need_shared(PHOTOS / "multiface.jpg")
    img = load_image(PHOTOS / "multiface.jpg")
    batch = detector.detect([img, img[:, ::-1].copy(), np.zeros((120, 160, 3), np.uint8)])
    assert [len(b) for b in batch] == [6, 6, 0]
    single = detector.detect_one(img)
    assert np.allclose([f.box for f in batch[0]], [f.box for f in single], atol=1.0)
    largest = FaceDetector(select="largest").detect_one(img)
    assert len(largest) == 1 and largest[0].area == max(f.area for f in single)
    strict = FaceDetector(min_size=85)
    assert len(strict.detect_one(img)) < 6 and strict.stats.too_small > 0
