"""The package's wings stack in layers: nothing imports upward, only the CLI imports typer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import REPO

tomllib = pytest.importorskip("tomllib")


def _layers():
    spec = importlib.util.spec_from_file_location("import_layers", REPO / "scripts" / "import_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_wing_imports_upward_and_only_the_cli_imports_typer():
    graph, problems = _layers().check()
    assert problems == []
    assert graph  # the check did read the package


def test_lower_wings_never_import_cli_or_serve():
    layers = _layers()
    graph, _ = layers.check()
    library = {w for w in layers.LAYERS if w not in ("cli", "serve")}
    assert not [(s, d) for (s, d) in graph if s in library and d in ("cli", "serve")]
    assert ("serve", "cli") not in graph


def test_every_wing_is_a_layer_and_a_listed_package():
    layers = _layers()
    wings = {p.parent.name for p in (REPO / "deepfake_cli").glob("*/__init__.py")}
    assert wings <= set(layers.LAYERS)
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert {f"deepfake_cli.{w}" for w in wings} <= set(packages)


def test_the_top_level_holds_only_the_core_modules():
    top = sorted(p.stem for p in (REPO / "deepfake_cli").glob("*.py"))
    assert len(top) <= 10, top
    assert set(top) >= {"__init__", "config", "errors", "output"}
    assert Path(REPO / "deepfake_cli" / "__main__.py").is_file()
