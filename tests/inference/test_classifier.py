"""Scores of face crops as every command reports them."""

from __future__ import annotations

import numpy as np

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
