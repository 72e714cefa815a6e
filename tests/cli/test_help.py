"""Every command's --help reads well at 80 columns: nothing cut off, usual metavars, defaults and
DFDETECT_* names shown the Typer way, examples; and showing an env var name never makes click read it."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from deepfake_cli.cli.app import app

runner = CliRunner()


def _commands():
    root = typer.main.get_command(app)
    out = [[]]

    def walk(command, path):
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            out.append(path + [name])
            walk(sub, path + [name])

    walk(root, [])
    return out


def _leaf(path):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return getattr(command, "commands", None) is None


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "dfdetect")
def test_help_at_80_columns_is_whole_with_usual_metavars(path):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text, text
    for typer_style in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<file>", "<list["):
        assert typer_style not in text, (typer_style, text)
    assert not re.search(r"\{[a-z_]+\}", text), text  # Typer's {sources}
    if _leaf(path):
        assert re.search(r"Examples?:", text), text
        assert len(re.findall(r"^\s+(?:│\s*)?dfdetect ", text, re.M)) >= 1


def test_defaults_and_env_names_are_shown_the_typer_way(monkeypatch):
    import typer.rich_utils

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 200)  # one line per option
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).stdout
    assert re.search(r"--epochs\s+-e\s+INTEGER\s+Epochs\.\s+\[env var: DFDETECT_TRAIN_EPOCHS\]\s+\[default: 10\]", text), text
    assert "(default 10)" not in text and "[default: 1e-4]" in text
    for panel in ("Data", "Model", "Optimisation", "Augmentation", "Hardware"):
        assert f"─ {panel} ─" in text
    predict = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).stdout
    assert re.search(r"--min-face-prob\s+FLOAT", predict) and "[env var: DFDETECT_FACE_MIN_PROB]" in predict
    assert "SOURCES..." in predict and "--out" in predict and re.search(r"--out\s+-o\s+PATH", predict)


def test_a_shown_env_var_is_still_read_by_the_config_not_by_click(tmp_path):
    # A bad value is the config's error naming the key (exit 2), never click's "Invalid value for --batch-size".
    result = runner.invoke(app, ["predict", str(tmp_path / "none_*.jpg")], env={"DFDETECT_PREDICT_BATCH_SIZE": "many"})
    assert result.exit_code == 2 and "predict.batch_size" in result.output and "Invalid value" not in result.output
    # The option still wins over the environment.
    from deepfake_cli.cli.help import DfdetectOption

    command = typer.main.get_command(app).commands["predict"]
    option = next(p for p in command.params if p.name == "batch_size")
    assert isinstance(option, DfdetectOption) and option.envvar == "DFDETECT_PREDICT_BATCH_SIZE" and option.default is None
