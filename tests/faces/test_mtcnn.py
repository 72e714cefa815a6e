"""Batched MTCNN stages (deepfake_cli.faces.mtcnn) against facenet-pytorch's own, and windowed search."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import detect_face

from conftest import MULTIFACE_VIDEO, ORIGINAL_004, PHOTOS, need_shared
from deepfake_cli.faces.detector import FaceDetector, pyramid_min_face
from deepfake_cli.media.frames import iter_frames
from deepfake_cli.faces.mtcnn import AreaSampler, detect_faces, pyramid_scales


@pytest.fixture(scope="module")
def mtcnn():
    return MTCNN(keep_all=True, device="cpu").eval()


@pytest.mark.parametrize("size", [(7, 11), (24, 24), (48, 48), (216, 384), (541, 961)])
def test_area_sampler_level_equals_interpolate_area(size):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 540, 960, 3), dtype=np.uint8)
    sampler = AreaSampler(torch.from_numpy(image))
    ours = sampler.level(size[0], size[1], slice(0, size[0]), slice(0, size[1]))
    theirs = F.interpolate(torch.from_numpy(image).permute(0, 3, 1, 2).float(), size=size, mode="area")
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-3), (ours - theirs).abs().max()
    # A part of a level is the same part of the whole level.
    part = sampler.level(size[0], size[1], slice(2, size[0]), slice(4, size[1]))
    assert torch.equal(part, ours[:, :, 2:, 4:])


def test_torch_tables_for_gpus_equal_opencv_tables():
    """The GPU path builds its summed-area tables with torch cumsums: checked here on the CPU."""
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.integers(0, 256, (2, 90, 130, 3), dtype=np.uint8))
    for region in (None, (7, 5, 101, 77)):
        cv_tables = AreaSampler(images, region, opencv=True)
        torch_tables = AreaSampler(images, region, opencv=False)
        assert cv_tables.table.dtype == torch_tables.table.dtype == torch.int32
        assert torch.equal(cv_tables.table, torch_tables.table)
        assert torch.equal(cv_tables.level(40, 60, slice(0, 40), slice(0, 60)),
                           torch_tables.level(40, 60, slice(0, 40), slice(0, 60)))


def test_area_sampler_crops_equal_interpolate_area_per_crop():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1, 300, 400, 3), dtype=np.uint8)
    sampler = AreaSampler(torch.from_numpy(image))
    tops, bottoms = torch.tensor([0, 10, 250, 5]), torch.tensor([300, 35, 300, 6])
    lefts, rights = torch.tensor([0, 100, 3, 390]), torch.tensor([400, 180, 50, 400])
    ours = sampler.crops(torch.zeros(4, dtype=torch.int64), tops, bottoms, lefts, rights, 24)
    for k in range(4):
        crop = torch.from_numpy(image[:, tops[k] : bottoms[k], lefts[k] : rights[k]]).permute(0, 3, 1, 2).float()
        theirs = F.interpolate(crop, size=(24, 24), mode="area")[0]
        assert torch.allclose(ours[k], theirs, atol=1e-3)


def real_frames() -> list[np.ndarray]:
    need_shared(ORIGINAL_004)
    need_shared(MULTIFACE_VIDEO)
    frames = []
    for video, every in ((ORIGINAL_004, 60), (MULTIFACE_VIDEO, 35)):
        for _, _, rgb in iter_frames(video, every=every):
            scale = 960 / max(rgb.shape[:2])
            size = (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale))
            frames.append(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))
    portrait = sorted(PHOTOS.glob("*.jpg"))[0]
    frames.append(cv2.cvtColor(cv2.imread(str(portrait)), cv2.COLOR_BGR2RGB))
    return frames


def test_detect_faces_matches_facenet_detect_face_on_real_frames(mtcnn):
    found = 0
    for frame in real_frames():
        min_face = pyramid_min_face(50, 0.75, mtcnn.factor)
        with torch.inference_mode():
            theirs, their_points = detect_face(frame[None].copy(), min_face, mtcnn.pnet, mtcnn.rnet, mtcnn.onet,
                                               mtcnn.thresholds, mtcnn.factor, "cpu")
            ours, our_points = detect_faces(mtcnn, frame[None], min_face)
        theirs = np.asarray(theirs[0], dtype=np.float64).reshape(-1, 5)
        assert ours[0].shape == theirs.shape
        a, b = np.lexsort(theirs.T[:2]), np.lexsort(ours[0].T[:2])
        np.testing.assert_allclose(ours[0][b], theirs[a], atol=2e-3)
        np.testing.assert_allclose(our_points[0][b], np.asarray(their_points[0], dtype=np.float64).reshape(-1, 5, 2)[a], atol=2e-3)
        found += len(theirs)
    assert found >= 10  # the frames do hold faces


def test_window_around_a_face_gives_its_whole_image_box(mtcnn):
    frames = real_frames()
    checked = 0
    for frame in frames:
        min_face = pyramid_min_face(50, 0.75, mtcnn.factor)
        with torch.inference_mode():
            whole = detect_faces(mtcnn, frame[None], min_face)[0][0]
        for box in whole[whole[:, 4] >= 0.95]:
            side = max(box[2] - box[0], box[3] - box[1])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            with torch.inference_mode():
                near = detect_faces(mtcnn, frame[None], min_face, window=(cx - side, cy - side, cx + side, cy + side))[0][0]
            assert np.abs(near[:, :4] - box[:4]).max(axis=1).min() < 1e-3
            checked += 1
    assert checked >= 8


def test_detect_near_follows_faces_and_gives_up_when_they_are_gone():
    need_shared(ORIGINAL_004)
    frames = [rgb for _, _, rgb in iter_frames(ORIGINAL_004, every=30)][:4]
    detector = FaceDetector(max_side=960)
    first = detector.detect_one(frames[0])
    assert len(first) == 1
    for frame in frames[1:]:
        near = detector.detect_near(frame, [first[0].box], reach=2.0)
        whole = detector.detect_one(frame)
        assert near is not None and len(near) == 1
        assert np.allclose(near[0].box, whole[0].box, atol=1e-2)
    # Nothing where the face is not: the caller searches the whole frame.
    assert detector.detect_near(frames[1], [(0, 0, 60, 60)], reach=2.0) is None
    assert detector.detect_near(frames[1], [], reach=2.0) is None


def test_detect_tracked_searches_changed_regions_too_and_large_ones_whole():
    need_shared(ORIGINAL_004)
    frame = next(rgb for index, _, rgb in iter_frames(ORIGINAL_004, every=10) if index == 240)
    detector = FaceDetector(max_side=960)
    whole = detector.detect_one(frame)
    assert len(whole) == 2  # the anchor and, in the inset, Chewbacca
    anchor, inset = sorted(whole, key=lambda f: -f.box[0])
    # Tracked: the anchor only. Around him alone, the inset's face is not seen...
    faces, near = detector.detect_tracked(frame, [anchor.box], reach=2.0)
    assert near and len(faces) == 1 and np.allclose(faces[0].box, anchor.box, atol=1e-2)
    # ...searched where the frame changed as well (the inset), it is, with its whole-frame box.
    x1, y1, x2, y2 = inset.box
    faces, near = detector.detect_tracked(frame, [anchor.box], reach=2.0, changed=[(x1 - 20, y1 - 20, x2 + 20, y2 + 20)])
    assert near and len(faces) == 2
    assert np.allclose(sorted(f.box for f in faces), sorted(f.box for f in whole), atol=1e-2)
    # A change over most of the frame (a cut, a pan): searched whole.
    faces, near = detector.detect_tracked(frame, [anchor.box], reach=2.0, changed=[(0, 0, 1280, 720)])
    assert not near and len(faces) == 2


def test_pyramid_scales_match_facenet():
    scales = pyramid_scales(540, 960, 20.0, 0.709)
    assert scales[0] == pytest.approx(0.6) and all(540 * s >= 12 for s in scales) and 540 * scales[-1] * 0.709 < 12
