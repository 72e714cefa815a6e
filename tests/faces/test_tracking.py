from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from deepfake_cli.faces.tracking import IouTracker, box_iou, iou_matrix


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


# The faces of the multi-face clip (../shared/data/videos/facenet_example.mp4, 1080p) at
# every 10th frame (0-50), as the scan finds them: a woman walks across the picture
# (about 370 px a sample, so her track breaks), three people stay, a fourth comes in.
WALKER, BLUE, WOMAN, RED, GLASSES = "walker", "boy in blue", "woman", "red-haired boy", "man in glasses"
CLIP_EVERY_10 = [
    [((283, 705, 381, 838), WALKER), ((912, 632, 976, 719), BLUE), ((274, 617, 341, 699), WOMAN),
     ((673, 559, 737, 635), RED)],
    [((644, 743, 741, 879), WALKER), ((722, 560, 798, 653), RED), ((933, 641, 997, 729), BLUE),
     ((290, 664, 342, 732), WOMAN)],
    [((1010, 778, 1100, 905), WALKER), ((984, 653, 1055, 743), BLUE), ((683, 598, 753, 685), RED),
     ((286, 681, 338, 753), WOMAN)],
    [((1398, 761, 1492, 902), WALKER), ((978, 685, 1047, 777), BLUE), ((632, 588, 702, 674), RED),
     ((261, 667, 324, 749), WOMAN)],
    [((1009, 718, 1080, 811), BLUE), ((616, 627, 691, 715), RED), ((236, 668, 298, 751), WOMAN)],
    [((949, 712, 1026, 813), BLUE), ((566, 640, 642, 732), RED), ((210, 673, 275, 762), WOMAN),
     ((1129, 693, 1181, 757), GLASSES)],
]


@pytest.mark.parametrize("step", [1, 2], ids=["every 10th frame", "every 20th frame"])
def test_people_of_a_real_clip_never_share_a_track(step):
    # Before the matching cascade, the boy in blue, turning back at frame 50, went to the
    # walker's track of frame 20 (every 10th frame), and at frame 40 to her track of frame
    # 20 (every 20th: her bigger face made her box nearer in face sizes).
    tracker = IouTracker()
    people = defaultdict(set)
    for faces in CLIP_EVERY_10[::step]:
        for track_id, (_, who) in zip(tracker.update([box for box, _ in faces]), faces):
            people[track_id].add(who)
    assert all(len(who) == 1 for who in people.values()), dict(people)
    for who in (BLUE, WOMAN, RED):
        assert sum(who in p for p in people.values()) == 1, (who, dict(people))


def test_a_face_turning_back_keeps_its_track():
    # Moving right, then back left: the constant-velocity guess overshoots, but where the
    # face was last still matches.
    tracker = IouTracker()
    assert tracker.update([(100, 100, 180, 180)]) == [0]
    assert tracker.update([(160, 100, 240, 180)]) == [0]
    assert tracker.update([(110, 100, 190, 180)]) == [0]


def test_a_recently_seen_track_chooses_before_a_stale_one():
    tracker = IouTracker()
    assert tracker.update([(100, 100, 180, 180), (300, 100, 380, 180)]) == [0, 1]
    assert tracker.update([(100, 100, 180, 180)]) == [0]  # 1 not seen
    # A face 1.375 face sizes from track 0, seen a sampled frame ago, and 1.125 from
    # where track 1 was two frames ago: track 0 chooses first.
    assert tracker.update([(210, 100, 290, 180)]) == [0]
