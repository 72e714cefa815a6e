"""Drawing on YUV frames (media/annotate.py ``paint_yuv``): boxes, labels, the score strip and the
running score look as they do drawn on BGR frames, and only the pixels drawn on change."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MULTIFACE_VIDEO, ORIGINAL_004, need_shared
from deepfake_cli.media.annotate import DrawnFace, ScoreStrip, draw_faces, score_color
from deepfake_cli.media.frames import YuvFrame, iter_yuv_frames

av = pytest.importorskip("av")
FACES = [DrawnFace((500.3, 100.7, 760.2, 420.9), 0.83, 1), DrawnFace((100, 300, 250, 480), 0.1, 2),
         DrawnFace((0, 3, 101, 90), 0.5, None), DrawnFace((1180, 600, 1290, 730), 0.97, 3)]  # at the edges


def _i420(bgr: np.ndarray) -> np.ndarray:
    """A BGR frame as the H.264 writer's FFmpeg converts it (yuv420p)."""
    return av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24").reformat(format="yuv420p").to_ndarray()


def _annotate(frame, strip: ScoreStrip) -> None:
    draw_faces(frame, FACES)
    strip.draw(frame, 150, 0.62, "video p_fake (mean)")


@pytest.mark.parametrize("video", [ORIGINAL_004, MULTIFACE_VIDEO], ids=["yuv444p", "yuv420p"])
def test_yuv_drawing_matches_bgr_drawing(video):
    need_shared(video)
    _, _, frame = next(iter_yuv_frames(video, convert={0}))
    h, w = frame.height, frame.width
    strip = ScoreStrip(w, h, 309)
    strip.mark(0, 0.83)
    strip.advance(100)
    strip.mark(110, None)
    strip.advance(150)
    bgr = frame.to_bgr()  # the same picture both ways
    untouched = _i420(bgr)
    _annotate(bgr, strip)
    reference = _i420(bgr).astype(int)
    _annotate(frame, strip)
    drawn = reference != untouched
    diff = np.abs(frame.i420.astype(int) - reference)
    assert drawn.mean() > 0.005  # something was drawn
    assert diff[drawn].mean() < 1.5 and np.percentile(diff[drawn], 99) <= 4
    assert diff.mean() < 1.0
    # Outside the drawings, the decoder's planes as they were (no round trip through BGR).
    original = next(iter_yuv_frames(video))[2].i420
    changed = frame.i420 != original
    assert (changed & ~drawn).mean() < 0.002  # at most the drawings' anti-aliased fringes
    # The colours are score_color's: a solid run of the strip and a box's side.
    solid = frame.to_bgr()[h - 3, 10].astype(int)
    assert np.abs(solid - np.array(score_color(0.83))).max() <= 6


def test_yuv_frame_planes_and_size():
    y = np.arange(7 * 9, dtype=np.uint8).reshape(7, 9)
    u = np.full((7, 9), 100, np.uint8)  # 4:4:4 chroma, averaged down
    v = np.full((4, 5), 150, np.uint8)  # 4:2:0 chroma of an odd size, cropped
    frame = YuvFrame.from_planes(y, u, v)
    assert frame.shape == (6, 8, 3) and frame.i420.shape == (9, 8)
    assert np.array_equal(frame.y, y[:6, :8]) and (frame.u == 100).all() and (frame.v == 150).all()
    assert frame.u.shape == frame.v.shape == (3, 4)
    assert frame.resized(4, 2).shape == (2, 4, 3)
