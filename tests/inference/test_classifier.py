"""Scores of face crops as every command reports them."""

from __future__ import annotations

import numpy as np
import torch

from deepfake_cli.inference.classifier import FaceClassifier


def test_binary_p_fake_and_probs_fake_are_one_number(sepcnn_ckpt):
    """softmax's fake and 1 - real differ in float32's last bits: reports must not show two values."""
    clf = FaceClassifier.from_checkpoint(sepcnn_ckpt)
    assert clf.labels == ["real", "fake"]
    # Softmax outputs for which round(1 - real, 6) != round(fake, 6).
    rows = np.array([[0.08307149, 0.91692847], [0.8114705, 0.1885295]], dtype=np.float32)
    assert all(round(float(1.0 - r[0]), 6) != round(float(r[1]), 6) for r in rows)
    for score in clf.score_rows(rows):
        report = score.to_dict()
        assert report["p_fake"] == report["probs"]["fake"]
        assert abs(report["probs"]["real"] + report["probs"]["fake"] - 1.0) < 1e-6


def test_multiclass_p_fake_is_one_minus_real(multiclass_ckpt):
    clf = FaceClassifier.from_checkpoint(multiclass_ckpt)
    row = np.full((1, len(clf.labels)), 1.0 / len(clf.labels), dtype=np.float32)
    row[0, clf.real_index] = 0.4
    row[0, [i for i in range(len(clf.labels)) if i != clf.real_index]] = 0.1
    score = clf.score_rows(row)[0]
    assert abs(score.p_fake - 0.6) < 1e-6 and score.probs[clf.labels[clf.real_index]] == np.float32(0.4)


def _faces(n: int = 5, size: int = 64) -> list[np.ndarray]:
    """Crops that are not mirror-symmetric, so a flip changes the scores."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8) for _ in range(n)]


class _LeftMinusRight(torch.nn.Module):
    """Logits from how much brighter a crop's left half is than its right: a mirror image flips the sign."""

    def forward(self, x):
        half = x.shape[3] // 2
        d = (x[..., :half].mean(dim=(1, 2, 3)) - x[..., -half:].mean(dim=(1, 2, 3))) * 20
        return torch.stack([d, -d], dim=1)


def test_flip_tta_averages_each_crop_and_its_mirror_image(sepcnn_ckpt):
    from deepfake_cli.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(sepcnn_ckpt)
    clf = FaceClassifier(_LeftMinusRight(), arch="test", labels=ckpt["labels"], preprocessing=ckpt["preprocessing"])
    assert clf.tta == "none"  # a checkpoint without preprocessing.tta scores crops alone
    crops = _faces()
    plain = clf.predict_proba(crops, batch_size=2)
    mirrored = clf.predict_proba([c[:, ::-1].copy() for c in crops], batch_size=2)
    assert np.abs(plain - mirrored).max() > 0.05
    clf.tta = "flip"
    both = clf.predict_proba(crops, batch_size=2)
    np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)
    np.testing.assert_allclose(both, 0.5, atol=1e-5)  # this model's mirror views cancel exactly


def test_tta_comes_from_the_checkpoint_and_config_replaces_it(sepcnn_ckpt, tmp_path):
    from deepfake_cli.config import load_config
    from deepfake_cli.models.checkpoint import load_checkpoint

    ckpt = load_checkpoint(sepcnn_ckpt)
    ckpt["preprocessing"]["tta"] = "flip"
    clf = FaceClassifier.from_checkpoint(ckpt)
    assert clf.tta == "flip" and clf.describe()["tta"] == "flip"
    threshold = clf.threshold
    clf.configure(load_config(overrides={"predict.tta": "auto"}).predict)
    assert clf.tta == "flip" and clf.threshold == threshold
    assert clf.calibration_note() is None
    clf.configure(load_config(overrides={"predict.tta": "none"}).predict)
    assert "calibrated with test-time views 'flip', scores now use 'none'" in clf.calibration_note()
    clf.configure(load_config(overrides={"predict.tta": "none", "predict.threshold": 0.7}).predict)
    assert clf.tta == "none" and clf.threshold == 0.7
    assert clf.calibration_note() is None  # the user's own threshold
