"""scripts/degraded_copies.py: the card's degraded copies of a val split."""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO


def _script():
    spec = importlib.util.spec_from_file_location("degraded_copies", REPO / "scripts" / "degraded_copies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sharpness(image):
    return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()


def test_copies_cover_the_val_split_with_each_degradation(tmp_path):
    from deepfake_cli.data.datasets import load_splits

    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for label in ("real", "fake"):
        (root / label).mkdir(parents=True)
        for i in range(20):
            cv2.imwrite(str(root / label / f"{i}.png"), rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    out = tmp_path / "degraded"
    assert _script().main(["--data", str(root), "--out", str(out)]) == 0

    val = load_splits([root], val_fraction=0.15, split_seed=0, group_lookalikes=True)["val"]
    assert len(val) > 0
    for kind in ("jpeg30", "half50"):
        copies = sorted(p.relative_to(out / kind / "faces") for p in (out / kind / "faces").rglob("*.jpg"))
        # One copy per val crop, in its class folder, as JPEG whatever the crop's format.
        assert copies == sorted(p.relative_to(root).with_suffix(".jpg") for p in map(Path, val.paths))
    name = copies[0]
    original = cv2.imread(str((root / name).with_suffix(".png")))
    jpeg, halved = (cv2.imread(str(out / kind / "faces" / name)) for kind in ("jpeg30", "half50"))
    assert jpeg.shape == halved.shape == original.shape
    assert not np.array_equal(jpeg, original)
    # Halving throws away the finest detail that JPEG 30 alone keeps some of.
    assert _sharpness(halved) < _sharpness(jpeg)


def test_a_missing_dataset_is_a_usage_error_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _script().main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "dataset not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
