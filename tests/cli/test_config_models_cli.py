from __future__ import annotations

import json

from typer.testing import CliRunner

from deepfake_cli.cli.app import app

runner = CliRunner()


def test_config_show_json_applies_file_and_env(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[video]\nevery = 5\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg), "--json"], env={"DFDETECT_FACE_MIN_SIZE": "30"})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["video"]["every"] == 5 and data["face"]["min_size"] == 30


def test_config_unknown_key_is_usage_error(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[video]\nevry = 5\n")
    result = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert result.exit_code == 2 and "video.evry" in result.output


def test_models_list_json():
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    by_name = {a["name"]: a for a in data["architectures"]}
    assert by_name["cnn"]["params"] == 8_494_658 and by_name["sepcnn"]["input_size"] == 128
    assert by_name["resnet18"]["gradcam_layer"] == "layer4.1"


def test_models_info_names_a_run_checkpoint_as_every_other_command_does(tmp_path):
    from conftest import make_checkpoint

    path = make_checkpoint(tmp_path / "exp7" / "best.pt")
    result = runner.invoke(app, ["models", "info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "exp7/best"
