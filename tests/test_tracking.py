from __future__ import annotations

import numpy as np
import pytest

from deepfake_cli.tracking import IouTracker, box_iou, iou_matrix


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # empty boxes
    m = iou_matrix([(0, 0, 10, 10), (20, 20, 30, 30)], [(20, 20, 30, 30), (0, 0, 10, 10), (100, 100, 110, 110)])
    assert m.shape == (2, 3)
    assert np.allclose(m, [[0, 1, 0], [1, 0, 0]])
    assert iou_matrix([], [(0, 0, 1, 1)]).shape == (0, 1)


def shifted(box, dx, dy=0.0):
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def test_two_people_keep_their_ids_in_any_order():
    tracker = IouTracker(iou_threshold=0.3)
    a, b = (100, 100, 200, 220), (500, 120, 590, 230)
    assert tracker.update([a, b]) == [0, 1]
    assert tracker.update([shifted(b, 5), shifted(a, -4)]) == [1, 0]  # detector order changes
    assert tracker.update([shifted(a, -8)]) == [0]  # b not detected this time
    assert tracker.update([shifted(a, -12), shifted(b, 12)]) == [0, 1]  # b is back within max_missed
    assert tracker.tracks_started == 2


def test_new_face_gets_a_new_id_and_lost_tracks_end():
    tracker = IouTracker(iou_threshold=0.3, max_missed=2)
    a = (100, 100, 200, 200)
    assert tracker.update([a]) == [0]
    assert tracker.update([a, (400, 100, 500, 200)]) == [0, 1]
    for _ in range(3):  # a gone for more than max_missed sampled frames
        tracker.update([(400, 100, 500, 200)])
    assert tracker.update([a, (400, 100, 500, 200)]) == [2, 1]
    assert tracker.update([]) == []


def test_fast_walker_keeps_one_id():
    # Sampled frames 0.4 s apart: the face moves 80% of its width each time (no overlap
    # with where it was), at a steady pace, and grows as it comes closer.
    tracker = IouTracker(iou_threshold=0.3)
    box = np.array([100.0, 300.0, 160.0, 380.0])
    still = (900, 100, 960, 180)
    ids = []
    for step in range(8):
        ids.append(tracker.update([tuple(box), still]))
        box = box + np.array([48.0, 10.0, 52.0, 14.0])
    assert [i[0] for i in ids] == [0] * 8 and [i[1] for i in ids] == [1] * 8


def test_distance_match_needs_a_similar_size():
    tracker = IouTracker(iou_threshold=0.3)
    assert tracker.update([(100, 100, 160, 160)]) == [0]
    # Near but three times the size: another face, not the same one.
    assert tracker.update([(170, 100, 350, 280)]) == [1]


def test_invalid_threshold():
    with pytest.raises(ValueError):
        IouTracker(iou_threshold=0.0)
