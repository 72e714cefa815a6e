"""The shipped default model: found without arguments, scores real portraits, survives a wheel install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import FFPP_FACES, PHOTOS, REPO, need_shared
from deepfake_cli.cli.app import app
from deepfake_cli.models.store import default_model_name, resolve_model

runner = CliRunner()
DEFAULT = json.loads((REPO / "models" / "default.json").read_text())["name"]


@pytest.fixture(autouse=True)
def _no_user_models(tmp_path, monkeypatch):
    # A user's own models folder must not hide the shipped one in these tests.
    monkeypatch.setenv("DFDETECT_MODELS_DIR", str(tmp_path / "user_models"))
    monkeypatch.delenv("DFDETECT_DEFAULT_MODEL", raising=False)


def test_default_model_is_shipped_small_and_documented():
    assert default_model_name() == DEFAULT
    path = resolve_model(None)
    assert path.name == f"{DEFAULT}.pt" and path.stat().st_size < 20 * 1024 * 1024
    card = path.with_suffix(".md").read_text()
    for needle in ("Validation", "AUC", "dfdetect train", "Limitations", "not forensic proof"):
        assert needle in card


def test_predict_without_model_argument_scores_portraits():
    need_shared(PHOTOS)
    photos = sorted(PHOTOS.glob("*.jpg"))
    result = runner.invoke(app, ["predict", *map(str, photos), "--jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == len(photos) and all(r["status"] == "ok" and r["model"] == DEFAULT for r in rows)
    assert {Path(r["path"]).name: r["face_count"] for r in rows}["multiface.jpg"] == 6
    assert all(0.0 <= r["p_fake"] <= 1.0 for r in rows)


def test_models_info_prints_card_and_json():
    result = runner.invoke(app, ["models", "info", DEFAULT])
    assert result.exit_code == 0 and "Limitations" in result.stdout
    info = json.loads(runner.invoke(app, ["models", "info", "--json"]).stdout)
    assert info["name"] == DEFAULT and info["default"] and info["metrics"]
    assert info["preprocessing"]["face"]["margin"] == 0.0
    # The resize rule dfdetect applies (the shipped file predates it and says "bilinear").
    assert info["preprocessing"]["interpolation"].startswith("area when shrinking, bilinear when enlarging")


def test_evaluate_finds_the_default_models_val_split_wherever_the_crops_lie():
    """The card's evaluate command re-makes the 814-crop val split on any machine (fingerprint, not path)."""
    need_shared(FFPP_FACES)
    from deepfake_cli.models.checkpoint import load_checkpoint
    from deepfake_cli.data.datasets import data_fingerprint, read_face_table

    provenance = load_checkpoint(resolve_model(None))["provenance"]
    assert provenance["fingerprint"] == data_fingerprint(read_face_table(FFPP_FACES, val_fraction=0.0))
    assert provenance["splits"]["val"]["crops"] == 814


@pytest.mark.slow
def test_non_editable_wheel_finds_shipped_model(tmp_path):
    """Build the wheel, install it apart from the checkout and predict with no --model."""
    need_shared(PHOTOS)
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(wheel_dir.glob("dfdetect-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    assert (target / "deepfake_cli" / "shipped_models" / f"{DEFAULT}.pt").is_file()
    env = {**os.environ, "PYTHONPATH": str(target), "DFDETECT_MODELS_DIR": str(tmp_path / "none")}
    proc = subprocess.run([sys.executable, "-m", "deepfake_cli", "predict", str(PHOTOS / "kate_siegel.jpg"), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)[0]
    assert row["status"] == "ok" and row["model"] == DEFAULT
    assert "site" in subprocess.run([sys.executable, "-c", "import deepfake_cli; print(deepfake_cli.__file__)"],
                                    cwd=tmp_path, env=env, capture_output=True, text=True).stdout
