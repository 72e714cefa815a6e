"""Weight-space interpolation of a checkpoint and its fine-tune (dfdetect models merge)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from conftest import make_checkpoint
from deepfake_cli.cli.app import app
from deepfake_cli.errors import CheckpointError, UsageError
from deepfake_cli.inference.classifier import FaceClassifier
from deepfake_cli.models.checkpoint import load_checkpoint
from deepfake_cli.models.merge import merge_checkpoints

runner = CliRunner()
SPLIT = {"fingerprint": "abc", "splits": {"val": {"crops": 10}}, "val_fraction": 0.15, "split_seed": 0, "task": "binary"}


@pytest.fixture
def pair(tmp_path):
    digests = {"train_crop_digests": torch.arange(6, dtype=torch.int64)}  # as dfdetect train writes them
    base = make_checkpoint(tmp_path / "base.pt", seed=1, provenance=dict(SPLIT), extra=digests)
    tuned = make_checkpoint(tmp_path / "tuned.pt", seed=2, threshold=0.3, provenance={**SPLIT, "init": str(base)},
                            extra=digests)
    return base, tuned


def test_merge_interpolates_every_float_tensor_and_keeps_tuneds_counters(pair):
    base, tuned = pair
    a, b = load_checkpoint(base)["state_dict"], load_checkpoint(tuned)["state_dict"]
    merged = merge_checkpoints(base, tuned, 0.25)
    floats = [k for k, v in b.items() if v.is_floating_point()]
    assert floats and any(not v.is_floating_point() for v in b.values())  # BatchNorm counters are there
    for key, value in merged["state_dict"].items():
        expected = 0.75 * a[key] + 0.25 * b[key] if key in floats else b[key]
        torch.testing.assert_close(value, expected)
    assert [m["weight"] for m in merged["provenance"]["merged_from"]] == [0.75, 0.25]
    assert merged["metrics"]["threshold_method"] == "uncalibrated (merged)" and merged["threshold"] == 0.3


def test_merge_ends_are_the_two_models(pair, tmp_path):
    base, tuned = pair
    crops = [np.random.default_rng(i).integers(0, 256, (80, 80, 3), dtype=np.uint8) for i in range(3)]
    for weight, source in ((0.0, base), (1.0, tuned)):
        merged = FaceClassifier.from_checkpoint(merge_checkpoints(base, tuned, weight))
        np.testing.assert_allclose(merged.predict_proba(crops), FaceClassifier.from_checkpoint(source).predict_proba(crops),
                                   atol=1e-6)


def test_merge_refuses_other_models_or_other_splits(pair, tmp_path):
    base, _ = pair
    other_split = make_checkpoint(tmp_path / "other.pt", provenance={**SPLIT, "split_seed": 1})
    with pytest.raises(CheckpointError, match="split_seed differs"):
        merge_checkpoints(base, other_split, 0.5)
    other_crops = make_checkpoint(tmp_path / "crops.pt", provenance=dict(SPLIT),
                                  extra={"train_crop_digests": torch.arange(1, 7, dtype=torch.int64)})
    with pytest.raises(CheckpointError, match="training crops differ"):
        merge_checkpoints(base, other_crops, 0.5)
    seven = make_checkpoint(tmp_path / "seven.pt", num_classes=7, provenance=dict(SPLIT),
                            extra={"train_crop_digests": torch.arange(6, dtype=torch.int64)})
    with pytest.raises(CheckpointError, match="model_args differ"):
        merge_checkpoints(base, seven, 0.5)
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        merge_checkpoints(base, base, 1.5)


def test_merge_cli_writes_a_checkpoint_that_predict_loads(pair, tmp_path):
    base, tuned = pair
    out = tmp_path / "merged.pt"
    result = runner.invoke(app, ["models", "merge", str(base), str(tuned), "-w", "0.5", "--input-size", "96",
                                 "-o", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["path"] == str(out) and summary["preprocessing"]["input_size"] == 96
    assert "uncalibrated" in result.stderr
    assert load_checkpoint(out)["preprocessing"]["input_size"] == 96
    again = runner.invoke(app, ["models", "merge", str(base), str(tuned), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
    crop = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(crop), np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8))
    scored = runner.invoke(app, ["predict", str(crop), "-m", str(out), "--no-detect", "--json"])
    assert scored.exit_code in (0, 3), scored.output
    assert 0.0 <= json.loads(scored.stdout)[0]["p_fake"] <= 1.0


def test_merge_cli_default_names_keep_the_weight(pair, tmp_path, monkeypatch):
    """Without --out the merge goes to the models folder, named after TUNED and the weight:
    0.5 and 0.7 are two files, and -m finds each by name."""
    base, tuned = pair
    monkeypatch.setenv("DFDETECT_MODELS_DIR", str(tmp_path / "models"))
    for weight in ("0.5", "0.7"):
        result = runner.invoke(app, ["models", "merge", str(base), str(tuned), "-w", weight, "--json"])
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "models").glob("*.pt"))
    assert names == ["tuned_w0p5.pt", "tuned_w0p7.pt"]
    info = runner.invoke(app, ["models", "info", "tuned_w0p7", "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["provenance"]["merged_from"][1]["weight"] == 0.7
