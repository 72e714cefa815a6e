"""Changed regions between sampled frames: where a video scan looks for faces that came into view."""

from __future__ import annotations

import numpy as np

from deepfake_cli.faces.motion import CELL, ChangedRegions


def frame(seed: int = 0, noise: int = 0) -> np.ndarray:
    """A 720p frame of smooth gradients, with ``noise`` grey levels of per-pixel noise."""
    y, x = np.mgrid[0:720, 0:1280]
    base = np.stack([(x // 5) % 256, (y // 3) % 256, ((x + y) // 8) % 256], axis=-1).astype(np.int16)
    if noise:
        base += np.random.default_rng(seed).integers(-noise, noise + 1, base.shape, dtype=np.int16)
    return np.clip(base, 0, 255).astype(np.uint8)


def with_block(img: np.ndarray, box: tuple[int, int, int, int], value: int = 255) -> np.ndarray:
    out = img.copy()
    x1, y1, x2, y2 = box
    out[y1:y2, x1:x2] = value
    return out


def covers(region, box, slack: float = 2 * CELL) -> bool:
    return (region[0] <= box[0] and region[1] <= box[1] and region[2] >= box[2] and region[3] >= box[3]
            and region[0] >= box[0] - slack and region[1] >= box[1] - slack
            and region[2] <= box[2] + slack and region[3] <= box[3] + slack)


def test_a_new_object_is_one_region_around_it():
    changes = ChangedRegions(min_size=50)
    assert changes.update(frame()) == []  # nothing to compare the first frame with
    block = (200, 100, 330, 260)
    regions = changes.update(with_block(frame(), block))
    assert len(regions) == 1 and covers(regions[0], block), regions
    # Compared with the frame just before: the block staying put is no change.
    assert changes.update(with_block(frame(), block)) == []


def test_compression_like_noise_and_small_changes_are_not_regions():
    changes = ChangedRegions(min_size=50)
    changes.update(frame(seed=1, noise=12))
    assert changes.update(frame(seed=2, noise=12)) == []
    # Smaller than the smallest face kept in one dimension.
    assert changes.update(with_block(frame(seed=3, noise=12), (600, 300, 630, 500))) == []


def test_changes_reaching_a_tracked_face_window_are_left_to_the_search_around_it():
    changes = ChangedRegions(min_size=50)
    changes.update(frame())
    window = (700, 50, 1000, 350)
    # A gesture below the tracked face, touching its window; and a new face elsewhere.
    moved = with_block(with_block(frame(), (760, 340, 940, 520)), (100, 400, 240, 560))
    regions = changes.update(moved, exclude=[window])
    assert len(regions) == 1 and covers(regions[0], (100, 400, 240, 560)), regions
    # Changes wholly inside the window count for nothing.
    changes.update(frame())
    assert changes.update(with_block(frame(), (800, 100, 900, 250)), exclude=[window]) == []


def test_a_new_frame_size_starts_over():
    changes = ChangedRegions(min_size=50)
    changes.update(frame())
    assert changes.update(np.zeros((360, 640, 3), np.uint8)) == []
    assert changes.update(np.full((360, 640, 3), 255, np.uint8)) == [(0.0, 0.0, 640.0, 360.0)]
    # Frames smaller than a cell still work (one cell).
    tiny = ChangedRegions(min_size=4)
    tiny.update(np.zeros((10, 12, 3), np.uint8))
    assert tiny.update(np.full((10, 12, 3), 200, np.uint8)) == [(0.0, 0.0, 12.0, 10.0)]
