"""What the video scanner needs from deepfake_cli.media.frames beyond extraction: BGR frames for re-encoding."""

from __future__ import annotations

import cv2
import numpy as np

from conftest import MULTIFACE_VIDEO, need_shared
from deepfake_cli.media.frames import iter_frames, video_info


def test_bgr_frames_are_the_unconverted_rgb_frames():
    need_shared(MULTIFACE_VIDEO)
    rgb = list(iter_frames(MULTIFACE_VIDEO, frames=3))
    bgr = list(iter_frames(MULTIFACE_VIDEO, frames=3, color="bgr"))
    assert [(i, t) for i, t, _ in rgb] == [(i, t) for i, t, _ in bgr]
    for (_, _, a), (_, _, b) in zip(rgb, bgr):
        assert np.array_equal(a, cv2.cvtColor(b, cv2.COLOR_BGR2RGB)) and not np.array_equal(a, b)


def test_every_frame_in_order_without_sampling_options():
    need_shared(MULTIFACE_VIDEO)
    info = video_info(MULTIFACE_VIDEO)
    indices = [i for i, _, _ in iter_frames(MULTIFACE_VIDEO, color="bgr")]
    assert indices == list(range(info.frame_count)) == list(range(105))
