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


def test_models_info_leads_with_a_summary_then_the_card_raw_markdown_in_a_pipe():
    result = runner.invoke(app, ["models", "info", "ffpp_mesonet4"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("# ffpp_mesonet4: summary\n")
    summary, card = text.split("\n---\n", 1)
    assert "**What it is.** MesoNet's `Meso4`" in summary
    assert "ROC-AUC 0.816" in summary and "threshold 0.509" in summary
    assert "**Limitations.**" in summary and "- A score from this model is **not forensic proof**" in summary
    assert len(summary.splitlines()) < 25
    assert card.lstrip().startswith("# Model card: `ffpp_mesonet4`") and "## Limitations" in card


def test_models_info_on_a_terminal_is_rendered_to_its_width():
    import io

    from rich.console import Console

    from deepfake_cli.cli.models_cmd import print_markdown
    from deepfake_cli.models.catalog import card_summary, model_info

    info = model_info("ffpp_mesonet4")
    buf = io.StringIO()
    print_markdown(card_summary(info) + "\n---\n\n" + info["card_text"], Console(file=buf, width=80, force_terminal=True))
    from rich.text import Text

    plain = Text.from_ansi(buf.getvalue()).plain
    lines = plain.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert not any(line.lstrip().startswith(("#", "|---", "**")) for line in lines)
    assert "ffpp_mesonet4: summary" in lines[0] and "ROC-AUC 0.816" in plain


def test_models_info_summary_without_metrics_or_card_text():
    from deepfake_cli.models.catalog import card_summary

    info = {"name": "m", "arch": "sepcnn", "labels": ["real", "fake"], "threshold": 0.5, "metrics": {}, "card_text": None}
    text = card_summary(info)
    assert "A `sepcnn` checkpoint" in text and "No validation figures" in text and "threshold 0.500" in text
