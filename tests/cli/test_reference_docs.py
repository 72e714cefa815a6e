"""docs/cli.md and docs/config.md are generated; they must match the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepfake_cli.cli.reference import REFERENCES

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_generated_reference_is_current(name):
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == REFERENCES[name](), (
        f"docs/{name} is stale: run 'python -m deepfake_cli.cli.reference' and commit the result"
    )


def test_cli_reference_covers_every_command():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for command in ("predict", "video", "extract", "train", "evaluate", "gradcam", "serve", "models list",
                    "models info", "models import mesonet", "models export", "config show"):
        assert f"## `dfdetect {command}`" in text


def test_cli_reference_lists_the_root_options():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    root = text.split("## `dfdetect config`")[0]
    assert "`--quiet`, `-q`" in root and "`--version`, `-V`" in root
